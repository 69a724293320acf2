"""Shared set-up for the gdal-tps Python tests.

* Points GDAL at the plugin: if GDAL_DRIVER_PATH is not set it becomes
  <repo>/build before osgeo.gdal is imported, and a session fixture FAILS
  every test when the "TPS" driver is not registered (a missing plugin never
  skips silently).
* Is there a GPU? gpu_expected() asks the CUDA driver (libcuda.so.1 through
  ctypes: cuInit, cuDeviceGetCount) and looks for the CUDA runtime in the
  plugin file, never the plugin's own answer; the fixtures needs_gpu and
  needs_no_gpu skip by it. Where it finds a GPU, a DEVICE=GPU open that
  fails is a failure, not a skip.
* Helpers to write synthetic point sources (CSV, GeoJSON, GeoPackage) and
  ``.tps`` files, to capture GDAL errors, and the independent reference:
  scipy's RBFInterpolator(kernel='thin_plate_spline', degree=1,
  smoothing=lambda) evaluated at pixel centres.
"""
import math
import os
import sys
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(REPO, 'build')
DATA_DIR = os.path.join(REPO, 'data')

if not os.environ.get('GDAL_DRIVER_PATH'):
    os.environ['GDAL_DRIVER_PATH'] = BUILD_DIR

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from osgeo import gdal, ogr, osr  # noqa: E402
from scipy.interpolate import RBFInterpolator  # noqa: E402

gdal.DontUseExceptions()
ogr.DontUseExceptions()
osr.DontUseExceptions()
gdal.AllRegister()


@pytest.fixture(scope='session', autouse=True)
def tps_driver():
    """Every test needs the plugin: fail (not skip) when it is absent."""
    drv = gdal.GetDriverByName('TPS')
    assert drv is not None, (
        'GDAL driver "TPS" is not registered: build the plugin '
        '(cmake -S %s -B %s && cmake --build %s) or set GDAL_DRIVER_PATH '
        '(now %r)' % (REPO, BUILD_DIR, BUILD_DIR, os.environ.get('GDAL_DRIVER_PATH')))
    return drv


# --------------------------------------------------------------------------
# Is there a GPU? (independent of the plugin under test)
# --------------------------------------------------------------------------

_gpu = {}


def gpu_probe():
    """(number of CUDA devices, what was found), from the CUDA driver itself.
    CUDA_VISIBLE_DEVICES= hides them here as from the plugin."""
    if 'probe' not in _gpu:
        import ctypes
        try:
            lib = ctypes.CDLL('libcuda.so.1')
        except OSError as e:
            _gpu['probe'] = (0, 'no CUDA driver (%s)' % e)
            return _gpu['probe']
        rc = lib.cuInit(0)
        n = ctypes.c_int(0)
        if rc != 0:
            _gpu['probe'] = (0, 'cuInit: CUDA error %d (100: no device)' % rc)
        elif lib.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
            _gpu['probe'] = (0, 'cuDeviceGetCount: %d devices' % n.value)
        else:
            _gpu['probe'] = (n.value, '%d CUDA device%s' % (n.value, 's' if n.value > 1 else ''))
    return _gpu['probe']


def plugin_file():
    """The gdal_TPS.so GDAL loads from GDAL_DRIVER_PATH (a <major>.<minor>
    subfolder first, as GDAL does), or None."""
    major_minor = '.'.join(gdal.__version__.split('.')[:2])
    for d in os.environ.get('GDAL_DRIVER_PATH', '').split(os.pathsep):
        for cand in (os.path.join(d, major_minor, 'gdal_TPS.so'), os.path.join(d, 'gdal_TPS.so')):
            if os.path.isfile(cand):
                return cand
    return None


def plugin_has_gpu_backend():
    """Whether the plugin was built with the GPU backend: the CUDA runtime,
    linked into it, names the CUDA driver library it loads. (A plugin not
    found on GDAL_DRIVER_PATH is assumed to have it.)"""
    if 'backend' not in _gpu:
        path = plugin_file()
        if path is None:
            _gpu['backend'] = True
        else:
            with open(path, 'rb') as f:
                _gpu['backend'] = b'libcuda.so' in f.read()
    return _gpu['backend']


