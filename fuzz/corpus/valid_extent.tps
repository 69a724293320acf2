<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField></Points>
<Extent>1000 2000 1200 2170</Extent><Resolution>7 9</Resolution><Band><Field>w</Field></Band></TPSDataset>
