#!/usr/bin/env python3
"""Renders docs/img/jura_co.png, the user guide's Jura picture: the cobalt
surface of data/jura_co.tps (a GCV-smoothed thin plate spline through the
259 samples of jura_pred.csv) read through GDAL, with the samples on top,
and prints how well it predicts the 100 held-out samples of jura_val.csv.

    GDAL_DRIVER_PATH=build /usr/bin/python3 scripts/jura_map.py docs/img/jura_co.png

Needs the plugin, numpy and matplotlib (python3-matplotlib)."""
import csv
import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data')


def samples(name):
    with open(os.path.join(DATA, name)) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r['Xloc']), float(r['Yloc']), float(r['Co'])] for r in rows])


def main(out_png):
    # MODEL_CACHE=NO: rendering the picture leaves no model file in data/.
    ds = gdal.OpenEx(os.path.join(DATA, 'jura_co.tps'), open_options=['MODEL_CACHE=NO'])
    co = ds.GetRasterBand(1).ReadAsArray()
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    extent = (x0, x0 + dx * ds.RasterXSize, y0 + dy * ds.RasterYSize, y0)
    tps = ds.GetMetadata('TPS')

    fit, held_out = samples('jura_pred.csv'), samples('jura_val.csv')
    cols = ((held_out[:, 0] - x0) / dx).astype(int)
    rows = ((held_out[:, 1] - y0) / dy).astype(int)
    error = co[rows, cols] - held_out[:, 2]
    print('jura_val: %d held-out samples, RMSE %.2f ppm (their standard deviation: %.2f), '
          'bias %.2f; GCV smoothing %.4g, %.0f effective degrees of freedom of %s, '
          'leave-one-out RMSE %.2f'
          % (len(error), np.sqrt(np.mean(error ** 2)), held_out[:, 2].std(), error.mean(),
             float(tps['SMOOTHING']), float(tps['EFFECTIVE_DF']), tps['POINT_COUNT'],
             float(tps['LOO_RMSE'])))

    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=100)
    im = ax.imshow(co, extent=extent, cmap='viridis', vmin=0, vmax=18, interpolation='nearest')
    ax.scatter(fit[:, 0], fit[:, 1], s=6, c='black', label='jura_pred (fitted)')
    ax.scatter(held_out[:, 0], held_out[:, 1], s=14, facecolors='none', edgecolors='white',
               linewidths=0.8, label='jura_val (held out)')
    ax.set_xlabel('x (km, local grid)')
    ax.set_ylabel('y (km)')
    ax.set_title('Cobalt in the Swiss Jura topsoil, smoothing by GCV', fontsize=10)
    ax.legend(loc='lower right', fontsize=7, framealpha=0.8)
    fig.colorbar(im, ax=ax, shrink=0.8, label='Co (ppm)')
    fig.tight_layout()
    fig.savefig(out_png)
    print('wrote', out_png)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'jura_co.png')
