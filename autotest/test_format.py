"""The .tps format and the TPS: syntax do what the contract says.

* grid definitions: GeoTransform + Size, Extent + Resolution (one or two
  values), Extent + Size, default (points' bbox, 512 pixels on the long side);
* <SRS> (output CRS; default the points'), <NoDataValue>, <BlockSize>,
  <Description>, <DataType>, top-level vs per-band <Smoothing>;
* <Where> filters, <Layer> choice (default: the first layer), point
  geometries instead of XField/YField;
* relative <Source> paths resolve against the .tps folder, also inside
  /vsimem/; the /vsimem/ dataset equals the on-disk one;
* Identify: by .tps extension, or by a '<TPSDataset' header when the caller
  asks for the TPS driver; other files are
  not claimed;
* TPS:<source> with open options FIELD, LAYER, XFIELD, YFIELD, SRS, EXTENT,
  RESOLUTION, SIZE, SMOOTHING, DATA_TYPE gives the same arrays as the
  equivalent .tps; NUM_THREADS and DEVICE work on both forms;
* an unknown element is a warning, not an error.
Values are checked against scipy or against another path to the same data.
"""
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import (ErrorCapture, VSIMem, assert_close32, assert_close64, md,
                      open_tps, random_points, scipy_ds_ref, smooth_values, tps_xml, write_csv,
                      write_geojson, write_gpkg_layer, write_tps)


@pytest.fixture
def pts(tmp_path):
    """150 random points in a 2000 x 1000 m box with two fields and a group."""
    rng = np.random.default_rng(101)
    x, y = random_points(150, rng, 250000.0, 470000.0, 2000.0, 1000.0)
    z = smooth_values(x, y, rng)
    w = 0.01 * (x - 250000.0) + 0.02 * (y - 470000.0) + 3.0 * np.sin((x - 250000.0) / 300.0)
    grp = np.where(rng.random(150) < 0.6, 'a', 'b')
    csv = write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'z': z, 'w': w, 'grp': grp})
    return {'x': x, 'y': y, 'z': z, 'w': w, 'grp': grp, 'csv': csv, 'dir': tmp_path}


def _open_ok(name, oo=None):
    ds, cap = open_tps(name, oo)
    assert ds is not None, 'open of %s failed: %r' % (name, cap.errors)
    assert ds.GetDriver().ShortName == 'TPS'
    return ds


def test_geotransform_and_size(pts):
    gt = (249900.0, 25.0, 0.0, 471100.0, 0.0, -20.0)
    path = write_tps(pts['dir'] / 'a.tps', tps_xml('pts.csv', ['z'], geotransform=gt, size=(88, 60),
                                                   data_type='Float64'))
    ds = _open_ok(path)
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (88, 60, 1)
    assert ds.GetGeoTransform() == pytest.approx(gt, rel=1e-15)
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, pts['x'], pts['y'], pts['z'], 0), np.ptp(pts['z']))


@pytest.mark.parametrize('res', ['20', '25 20'])
def test_extent_resolution(pts, res):
    ext = (249900.0, 469900.0, 252100.0, 471100.0)
    xres, yres = (float(res), float(res)) if ' ' not in res else map(float, res.split())
    path = write_tps(pts['dir'] / 'a.tps', tps_xml('pts.csv', ['z'], extent=ext, resolution=res,
                                                   data_type='Float64'))
    ds = _open_ok(path)
    assert ds.RasterXSize == round((ext[2] - ext[0]) / xres)
    assert ds.RasterYSize == round((ext[3] - ext[1]) / yres)
    assert ds.GetGeoTransform() == pytest.approx((ext[0], xres, 0, ext[3], 0, -yres), rel=1e-15)
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, pts['x'], pts['y'], pts['z'], 0), np.ptp(pts['z']))


