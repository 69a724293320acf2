<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField></Points><Size>0 -3</Size><Band><Field>z</Field></Band></TPSDataset>
