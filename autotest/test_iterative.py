"""SOLVER=ITERATIVE (<Solver>): the global spline by preconditioned GMRES
with fast products (docs/design.md, "The iterative solve"), through GDAL.

The reference is the same file opened with SOLVER=DIRECT (the dense solve,
which test_values.py holds to scipy): the surfaces agree within 1e-8 of
the value range (3,200 points: the fast summation's products). The
metadata (SOLVER, ITERATIONS, RELATIVE_RESIDUAL, dataset and band), the
element form and its tolerance, the model file (its hash includes the
solver; a model read back keeps the metadata), and the refusals (LOCAL,
GCV, cross-validation, covariates, a standard-error band, unknown values)
with the option named; SOLVER=AUTO with a standard-error band is DIRECT.
"""
import os

import numpy as np
import pytest

from conftest import (assert_close64, assert_open_fails, grid_around, md, open_tps,
                      random_points, smooth_values, tps_xml, write_csv, write_tps)


@pytest.fixture(scope='module')
def pts(tmp_path_factory):
    d = tmp_path_factory.mktemp('iterative')
    rng = np.random.default_rng(17)
    x, y = random_points(3200, rng, 500000.0, 4000000.0, 8000.0)
    z = smooth_values(x, y, rng, noise=0.0)
    w = np.sin(x / 900.0) * 40 + np.cos(y / 700.0) * 25
    write_csv(d / 'p.csv', dict(x=x, y=y, z=z, w=w))
    return dict(dir=d, x=x, y=y, z=z, w=w)


def _tps(pts, name, extra='', bands=('z',)):
    gt = grid_around(pts['x'], pts['y'], 60, 50)
    return write_tps(pts['dir'] / name, tps_xml('p.csv', list(bands), geotransform=gt,
                                                size=(60, 50), extra=extra))


def _read(ds):
    return [ds.GetRasterBand(b + 1).ReadAsArray().astype(float) for b in range(ds.RasterCount)]


def test_iterative_equals_direct(pts):
    path = _tps(pts, 'both.tps', extra='<DataType>Float64</DataType><Mode>GLOBAL</Mode>',
                bands=('z', 'w'))
    it, cap = open_tps(path, ['SOLVER=ITERATIVE', 'MODEL_CACHE=NO'])
    assert it is not None, cap.errors
    di, cap = open_tps(path, ['SOLVER=DIRECT', 'MODEL_CACHE=NO'])
    assert di is not None, cap.errors
    for a, b, z in zip(_read(it), _read(di), (pts['z'], pts['w'])):
        assert_close64(a, b, np.ptp(z), rel=1e-8, what='ITERATIVE against DIRECT')
    assert md(it, 'SOLVER') == 'ITERATIVE' and md(di, 'SOLVER') == 'DIRECT'
    assert md(it, 'MODE') == 'GLOBAL'
    # one solve per band (same smoothing and missing values: one group, the
    # bands one after another), so one value each or one for both
    iters = [int(v) for v in md(it, 'ITERATIONS').split(',')]
    resid = [float(v) for v in md(it, 'RELATIVE_RESIDUAL').split(',')]
    assert all(1 <= k <= 200 for k in iters), iters
    assert all(0 <= r <= 1e-10 for r in resid), resid
    for b in (1, 2):
        bmd = it.GetRasterBand(b).GetMetadata('TPS')
        assert bmd['SOLVER'] == 'ITERATIVE'
        assert 1 <= int(bmd['ITERATIONS']) <= 200
        assert float(bmd['RELATIVE_RESIDUAL']) <= 1e-10
        # lambda = 0: the data are reproduced
        assert float(bmd['MAX_ABS_RESIDUAL']) <= 1e-8 * np.ptp(pts['z' if b == 1 else 'w'])
        dmd = di.GetRasterBand(b).GetMetadata('TPS')
        assert dmd['SOLVER'] == 'DIRECT'
        assert 'ITERATIONS' not in dmd and 'RELATIVE_RESIDUAL' not in dmd
    assert md(di, 'ITERATIONS') is None and md(di, 'RELATIVE_RESIDUAL') is None


def test_element_and_tolerance(pts):
    """<Solver> (any case) and <SolverTolerance>: a looser residual, reached."""
    path = _tps(pts, 'element.tps',
                extra='<Solver>iterative</Solver><SolverTolerance>1e-6</SolverTolerance>')
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'SOLVER') == 'ITERATIVE'
    assert md(ds, 'MODE') == 'GLOBAL'  # MODE=AUTO with ITERATIVE: the global spline
    assert float(md(ds, 'RELATIVE_RESIDUAL')) <= 1e-6
    tight, cap = open_tps(path, ['MODEL_CACHE=NO', 'SOLVER_TOLERANCE=1e-12'])
    assert tight is not None, cap.errors
    assert float(md(tight, 'RELATIVE_RESIDUAL')) <= 1e-12
    assert int(md(tight, 'ITERATIONS')) >= int(md(ds, 'ITERATIONS'))


