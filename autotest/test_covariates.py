"""Linear covariates (<Covariate>, COVARIATES) and standard-error bands
(<Quantity>standard_error</Quantity>) through GDAL, issue 13.

References: R's fields::Tps(Z =), predict() and predictSE(), written by
autotest/r/fields_covse.R into autotest/r/fields_covse/ (committed with their
provenance, so R is not needed here). Each case's covariates at the targets
go into a GeoTIFF on the very grid of the targets, so that the driver's
bilinear resampling at pixel centres reads the cells' own values, and the
.tps evaluates exactly where fields predicted: predictions within 1e-6 of the
data's range, standard errors within 1e-4 relative (issue 13's bounds).

The rest is the driver's part: rasters sampled at the points without a
<Field> (against numpy's bilinear interpolation), reprojection through PROJ,
NoData pixels and points without a covariate, the metadata, model files,
the TPS: form and every error the issue lists.
"""
import csv
import os

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import (DATA_DIR, REPO, assert_open_fails, bilinear, md, open_tps, tps_xml,
                      write_csv, write_tps)

REFS = os.path.join(REPO, 'autotest', 'r', 'fields_covse')


def read_table(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] not in ('NA', '') else np.nan for r in rows])
            for k in rows[0]}


def read_params(name):
    with open(os.path.join(REFS, name + '_params.csv')) as f:
        return {r['key']: float(r['value']) for r in csv.DictReader(f)}


def write_raster(path, gt, values, epsg=28992, nodata=None, dtype=gdal.GDT_Float64):
    """A one-band GeoTIFF of values (rows x cols) on geotransform gt."""
    rows, cols = values.shape
    ds = gdal.GetDriverByName('GTiff').Create(str(path), cols, rows, 1, dtype)
    ds.SetGeoTransform(list(gt))
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(values)
    ds = None
    return str(path)


def read_array(path):
    ds = gdal.Open(str(path))  # kept alive while its band is read
    return ds.GetRasterBand(1).ReadAsArray().astype(float)


def covariate_xml(field, raster, band=None):
    parts = ['<Covariate>']
    if field:
        parts.append('<Field>%s</Field>' % field)
    parts.append('<Raster>%s</Raster>' % raster)
    if band:
        parts.append('<Band>%d</Band>' % band)
    return ''.join(parts + ['</Covariate>'])


CASES = {
    # name: (covariates, GCV, weighted)
    'synth_fixed': (['c1'], False, False),
    'synth_gcv': (['c1'], True, False),
    'synth_weighted': (['c1'], False, True),
    'synth_two': (['c1', 'c2'], False, False),
    'synth_interp': (['c1'], False, False),
    'synth_plain': ([], False, False),
    'synth_plain_gcv': ([], True, False),
    'meuse_fixed': (['dist'], False, False),
    'meuse_gcv': (['dist'], True, False),
}


def fields_case(tmp_path, name):
    """The case's .tps (value and standard error bands) and references."""
    covs, gcv, weighted = CASES[name]
    par = read_params(name)
    pts = read_table(os.path.join(REFS, name + '_points.csv'))
    tgt = read_table(os.path.join(REFS, name + '_targets.csv'))
    cols, rows = int(par['ncols']), int(par['nrows'])
    gt = (par['x0'] - par['dx'] / 2, par['dx'], 0.0, par['y0'] - par['dy'] / 2, 0.0, par['dy'])
    points = write_csv(tmp_path / 'points.csv', pts)
    extra = ''
    for c in covs:
        raster = write_raster(tmp_path / ('%s.tif' % c), gt, tgt[c].reshape(rows, cols),
                              nodata=float('nan'))
        extra += covariate_xml(c, os.path.basename(raster))
    smoothing = 'GCV' if gcv else par['lambda']
    xml = tps_xml('points.csv', [{'field': 'z'}, {'field': 'z', 'quantity': 'standard_error'}],
                  srs='EPSG:28992', points_srs='EPSG:28992', geotransform=gt,
                  size=(cols, rows), smoothing=smoothing, data_type='Float64',
                  extra=extra, points_extra='<WeightField>w</WeightField>' if weighted else '')
    return write_tps(tmp_path / (name + '.tps'), xml), par, pts, tgt


