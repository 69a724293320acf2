#!/usr/bin/env python3
"""The covariate demo and its validation (docs/guide.md "Covariates and
standard errors", docs/validation.md "Covariates"):

* renders docs/img/meuse_logzinc_dist.png: the prediction of log zinc with
  the distance to the river as a covariate, and its standard error, side by
  side with the samples on top (data/meuse_logzinc_dist.tps);
* prints the leave-one-out RMSE (the driver's closed form, LOO_RMSE, at the
  GCV smoothing) without and with the covariate on meuse log zinc and on a
  synthetic temperature field that follows a rough terrain, next to R's
  fields::Tps on the same data (autotest/r/fields_loo.R: GCV, then N
  refits), when Rscript is installed.

    GDAL_DRIVER_PATH=build /usr/bin/python3 scripts/covariate_demo.py docs/img/meuse_logzinc_dist.png

Needs the plugin, numpy and matplotlib (python3-matplotlib)."""
import csv
import os
import shutil
import subprocess
import sys
import tempfile

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from osgeo import gdal, osr  # noqa: E402

gdal.UseExceptions()
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
DATA = os.path.join(ROOT, 'data')


def columns(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def render(out_png):
    # MODEL_CACHE=NO: rendering the picture leaves no model file in data/.
    ds = gdal.OpenEx(os.path.join(DATA, 'meuse_logzinc_dist.tps'), open_options=['MODEL_CACHE=NO'])
    value = ds.GetRasterBand(1).ReadAsArray()
    se = ds.GetRasterBand(2).ReadAsArray()
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    extent = (x0, x0 + dx * ds.RasterXSize, y0 + dy * ds.RasterYSize, y0)
    tps = ds.GetMetadata('TPS')
    b = ds.GetRasterBand(1).GetMetadata('TPS')
    pts = columns(os.path.join(DATA, 'meuse_logzinc.csv'))
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 5.6), dpi=100)
    for ax, data, title, label, cmap in (
            (axes[0], value, 'log zinc, with the distance to the river', 'ln(zinc / ppm)',
             'viridis'),
            (axes[1], se, 'its standard error (fields::predictSE)', 'ln(zinc / ppm)',
             'magma')):
        im = ax.imshow(data, extent=extent, cmap=cmap, interpolation='nearest')
        ax.scatter(pts['x'], pts['y'], s=5, c='white', edgecolors='black', linewidths=0.3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('x (m, RD New)')
        ax.set_xticks([179000, 180000, 181000])
        fig.colorbar(im, ax=ax, shrink=0.75, label=label)
    axes[0].set_ylabel('y (m)')
    fig.suptitle('Meuse: GCV smoothing %.3g m² (%.1f effective df of 155), '
                 'coefficient of dist %.3f, sigma² %.3g, tau² %.3g'
                 % (float(tps['SMOOTHING']), float(tps['EFFECTIVE_DF']),
                    float(b['COVARIATE_COEFFICIENTS']), float(b['SIGMA2']), float(b['TAU2'])),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png)
    print('wrote', out_png)


def terrain(x, y):
    """A rough terrain (m): ridges and valleys finer than the samples' spacing."""
    u, v = x / 5000.0, y / 4000.0
    return (400 + 250 * np.sin(9 * u + 2 * v) * np.cos(7 * v) + 120 * np.sin(23 * u) *
            np.sin(19 * v) + 300 * u)


def temperature_data(folder):
    """200 stations over 5 x 4 km; temperature = lapse rate x terrain + a
    smooth regional trend + noise; the terrain as a 20 m GeoTIFF."""
    rng = np.random.default_rng(13)
    n = 200
    x, y = 5000 * rng.random(n), 4000 * rng.random(n)
    elev = terrain(x, y)
    t = 18 - 0.0065 * elev + 0.8 * np.sin(x / 1500) + 0.15 * rng.standard_normal(n)
    path = os.path.join(folder, 'stations.csv')
    with open(path, 'w') as f:
        f.write('x,y,temp,elev\n')
        for row in zip(x, y, t, elev):
            f.write(','.join(repr(float(v)) for v in row) + '\n')
    c, r = np.meshgrid(np.arange(251) * 20.0 + 10 - 10, 4000 - (np.arange(201) * 20.0))
    dem = gdal.GetDriverByName('GTiff').Create(os.path.join(folder, 'terrain.tif'), 251, 201, 1,
                                               gdal.GDT_Float64)
    dem.SetGeoTransform([-10, 20, 0, 4010, 0, -20])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    dem.SetProjection(srs.ExportToWkt())
    dem.GetRasterBand(1).WriteArray(terrain(c + 10, r - 10))
    dem = None
    return path, 'temp', 'elev', os.path.join(folder, 'terrain.tif')


def ours(points, z, cov, raster, srs):
    """The driver's GCV fit without and with the covariate: LOO_RMSE etc."""
    out = {}
    for label, extra in (('none', []), ('cov', ['COVARIATES=%s:%s' % (cov, raster)])):
        ds = gdal.OpenEx('TPS:' + points, open_options=[
            'FIELD=' + z, 'XFIELD=x', 'YFIELD=y', 'SRS=' + srs, 'SMOOTHING=GCV', 'SIZE=64,64',
            'MODEL_CACHE=NO'] + extra)
        tps = ds.GetMetadata('TPS')
        out[label] = (float(tps['SMOOTHING']), float(tps['EFFECTIVE_DF']),
                      float(tps['LOO_RMSE']))
    return out


def fields(points, z, cov):
    rscript = shutil.which('Rscript')
    if not rscript:
        return None
    r = subprocess.run([rscript, os.path.join(ROOT, 'autotest', 'r', 'fields_loo.R'), points,
                        'x', 'y', z, cov], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        p = line.split()
        if p and p[0] == '@@':
            kv = dict(zip(p[2::2], map(float, p[3::2])))
            out[p[1]] = (kv['lambda'], kv['eff_df'], kv['loo_rmse'])
    return out


def validate():
    with tempfile.TemporaryDirectory() as tmp:
        sets = [('meuse log zinc (155), dist', os.path.join(DATA, 'meuse_logzinc.csv'),
                 'log_zinc', 'dist', os.path.join(DATA, 'meuse_dist.tif'), 'EPSG:28992')]
        p, z, c, dem = temperature_data(tmp)
        sets.append(('synthetic temperature (200), terrain', p, z, c, dem, 'EPSG:32632'))
        print('| data, covariate | covariate | lambda (GCV) ours / fields | effective df ours / '
              'fields | LOO RMSE ours / fields |')
        print('| --- | --- | --- | --- | --- |')
        for name, path, zcol, cov, raster, srs in sets:
            a = ours(path, zcol, cov, raster, srs)
            f = fields(path, zcol, cov) or {}
            for label in ('none', 'cov'):
                fl = f.get(label, (np.nan,) * 3)
                print('| %s | %s | %.4g / %.4g | %.2f / %.2f | %.4f / %.4f |'
                      % (name, 'with' if label == 'cov' else 'without', a[label][0], fl[0],
                         a[label][1], fl[1], a[label][2], fl[2]))


if __name__ == '__main__':
    render(sys.argv[1] if len(sys.argv) > 1 else 'meuse_logzinc_dist.png')
    validate()
