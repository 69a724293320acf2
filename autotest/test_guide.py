"""The user guide (docs/guide.md) and its Jura example.

* data/jura_co.tps, fitted to jura_pred.csv only, predicts the 100
  held-out samples of jura_val.csv (independent measurements) with an RMSE
  well under their standard deviation;
* every file the guide links or shows exists, and its pictures are small.
"""
import csv
import os
import re

import numpy as np
from osgeo import gdal

from conftest import DATA_DIR, REPO

GUIDE = os.path.join(REPO, 'docs', 'guide.md')


def samples(name, field):
    with open(os.path.join(DATA_DIR, name)) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r['Xloc']), float(r['Yloc']), float(r[field])] for r in rows])


def test_jura_predicts_held_out_samples():
    ds = gdal.OpenEx(os.path.join(DATA_DIR, 'jura_co.tps'), open_options=['MODEL_CACHE=NO'])
    assert ds is not None
    tps = ds.GetMetadata('TPS')
    assert tps['SMOOTHING_METHOD'] == 'GCV' and tps['POINT_COUNT'] == '259', tps
    held_out = samples('jura_val.csv', 'Co')
    # The pixel holding each held-out sample (20 m cells of a smooth surface).
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    co = ds.GetRasterBand(1).ReadAsArray()
    cols = np.floor((held_out[:, 0] - x0) / dx).astype(int)
    rows = np.floor((held_out[:, 1] - y0) / dy).astype(int)
    error = co[rows, cols] - held_out[:, 2]
    rmse, sd = np.sqrt(np.mean(error ** 2)), held_out[:, 2].std()
    # sd is the RMSE of predicting every sample by the held-out mean: the
    # spline must do clearly better without having seen them.
    assert rmse < 0.8 * sd, (rmse, sd)


def test_guide_links_exist():
    with open(GUIDE) as f:
        text = f.read()
    links = re.findall(r'\]\(([^)#]+)(?:#[^)]*)?\)', text)
    assert len(links) >= 8, links
    for link in links:
        if link.startswith('http'):
            continue
        path = os.path.join(REPO, 'docs', link)
        assert os.path.exists(path), link
        if link.endswith('.png'):
            assert os.path.getsize(path) < 300_000, (link, os.path.getsize(path))
    with open(os.path.join(REPO, 'README.md')) as f:
        assert '(docs/guide.md)' in f.read()