@pytest.mark.parametrize('name', sorted(CASES))
def test_against_fields(tmp_path, name):
    path, par, pts, tgt = fields_case(tmp_path, name)
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    value = ds.GetRasterBand(1).ReadAsArray().ravel()
    se = ds.GetRasterBand(2).ReadAsArray().ravel()
    value_range = np.ptp(pts['z'])
    have = ~np.isnan(tgt['pred'])
    err_v = np.max(np.abs(value[have] - tgt['pred'][have])) / value_range
    err_se = np.max(np.abs(se[have] - tgt['se'][have]) / tgt['se'][have])
    assert err_v <= 1e-6, (name, err_v)
    assert err_se <= 1e-4, (name, err_se)
    # a cell without a covariate (meuse: outside the grid's cells) is NoData
    assert np.isnan(value[~have]).all() and np.isnan(se[~have]).all()
    band = ds.GetRasterBand(1)
    bmd = band.GetMetadata('TPS')
    assert abs(float(bmd['SIGMA2']) / par['sigma2'] - 1) < 1e-4
    assert abs(float(bmd['TAU2']) - par['tau2']) <= 1e-4 * par['tau2'] + 1e-300
    covs = CASES[name][0]
    if covs:
        coef = [float(v) for v in bmd['COVARIATE_COEFFICIENTS'].split(',')]
        ref = [par['b_%d' % (k + 1)] for k in range(len(covs))]
        assert np.allclose(coef, ref, rtol=1e-5, atol=0), (coef, ref)
        assert md(ds, 'COVARIATES') == ','.join(covs)
    if CASES[name][1]:
        assert abs(float(md(ds, 'SMOOTHING')) / par['lambda'] - 1) < 1e-5
    print('%s: prediction within %.2e of the range, standard error within %.2e relative'
          % (name, err_v, err_se))


def test_standard_error_windows_blocks_and_overviews(tmp_path):
    """The standard error through the block cache, a direct read and an
    overview's fast path: the same bytes where they overlap."""
    path, par, pts, tgt = fields_case(tmp_path, 'synth_fixed')
    xml = open(path).read().replace('</TPSDataset>', '<BlockSize>7 5</BlockSize></TPSDataset>')
    write_tps(path, xml)
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    band = ds.GetRasterBand(2)
    whole = band.ReadAsArray()
    part = band.ReadAsArray(5, 3, 11, 9)
    assert np.array_equal(part, whole[3:12, 5:16])
    blocks = ds.GetRasterBand(2).ReadRaster(0, 0, ds.RasterXSize, ds.RasterYSize,
                                             buf_type=gdal.GDT_Float64)
    assert np.array_equal(np.frombuffer(blocks, dtype=np.float64).reshape(whole.shape), whole)


# --- the driver's covariate handling ---

def synth_points(tmp_path, n=150, seed=3):
    rng = np.random.default_rng(seed)
    x = 500000 + 3000 * rng.random(n)
    y = 6000000 + 2000 * rng.random(n)
    return x, y, rng


def dem(x, y):
    """A covariate that is not a plane: a hill and a valley."""
    u, v = (x - 500000) / 3000, (y - 6000000) / 2000
    return 300 * np.exp(-((u - 0.3) ** 2 + (v - 0.6) ** 2) / 0.05) + 80 * np.sin(5 * u) * v


DEM_GT = (499800.0, 25.0, 0.0, 6002200.0, 0.0, -25.0)  # 136 x 96 cells over the points


