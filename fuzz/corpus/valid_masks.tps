<?xml version="1.0"?>
<TPSDataset>
  <Points>
    <Source>pts.csv</Source>
    <Layer>pts</Layer>
    <XField>x</XField><YField>y</YField>
    <SRS>EPSG:28992</SRS>
    <Where>z &gt; 1</Where>
  </Points>
  <SRS>EPSG:28992</SRS>
  <GeoTransform>990, 5, 0, 2180, 0, -5</GeoTransform>
  <Size>50 40</Size>
  <Smoothing>0.5</Smoothing>
  <DataType>Float64</DataType>
  <NoDataValue>-9999</NoDataValue>
  <BlockSize>16 16</BlockSize>
  <MaxDistance>12</MaxDistance>
  <ConvexHull>true</ConvexHull>
  <Band><Field>z</Field><Smoothing>10</Smoothing><Description>z</Description></Band>
  <Band><Field>w</Field></Band>
  <Band><Field>t</Field></Band>
</TPSDataset>