def test_extent_size(pts):
    ext = (249900.0, 469900.0, 252100.0, 471100.0)
    path = write_tps(pts['dir'] / 'a.tps', tps_xml('pts.csv', ['z'], extent=ext, size=(55, 40)))
    ds = _open_ok(path)
    assert (ds.RasterXSize, ds.RasterYSize) == (55, 40)
    assert ds.GetGeoTransform() == pytest.approx(
        (ext[0], (ext[2] - ext[0]) / 55, 0, ext[3], 0, -(ext[3] - ext[1]) / 40), rel=1e-14)


@pytest.mark.parametrize('tall', [False, True])
def test_default_grid_is_bbox_512(tmp_path, tall):
    """No grid given: the points' bbox, 512 pixels on the long side."""
    rng = np.random.default_rng(7)
    w, h = (300.0, 800.0) if tall else (800.0, 300.0)
    x, y = random_points(100, rng, 1000.0, 5000.0, w, h)
    z = smooth_values(x, y, rng)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'z': z})
    ds = _open_ok(write_tps(tmp_path / 'd.tps', tps_xml('p.csv', ['z'])))
    cols, rows = ds.RasterXSize, ds.RasterYSize
    assert max(cols, rows) == 512
    assert (rows > cols) == tall
    gt = ds.GetGeoTransform()
    assert gt[2] == 0 and gt[4] == 0 and gt[1] > 0 and gt[5] < 0
    px, py = gt[1], -gt[5]
    assert abs(gt[0] - x.min()) <= px and abs(gt[0] + cols * px - x.max()) <= px
    assert abs(gt[3] - y.max()) <= py and abs(gt[3] - rows * py - y.min()) <= py
    # values in a window, against scipy
    a = ds.GetRasterBand(1).ReadAsArray(100, 30, 40, 40)
    from conftest import scipy_grid
    ref = scipy_grid(x, y, z, 0, gt, 40, 40, xoff=100, yoff=30)
    assert_close32(a, ref, np.ptp(z))


def test_output_srs_defaults_to_points_srs(pts):
    path = write_tps(pts['dir'] / 's.tps', tps_xml('pts.csv', ['z'], points_srs='EPSG:28992',
                                                   size=(20, 10), extent=(249900, 469900, 252100, 471100)))
    ds = _open_ok(path)
    sr = ds.GetSpatialRef()
    assert sr is not None and sr.GetAuthorityCode(None) == '28992'
    ref = osr.SpatialReference()
    ref.ImportFromEPSG(28992)
    assert sr.IsSame(ref)


def test_same_srs_twice_is_no_transform(pts):
    """Points' SRS == output SRS: values identical to no SRS at all."""
    kw = dict(size=(30, 20), extent=(249900, 469900, 252100, 471100), data_type='Float64')
    a = _open_ok(write_tps(pts['dir'] / 'n.tps', tps_xml('pts.csv', ['z'], **kw))).ReadAsArray()
    b = _open_ok(write_tps(pts['dir'] / 's.tps', tps_xml('pts.csv', ['z'], points_srs='EPSG:28992',
                                                         srs='EPSG:28992', **kw))).ReadAsArray()
    assert np.array_equal(a, b)


def test_band_properties(pts):
    path = write_tps(pts['dir'] / 'p.tps',
                     tps_xml('pts.csv', [{'field': 'z', 'description': 'zinc (ppm)'}, 'w'],
                             size=(50, 37), extent=(249900, 469900, 252100, 471100),
                             nodata=-9999, block_size=(16, 8), data_type='Float64'))
    ds = _open_ok(path)
    assert ds.RasterCount == 2
    b1 = ds.GetRasterBand(1)
    assert b1.GetDescription() == 'zinc (ppm)'
    assert b1.GetNoDataValue() == -9999
    assert ds.GetRasterBand(2).GetNoDataValue() == -9999
    assert b1.GetBlockSize() == [16, 8]
    assert b1.DataType == gdal.GDT_Float64