def dem_raster(tmp_path, name='dem.tif', epsg=32633, nodata_box=None):
    cols, rows = 136, 96
    c, r = np.meshgrid(np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    values = dem(DEM_GT[0] + c * DEM_GT[1], DEM_GT[3] + r * DEM_GT[5])
    if nodata_box:
        r0, r1, c0, c1 = nodata_box
        values[r0:r1, c0:c1] = -9999
    return write_raster(tmp_path / name, DEM_GT, values, epsg=epsg,
                        nodata=-9999 if nodata_box else None)


def raster_bilinear(raster, x, y, a=None):
    """conftest.bilinear of the raster's values, or of the array a on its grid."""
    a = read_array(raster) if a is None else a
    return bilinear(a, gdal.Open(raster).GetGeoTransform(), x, y)


def covariate_tps(tmp_path, name, covariates, bands=('z',), extra='', **kw):
    kw.setdefault('srs', 'EPSG:32633')
    kw.setdefault('points_srs', 'EPSG:32633')
    kw.setdefault('extent', (500000, 6000000, 503000, 6002000))
    kw.setdefault('resolution', 50)
    kw.setdefault('smoothing', 100)
    kw.setdefault('data_type', 'Float64')
    xml = tps_xml('points.csv', list(bands),
                  extra=''.join(covariate_xml(*c) for c in covariates) + extra, **kw)
    return write_tps(tmp_path / name, xml)


def test_sampled_at_the_points(tmp_path):
    """Without a <Field>, the covariate at the points is the raster's,
    bilinear: the same model as a field holding numpy's bilinear values."""
    x, y, rng = synth_points(tmp_path)
    raster = dem_raster(tmp_path)
    c = raster_bilinear(raster, x, y)
    z = np.sin(x / 700) + 0.01 * c + 0.05 * rng.standard_normal(len(x))
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': z, 'c': c})
    sampled = covariate_tps(tmp_path, 'sampled.tps', [(None, 'dem.tif')])
    given = covariate_tps(tmp_path, 'given.tps', [('c', 'dem.tif')])
    a, cap = open_tps(sampled, ['MODEL_CACHE=NO'])
    assert a is not None, cap.errors
    b, cap = open_tps(given, ['MODEL_CACHE=NO'])
    assert b is not None, cap.errors
    va, vb = a.GetRasterBand(1).ReadAsArray(), b.GetRasterBand(1).ReadAsArray()
    assert np.max(np.abs(va - vb)) <= 1e-9 * np.ptp(z)
    assert md(a, 'COVARIATES') == 'dem.tif'
    # the value moves by the coefficient where the covariate moves by one
    coef = float(a.GetRasterBand(1).GetMetadata('TPS')['COVARIATE_COEFFICIENTS'])
    assert abs(coef - 0.01) < 0.003, coef


def test_pixels_are_the_rasters_bilinear(tmp_path):
    """The value band is spline + b c(pixel): with c from numpy's bilinear
    interpolation of the raster at the pixel centres, on a grid that is not
    the raster's (finer, offset)."""
    x, y, rng = synth_points(tmp_path)
    raster = dem_raster(tmp_path)
    c = raster_bilinear(raster, x, y)
    z = np.sin(x / 700) + 0.01 * c
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': z, 'c': c})
    path = covariate_tps(tmp_path, 'dem.tps', [('c', 'dem.tif')], resolution=37)
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    v1 = ds.GetRasterBand(1).ReadAsArray()
    # shift the raster by +10 everywhere: the band moves by 10 b
    dem_shift = read_array(raster) + 10
    write_raster(tmp_path / 'dem.tif', DEM_GT, dem_shift, epsg=32633)
    ds2, cap = open_tps(path, ['MODEL_CACHE=NO'])
    v2 = ds2.GetRasterBand(1).ReadAsArray()
    coef = float(ds.GetRasterBand(1).GetMetadata('TPS')['COVARIATE_COEFFICIENTS'])
    assert np.allclose(v2 - v1, 10 * coef, rtol=0, atol=1e-9 * np.ptp(z))


def test_reprojected_raster(tmp_path):
    """A covariate raster in another CRS (a geographic copy of the DEM,
    warped finely) is transformed through PROJ: the output stays close to
    the one from the raster in the output's CRS."""
    x, y, rng = synth_points(tmp_path)
    raster = dem_raster(tmp_path)
    c = raster_bilinear(raster, x, y)
    z = np.sin(x / 700) + 0.01 * c
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': z, 'c': c})
    gdal.Warp(str(tmp_path / 'dem4326.tif'), raster, dstSRS='EPSG:4326', resampleAlg='bilinear',
              xRes=0.00005, yRes=0.00005, outputType=gdal.GDT_Float64)
    same = covariate_tps(tmp_path, 'same.tps', [('c', 'dem.tif')], extent=(500200, 6000200,
                                                                             502800, 6001800))
    other = covariate_tps(tmp_path, 'other.tps', [('c', 'dem4326.tif')],
                          extent=(500200, 6000200, 502800, 6001800))
    a, cap = open_tps(same, ['MODEL_CACHE=NO'])
    assert a is not None, cap.errors
    b, cap = open_tps(other, ['MODEL_CACHE=NO'])
    assert b is not None, cap.errors
    va, vb = a.GetRasterBand(1).ReadAsArray(), b.GetRasterBand(1).ReadAsArray()
    # two bilinear resamplings of a 25 m DEM against one: a few % of the
    # covariate's term at most
    assert np.nanmax(np.abs(va - vb)) < 0.05 * 0.01 * np.ptp(c), np.nanmax(np.abs(va - vb))
    assert not np.isnan(vb).any()


def test_nodata_and_missing(tmp_path):
    """A NoData covariate pixel is a NoData output pixel (also in the mask
    and with a <NoDataValue>); a point without the covariate is dropped and
    counted in a warning."""
    x, y, rng = synth_points(tmp_path)
    raster = dem_raster(tmp_path, nodata_box=(40, 50, 60, 70))
    c = raster_bilinear(raster, x, y)
    c[c < -1000] = np.nan  # what the raster gives there
    z = np.sin(x / 700) + 0.01 * np.nan_to_num(c)
    given = c.copy()
    given[:7] = np.nan
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': z,
                                        'c': ['NA' if np.isnan(v) else repr(v) for v in given]})
    path = covariate_tps(tmp_path, 'nd.tps', [('c', 'dem.tif')],
                         bands=['z', {'field': 'z', 'quantity': 'standard_error'}])
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    n_missing = int(np.isnan(given).sum())
    assert any('%d of %d points have no value' % (n_missing, len(x)) in w
               for w in cap.warnings), cap.warnings
    assert md(ds, 'COVARIATES_DROPPED_POINTS') == str(n_missing)
    assert md(ds, 'POINT_COUNT') == str(len(x) - n_missing)
    v = ds.GetRasterBand(1).ReadAsArray()
    se = ds.GetRasterBand(2).ReadAsArray()
    # pixels whose bilinear stencil reaches the NoData box are NoData
    gt = ds.GetGeoTransform()
    X = gt[0] + (np.arange(ds.RasterXSize) + 0.5) * gt[1]
    Y = gt[3] + (np.arange(ds.RasterYSize) + 0.5) * gt[5]
    XX, YY = np.meshgrid(X, Y)
    # NoData wherever a NoData cell has a nonzero weight in the stencil
    no_cov = raster_bilinear(raster, XX, YY, a=(read_array(raster) == -9999).astype(float)) > 0
    assert np.array_equal(np.isnan(v), no_cov) and np.array_equal(np.isnan(se), no_cov)
    assert no_cov.any() and not no_cov.all()
    assert ds.GetRasterBand(1).GetNoDataValue() is not None
    mask = ds.GetRasterBand(1).GetMaskBand().ReadAsArray()
    assert np.array_equal(mask == 0, no_cov)
    # with <NoDataValue> and a <MaxDistance> mask band
    path2 = covariate_tps(tmp_path, 'nd2.tps', [('c', 'dem.tif')], nodata=-5,
                          extra='<MaxDistance>100000</MaxDistance>')
    ds2, cap = open_tps(path2, ['MODEL_CACHE=NO'])
    assert ds2 is not None, cap.errors
    v2 = ds2.GetRasterBand(1).ReadAsArray()
    assert np.array_equal(v2 == -5, no_cov)
    m2 = ds2.GetRasterBand(1).GetMaskBand().ReadAsArray()
    assert np.array_equal(m2 == 0, no_cov)


