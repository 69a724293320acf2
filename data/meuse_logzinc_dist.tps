<TPSDataset>
  <!-- The covariate demo (docs/guide.md, "Covariates and standard errors"):
       log zinc (the prepared field log_zinc) with the distance to the river
       as a linear covariate, smoothing by GCV; band 1 the prediction, band 2
       its standard error. The covariate raster's cells (40 m) exist on the
       flood plain only: elsewhere both bands are NoData. -->
  <Points>
    <Source>meuse_logzinc.csv</Source>
    <XField>x</XField>
    <YField>y</YField>
    <SRS>EPSG:28992</SRS>
  </Points>
  <Covariate>
    <Field>dist</Field>
    <Raster>meuse_dist.tif</Raster>
  </Covariate>
  <Extent>178440 329600 181560 333760</Extent>
  <Resolution>10 10</Resolution>
  <Smoothing>GCV</Smoothing>
  <Band>
    <Field>log_zinc</Field>
    <Description>log zinc (ln ppm)</Description>
  </Band>
  <Band>
    <Field>log_zinc</Field>
    <Quantity>standard_error</Quantity>
    <Description>standard error of log zinc</Description>
  </Band>
</TPSDataset>