def test_smoothing_top_level_and_per_band(pts):
    """Top-level <Smoothing> applies to bands without their own."""
    lam_top, lam_band = 3e4, 2e5
    path = write_tps(pts['dir'] / 'sm.tps',
                     tps_xml('pts.csv', ['z', {'field': 'z', 'smoothing': lam_band},
                                         {'field': 'w', 'smoothing': 0}],
                             smoothing=lam_top, size=(40, 30),
                             extent=(249900, 469900, 252100, 471100), data_type='Float64'))
    ds = _open_ok(path)
    r = np.ptp(pts['z'])
    ref_top = scipy_ds_ref(ds, pts['x'], pts['y'], pts['z'], lam_top)
    ref_band = scipy_ds_ref(ds, pts['x'], pts['y'], pts['z'], lam_band)
    assert np.max(np.abs(ref_top - ref_band)) > 1e-4 * r  # the lambdas matter
    assert_close64(ds.GetRasterBand(1).ReadAsArray(), ref_top, r)
    assert_close64(ds.GetRasterBand(2).ReadAsArray(), ref_band, r)
    assert_close64(ds.GetRasterBand(3).ReadAsArray(),
                   scipy_ds_ref(ds, pts['x'], pts['y'], pts['w'], 0), np.ptp(pts['w']))


def test_where_filter(pts):
    path = write_tps(pts['dir'] / 'wh.tps',
                     tps_xml('pts.csv', ['z'], where="grp = 'b'", size=(40, 30),
                             extent=(249900, 469900, 252100, 471100), data_type='Float64'))
    ds = _open_ok(path)
    k = pts['grp'] == 'b'
    assert md(ds, 'POINT_COUNT') == str(int(k.sum()))
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, pts['x'][k], pts['y'][k], pts['z'][k], 0),
                   np.ptp(pts['z'][k]))


def test_layers_geometry_and_numeric_where(tmp_path):
    """GeoPackage with two point layers: default is OGR's first layer,
    <Layer> picks another; coordinates from geometries; numeric <Where>; the
    layer's CRS becomes the output CRS."""
    from osgeo import ogr
    rng = np.random.default_rng(41)
    gpkg = str(tmp_path / 'two.gpkg')
    data = {}
    for name in ('alpha', 'beta'):
        x, y = random_points(120, rng, 180000.0, 330000.0, 3000.0)
        v = smooth_values(x, y, rng)
        write_gpkg_layer(gpkg, name, x, y, {'v': v}, epsg=28992)
        data[name] = (x, y, v)
    src = ogr.Open(gpkg)
    first = src.GetLayer(0).GetName()
    src = None
    kw = dict(xfield=None, yfield=None, size=(40, 40), extent=(179800, 329800, 183200, 333200),
              data_type='Float64')
    ds = _open_ok(write_tps(tmp_path / 'd.tps', tps_xml('two.gpkg', ['v'], **kw)))
    x, y, v = data[first]
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x, y, v, 0), np.ptp(v))
    assert ds.GetSpatialRef().GetAuthorityCode(None) == '28992'
    other = 'beta' if first == 'alpha' else 'alpha'
    ds = _open_ok(write_tps(tmp_path / 'o.tps', tps_xml('two.gpkg', ['v'], layer=other, **kw)))
    x, y, v = data[other]
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x, y, v, 0), np.ptp(v))
    ds = _open_ok(write_tps(tmp_path / 'w.tps', tps_xml('two.gpkg', ['v'], layer=other,
                                                        where='v &gt; 0', **kw)))
    k = v > 0
    assert 10 < k.sum() < len(v)
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x[k], y[k], v[k], 0), np.ptp(v[k]))


def test_relative_source_resolves_against_tps_folder(pts, tmp_path, monkeypatch):
    sub = tmp_path / 'defs' / 'deeper'
    sub.mkdir(parents=True)
    kw = dict(size=(30, 20), extent=(249900, 469900, 252100, 471100))
    rel = write_tps(sub / 'r.tps', tps_xml('../../pts.csv', ['z'], **kw))
    absp = write_tps(sub / 'a.tps', tps_xml(pts['csv'], ['z'], **kw))
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a = _open_ok(rel).ReadAsArray()
    b = _open_ok(absp).ReadAsArray()
    assert np.array_equal(a, b)
    # the .tps itself given relative to the current directory
    c = _open_ok(os.path.join('..', 'defs', 'deeper', 'r.tps')).ReadAsArray()
    assert np.array_equal(a, c)


