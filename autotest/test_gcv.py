"""Automatic smoothing by generalised cross-validation (<Smoothing>GCV</Smoothing>,
-oo SMOOTHING=GCV) through GDAL.

* metadata: SMOOTHING (the chosen lambda), SMOOTHING_METHOD, GCV_SCORE,
  EFFECTIVE_DF (3 < df < N), LOO_RMSE >= LOO_MAE, per band and dataset;
* the surface equals a fixed-lambda open at the reported SMOOTHING;
* noisy data get a lambda far above that of nearly exact data;
* per-band GCV next to a fixed band; MODE=LOCAL (one lambda over the
  patches, the fixed-lambda local surface at it; its patches sized from
  that lambda unless PATCH_POINTS or OVERLAP is given), AUTO's choice; the model
  file keeps the statistics and is keyed on "GCV", not a number.
The engine's GCV, tr A and LOO values are checked against the explicit
influence matrix in autotest/c/test_gcv.c.
"""
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import (grid_around, md, open_tps, random_points, smooth_values, tps_xml,
                      write_csv, write_tps)


def _write(tmp_path, name, x, y, cols, smoothing=None, bands=('z',), size=(40, 30)):
    csv = write_csv(tmp_path / (name + '.csv'), dict(x=x, y=y, **cols))
    gt = grid_around(x, y, size[0], size[1], margin=0.05)
    return write_tps(tmp_path / (name + '.tps'),
                     tps_xml(os.path.basename(csv), list(bands), geotransform=gt, size=size,
                             smoothing=smoothing, data_type='Float64'))


def _data(n, noise, seed, x0=500000.0, y0=5000000.0, w=20000.0):
    rng = np.random.default_rng(seed)
    x, y = random_points(n, rng, x0, y0, w)
    return x, y, smooth_values(x, y, rng, noise=noise)


def test_gcv_metadata_and_surface(tmp_path):
    n = 200
    x, y, z = _data(n, 0.2, 1)
    path = _write(tmp_path, 'gcv', x, y, {'z': z}, smoothing='GCV')
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    band = ds.GetRasterBand(1)
    bmd = band.GetMetadata('TPS')
    assert bmd['SMOOTHING_METHOD'] == 'GCV' and md(ds, 'SMOOTHING_METHOD') == 'GCV'
    lam = float(bmd['SMOOTHING'])
    df = float(bmd['EFFECTIVE_DF'])
    rmse, mae = float(bmd['LOO_RMSE']), float(bmd['LOO_MAE'])
    assert lam > 0
    assert 3 < df < n
    assert float(bmd['GCV_SCORE']) > 0
    assert 0 < mae <= rmse
    # noise sd is 20: the LOO error is of that order, not of the data's range
    assert 10 < rmse < 60, rmse
    for key in ('SMOOTHING', 'GCV_SCORE', 'EFFECTIVE_DF', 'LOO_RMSE', 'LOO_MAE'):
        assert md(ds, key) == bmd[key]
    a = ds.ReadAsArray()

    fixed = _write(tmp_path, 'fixed', x, y, {'z': z}, smoothing=bmd['SMOOTHING'])
    fds, cap = open_tps(fixed, ['MODEL_CACHE=NO'])
    assert fds is not None, cap.errors
    assert fds.GetRasterBand(1).GetMetadata('TPS')['SMOOTHING_METHOD'] == 'FIXED'
    assert 'GCV_SCORE' not in fds.GetRasterBand(1).GetMetadata('TPS')
    b = fds.ReadAsArray()
    assert np.max(np.abs(a - b)) <= 1e-9 * np.ptp(z)


