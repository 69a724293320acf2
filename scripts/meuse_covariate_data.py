#!/usr/bin/env python3
"""The data of the covariate demo (docs/guide.md, "Covariates and standard
errors"), made from the shipped meuse CSV files:

* data/meuse_dist.tif: `dist` of data/meuse_grid.csv (the normalised
  distance to the river Meuse, 0 to 1) as a GeoTIFF, one 40 m pixel per
  grid cell (RD New, EPSG:28992), Float32, NaN (NoData) where the grid has
  no cell (outside the flood plain);
* data/meuse_logzinc.csv: x, y, zinc, dist and log_zinc = ln(zinc) of
  data/meuse.csv: the field prepared for a fit of log zinc (the driver fits
  a field as given; this is the prepared-field way to a log fit).

    /usr/bin/python3 scripts/meuse_covariate_data.py [DATA_DIR]
"""
import csv
import math
import os
import sys

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()
DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'data')
CELL = 40.0


def rows(name):
    with open(os.path.join(DATA, name), newline='') as f:
        return list(csv.DictReader(f))


def dist_raster():
    grid = rows('meuse_grid.csv')
    xs = np.array([float(r['x']) for r in grid])
    ys = np.array([float(r['y']) for r in grid])
    x0, y1 = xs.min() - CELL / 2, ys.max() + CELL / 2
    ncols = int(round((xs.max() - xs.min()) / CELL)) + 1
    nrows = int(round((ys.max() - ys.min()) / CELL)) + 1
    band = np.full((nrows, ncols), np.nan, dtype=np.float32)
    for r, x, y in zip(grid, xs, ys):
        band[int(round((y1 - CELL / 2 - y) / CELL)), int(round((x - x0 - CELL / 2) / CELL))] = \
            float(r['dist'])
    path = os.path.join(DATA, 'meuse_dist.tif')
    ds = gdal.GetDriverByName('GTiff').Create(path, ncols, nrows, 1, gdal.GDT_Float32,
                                              ['COMPRESS=DEFLATE', 'PREDICTOR=3'])
    ds.SetGeoTransform([x0, CELL, 0, y1, 0, -CELL])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(28992)
    ds.SetProjection(srs.ExportToWkt())
    b = ds.GetRasterBand(1)
    b.SetNoDataValue(float('nan'))
    b.SetDescription('dist: normalised distance to the river Meuse (sp::meuse.grid)')
    b.WriteArray(band)
    ds = None
    print('%s: %d x %d cells of %g m, %d with a value' % (path, ncols, nrows, CELL,
                                                          int(np.isfinite(band).sum())))


def logzinc_csv():
    path = os.path.join(DATA, 'meuse_logzinc.csv')
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['x', 'y', 'zinc', 'dist', 'log_zinc'])
        for r in rows('meuse.csv'):
            w.writerow([r['x'], r['y'], r['zinc'], r['dist'],
                        '%.15g' % math.log(float(r['zinc']))])
    print('%s: the 155 points with log_zinc' % path)


if __name__ == '__main__':
    dist_raster()
    logzinc_csv()
