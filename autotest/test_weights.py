"""Per-point weights (<Points><WeightField>, -oo WEIGHT_FIELD): the fit
minimises sum w_i (z_i - f(x_i))^2 + lambda J(f), i.e. solves
(K + lambda W^-1) c + P a = z.

Independent references:
* scipy's RBFInterpolator, whose `smoothing` takes one value per point:
  smoothing_i = lambda / w_i is the same system (fixed lambda, LOCAL with
  one patch, coincident points merged into their weighted mean, LOO by N
  refits);
* R's fields::Tps(weights = w) for weighted GCV: the same chosen lambda
  (lambda = 8 pi lambda_f), effective df, GCV score and surfaces.
Bad weights fail the open with one message naming the file, the element,
the field and the feature.
"""
import os

import numpy as np
import pytest

from conftest import (DATA_DIR, assert_open_fails, grid_around, md, open_tps, pixel_centres,
                      random_points, scipy_grid, scipy_tps, smooth_values, tps_xml, write_csv,
                      write_tps)
from test_gcv_fields import TO_FIELDS, read_columns, run_fields
from test_loo import brute_loo

SIZE = (24, 20)


def _data(n=60, seed=31, noise=0.1):
    rng = np.random.default_rng(seed)
    x, y = random_points(n, rng, 3000.0, 1000.0, 900.0)
    z = smooth_values(x, y, rng, noise=noise)
    w = np.exp(rng.uniform(np.log(0.2), np.log(5.0), n))  # weights over 1.4 decades
    return x, y, z, w


def _write(tmp_path, name, x, y, z, w, smoothing=None, points_extra='<WeightField>w</WeightField>',
           extra=''):
    csv = write_csv(tmp_path / (name + '.csv'), {'x': x, 'y': y, 'z': z, 'w': w})
    gt = grid_around(x, y, *SIZE)
    path = write_tps(tmp_path / (name + '.tps'),
                     tps_xml(os.path.basename(csv), ['z'], geotransform=gt, size=SIZE,
                             smoothing=smoothing, data_type='Float64', points_extra=points_extra,
                             extra=extra))
    return path, gt


def _open(path, options=()):
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'] + list(options))
    assert ds is not None, cap.errors
    return ds


def _band_md(path, options=()):
    # the dataset must outlive its band object (GDAL's Python bindings)
    ds = _open(path, options)
    return dict(ds.GetRasterBand(1).GetMetadata('TPS'))


@pytest.mark.parametrize('lam', [0.0, 1e3, 1e5])
def test_fixed_lambda_against_scipy(tmp_path, lam):
    x, y, z, w = _data()
    path, gt = _write(tmp_path, 'f', x, y, z, w, smoothing=lam)
    ds = _open(path)
    assert md(ds, 'WEIGHT_FIELD') == 'w'
    ref = scipy_grid(x, y, z, lam / w, gt, *SIZE)
    err = np.max(np.abs(ds.ReadAsArray() - ref))
    assert err <= 1e-8 * np.ptp(z), err / np.ptp(z)
    if lam > 0:
        # and the weights matter: the unweighted fit differs by far more
        unweighted = scipy_grid(x, y, z, lam, gt, *SIZE)
        assert np.max(np.abs(unweighted - ref)) > 1e3 * max(err, 1e-12 * np.ptp(z))