def test_tps_form_and_model_file(tmp_path):
    """COVARIATES=field:raster in the TPS: form; a .tps's model file read
    back gives the same bytes, and a changed raster sampled at the points
    makes a new solve."""
    x, y, rng = synth_points(tmp_path)
    raster = dem_raster(tmp_path)
    c = raster_bilinear(raster, x, y)
    z = np.sin(x / 700) + 0.01 * c
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': z, 'c': c})
    opts = ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SRS=EPSG:32633',
            'EXTENT=500000,6000000,503000,6002000', 'RESOLUTION=100', 'SMOOTHING=100',
            'DATA_TYPE=Float64', 'COVARIATES=c:%s' % raster]
    ds, cap = open_tps('TPS:' + str(tmp_path / 'points.csv'), opts)
    assert ds is not None, cap.errors
    via_option = ds.GetRasterBand(1).ReadAsArray()
    path = covariate_tps(tmp_path, 'file.tps', [('c', 'dem.tif')], resolution=100)
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED'
    first = ds.GetRasterBand(1).ReadAsArray()
    assert np.array_equal(first, via_option)
    ds = None
    gdal.ErrorReset()
    ds, cap = open_tps(path)
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    assert np.array_equal(ds.GetRasterBand(1).ReadAsArray(), first)
    ds = None
    # a raster sampled at the points is part of the model
    sampled = covariate_tps(tmp_path, 'sampled.tps', [(None, 'dem.tif')], resolution=100)
    ds, cap = open_tps(sampled)
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED'
    ds = None
    ds, cap = open_tps(sampled)
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    ds = None
    write_raster(tmp_path / 'dem.tif', DEM_GT,
                 read_array(raster) * 1.5, epsg=32633)
    ds, cap = open_tps(sampled)
    assert md(ds, 'MODEL_SOURCE') == 'SOLVED', 'a changed covariate raster reused the old model'


