<TPSDataset>
  <!-- Cobalt (ppm) in the topsoil of a 14.5 km2 area of the Swiss Jura: a
       smoothing thin plate spline through the 259 samples of jura_pred.csv
       (see data/README.md), its smoothing chosen by generalised
       cross-validation. Coordinates are the survey's local grid in km (no
       CRS); the grid covers the samples of jura_pred.csv and jura_val.csv,
       20 m cells. -->
  <Points>
    <Source>jura_pred.csv</Source>
    <XField>Xloc</XField>
    <YField>Yloc</YField>
  </Points>
  <Extent>0.4 0.4 5.0 5.8</Extent>
  <Resolution>0.02 0.02</Resolution>
  <Smoothing>GCV</Smoothing>
  <DataType>Float32</DataType>
  <Band>
    <Field>Co</Field>
    <Description>cobalt (ppm)</Description>
  </Band>
</TPSDataset>