def test_model_file_keeps_the_solver(pts):
    path = _tps(pts, 'cached.tps', extra='<Mode>GLOBAL</Mode>')
    first, cap = open_tps(path, ['SOLVER=ITERATIVE'])
    assert first is not None, cap.errors
    assert md(first, 'MODEL_SOURCE') == 'SOLVED'
    values = _read(first)
    keep = {k: md(first, k) for k in ('SOLVER', 'ITERATIONS', 'RELATIVE_RESIDUAL',
                                      'MAX_ABS_RESIDUAL', 'MODEL_FILE')}
    first = None
    again, cap = open_tps(path, ['SOLVER=ITERATIVE'])
    assert again is not None, cap.errors
    assert md(again, 'MODEL_SOURCE') == 'FILE'
    assert os.path.exists(keep['MODEL_FILE'])
    assert {k: md(again, k) for k in keep} == keep
    assert all(np.array_equal(a, b) for a, b in zip(_read(again), values))
    # the solver is part of the model's identity: DIRECT is another file,
    # AUTO (the default) the file of an open that does not say
    direct, cap = open_tps(path, ['SOLVER=DIRECT'])
    assert direct is not None, cap.errors
    assert md(direct, 'MODEL_FILE') != keep['MODEL_FILE']
    auto, cap = open_tps(path, ['SOLVER=AUTO', 'MODEL_CACHE=NO'])
    plain, cap2 = open_tps(path, ['MODEL_CACHE=NO'])
    assert auto is not None and plain is not None, (cap.errors, cap2.errors)
    assert md(auto, 'MODEL_FILE') == md(plain, 'MODEL_FILE')


@pytest.mark.parametrize('options, keywords', [
    (['SOLVER=ITERATIVE', 'MODE=LOCAL'], ['MODE=GLOBAL']),
    (['SOLVER=ITERATIVE', 'SMOOTHING=GCV'], ['SOLVER=DIRECT']),
    (['SOLVER=ITERATIVE', 'CROSS_VALIDATION=YES'], ['SOLVER=DIRECT']),
    (['SOLVER=FAST'], ['SOLVER']),
    (['SOLVER=ITERATIVE', 'SOLVER_TOLERANCE=1e-3'], ['SOLVER_TOLERANCE']),
    (['SOLVER_TOLERANCE=zero'], ['SOLVER_TOLERANCE']),
])
def test_refusals(pts, options, keywords):
    path = _tps(pts, 'refused.tps')
    cap = assert_open_fails(path, 'refused.tps', keywords, options + ['MODEL_CACHE=NO'])
    if options == ['SOLVER=FAST']:
        # the choices are listed
        assert any('ITERATIVE' in m and 'DIRECT' in m for m in cap.failures), cap.failures


def test_element_refusal(pts):
    path = _tps(pts, 'bad_element.tps', extra='<Solver>gmres</Solver>')
    assert_open_fails(path, 'bad_element.tps', ['<Solver>'], ['MODEL_CACHE=NO'])


def test_small_default_is_direct(tmp_path):
    rng = np.random.default_rng(3)
    x, y = random_points(200, rng, 0.0, 0.0, 100.0)
    write_csv(tmp_path / 's.csv', dict(x=x, y=y, z=smooth_values(x, y, rng)))
    path = write_tps(tmp_path / 's.tps', tps_xml('s.csv', ['z'], size=(8, 8)))
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'SOLVER') == 'DIRECT' and md(ds, 'ITERATIONS') is None


# Covariates and standard errors need the dense solve (docs/format.md, "The
# iterative solver"): SOLVER=ITERATIVE with either fails at open naming the
# file, the element or option, and SOLVER=DIRECT; SOLVER=AUTO is DIRECT.

def _small(tmp_path):
    rng = np.random.default_rng(5)
    x, y = random_points(300, rng, 500000.0, 4000000.0, 3000.0)
    c = np.sin(x / 700.0) * np.cos(y / 500.0)
    z = smooth_values(x, y, rng, noise=0.05) + 2.0 * c
    write_csv(tmp_path / 's.csv', dict(x=x, y=y, z=z, c=c))
    return grid_around(x, y, 12, 10)


