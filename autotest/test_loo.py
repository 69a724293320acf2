"""Leave-one-out cross-validation for bands of a fixed lambda
(CROSS_VALIDATION=YES, <CrossValidation>), against N brute-force refits
with scipy's RBFInterpolator: for each point i, the spline of the other
N - 1 points (same smoothing) evaluated at x_i; LOO_RMSE and LOO_MAE are
the RMSE and mean absolute value of z_i minus that.

The engine's closed form is Rippa's e_i = w_i / (M^-1)_ii on the saddle
system, defined for lambda = 0 too (where r_i / (1 - A_ii) is 0 / 0);
MODE=LOCAL blends the patches' own (one patch: the global one's).
"""
import os

import numpy as np
import pytest

from conftest import (assert_open_fails, grid_around, md, open_tps, random_points, scipy_tps,
                      smooth_values, tps_xml, write_csv, write_tps)


def _data(n=40, noise=0.1, seed=21):
    rng = np.random.default_rng(seed)
    x, y = random_points(n, rng, 1000.0, 2000.0, 800.0)
    return x, y, smooth_values(x, y, rng, noise=noise)


def _write(tmp_path, x, y, cols, bands=('z',), extra='', points_extra='', smoothing=None):
    csv = write_csv(tmp_path / 'p.csv', dict(x=x, y=y, **cols))
    gt = grid_around(x, y, 16, 16)
    return write_tps(tmp_path / 'p.tps', tps_xml(os.path.basename(csv), list(bands),
                                                 geotransform=gt, size=(16, 16),
                                                 smoothing=smoothing, extra=extra,
                                                 points_extra=points_extra))


def brute_loo(x, y, z, smoothing):
    """z_i - f_(-i)(x_i) for every i, by N refits. smoothing: a number or an
    array of per-point smoothings (scipy's form of per-point weights)."""
    n = len(z)
    s = np.broadcast_to(np.asarray(smoothing, dtype=float), (n,))
    e = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        f = scipy_tps(x[keep], y[keep], z[keep], s[keep])
        e[i] = z[i] - f(np.array([[x[i], y[i]]]))[0]
    return np.sqrt(np.mean(e * e)), np.mean(np.abs(e))