# --- errors ---

def points_csv(tmp_path, c=None, n=60):
    x, y, rng = synth_points(tmp_path, n)
    z = np.sin(x / 700)
    if c is None:
        c = raster_bilinear(dem_raster(tmp_path), x, y)
    cols = {'x': x, 'y': y, 'z': z, 'c': c}
    write_csv(tmp_path / 'points.csv', cols)
    return x, y


def test_raster_not_covering_the_grid(tmp_path):
    points_csv(tmp_path)
    path = covariate_tps(tmp_path, 'wide.tps', [('c', 'dem.tif')],
                         extent=(499000, 6000000, 503000, 6002000))
    assert_open_fails(path, 'wide.tps', ['does not cover the output grid'])


def test_non_numeric_field(tmp_path):
    x, y = points_csv(tmp_path, c=['a%d' % i for i in range(60)])
    path = covariate_tps(tmp_path, 'text.tps', [('c', 'dem.tif')])
    assert_open_fails(path, 'text.tps', ["field 'c'"])
    # a field of another type: a date
    with open(tmp_path / 'points.csvt', 'w') as f:
        f.write('Real,Real,Real,Date\n')
    x, y = points_csv(tmp_path, c=['2020-01-%02d' % (i % 28 + 1) for i in range(60)])
    assert_open_fails(path, 'text.tps', ['<covariate><field>'])


@pytest.mark.parametrize('what,values,words', [
    ('plane', lambda x, y: 2 * x - 3 * y + 7, ["covariate 'c'", 'linear combination']),
    ('constant', lambda x, y: 0 * x + 5, ["covariate 'c' is constant"]),
])
def test_collinear_covariate(tmp_path, what, values, words):
    x, y, rng = synth_points(tmp_path, 60)
    points_csv(tmp_path, c=values(x, y))
    path = covariate_tps(tmp_path, what + '.tps', [('c', 'dem.tif')])
    assert_open_fails(path, what + '.tps', words)


def test_rasters_that_cannot_be_opened(tmp_path):
    points_csv(tmp_path)
    missing = covariate_tps(tmp_path, 'missing.tps', [('c', 'nothere.tif')])
    assert_open_fails(missing, 'missing.tps', ['no such file'])
    with open(tmp_path / 'junk.tif', 'w') as f:
        f.write('not a raster')
    junk = covariate_tps(tmp_path, 'junk.tps', [('c', 'junk.tif')])
    assert_open_fails(junk, 'junk.tps', ['cannot open the covariate'])
    band = covariate_tps(tmp_path, 'band.tps', [('c', 'dem.tif', 2)])
    assert_open_fails(band, 'band.tps', ['asks for band 2'])
    # a VRT names other data sets: not a covariate under the default policy
    gdal.Translate(str(tmp_path / 'dem.vrt'), str(tmp_path / 'dem.tif'), format='VRT')
    vrt = covariate_tps(tmp_path, 'vrt.tps', [('c', 'dem.vrt')])
    assert_open_fails(vrt, 'vrt.tps', ['VRT driver'])
    # ... nor a file outside the .tps folder under SIBLING_OR_CHILD
    sub = tmp_path / 'sub'
    sub.mkdir()
    points_csv(sub)
    outside = covariate_tps(sub, 'outside.tps', [('c', '../dem.tif')])
    gdal.SetConfigOption('TPS_ALLOWED_SOURCES', 'SIBLING_OR_CHILD')
    try:
        assert_open_fails(outside, 'outside.tps', ['<Covariate> #1: <Raster> refused'])
    finally:
        gdal.SetConfigOption('TPS_ALLOWED_SOURCES', None)


