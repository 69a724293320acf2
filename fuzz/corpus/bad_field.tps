<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>nope</YField></Points><Band><Field>z</Field></Band><Unknown/></TPSDataset>