def test_vsimem_equals_disk(pts):
    kw = dict(size=(45, 33), extent=(249900, 469900, 252100, 471100), smoothing=1e4,
              data_type='Float64')
    disk = _open_ok(write_tps(pts['dir'] / 'd.tps', tps_xml('pts.csv', ['z', 'w'], **kw))).ReadAsArray()
    with VSIMem() as mem:
        with open(pts['csv']) as f:
            mem.write('data/pts.csv', f.read())
        p = mem.write('defs/m.tps', tps_xml('../data/pts.csv', ['z', 'w'], **kw))
        ds = _open_ok(p)
        m = ds.ReadAsArray()
        ds = None
        # TPS: form on a /vsimem/ source as well
        ds = _open_ok('TPS:' + mem.root + '/data/pts.csv',
                      ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=45 33', 'SMOOTHING=1e4',
                       'EXTENT=249900 469900 252100 471100', 'DATA_TYPE=Float64'])
        t = ds.ReadAsArray()
        ds = None
    assert np.array_equal(disk, m)
    # the TPS: form has one band: compare with the one-band .tps on disk (a
    # one-band model may differ from a two-band one in the last bits)
    one = _open_ok(write_tps(pts['dir'] / 'one.tps', tps_xml('pts.csv', ['z'], **kw))).ReadAsArray()
    assert np.array_equal(one, t)
    assert_close64(disk[0], t, np.ptp(pts['z']), rel=1e-12)
    assert_close64(disk[1], scipy_ds_ref(_open_ok(pts['dir'] / 'd.tps'), pts['x'], pts['y'],
                                         pts['w'], 1e4), np.ptp(pts['w']))


def test_identify_by_header_and_extension(pts):
    xml = tps_xml('pts.csv', ['z'], size=(10, 10), extent=(249900, 469900, 252100, 471100))
    p_xml = write_tps(pts['dir'] / 'grid.xml', xml)        # header, not extension
    p_tps = write_tps(pts['dir'] / 'grid.tps', xml)
    assert gdal.IdentifyDriver(p_tps).ShortName == 'TPS'
    # by its header alone only when the caller asks for the TPS driver: a
    # service that filters files by extension must not get a .tps under
    # another name (docs/security.md)
    with ErrorCapture():
        drv = gdal.IdentifyDriver(p_xml)
        assert drv is None or drv.ShortName != 'TPS'
        assert gdal.OpenEx(p_xml, gdal.OF_RASTER) is None
    ds = gdal.OpenEx(p_xml, gdal.OF_RASTER, allowed_drivers=['TPS'])
    assert ds is not None and ds.GetDriver().ShortName == 'TPS'
    assert np.array_equal(ds.ReadAsArray(), _open_ok(p_tps).ReadAsArray())
    # other files are not claimed
    other = str(pts['dir'] / 'other.xml')
    with open(other, 'w') as f:
        f.write('<Something><TPSDataset/></Something>\n')
    drv = gdal.IdentifyDriver(other)
    assert drv is None or drv.ShortName != 'TPS'
    tif = str(pts['dir'] / 'x.tif')
    gdal.GetDriverByName('GTiff').Create(tif, 3, 3, 1, gdal.GDT_Byte)
    ds = gdal.Open(tif)
    assert ds is not None and ds.GetDriver().ShortName == 'GTiff'
    with ErrorCapture():
        assert gdal.IdentifyDriver(pts['csv']) is None or gdal.IdentifyDriver(pts['csv']).ShortName != 'TPS'


def _tps_and_oo_pairs(p):
    ext = (249900, 469900, 252100, 471100)
    exts = '249900 469900 252100 471100'
    return [
        (tps_xml(p['csv'], ['z'], extent=ext, size=(44, 24)),
         ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'EXTENT=' + exts, 'SIZE=44 24']),
        (tps_xml(p['csv'], ['w'], extent=ext, resolution='50', smoothing=2e4, data_type='Float64'),
         ['FIELD=w', 'XFIELD=x', 'YFIELD=y', 'EXTENT=' + exts, 'RESOLUTION=50',
          'SMOOTHING=2e4', 'DATA_TYPE=Float64']),
        (tps_xml(p['csv'], ['z'], extent=ext, resolution='100 40', data_type='Float64'),
         ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'EXTENT=' + exts, 'RESOLUTION=100 40',
          'DATA_TYPE=Float64', 'LAYER=pts']),
    ]


