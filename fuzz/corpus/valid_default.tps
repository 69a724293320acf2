<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField></Points><Band><Field>z</Field></Band></TPSDataset>
