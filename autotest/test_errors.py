"""Degenerate and bad input: gdal.Open returns None with a clear CE_Failure
message naming the file (the .tps basename or the TPS: source) and the
offending element/option, and nothing crashes (the nastiest inputs also in a
subprocess, whose exit status must be 0).

Covered: fewer than 3 points, collinear points, nothing left after <Where>,
all values missing, malformed / truncated / empty XML, wrong root, missing
<Band> or <Field>, unknown or repeated <Quantity>, missing source / layer / field, non-numeric values, bad
SRS, zero / negative / absurd / non-numeric sizes, bad extent, resolution
and geotransform, negative / NaN / infinite smoothing, unknown DataType,
MaxDistance <= 0 / NaN / infinite / text, ConvexHull not a boolean, the
TPS_MAX_MEMORY limit, bad TPS: open options, DEVICE=GPU without a GPU
(only where the probe, conftest.gpu_expected, finds none: where it finds
one, DEVICE=GPU must open and say DEVICE=GPU);
hostile files and paths: a 17 MB .tps, 100,000 nested elements, a .tps
naming itself as its source, '..' in <Source>, a /vsicurl/ (refused by the default source policy)
source, points outside the CRS transformation's domain, CRSs with no
transformation between them. (Damaged .tps.model files: test_model_cache.py.)
"""
import subprocess
import textwrap

import numpy as np
import pytest
from osgeo import gdal

from conftest import (PYTHON, VSIMem, assert_open_fails, gpu_expected, open_tps, random_points,
                      subprocess_env, tps_xml, write_csv, write_tps)

EXT = (0, 0, 10, 10)


@pytest.fixture
def good(tmp_path):
    """A valid point source (40 points) and a helper writing .tps files."""
    rng = np.random.default_rng(9)
    x, y = random_points(40, rng, 0.0, 0.0, 10.0)
    z = np.sin(x) + y
    write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'conc_ppm': z})

    def tps(name, **kw):
        args = dict(size=(20, 20), extent=EXT)
        bands = kw.pop('bands', ['conc_ppm'])
        source = kw.pop('source', 'pts.csv')
        args.update(kw)   # a None removes the element (tps_xml omits None)
        return write_tps(tmp_path / name, tps_xml(source, bands, **args))
    return {'dir': tmp_path, 'tps': tps, 'x': x, 'y': y, 'z': z}


def test_good_baseline_opens(good):
    """The fixture's valid file opens: the failures below are caused by what
    each test changes."""
    ds, cap = open_tps(good['tps']('ok.tps'))
    assert ds is not None, cap.errors
    assert np.isfinite(ds.ReadAsArray()).all()


# ------------------------------------------------------------ point sets

def _csv_tps(d, name, cols, field='conc_ppm', **kw):
    write_csv(d / (name + '.csv'), cols)
    xml = tps_xml(name + '.csv', [field], size=(10, 10), extent=kw.pop('extent', EXT), **kw)
    return write_tps(d / (name + '.tps'), xml)


@pytest.mark.parametrize('n', [0, 1, 2])
def test_fewer_than_three_points(tmp_path, n):
    p = _csv_tps(tmp_path, 'few%d' % n, {'x': [1.0, 5.0][:n] or [], 'y': [2.0, 7.0][:n] or [],
                                         'conc_ppm': [1.0, 2.0][:n] or []})
    assert_open_fails(p, 'few%d.tps' % n, ['point'])


def test_three_points_after_merge_too_few(tmp_path):
    """3 rows but only 2 distinct locations."""
    p = _csv_tps(tmp_path, 'dup2', {'x': [1.0, 1.0, 5.0], 'y': [2.0, 2.0, 7.0], 'conc_ppm': [1.0, 3.0, 2.0]})
    assert_open_fails(p, 'dup2.tps', ['point'])


@pytest.mark.parametrize('kind', ['diagonal', 'vertical'])
def test_collinear_points(tmp_path, kind):
    t = np.linspace(0, 9, 25)
    x, y = (t, 0.5 * t + 1) if kind == 'diagonal' else (np.full(25, 3.0), t)
    p = _csv_tps(tmp_path, 'line', {'x': x, 'y': y, 'conc_ppm': np.cos(t)})
    assert_open_fails(p, 'line.tps', ['collinear', 'line'])