@pytest.mark.parametrize('case', [0, 1, 2])
def test_tps_syntax_equals_tps_file(pts, case):
    xml, oo = _tps_and_oo_pairs(pts)[case]
    a_ds = _open_ok(write_tps(pts['dir'] / ('c%d.tps' % case), xml))
    b_ds = _open_ok('TPS:' + pts['csv'], oo)
    assert (a_ds.RasterXSize, a_ds.RasterYSize) == (b_ds.RasterXSize, b_ds.RasterYSize)
    assert a_ds.GetGeoTransform() == b_ds.GetGeoTransform()
    assert a_ds.GetRasterBand(1).DataType == b_ds.GetRasterBand(1).DataType
    a, b = a_ds.ReadAsArray(), b_ds.ReadAsArray()
    assert np.array_equal(a, b)
    field = 'z' if 'FIELD=z' in oo else 'w'
    lam = 2e4 if case == 1 else 0.0
    ref = scipy_ds_ref(b_ds, pts['x'], pts['y'], pts[field], lam)
    if b_ds.GetRasterBand(1).DataType == gdal.GDT_Float64:
        assert_close64(b, ref, np.ptp(pts[field]))
    else:
        assert_close32(b, ref, np.ptp(pts[field]))


def test_tps_syntax_srs_and_geometry_source(tmp_path):
    """TPS: on a GeoJSON point source (no XFIELD/YFIELD), with SRS: the raster
    gets that CRS and the same values as without it."""
    rng = np.random.default_rng(43)
    x, y = random_points(100, rng, 180000.0, 330000.0, 2000.0)
    v = smooth_values(x, y, rng)
    src = write_geojson(tmp_path / 'p.geojson', x, y, {'val': v})
    oo = ['FIELD=val', 'EXTENT=179900 329900 182100 332100', 'SIZE=22 22', 'DATA_TYPE=Float64']
    a_ds = _open_ok('TPS:' + src, oo + ['SRS=EPSG:28992'])
    assert a_ds.GetSpatialRef().GetAuthorityCode(None) == '28992'
    b_ds = _open_ok('TPS:' + src, oo)
    a = a_ds.ReadAsArray()
    assert np.array_equal(a, b_ds.ReadAsArray())
    assert_close64(a, scipy_ds_ref(a_ds, x, y, v, 0), np.ptp(v))


@pytest.mark.parametrize('form', ['tps', 'TPS:'])
def test_num_threads_and_device_options(pts, form):
    if form == 'tps':
        name = write_tps(pts['dir'] / 'nt.tps',
                         tps_xml('pts.csv', ['z'], size=(64, 48), data_type='Float64',
                                 extent=(249900, 469900, 252100, 471100)))
        base = []
    else:
        name = 'TPS:' + pts['csv']
        base = ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=64 48', 'DATA_TYPE=Float64',
                'EXTENT=249900 469900 252100 471100']
    ref = _open_ok(name, base + ['NUM_THREADS=1', 'DEVICE=CPU'])
    assert md(ref, 'DEVICE') == 'CPU'
    a1 = ref.ReadAsArray()
    r = np.ptp(pts['z'])
    for oo in (['NUM_THREADS=2'], ['NUM_THREADS=ALL_CPUS'], ['DEVICE=AUTO'], ['DEVICE=CPU', 'NUM_THREADS=3']):
        ds = _open_ok(name, base + oo)
        assert md(ds, 'DEVICE') == 'CPU'
        assert_close64(ds.ReadAsArray(), a1, r, rel=1e-13, what=str(oo))
    assert_close64(a1, scipy_ds_ref(ref, pts['x'], pts['y'], pts['z'], 0), r)