@pytest.mark.parametrize('lam', [0.0, 3.0e2, 3.0e4, 3.0e6])
def test_fixed_lambda_loo_matches_refits(tmp_path, lam):
    x, y, z = _data()
    path = _write(tmp_path, x, y, {'z': z}, smoothing=lam)
    ds, cap = open_tps(path, ['CROSS_VALIDATION=YES', 'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    bmd = ds.GetRasterBand(1).GetMetadata('TPS')
    assert bmd['SMOOTHING_METHOD'] == 'FIXED'
    assert 'GCV_SCORE' not in bmd  # a fixed band has no GCV statistics
    rmse, mae = brute_loo(x, y, z, lam)
    assert abs(float(bmd['LOO_RMSE']) - rmse) <= 1e-7 * rmse, (bmd['LOO_RMSE'], rmse)
    assert abs(float(bmd['LOO_MAE']) - mae) <= 1e-7 * mae, (bmd['LOO_MAE'], mae)
    assert md(ds, 'LOO_RMSE') == bmd['LOO_RMSE']


def test_not_reported_without_the_option(tmp_path):
    x, y, z = _data()
    path = _write(tmp_path, x, y, {'z': z}, smoothing=100.0)
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert 'LOO_RMSE' not in ds.GetRasterBand(1).GetMetadata('TPS')
    assert md(ds, 'LOO_RMSE') is None


def test_element_and_gcv_band(tmp_path):
    """<CrossValidation>true</CrossValidation>; a GCV band next to a fixed
    one: both report LOO, each equal to its refits (the GCV one at its
    chosen lambda), and the dataset lists both."""
    x, y, z = _data(noise=0.2, seed=22)
    path = _write(tmp_path, x, y, {'z': z},
                  bands=[{'field': 'z', 'smoothing': 'GCV'}, {'field': 'z', 'smoothing': 5e4}],
                  extra='<CrossValidation>true</CrossValidation>')
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    for b in (1, 2):
        bmd = ds.GetRasterBand(b).GetMetadata('TPS')
        rmse, mae = brute_loo(x, y, z, float(bmd['SMOOTHING']))
        assert abs(float(bmd['LOO_RMSE']) - rmse) <= 1e-7 * rmse, (b, bmd['LOO_RMSE'], rmse)
        assert abs(float(bmd['LOO_MAE']) - mae) <= 1e-7 * mae, (b, bmd['LOO_MAE'], mae)
    assert len(md(ds, 'LOO_RMSE').split(',')) == 2


def test_model_file_keys_on_the_option(tmp_path):
    x, y, z = _data(seed=23)
    path = _write(tmp_path, x, y, {'z': z}, smoothing=1e3)
    ds, cap = open_tps(path)
    assert ds is not None and md(ds, 'MODEL_SOURCE') == 'SOLVED', cap.errors
    ds = None
    # a model file written without LOO never serves a request for it
    ds, cap = open_tps(path, ['CROSS_VALIDATION=YES'])
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED'
    first = ds.GetRasterBand(1).GetMetadata('TPS')['LOO_RMSE']
    ds = None
    ds, cap = open_tps(path, ['CROSS_VALIDATION=YES'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    assert ds.GetRasterBand(1).GetMetadata('TPS')['LOO_RMSE'] == first


@pytest.mark.parametrize('lam', [0.0, 3.0e4])
def test_local_mode_one_patch_matches_refits(tmp_path, lam):
    """MODE=LOCAL with one patch (PATCH_POINTS above N: its spline is the
    global one, its weight 1): the blended leave-one-out is scipy's by refits.
    Many patches: autotest/c/test_local_gcv.c checks the blend against N
    refits of the local model."""
    x, y, z = _data(seed=24)
    path = _write(tmp_path, x, y, {'z': z}, smoothing=lam)
    ds, cap = open_tps(path, ['CROSS_VALIDATION=YES', 'MODE=LOCAL', 'PATCH_POINTS=100',
                              'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'MODE') == 'LOCAL' and md(ds, 'PATCHES') == '1'
    bmd = ds.GetRasterBand(1).GetMetadata('TPS')
    rmse, mae = brute_loo(x, y, z, lam)
    assert abs(float(bmd['LOO_RMSE']) - rmse) <= 1e-7 * rmse, (bmd['LOO_RMSE'], rmse)
    assert abs(float(bmd['LOO_MAE']) - mae) <= 1e-7 * mae, (bmd['LOO_MAE'], mae)


def test_local_mode_many_patches(tmp_path):
    x, y, z = _data(n=1200, seed=26)
    path = _write(tmp_path, x, y, {'z': z}, smoothing=1e3)
    ds, cap = open_tps(path, ['CROSS_VALIDATION=YES', 'MODE=LOCAL', 'PATCH_POINTS=60',
                              'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert int(md(ds, 'PATCHES')) >= 16
    bmd = ds.GetRasterBand(1).GetMetadata('TPS')
    assert 0 < float(bmd['LOO_MAE']) <= float(bmd['LOO_RMSE'])
    assert md(ds, 'LOO_RMSE') == bmd['LOO_RMSE']


def test_bad_values(tmp_path):
    x, y, z = _data(seed=25)
    path = _write(tmp_path, x, y, {'z': z})
    assert_open_fails(path, 'p.tps', 'CROSS_VALIDATION', ['CROSS_VALIDATION=maybe'])
    bad = _write(tmp_path, x, y, {'z': z}, extra='<CrossValidation>2</CrossValidation>')
    assert_open_fails(bad, 'p.tps', '<CrossValidation>')