def test_open_option_and_cache_key(tmp_path):
    x, y, z, w = _data(seed=32)
    path, gt = _write(tmp_path, 'o', x, y, z, w, smoothing=1e4, points_extra='')
    ds, cap = open_tps(path)
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED' and md(ds, 'WEIGHT_FIELD') is None
    plain = ds.ReadAsArray()
    ds = None
    # the weighted model is another model: solved, not read from the file
    ds, cap = open_tps(path, ['WEIGHT_FIELD=w'])
    assert ds is not None, cap.errors
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED' and md(ds, 'WEIGHT_FIELD') == 'w'
    weighted = ds.ReadAsArray()
    ds = None
    assert np.max(np.abs(weighted - plain)) > 1e-3 * np.ptp(z)
    ref = scipy_grid(x, y, z, 1e4 / w, gt, *SIZE)
    assert np.max(np.abs(weighted - ref)) <= 1e-5 * np.ptp(z)  # Float32 band
    ds, cap = open_tps(path, ['WEIGHT_FIELD=w'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    assert np.array_equal(ds.ReadAsArray(), weighted)


def test_coincident_points_merge_weighted(tmp_path):
    x, y, z, w = _data(seed=33)
    # a second sample at point 0 and at point 1, with their own values and weights
    x2, y2 = np.append(x, [x[0], x[1]]), np.append(y, [y[0], y[1]])
    z2, w2 = np.append(z, [z[0] + 30.0, z[1] - 20.0]), np.append(w, [3.0, 0.5])
    path, gt = _write(tmp_path, 'm', x2, y2, z2, w2, smoothing=2e3)
    ds = _open(path)
    zm, wm = z.copy(), w.copy()
    for i, (zi, wi) in enumerate([(z[0] + 30.0, 3.0), (z[1] - 20.0, 0.5)]):
        zm[i] = (w[i] * z[i] + wi * zi) / (w[i] + wi)
        wm[i] = w[i] + wi
    ref = scipy_grid(x, y, zm, 2e3 / wm, gt, *SIZE)
    assert np.max(np.abs(ds.ReadAsArray() - ref)) <= 1e-8 * np.ptp(z)


def test_local_mode_one_patch(tmp_path):
    """A local model whose single patch holds every point is that patch's
    spline: the weighted global one."""
    x, y, z, w = _data(seed=34)
    path, gt = _write(tmp_path, 'l', x, y, z, w, smoothing=5e3)
    ds = _open(path, ['MODE=LOCAL', 'PATCH_POINTS=500'])
    assert md(ds, 'MODE') == 'LOCAL' and md(ds, 'PATCHES') == '1'
    ref = scipy_grid(x, y, z, 5e3 / w, gt, *SIZE)
    assert np.max(np.abs(ds.ReadAsArray() - ref)) <= 1e-8 * np.ptp(z)


def test_local_mode_patches_follow_the_weights(tmp_path):
    """16 patches: the weighted local surface follows the weighted global
    spline (scipy) as closely as local models do with smoothing (measured
    3e-2 x range), and several times closer than the unweighted local
    surface does (measured 0.12 x range): each patch uses its points'
    weights."""
    rng = np.random.default_rng(35)
    x, y = random_points(400, rng, 0.0, 0.0, 1000.0)
    z = smooth_values(x, y, rng, noise=0.3)
    w = np.where(rng.random(400) < 0.5, 20.0, 1.0)
    lam = 3e3
    weighted, gt = _write(tmp_path, 'lw', x, y, z, w, smoothing=lam)
    plain, _ = _write(tmp_path, 'lu', x, y, z, w, smoothing=lam, points_extra='')
    ds = _open(weighted, ['MODE=LOCAL', 'PATCH_POINTS=60'])
    assert int(md(ds, 'PATCHES')) > 4
    ref = scipy_grid(x, y, z, lam / w, gt, *SIZE)
    inner = (slice(2, -2), slice(2, -2))  # the edge extrapolates
    err_w = np.max(np.abs(ds.ReadAsArray() - ref)[inner])
    err_u = np.max(np.abs(_open(plain, ['MODE=LOCAL', 'PATCH_POINTS=60']).ReadAsArray() -
                          ref)[inner])
    assert err_w <= 0.05 * np.ptp(z), err_w / np.ptp(z)
    assert err_u > 3 * err_w, (err_u, err_w)


def test_loo_weighted_against_refits(tmp_path):
    x, y, z, w = _data(n=40, seed=36)
    for lam in (0.0, 2e4):
        path, gt = _write(tmp_path, 'cv%d' % int(lam), x, y, z, w, smoothing=lam)
        bmd = _band_md(path, ['CROSS_VALIDATION=YES'])
        rmse, mae = brute_loo(x, y, z, lam / w)
        assert abs(float(bmd['LOO_RMSE']) - rmse) <= 1e-7 * rmse, (lam, bmd['LOO_RMSE'], rmse)
        assert abs(float(bmd['LOO_MAE']) - mae) <= 1e-7 * mae, (lam, bmd['LOO_MAE'], mae)
    # the GCV band's LOO (from the eigendecomposition) at its chosen lambda
    path, gt = _write(tmp_path, 'gcv', x, y, z, w, smoothing='GCV')
    bmd = _band_md(path)
    rmse, mae = brute_loo(x, y, z, float(bmd['SMOOTHING']) / w)
    assert abs(float(bmd['LOO_RMSE']) - rmse) <= 1e-7 * rmse, (bmd['LOO_RMSE'], rmse)
    assert abs(float(bmd['LOO_MAE']) - mae) <= 1e-7 * mae, (bmd['LOO_MAE'], mae)


@pytest.mark.parametrize('name', ['meuse_zinc', 'synthetic'])
def test_weighted_gcv_against_fields(tmp_path, name):
    if name == 'meuse_zinc':
        cols = read_columns(os.path.join(DATA_DIR, 'meuse.csv'), ['x', 'y', 'zinc', 'dist'])
        x, y, z = cols['x'], cols['y'], cols['zinc']
        w = 1.0 / (0.1 + cols['dist'])  # trust samples near the river more (illustrative)
    else:
        x, y, z, w = _data(n=120, seed=37, noise=0.2)
    path, gt = _write(tmp_path, 'g', x, y, z, w, smoothing='GCV')
    bmd = _band_md(path)
    lam, score, df = float(bmd['SMOOTHING']), float(bmd['GCV_SCORE']), float(bmd['EFFECTIVE_DF'])
    surface = _open(path).ReadAsArray()
    stats, preds = run_fields(str(path)[:-4] + '.csv', 'z', pixel_centres(gt, *SIZE),
                              tmp_path / 'fields.csv', [lam * TO_FIELDS], weight_col='w')
    vr = np.ptp(z)
    # same system at the same lambda, same weighted criterion
    assert np.max(np.abs(surface.ravel() - preds['lam1'])) <= 1e-7 * vr
    assert abs(stats['at_1'][0] - score) <= 1e-7 * score, (stats['at_1'], score)
    assert abs(stats['at_1'][1] - df) <= 1e-6 * df
    # same choice (fields' minimum is inside its grid here)
    assert 1 < stats['grid_index'][0] < stats['grid_size'][0]
    assert score <= stats['gcv'][0] * (1 + 1e-9)
    assert abs(lam * TO_FIELDS / stats['lambda'][0] - 1) < 0.02, (lam * TO_FIELDS, stats['lambda'])
    assert abs(df - stats['eff_df'][0]) < 0.5
    assert np.max(np.abs(surface.ravel() - preds['gcv'])) <= 3e-3 * vr


# (the value itself is data: it is in the message only with CPL_DEBUG, see
# test_security.py)
@pytest.mark.parametrize('value,what', [('0', 'zero or negative'), ('-2', 'zero or negative'),
                                        ('', 'missing'),
                                        ('NA', 'missing'), ('inf', 'missing'),
                                        ('abc', 'not a number')])
def test_bad_weight(tmp_path, value, what):
    x, y, z, w = _data(n=12, seed=38)
    wcol = [repr(float(v)) for v in w]
    wcol[4] = value
    path, _ = _write(tmp_path, 'bad', x, y, z, wcol, smoothing=10.0)
    cap = assert_open_fails(path, 'bad.tps', ['WeightField', "field 'w'"])
    msg = [m for m in cap.failures if 'bad.tps' in m][0]
    assert 'feature 5' in msg and what in msg and 'bad.csv' in msg, msg


def test_unknown_weight_field(tmp_path):
    x, y, z, w = _data(n=12, seed=39)
    path, _ = _write(tmp_path, 'nf', x, y, z, w, points_extra='<WeightField>sigma</WeightField>')
    assert_open_fails(path, 'nf.tps', ["no field 'sigma'"])