def test_noisy_vs_nearly_exact(tmp_path):
    n = 150
    x, y, znoisy = _data(n, 0.3, 2)
    rng = np.random.default_rng(3)
    zexact = smooth_values(x, y, rng, noise=0.0) + 1e-7 * rng.standard_normal(n)
    path = _write(tmp_path, 'two', x, y, {'a': znoisy, 'b': zexact}, bands=('a', 'b'))
    ds, cap = open_tps(path, ['SMOOTHING=gcv', 'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    m1 = ds.GetRasterBand(1).GetMetadata('TPS')
    m2 = ds.GetRasterBand(2).GetMetadata('TPS')
    assert m1['SMOOTHING_METHOD'] == m2['SMOOTHING_METHOD'] == 'GCV'
    l1, l2 = float(m1['SMOOTHING']), float(m2['SMOOTHING'])
    assert l1 > 0
    assert l2 < 1e-3 * l1, (l1, l2)
    assert float(m2['EFFECTIVE_DF']) > float(m1['EFFECTIVE_DF'])
    # nearly exact data: the LOO error is the interpolation error of a smooth
    # field, far below that of the noisy band
    assert float(m2['LOO_RMSE']) < 0.2 * float(m1['LOO_RMSE'])
    assert ',' in md(ds, 'SMOOTHING')


def test_per_band_gcv_and_fixed(tmp_path):
    x, y, z = _data(120, 0.2, 4)
    csv = write_csv(tmp_path / 'pb.csv', {'x': x, 'y': y, 'z': z})
    gt = grid_around(x, y, 20, 20)
    path = write_tps(tmp_path / 'pb.tps',
                     tps_xml(os.path.basename(csv),
                             [{'field': 'z', 'smoothing': 'Gcv'}, {'field': 'z', 'smoothing': 5.0}],
                             geotransform=gt, size=(20, 20)))
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'SMOOTHING_METHOD') == 'GCV,FIXED'
    assert md(ds, 'GCV_SCORE') is None  # only when every band is GCV
    assert ds.GetRasterBand(2).GetMetadata('TPS')['SMOOTHING'] == '5'
    assert 'EFFECTIVE_DF' in ds.GetRasterBand(1).GetMetadata('TPS')


def test_gcv_local_mode(tmp_path):
    """MODE=LOCAL: one lambda for the whole model, chosen over its patches
    (autotest/c/test_local_gcv.c checks it against the explicit influence
    matrix); the surface is the fixed-lambda local model's at the reported
    SMOOTHING, byte for byte; the model file keeps the statistics."""
    n = 1500
    x, y, z = _data(n, 0.2, 5)
    path = _write(tmp_path, 'loc', x, y, {'z': z}, smoothing='GCV')
    opts = ['MODE=LOCAL', 'PATCH_POINTS=100']
    ds, cap = open_tps(path, opts)
    assert ds is not None, cap.errors
    assert md(ds, 'MODE') == 'LOCAL' and int(md(ds, 'PATCHES')) >= 16
    bmd = ds.GetRasterBand(1).GetMetadata('TPS')
    assert bmd['SMOOTHING_METHOD'] == 'GCV'
    lam, df = float(bmd['SMOOTHING']), float(bmd['EFFECTIVE_DF'])
    rmse, mae = float(bmd['LOO_RMSE']), float(bmd['LOO_MAE'])
    assert lam > 0 and 3 < df < n and float(bmd['GCV_SCORE']) > 0
    # noise sd is 20: the LOO error is of that order
    assert 0 < mae <= rmse and 10 < rmse < 60, rmse
    a = ds.ReadRaster()
    ds = None
    fixed = _write(tmp_path, 'locfixed', x, y, {'z': z}, smoothing=bmd['SMOOTHING'])
    fds, cap = open_tps(fixed, opts + ['MODEL_CACHE=NO'])
    assert fds is not None, cap.errors
    assert fds.GetRasterBand(1).GetMetadata('TPS')['SMOOTHING_METHOD'] == 'FIXED'
    assert fds.ReadRaster() == a
    fds = None
    ds, cap = open_tps(path, opts)
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    again = ds.GetRasterBand(1).GetMetadata('TPS')
    for key in ('SMOOTHING', 'GCV_SCORE', 'EFFECTIVE_DF', 'LOO_RMSE', 'LOO_MAE'):
        assert again[key] == bmd[key]
    assert ds.ReadRaster() == a


def test_gcv_local_patch_size(tmp_path):
    """MODE=LOCAL with GCV and neither PATCH_POINTS nor OVERLAP: the patches
    are sized from the chosen lambda (autotest/c/test_local_gcv_size.c checks
    the choice against the global GCV): heavy noise re-partitions, and
    PATCH_POINTS / OVERLAP say what was used, for the model read back from
    its file too; the fixed-lambda open with those settings and the
    reported SMOOTHING gives the same bytes; the user's settings are kept
    (another model file: the keys differ)."""
    n = 2000
    x, y, z = _data(n, 0.4, 9)
    path = _write(tmp_path, 'sized', x, y, {'z': z}, smoothing='GCV')
    ds, cap = open_tps(path, ['MODE=LOCAL'])
    assert ds is not None, cap.errors
    pp, ov = int(md(ds, 'PATCH_POINTS')), float(md(ds, 'OVERLAP'))
    assert (pp, ov) != (500, 1.5) and pp >= 500 and ov >= 1.5, (pp, ov)
    lam = ds.GetRasterBand(1).GetMetadata('TPS')['SMOOTHING']
    a = ds.ReadRaster()
    model_file = md(ds, 'MODEL_FILE')
    ds = None
    ds, cap = open_tps(path, ['MODE=LOCAL'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    assert (int(md(ds, 'PATCH_POINTS')), float(md(ds, 'OVERLAP'))) == (pp, ov)
    assert ds.ReadRaster() == a
    ds = None
    fixed = _write(tmp_path, 'sizedfixed', x, y, {'z': z}, smoothing=lam)
    fds, cap = open_tps(fixed, ['MODE=LOCAL', 'MODEL_CACHE=NO', 'PATCH_POINTS=%d' % pp,
                                'OVERLAP=%r' % ov])
    assert fds is not None, cap.errors
    assert fds.ReadRaster() == a
    fds = None
    given, cap = open_tps(path, ['MODE=LOCAL', 'PATCH_POINTS=500'])
    assert given is not None, cap.errors
    assert (int(md(given, 'PATCH_POINTS')), float(md(given, 'OVERLAP'))) == (500, 1.5)
    assert md(given, 'MODEL_SOURCE') == 'SOLVED' and md(given, 'MODEL_FILE') != model_file


def test_gcv_auto_chooses_local(tmp_path):
    """AUTO keeps the global model for GCV up to 3000 points (the engine's
    TPS_AUTO_GLOBAL_MAX_POINTS_GCV), the local one beyond."""
    x, y, z = _data(3100, 0.2, 8)
    path = _write(tmp_path, 'auto', x, y, {'z': z}, smoothing='GCV')
    ds, cap = open_tps(path, ['PATCH_POINTS=100', 'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'MODE') == 'LOCAL'
    assert float(ds.GetRasterBand(1).GetMetadata('TPS')['SMOOTHING']) > 0
    small = _write(tmp_path, 'small', x[:2000], y[:2000], {'z': z[:2000]}, smoothing='GCV')
    ds, cap = open_tps(small, ['PATCH_POINTS=100', 'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'MODE') == 'GLOBAL'


def test_gcv_bad_value(tmp_path):
    x, y, z = _data(50, 0.2, 6)
    path = _write(tmp_path, 'bad', x, y, {'z': z})
    ds, cap = open_tps(path, ['SMOOTHING=GCVX'])
    assert ds is None
    assert any('GCV' in e for e in cap.failures), cap.errors


def test_gcv_model_file(tmp_path):
    x, y, z = _data(100, 0.2, 7)
    path = _write(tmp_path, 'mf', x, y, {'z': z}, smoothing='GCV')
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    first = ds.GetRasterBand(1).GetMetadata('TPS')
    data = ds.ReadRaster()
    ds = None
    ds, cap = open_tps(path)
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    again = ds.GetRasterBand(1).GetMetadata('TPS')
    for key in ('SMOOTHING', 'SMOOTHING_METHOD', 'GCV_SCORE', 'EFFECTIVE_DF', 'LOO_RMSE',
                'LOO_MAE'):
        assert again[key] == first[key]
    assert ds.ReadRaster() == data
    ds = None
    # a numeric SMOOTHING is another cache key: solved, not read
    ds, cap = open_tps(path, ['SMOOTHING=' + first['SMOOTHING']])
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED'
    assert ds.GetRasterBand(1).GetMetadata('TPS')['SMOOTHING_METHOD'] == 'FIXED'