def test_point_outside_the_raster(tmp_path):
    x, y = points_csv(tmp_path)
    x[17] = 499000  # west of the DEM
    write_csv(tmp_path / 'points.csv', {'x': x, 'y': y, 'z': np.sin(x / 700)})
    path = covariate_tps(tmp_path, 'out.tps', [(None, 'dem.tif')],
                         extent=(499000, 6000000, 503000, 6002000))
    assert_open_fails(path, 'out.tps', ['point 18 of the 60 read lies outside'])


@pytest.mark.parametrize('extra_band', [None, {'field': 'z', 'quantity': 'slope'}])
def test_local_combinations(tmp_path, extra_band):
    """MODE=LOCAL with covariates, once refused, builds a local model
    (test_local_covariates.py has its values against the global model)."""
    points_csv(tmp_path)
    bands = ['z'] + ([extra_band] if extra_band else [])
    path = covariate_tps(tmp_path, 'combo.tps', [('c', 'dem.tif')], bands=bands)
    ds, cap = open_tps(path, ['MODE=LOCAL', 'PATCH_POINTS=20', 'MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'MODE') == 'LOCAL' and int(md(ds, 'PATCHES')) > 1
    assert 'COVARIATE_COEFFICIENTS' in ds.GetRasterBand(1).GetMetadata('TPS')
    for b in range(1, ds.RasterCount + 1):
        assert np.all(np.isfinite(ds.GetRasterBand(b).ReadAsArray()))


@pytest.mark.parametrize('value', ['c', 'c:', ':', 'a:x.tif,,b:y.tif'])
def test_bad_covariates_option(tmp_path, value):
    points_csv(tmp_path)
    path = covariate_tps(tmp_path, 'opt.tps', [])
    assert_open_fails(path, 'opt.tps', ['COVARIATES'], ['COVARIATES=' + value])


def test_covariate_xml_errors(tmp_path):
    points_csv(tmp_path)
    no_raster = covariate_tps(tmp_path, 'noraster.tps', [],
                              extra='<Covariate><Field>c</Field></Covariate>')
    assert_open_fails(no_raster, 'noraster.tps', ['missing <Raster>'])
    bad_band = covariate_tps(tmp_path, 'badband.tps', [],
                             extra='<Covariate><Raster>dem.tif</Raster><Band>0</Band>'
                                   '</Covariate>')
    assert_open_fails(bad_band, 'badband.tps', ['<Band>'])
    many = covariate_tps(tmp_path, 'many.tps', [('c', 'dem.tif')] * 17)
    assert_open_fails(many, 'many.tps', ['at most 16'])
    twice = covariate_tps(tmp_path, 'twice.tps', [('c', 'dem.tif')] * 2)
    assert_open_fails(twice, 'twice.tps', ['given twice'])


def test_meuse_demo_file():
    """data/meuse_logzinc_dist.tps: the guide's demo opens, with the
    covariate's NoData outside the flood plain and both bands finite inside."""
    path = os.path.join(DATA_DIR, 'meuse_logzinc_dist.tps')
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    v = ds.GetRasterBand(1).ReadAsArray()
    se = ds.GetRasterBand(2).ReadAsArray()
    inside = ~np.isnan(v)
    assert 0.3 < inside.mean() < 0.9
    assert np.array_equal(inside, ~np.isnan(se))
    assert (se[inside] > 0).all() and (v[inside] > 4).all() and (v[inside] < 8).all()