@pytest.mark.parametrize('where', ['top', 'points', 'band'])
def test_unknown_element_warns(pts, where):
    kw = dict(size=(20, 20), extent=(249900, 469900, 252100, 471100))
    good = tps_xml('pts.csv', ['z'], **kw)
    if where == 'top':
        bad = tps_xml('pts.csv', ['z'], extra='<Colour>blue</Colour>', **kw)
    elif where == 'points':
        bad = tps_xml('pts.csv', ['z'], points_extra='<Colour>blue</Colour>', **kw)
    else:
        bad = good.replace('<Field>z</Field>', '<Field>z</Field><Colour>blue</Colour>')
    assert bad != good
    a = _open_ok(write_tps(pts['dir'] / 'g.tps', good)).ReadAsArray()
    ds, cap = open_tps(write_tps(pts['dir'] / 'u.tps', bad))
    assert ds is not None, cap.errors
    assert any('colour' in m.lower() for m in cap.warnings), cap.errors
    assert np.array_equal(ds.ReadAsArray(), a)


def test_geometry_points_with_xy_fields_override(tmp_path):
    """XField/YField take the coordinates from attributes even when the
    layer has geometries (here the geometries are elsewhere)."""
    rng = np.random.default_rng(47)
    x, y = random_points(80, rng, 0.0, 0.0, 100.0)
    v = smooth_values(x, y, rng)
    src = write_geojson(tmp_path / 'g.geojson', x + 1e6, y - 1e6, {'ax': x, 'ay': y, 'v': v})
    ds = _open_ok(write_tps(tmp_path / 'g.tps', tps_xml('g.geojson', ['v'], xfield='ax', yfield='ay',
                                                        extent=(0, 0, 100, 100), size=(25, 25),
                                                        data_type='Float64')))
    assert src
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x, y, v, 0), np.ptp(v))


def test_advertised_defaults_are_the_defaults(pts):
    """Every default the driver advertises (DMD_OPENOPTIONLIST, built from
    the engine's constants and the driver's own defaults) is what an open
    without that option gets: the same model file (whose name hashes the
    solve's settings: mode, patch points, overlap, smoothing), the same
    bytes, the same TPS metadata. LOCAL mode, so that PATCH_POINTS and
    OVERLAP count."""
    opts = ET.fromstring(gdal.GetDriverByName('TPS').GetMetadataItem('DMD_OPENOPTIONLIST'))
    defaults = {o.get('name'): o.get('default') for o in opts if o.get('default') is not None}
    assert {'MODE', 'PATCH_POINTS', 'OVERLAP', 'SMOOTHING', 'DATA_TYPE'} <= set(defaults)
    # each select's default is one of its values
    for o in opts:
        values = [v.text for v in o.findall('Value')]
        if values:
            assert o.get('default') in values, o.get('name')
    path = write_tps(pts['dir'] / 'defaults.tps',
                     tps_xml('pts.csv', ['z'], size=(40, 20), extra='<Mode>LOCAL</Mode>'))
    volatile = {'SOLVE_SECONDS', 'SOLVES', 'MODEL_SOURCE', 'PIXELS_EVALUATED'}

    def state(oo):
        ds = _open_ok(path, oo)
        meta = {k: v for k, v in ds.GetMetadata('TPS').items() if k not in volatile}
        return meta, ds.ReadRaster(), ds.GetRasterBand(1).DataType

    reference = state([])
    assert reference[0]['MODE'] == 'LOCAL' and reference[0]['MODEL_FILE']
    for name, value in defaults.items():
        if name == 'MODE':  # the file says LOCAL; the default is checked below
            continue
        assert state(['%s=%s' % (name, value)]) == reference, (name, value)
    plain = write_tps(pts['dir'] / 'plain.tps', tps_xml('pts.csv', ['z'], size=(40, 20)))
    assert (md(_open_ok(plain), 'MODEL_FILE') ==
            md(_open_ok(plain, ['MODE=%s' % defaults['MODE']]), 'MODEL_FILE'))
