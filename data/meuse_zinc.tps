<TPSDataset>
  <!-- Zinc concentration (ppm) in the topsoil of the Meuse flood plain near
       Stein (NL): an exact thin plate spline through the 155 samples of
       meuse.csv (see data/README.md), on a 10 m grid covering their bounding
       box and the 40 m cells of the classic meuse.grid (data/meuse_grid.csv). -->
  <Points>
    <Source>meuse.csv</Source>
    <XField>x</XField>
    <YField>y</YField>
    <SRS>EPSG:28992</SRS>
  </Points>
  <Extent>178440 329600 181560 333760</Extent>
  <Resolution>10 10</Resolution>
  <Smoothing>0</Smoothing>
  <DataType>Float32</DataType>
  <NoDataValue>-9999</NoDataValue>
  <Band>
    <Field>zinc</Field>
    <Description>zinc (ppm)</Description>
  </Band>
</TPSDataset>