def test_no_points_after_where(tmp_path):
    p = _csv_tps(tmp_path, 'wh', {'x': [1.0, 5.0, 2.0, 8.0], 'y': [2.0, 7.0, 9.0, 1.0],
                                  'conc_ppm': [1.0, 2.0, 3.0, 4.0], 'grp': ['a'] * 4},
                 where="grp = 'zzz'")
    assert_open_fails(p, 'wh.tps', ['point'])


@pytest.mark.parametrize('token', ['', 'nan', 'NA'])
def test_all_values_missing(tmp_path, token):
    p = _csv_tps(tmp_path, 'allnan', {'x': [1.0, 5.0, 2.0, 8.0], 'y': [2.0, 7.0, 9.0, 1.0],
                                      'conc_ppm': [token] * 4})
    assert_open_fails(p, 'allnan.tps', ['point', 'value', 'conc_ppm'])


def test_non_numeric_value(tmp_path):
    p = _csv_tps(tmp_path, 'abc', {'x': [1.0, 5.0, 2.0, 8.0], 'y': [2.0, 7.0, 9.0, 1.0],
                                   'conc_ppm': ['1.5', 'abc', '2', '3']})
    assert_open_fails(p, 'abc.tps', ['conc_ppm', 'abc'])


def test_non_numeric_coordinate(tmp_path):
    p = _csv_tps(tmp_path, 'xabc', {'x': [1.0, 5.0, 'east', 8.0], 'y': [2.0, 7.0, 9.0, 1.0],
                                    'conc_ppm': [1.0, 2.0, 3.0, 4.0]})
    # x='east' is an error on the XField, or the point is dropped and the
    # other three still interpolate; never a crash or a silent 0
    ds, cap = open_tps(p)
    if ds is None:
        assert any('xabc.tps' in m.lower() and ('east' in m.lower() or "'x'" in m.lower() or 'xfield' in m.lower()
                                                or ' x ' in m.lower()) for m in cap.failures), cap.errors
    else:
        from conftest import scipy_ds_ref
        a = ds.ReadAsArray()
        ref = scipy_ds_ref(ds, [1.0, 5.0, 8.0], [2.0, 7.0, 1.0], [1.0, 2.0, 4.0], 0)
        assert np.allclose(a, ref, atol=1e-5 * 3)


# ------------------------------------------------------------ XML

def test_malformed_xml(good):
    p = write_tps(good['dir'] / 'broken.tps',
                  '<TPSDataset><Points><Source>pts.csv</Source></Pointz><Band><Field>conc_ppm</Field></Band></TPSDataset>')
    assert_open_fails(p, 'broken.tps', ['xml', 'parse', 'syntax', 'malformed'])


