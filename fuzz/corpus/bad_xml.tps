<TPSDataset><Points><Source>pts.csv</Sour