def gpu_expected():
    """(whether a DEVICE=GPU open must work here, why)."""
    n, found = gpu_probe()
    if n and not plugin_has_gpu_backend():
        return False, '%s, but the plugin %s has no GPU backend' % (found, plugin_file())
    return bool(n), found if n else 'no GPU: ' + found


@pytest.fixture
def needs_gpu():
    """Skip unless the probe finds a GPU (and the plugin can use one)."""
    expected, why = gpu_expected()
    if not expected:
        pytest.skip(why)
    return why


@pytest.fixture
def needs_no_gpu():
    """Skip where the probe finds a usable GPU (the fallback is tested with
    CUDA_VISIBLE_DEVICES= there)."""
    expected, why = gpu_expected()
    if expected:
        pytest.skip('the probe finds %s; run with CUDA_VISIBLE_DEVICES= to test the fallback'
                    % why)
    return why


def subprocess_env():
    """Environment for gdal_translate & co: the same plugin path as here."""
    env = dict(os.environ)
    env['GDAL_DRIVER_PATH'] = os.environ['GDAL_DRIVER_PATH']
    return env


PYTHON = sys.executable  # /usr/bin/python3 when run as the project says


def run(args, cwd=None, timeout=300, env=None):
    """Run a real program (gdal_translate, a client script) with the plugin
    path; fail the test with its output when it fails."""
    import subprocess
    r = subprocess.run([str(a) for a in args], env=env or subprocess_env(), cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, '%s -> %d\nstdout: %s\nstderr: %s' % (
        ' '.join(map(str, args)), r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    return r


# --------------------------------------------------------------------------
# Point data
# --------------------------------------------------------------------------

def random_points(n, rng, x0=0.0, y0=0.0, width=1.0, height=None, min_sep=0.3):
    """n random points in [x0, x0+width] x [y0, y0+height] no two closer than
    min_sep times the mean spacing (keeps the reference solve well conditioned;
    the points are still random)."""
    if height is None:
        height = width
    sep = min_sep * math.sqrt(width * height / n)
    pts = []
    while len(pts) < n:
        cand = rng.random((2 * n, 2)) * [width, height]
        for p in cand:
            if pts:
                d = np.asarray(pts) - p
                if np.min(d[:, 0] ** 2 + d[:, 1] ** 2) < sep * sep:
                    continue
            pts.append(p)
            if len(pts) == n:
                break
    pts = np.asarray(pts)
    return pts[:, 0] + x0, pts[:, 1] + y0


def smooth_values(x, y, rng, noise=0.05):
    """A smooth field plus noise, about [-100, 120]."""
    u = (x - x.min()) / np.ptp(x)
    v = (y - y.min()) / np.ptp(y)
    z = 100 * np.sin(2 * np.pi * u) * np.cos(np.pi * v) + 20 * u - 10 * v * v
    return z + noise * 100 * rng.standard_normal(len(x))


def fmt(v):
    """A CSV/XML cell: floats round-trip exactly, strings go in as given."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def write_csv(path, columns):
    """columns: dict name -> sequence (numbers or strings, all one length)."""
    names = list(columns)
    n = len(columns[names[0]])
    with open(path, 'w') as f:
        f.write(','.join(names) + '\n')
        for i in range(n):
            f.write(','.join(fmt(columns[c][i]) for c in names) + '\n')
    return str(path)


def write_geojson(path, x, y, props, z=None):
    """Point features (3D when z is given) with numeric properties."""
    import json
    feats = []
    for i in range(len(x)):
        coords = [float(x[i]), float(y[i])] + ([float(z[i])] if z is not None else [])
        feats.append({'type': 'Feature',
                      'geometry': {'type': 'Point', 'coordinates': coords},
                      'properties': {k: float(v[i]) for k, v in props.items()}})
    with open(path, 'w') as f:
        json.dump({'type': 'FeatureCollection', 'features': feats}, f)
    return str(path)


def write_gpkg_layer(path, layer_name, x, y, props, epsg=None):
    """Append a point layer with Real fields to a GeoPackage (created if new)."""
    drv = ogr.GetDriverByName('GPKG')
    if os.path.exists(path):
        ds = ogr.Open(str(path), 1)
    else:
        ds = drv.CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
    lyr = ds.CreateLayer(layer_name, srs, ogr.wkbPoint)
    for k in props:
        lyr.CreateField(ogr.FieldDefn(k, ogr.OFTReal))
    defn = lyr.GetLayerDefn()
    lyr.StartTransaction()
    for i in range(len(x)):
        feat = ogr.Feature(defn)
        for k, v in props.items():
            feat.SetField(k, float(v[i]))
        g = ogr.Geometry(ogr.wkbPoint)
        g.AddPoint_2D(float(x[i]), float(y[i]))
        feat.SetGeometry(g)
        lyr.CreateFeature(feat)
    lyr.CommitTransaction()
    ds = None
    return str(path)


# --------------------------------------------------------------------------
# .tps files
# --------------------------------------------------------------------------

def tps_xml(source, bands, *, layer=None, xfield='x', yfield='y', points_srs=None,
            where=None, srs=None, geotransform=None, size=None, extent=None,
            resolution=None, smoothing=None, data_type=None, nodata=None,
            block_size=None, extra='', points_extra=''):
    """Build a .tps document. bands: list of field names or of dicts with keys
    field | geometry_z, smoothing, description, quantity."""
    out = ['<TPSDataset>', '  <Points>', '    <Source>%s</Source>' % source]
    if layer is not None:
        out.append('    <Layer>%s</Layer>' % layer)
    if xfield is not None:
        out.append('    <XField>%s</XField>' % xfield)
    if yfield is not None:
        out.append('    <YField>%s</YField>' % yfield)
    if points_srs is not None:
        out.append('    <SRS>%s</SRS>' % points_srs)
    if where is not None:
        out.append('    <Where>%s</Where>' % where)
    if points_extra:
        out.append('    ' + points_extra)
    out.append('  </Points>')
    if srs is not None:
        out.append('  <SRS>%s</SRS>' % srs)
    if geotransform is not None:
        gt = geotransform if isinstance(geotransform, str) else ', '.join(fmt(float(v)) for v in geotransform)
        out.append('  <GeoTransform>%s</GeoTransform>' % gt)
    if size is not None:
        out.append('  <Size>%s</Size>' % (size if isinstance(size, str) else '%d %d' % tuple(size)))
    if extent is not None:
        out.append('  <Extent>%s</Extent>' % (extent if isinstance(extent, str) else ' '.join(fmt(float(v)) for v in extent)))
    if resolution is not None:
        out.append('  <Resolution>%s</Resolution>' % (resolution if isinstance(resolution, str) else ' '.join(fmt(float(v)) for v in np.atleast_1d(resolution))))
    if smoothing is not None:
        out.append('  <Smoothing>%s</Smoothing>' % fmt(smoothing))
    if data_type is not None:
        out.append('  <DataType>%s</DataType>' % data_type)
    if nodata is not None:
        out.append('  <NoDataValue>%s</NoDataValue>' % fmt(nodata))
    if block_size is not None:
        out.append('  <BlockSize>%s</BlockSize>' % (block_size if isinstance(block_size, str) else '%d %d' % tuple(block_size)))
    if extra:
        out.append('  ' + extra)
    for b in bands:
        if isinstance(b, str):
            b = {'field': b}
        out.append('  <Band>')
        if b.get('geometry_z'):
            out.append('    <GeometryZ/>')
        else:
            out.append('    <Field>%s</Field>' % b['field'])
        if b.get('smoothing') is not None:
            out.append('    <Smoothing>%s</Smoothing>' % fmt(b['smoothing']))
        if b.get('description') is not None:
            out.append('    <Description>%s</Description>' % b['description'])
        if b.get('quantity') is not None:
            out.append('    <Quantity>%s</Quantity>' % b['quantity'])
        out.append('  </Band>')
    out.append('</TPSDataset>')
    return '\n'.join(out) + '\n'


def write_tps(path, xml):
    with open(path, 'w') as f:
        f.write(xml)
    return str(path)


class VSIMem:
    """A unique /vsimem/ folder, removed on exit."""

    def __init__(self):
        self.root = '/vsimem/tps_test_%s' % uuid.uuid4().hex
        self.files = []

    def write(self, name, text):
        path = self.root + '/' + name
        gdal.FileFromMemBuffer(path, text.encode() if isinstance(text, str) else text)
        self.files.append(path)
        return path

    def __enter__(self):
        return self

    def __exit__(self, *a):
        for p in self.files:
            gdal.Unlink(p)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class ErrorCapture:
    """Collect (err_class, err_no, msg) raised by GDAL inside the block."""

    def __init__(self):
        self.errors = []

    def _handler(self, err_class, err_no, msg):
        self.errors.append((err_class, err_no, msg))

    def __enter__(self):
        gdal.ErrorReset()
        gdal.PushErrorHandler(self._handler)
        return self

    def __exit__(self, *a):
        gdal.PopErrorHandler()

    def messages(self, err_class):
        return [m for c, _, m in self.errors if c == err_class]

    @property
    def failures(self):
        return self.messages(gdal.CE_Failure) + self.messages(gdal.CE_Fatal)

    @property
    def warnings(self):
        return self.messages(gdal.CE_Warning)


def open_tps(name, open_options=None):
    """gdal.OpenEx of a .tps file or a TPS: source, errors captured."""
    with ErrorCapture() as cap:
        ds = gdal.OpenEx(str(name), gdal.OF_RASTER, open_options=open_options or [])
    return ds, cap


def assert_open_fails(name, must_mention, keywords, open_options=None):
    """Open returns None and one CE_Failure message names the file
    (`must_mention`, e.g. the .tps basename) and one of `keywords` (the
    offending element/option), case-insensitively."""
    name = str(name)
    ds, cap = open_tps(name, open_options)
    assert ds is None, 'open of %s should have failed; errors: %r' % (name, cap.errors)
    fails = cap.failures
    assert fails, 'no CE_Failure message for %s (got %r)' % (name, cap.errors)
    kws = [keywords] if isinstance(keywords, str) else list(keywords)
    # the keywords must be in the text, not in the folder names (pytest's
    # tmp folders are named after the tests: .../test_bad_size0/size.tps)
    path = name[4:] if name.startswith('TPS:') else name
    folders = {os.path.dirname(path), os.path.dirname(os.path.abspath(path))} - {''}

    def text(m):
        for f in sorted(folders, key=len, reverse=True):
            m = m.replace(f, '<dir>')
        return m.lower()
    good = [m for m in fails
            if must_mention.lower() in m.lower() and any(k.lower() in text(m) for k in kws)]
    assert good, ('no CE_Failure message mentions both %r and one of %r: %r'
                  % (must_mention, kws, fails))
    ERROR_LOG.append((name, open_options, fails))
    return cap


ERROR_LOG = []  # (name, open options, failure messages) of every expected failure


# --------------------------------------------------------------------------
# References and comparisons
# --------------------------------------------------------------------------

def pixel_centres(gt, cols, rows, xoff=0, yoff=0):
    c, r = np.meshgrid(np.arange(xoff, xoff + cols) + 0.5, np.arange(yoff, yoff + rows) + 0.5)
    return gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5]


def bilinear(a, gt, x, y):
    """numpy's bilinear interpolation of the array a, on the raster grid of
    geotransform gt, at (x, y): the driver's covariate resampling (between
    cell centres; the edge cells' values within half a cell of the edge),
    through the inverse geotransform, so rotated rasters too."""
    inv = gdal.InvGeoTransform(gt)
    px = inv[0] + x * inv[1] + y * inv[2]
    py = inv[3] + x * inv[4] + y * inv[5]
    fx, fy = px - 0.5, py - 0.5
    ix = np.clip(np.floor(fx).astype(int), 0, a.shape[1] - 1)
    iy = np.clip(np.floor(fy).astype(int), 0, a.shape[0] - 1)
    wx = np.where((fx < 0) | (ix >= a.shape[1] - 1), 0.0, fx - np.floor(fx))
    wy = np.where((fy < 0) | (iy >= a.shape[0] - 1), 0.0, fy - np.floor(fy))
    ix1 = np.minimum(ix + 1, a.shape[1] - 1)
    iy1 = np.minimum(iy + 1, a.shape[0] - 1)
    return ((1 - wx) * (1 - wy) * a[iy, ix] + wx * (1 - wy) * a[iy, ix1] +
            (1 - wx) * wy * a[iy1, ix] + wx * wy * a[iy1, ix1])


def scipy_tps(x, y, z, smoothing=0.0):
    return RBFInterpolator(np.column_stack([x, y]), np.asarray(z, dtype=float),
                           kernel='thin_plate_spline', degree=1, smoothing=smoothing)


def scipy_grid(x, y, z, smoothing, gt, cols, rows, xoff=0, yoff=0):
    """scipy's spline of (x, y, z) at the pixel centres of the grid."""
    X, Y = pixel_centres(gt, cols, rows, xoff, yoff)
    f = scipy_tps(x, y, z, smoothing)
    return f(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)


def scipy_ds_ref(ds, x, y, z, smoothing):
    return scipy_grid(x, y, z, smoothing, ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize)


def grid_around(x, y, cols, rows, margin=0.05):
    """North-up geotransform covering the points' bbox plus a margin."""
    w, h = np.ptp(x), np.ptp(y)
    minx, maxx = x.min() - margin * w, x.max() + margin * w
    miny, maxy = y.min() - margin * h, y.max() + margin * h
    return (minx, (maxx - minx) / cols, 0.0, maxy, 0.0, -(maxy - miny) / rows)


def assert_close64(actual, ref, value_range, rel=1e-8, what=''):
    """Float64 output: within rel x value range."""
    actual = np.asarray(actual, dtype=float)
    err = np.max(np.abs(actual - ref))
    assert err <= rel * value_range, '%s max |diff| %.3g > %.3g (= %g x range %.6g)' % (
        what, err, rel * value_range, rel, value_range)


def assert_close32(actual, ref, value_range, rel=1e-8, what=''):
    """Float32 output: float32 rounding (1e-6 relative) plus rel x range."""
    actual = np.asarray(actual, dtype=float)
    tol = 1e-6 * np.abs(ref) + rel * value_range
    bad = np.abs(actual - ref) > tol
    assert not bad.any(), '%s %d pixels off; worst |diff| %.3g (tol there %.3g)' % (
        what, bad.sum(), np.max(np.abs(actual - ref)), tol.flat[np.argmax(np.abs(actual - ref))])


def md(ds, key):
    return (ds.GetMetadata('TPS') or {}).get(key)


def meuse_columns():
    """data/meuse.csv as dict of numpy arrays (NA -> nan) via the csv module."""
    import csv
    with open(os.path.join(DATA_DIR, 'meuse.csv')) as f:
        rows = list(csv.DictReader(f))
    cols = {}
    for k in rows[0]:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]))
            except ValueError:
                vals.append(float('nan'))
        cols[k] = np.array(vals)
    return cols


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With TPS_SHOW_ERRORS=1, list the messages of the expected failures
    (to review that they are clear)."""
    if os.environ.get('TPS_SHOW_ERRORS') and ERROR_LOG:
        terminalreporter.section('TPS error messages')
        for name, oo, fails in ERROR_LOG:
            terminalreporter.write_line('%s %s' % (os.path.basename(name), ' '.join(oo or [])))
            for m in fails:
                terminalreporter.write_line('    ' + m)
