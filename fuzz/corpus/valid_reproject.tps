<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField><SRS>EPSG:32631</SRS></Points>
<SRS>EPSG:4326</SRS><Extent>1 0 3 1</Extent><Size>9 9</Size><Band><Field>z</Field></Band></TPSDataset>