def test_truncated_xml(good):
    text = tps_xml('pts.csv', ['conc_ppm'], size=(20, 20), extent=EXT)
    p = write_tps(good['dir'] / 'trunc.tps', text[:len(text) // 2])
    assert_open_fails(p, 'trunc.tps', ['xml', 'parse', 'syntax', 'malformed', 'truncated', 'TPSDataset'])


def test_empty_file(good):
    p = write_tps(good['dir'] / 'empty.tps', '')
    ds, cap = open_tps(p)
    assert ds is None
    # claimed by extension: the TPS driver says why
    assert any('empty.tps' in m for m in cap.failures), cap.errors


def test_missing_root(good):
    p = write_tps(good['dir'] / 'noroot.tps',
                  '<Dataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField>'
                  '</Points><Band><Field>conc_ppm</Field></Band></Dataset>\n')
    assert_open_fails(p, 'noroot.tps', ['TPSDataset', 'root'])


def test_missing_points_element(good):
    p = write_tps(good['dir'] / 'nopoints.tps',
                  '<TPSDataset><Size>10 10</Size><Band><Field>conc_ppm</Field></Band></TPSDataset>\n')
    assert_open_fails(p, 'nopoints.tps', ['Points', 'Source'])


def test_missing_band(good):
    p = good['tps']('noband.tps', bands=[])
    assert_open_fails(p, 'noband.tps', ['Band'])


def test_band_without_field(good):
    p = write_tps(good['dir'] / 'nofield.tps',
                  tps_xml('pts.csv', ['conc_ppm'], size=(10, 10), extent=EXT)
                  .replace('<Field>conc_ppm</Field>', '<Description>d</Description>'))
    assert_open_fails(p, 'nofield.tps', ['Field', 'GeometryZ'])


@pytest.mark.parametrize('quantity', ['curvature', 'dz/dx', ''])
def test_bad_quantity(good, quantity):
    p = good['tps']('qty.tps', bands=['conc_ppm', {'field': 'conc_ppm', 'quantity': quantity}])
    assert_open_fails(p, 'qty.tps', ['<Band> #2: <Quantity>'])


def test_quantity_twice(good):
    p = write_tps(good['dir'] / 'qty2.tps',
                  tps_xml('pts.csv', [{'field': 'conc_ppm', 'quantity': 'slope'}], size=(10, 10),
                          extent=EXT)
                  .replace('</Quantity>', '</Quantity><Quantity>aspect</Quantity>'))
    assert_open_fails(p, 'qty2.tps', ['<Quantity>'])


# ------------------------------------------------------------ sources

def test_missing_source_file(good):
    p = good['tps']('nosrc.tps', source='not_here.csv')
    assert_open_fails(p, 'nosrc.tps', ['not_here.csv'])


def test_missing_layer(good):
    p = good['tps']('nolayer.tps', layer='no_such_layer')
    assert_open_fails(p, 'nolayer.tps', ['no_such_layer'])


def test_missing_field(good):
    p = good['tps']('nofld.tps', bands=['zinc_missing'])
    assert_open_fails(p, 'nofld.tps', ['zinc_missing'])


@pytest.mark.parametrize('which', ['xfield', 'yfield'])
def test_missing_xy_field(good, which):
    p = good['tps']('noxy.tps', **{which: 'coord_missing'})
    assert_open_fails(p, 'noxy.tps', ['coord_missing'])


def test_no_geometry_and_no_xy_fields(good):
    """A CSV without geometry and without XField/YField has no coordinates."""
    p = good['tps']('nogeom.tps', xfield=None, yfield=None)
    assert_open_fails(p, 'nogeom.tps', ['geometr', 'XField', 'coordinate'])


# ------------------------------------------------------------ SRS

@pytest.mark.parametrize('srs', ['EPSG:999999', 'garbage'])
@pytest.mark.parametrize('where', ['output', 'points'])
def test_bad_srs(good, srs, where):
    kw = {'srs': srs} if where == 'output' else {'points_srs': srs}
    if where == 'output':
        kw['points_srs'] = 'EPSG:28992'
    p = good['tps']('badsrs.tps', **kw)
    assert_open_fails(p, 'badsrs.tps', ['SRS', srs])


# ------------------------------------------------------------ grid

@pytest.mark.parametrize('size', ['0 10', '10 0', '-5 5', '1000000000 1000000000', 'abc 10', '10',
                                  '10.5 10'])
def test_bad_size(good, size):
    p = good['tps']('size.tps', size=size)
    assert_open_fails(p, 'size.tps', ['Size'])


@pytest.mark.parametrize('ext', ['10 0 0 10', '0 0 10', '0 0 10 0', 'a b c d'])
def test_bad_extent(good, ext):
    p = good['tps']('ext.tps', extent=ext)
    assert_open_fails(p, 'ext.tps', ['Extent'])


@pytest.mark.parametrize('res', ['0', '-1', 'abc', '1e-9'])
def test_bad_resolution(good, res):
    p = good['tps']('res.tps', size=None, resolution=res)
    assert_open_fails(p, 'res.tps', ['Resolution', 'Size'])


@pytest.mark.parametrize('gt', ['0, 1, 0, 10', 'a, 1, 0, 10, 0, -1'])
def test_bad_geotransform(good, gt):
    p = good['tps']('gt.tps', extent=None, geotransform=gt)
    assert_open_fails(p, 'gt.tps', ['GeoTransform'])


# ------------------------------------------------------------ smoothing, types

@pytest.mark.parametrize('lam', ['-1', 'nan', 'inf', 'lots'])
@pytest.mark.parametrize('where', ['top', 'band'])
def test_bad_smoothing(good, lam, where):
    if where == 'top':
        p = good['tps']('lam.tps', smoothing=lam)
    else:
        p = good['tps']('lam.tps', bands=[{'field': 'conc_ppm', 'smoothing': lam}])
    assert_open_fails(p, 'lam.tps', ['Smoothing'])


@pytest.mark.parametrize('dt', ['Banana', 'Int8', 'CFloat64'])
def test_unknown_data_type(good, dt):
    p = good['tps']('dt.tps', data_type=dt)
    assert_open_fails(p, 'dt.tps', ['DataType'])


@pytest.mark.parametrize('value', ['0', '-1', 'nan', 'inf', 'far', '1 2'])
def test_bad_max_distance(good, value):
    p = good['tps']('maxd.tps', extra='<MaxDistance>%s</MaxDistance>' % value)
    assert_open_fails(p, 'maxd.tps', ['MaxDistance'])


@pytest.mark.parametrize('value', ['maybe', '2', 'yes please'])
def test_bad_convex_hull(good, value):
    p = good['tps']('hull.tps', extra='<ConvexHull>%s</ConvexHull>' % value)
    assert_open_fails(p, 'hull.tps', ['ConvexHull'])


# ------------------------------------------------------------ memory limit

def test_memory_limit(tmp_path):
    rng = np.random.default_rng(13)
    x, y = random_points(200, rng, 0.0, 0.0, 10.0)
    write_csv(tmp_path / 'big.csv', {'x': x, 'y': y, 'conc_ppm': x * y})
    p = write_tps(tmp_path / 'mem.tps', tps_xml('big.csv', ['conc_ppm'], size=(10, 10), extent=EXT))
    # room for the points and the solve's copies of them (~60 kB), not for
    # the dense system
    gdal.SetConfigOption('TPS_MAX_MEMORY', '200000')
    try:
        cap = assert_open_fails(p, 'mem.tps', ['TPS_MAX_MEMORY'])
    finally:
        gdal.SetConfigOption('TPS_MAX_MEMORY', None)
    import re
    msg = [m for m in cap.failures if 'TPS_MAX_MEMORY' in m][0]
    nums = [int(s.replace(',', '')) for s in re.findall(r'\d[\d,]*', msg)]
    # the dense (N+3)^2 doubles system alone is 330 kB
    assert any(n >= 200 * 200 * 8 for n in nums), msg
    # the limit lifted: the same file opens
    ds, cap = open_tps(p)
    assert ds is not None, cap.errors


# ------------------------------------------------------------ TPS: options

@pytest.mark.parametrize('oo,kw', [
    (['XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10'], ['FIELD']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=0 0', 'EXTENT=0 0 10 10'], ['SIZE']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=-3 10', 'EXTENT=0 0 10 10'], ['SIZE']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10'], ['EXTENT']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'RESOLUTION=-2', 'EXTENT=0 0 10 10'], ['RESOLUTION']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'SMOOTHING=-1'], ['SMOOTHING']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'SMOOTHING=nan'], ['SMOOTHING']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'DATA_TYPE=Byte'], ['DATA_TYPE']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'SRS=garbage'], ['SRS']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'LAYER=nope'], ['nope']),
    (['FIELD=nofield', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10'], ['nofield']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'DEVICE=banana'], ['DEVICE']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'MAX_DISTANCE=-2'], ['MAX_DISTANCE']),
    (['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10', 'CONVEX_HULL=banana'], ['CONVEX_HULL']),
])
def test_bad_tps_syntax_options(good, oo, kw):
    assert_open_fails('TPS:' + str(good['dir'] / 'pts.csv'), 'pts.csv', kw, open_options=oo)


def test_tps_syntax_missing_source(good):
    assert_open_fails('TPS:' + str(good['dir'] / 'gone.csv'), 'gone.csv', ['gone.csv'],
                      open_options=['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y'])


@pytest.mark.parametrize('how', ['tps_file', 'tps_string'])
def test_device_gpu(good, how):
    """DEVICE=GPU fails at open, naming the GPU, where the probe finds no
    GPU; where it finds one, it opens on the GPU."""
    if how == 'tps_file':
        name, mention, oo = good['tps']('gpu.tps'), 'gpu.tps', ['DEVICE=GPU']
    else:
        name, mention = 'TPS:' + str(good['dir'] / 'pts.csv'), 'pts.csv'
        oo = ['FIELD=conc_ppm', 'XFIELD=x', 'YFIELD=y', 'SIZE=10 10', 'EXTENT=0 0 10 10',
              'DEVICE=GPU']
    expected, why = gpu_expected()
    if not expected:
        assert_open_fails(name, mention, ['GPU'], open_options=oo)
    else:
        ds, cap = open_tps(name, oo)
        assert ds is not None, 'the probe finds %s, yet DEVICE=GPU fails: %r' % (why, cap.errors)
        assert ds.GetMetadataItem('DEVICE', 'TPS') == 'GPU'
        assert np.isfinite(ds.ReadAsArray()).all()


def test_bad_vsimem_file(good):
    with VSIMem() as mem:
        p = mem.write('bad.tps', '<TPSDataset><Points><Source>x.csv</Source>')
        assert_open_fails(p, 'bad.tps', ['xml', 'parse', 'syntax', 'malformed', 'truncated', 'TPSDataset'])
        p = mem.write('nosrc.tps', tps_xml('x.csv', ['conc_ppm'], size=(5, 5), extent=EXT))
        assert_open_fails(p, 'nosrc.tps', ['x.csv'])


# ------------------------------------------------------------ in a subprocess

SUBPROCESS_SCRIPT = textwrap.dedent('''
    import sys
    from osgeo import gdal
    gdal.DontUseExceptions()
    gdal.PushErrorHandler('CPLQuietErrorHandler')
    if len(sys.argv) > 2:
        gdal.SetConfigOption('TPS_MAX_MEMORY', sys.argv[2])
    ds = gdal.Open(sys.argv[1])
    print('RESULT', 'NONE' if ds is None else 'OPENED')
    print('MSG', gdal.GetLastErrorMsg())
''')


@pytest.mark.parametrize('case', ['truncated', 'absurd_size', 'memory', 'collinear', 'garbage_bytes'])
def test_nasty_inputs_in_subprocess(tmp_path, case):
    rng = np.random.default_rng(21)
    x, y = random_points(200, rng, 0.0, 0.0, 10.0)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'v': x - y * y})
    args = []
    text = tps_xml('p.csv', ['v'], size=(10, 10), extent=EXT)
    if case == 'truncated':
        text = text[:len(text) * 2 // 3]
    elif case == 'absurd_size':
        text = tps_xml('p.csv', ['v'], size='1000000000 1000000000', extent=EXT)
    elif case == 'memory':
        args = ['1000']
    elif case == 'collinear':
        write_csv(tmp_path / 'p.csv', {'x': x, 'y': 2 * x + 1, 'v': x})
    p = write_tps(tmp_path / 'nasty.tps', text)
    if case == 'garbage_bytes':
        with open(p, 'wb') as f:
            f.write(b'<TPSDataset' + bytes(range(256)) * 4)
    r = subprocess.run([PYTHON, '-c', SUBPROCESS_SCRIPT, p] + args, env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    assert 'RESULT NONE' in r.stdout, r.stdout
    assert 'nasty.tps' in r.stdout, r.stdout


# ------------------------------------------------------------ hostile files and paths

def test_huge_xml(good):
    """A .tps far larger than any real one is refused before it is parsed."""
    p = good['dir'] / 'huge.tps'
    with open(p, 'w') as f:
        f.write('<TPSDataset>' + '<!--' + 'x' * (17 * 1024 * 1024) + '-->' + '</TPSDataset>')
    assert_open_fails(str(p), 'huge.tps', ['large', 'bytes'])


def test_deeply_nested_xml(good):
    """100,000 nested unknown elements: a warning or a clear failure, no stack
    overflow (the subprocess must exit normally)."""
    p = good['dir'] / 'deep.tps'
    depth = 100000
    with open(p, 'w') as f:
        f.write('<TPSDataset>' + '<a>' * depth + '</a>' * depth + '</TPSDataset>')
    r = subprocess.run([PYTHON, '-c', SUBPROCESS_SCRIPT, str(p)], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert 'RESULT NONE' in r.stdout and 'deep.tps' in r.stdout, r.stdout


def test_tps_referencing_itself(good):
    """<Source> naming the .tps itself: not a vector data set, a clear error,
    no recursion."""
    p = good['tps']('self.tps', source='self.tps')
    assert_open_fails(p, 'self.tps', ['self.tps'])


def test_source_with_dotdot(good):
    """'..' in <Source> resolves against the .tps folder: a file one level up
    opens, a missing one is named in the error."""
    sub = good['dir'] / 'sub'
    sub.mkdir()
    ok = write_tps(sub / 'up.tps', tps_xml('../pts.csv', ['conc_ppm'], size=(8, 8), extent=EXT))
    ds, cap = open_tps(ok)
    assert ds is not None, cap.errors
    ref, _ = open_tps(good['tps']('same.tps', size=(8, 8)))
    np.testing.assert_array_equal(ds.ReadAsArray(), ref.ReadAsArray())
    bad = write_tps(sub / 'upmissing.tps', tps_xml('../../nowhere/pts.csv', ['conc_ppm'],
                                                   size=(8, 8), extent=EXT))
    assert_open_fails(bad, 'upmissing.tps', ['nowhere'])


def test_vsicurl_source_unreachable(good):
    """A /vsicurl/ source on a closed loopback port fails fast and clearly (no
    hang: the subprocess has a timeout). Under the default
    TPS_ALLOWED_SOURCES=LOCAL it is refused before any connection
    (test_security.py checks that none is made)."""
    p = good['tps']('curl.tps', source='/vsicurl/http://127.0.0.1:9/pts.csv')
    env = subprocess_env()
    env.update({'GDAL_HTTP_TIMEOUT': '5', 'GDAL_HTTP_MAX_RETRY': '0', 'CPL_VSIL_CURL_USE_HEAD': 'NO'})
    r = subprocess.run([PYTHON, '-c', SUBPROCESS_SCRIPT, p], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert 'RESULT NONE' in r.stdout and 'curl.tps' in r.stdout, r.stdout


def test_points_outside_the_transform_domain(good):
    """Points given in EPSG:4326 with impossible latitudes cannot be moved to
    the output CRS: the open fails and says how many points failed."""
    lon = np.linspace(5.0, 6.0, 30)
    lat = np.where(np.arange(30) % 3 == 0, 95.0, np.linspace(51.0, 52.0, 30))
    write_csv(good['dir'] / 'geo.csv', {'x': lon, 'y': lat, 'conc_ppm': lon + lat})
    p = write_tps(good['dir'] / 'domain.tps',
                  tps_xml('geo.csv', ['conc_ppm'], points_srs='EPSG:4326', srs='EPSG:28992',
                          size=(10, 10), extent=(150000, 300000, 250000, 400000)))
    assert_open_fails(p, 'domain.tps', ['transform'])


def test_crs_without_transformation(good):
    """An output CRS PROJ cannot reach from the points' CRS (an engineering
    CRS without any link): a clear failure naming the transformation."""
    eng = ('ENGCRS["site grid",EDATUM["site"],CS[Cartesian,2],'
           'AXIS["x",east,ORDER[1],LENGTHUNIT["metre",1]],'
           'AXIS["y",north,ORDER[2],LENGTHUNIT["metre",1]]]')
    p = good['tps']('eng.tps', points_srs=eng, srs='EPSG:4326', extent=None, size=(8, 8))
    assert_open_fails(p, 'eng.tps', ['transform'])