def _both(cap, words):
    """One failure message names the file and every word."""
    assert any(all(w.lower() in m.lower() for w in words) for m in cap.failures), cap.failures


@pytest.mark.parametrize('form', ['element', 'option'])
def test_covariates_refused(tmp_path, form):
    from osgeo import gdal
    gt = _small(tmp_path)
    # a raster that covers the grid: the refusal is the solver's, not the raster's
    ds = gdal.GetDriverByName('GTiff').Create(str(tmp_path / 'c.tif'), 40, 40, 1,
                                              gdal.GDT_Float64)
    ds.SetGeoTransform([gt[0] - 500, 100, 0, gt[3] + 500, 0, -100])
    ds.GetRasterBand(1).Fill(1.0)
    ds = None
    if form == 'element':
        extra = ('<Mode>GLOBAL</Mode><Solver>ITERATIVE</Solver>'
                 '<Covariate><Field>c</Field><Raster>c.tif</Raster></Covariate>')
        path = write_tps(tmp_path / 'cov.tps', tps_xml('s.csv', ['z'], geotransform=gt,
                                                       size=(12, 10), extra=extra))
        cap = assert_open_fails(path, 'cov.tps', ['<Covariate>'], ['MODEL_CACHE=NO'])
        _both(cap, ['cov.tps', '<Covariate>', 'SOLVER=DIRECT', '<Solver>'])
    else:
        path = 'TPS:' + str(tmp_path / 's.csv')
        opts = ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'EXTENT=%r,%r,%r,%r' % (
            gt[0], gt[3] - 10 * abs(gt[5]), gt[0] + 12 * gt[1], gt[3]), 'SIZE=12,10',
            'SOLVER=ITERATIVE', 'COVARIATES=c:%s' % (tmp_path / 'c.tif'), 'MODEL_CACHE=NO']
        cap = assert_open_fails(path, 's.csv', ['COVARIATES'], opts)
        _both(cap, ['s.csv', 'COVARIATES', 'SOLVER=DIRECT'])


def test_standard_error_refused(tmp_path):
    gt = _small(tmp_path)
    path = write_tps(tmp_path / 'se.tps', tps_xml(
        's.csv', ['z', {'field': 'z', 'quantity': 'standard_error'}], geotransform=gt,
        size=(12, 10), smoothing=100.0, extra='<Mode>GLOBAL</Mode>'))
    cap = assert_open_fails(path, 'se.tps', ['<Quantity>'],
                            ['SOLVER=ITERATIVE', 'MODEL_CACHE=NO'])
    _both(cap, ['se.tps', '<Band> #2: <Quantity>', 'standard_error', 'SOLVER=DIRECT'])


def test_standard_error_makes_auto_direct(tmp_path):
    """SOLVER=AUTO with a standard-error band is the DIRECT model (its
    model file is SOLVER=DIRECT's): its SE equals the explicit DIRECT's,
    and the value band equals the ITERATIVE model's within 1e-8 of the
    range."""
    gt = _small(tmp_path)
    xml = tps_xml('s.csv', ['z', {'field': 'z', 'quantity': 'standard_error'}],
                  geotransform=gt, size=(12, 10), smoothing=100.0, data_type='Float64',
                  extra='<Mode>GLOBAL</Mode>')
    path = write_tps(tmp_path / 'auto.tps', xml)
    auto, cap = open_tps(path)
    assert auto is not None, cap.errors
    direct, cap = open_tps(path, ['SOLVER=DIRECT'])
    assert direct is not None, cap.errors
    assert md(auto, 'SOLVER') == 'DIRECT'
    assert md(auto, 'MODEL_FILE') == md(direct, 'MODEL_FILE')
    se_auto, se_direct = _read(auto)[1], _read(direct)[1]
    assert np.all(np.isfinite(se_auto)) and np.all(se_auto > 0)
    assert np.array_equal(se_auto, se_direct)
    values = write_tps(tmp_path / 'values.tps', tps_xml(
        's.csv', ['z'], geotransform=gt, size=(12, 10), smoothing=100.0, data_type='Float64',
        extra='<Mode>GLOBAL</Mode>'))
    it, cap = open_tps(values, ['SOLVER=ITERATIVE', 'MODEL_CACHE=NO'])
    assert it is not None, cap.errors
    assert md(it, 'SOLVER') == 'ITERATIVE'
    v_it, v_auto = _read(it)[0], _read(auto)[0]
    assert_close64(v_it, v_auto, np.ptp(v_auto), rel=1e-8, what='ITERATIVE against DIRECT')
