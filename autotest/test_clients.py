"""The clients users actually run, exercised for real (Debian 12 packages,
no mocks), each compared with the plain `gdal_translate` GeoTIFF of the
same .tps:

* QGIS (python3-qgis, headless: QT_QPA_PLATFORM=offscreen,
  QgsApplication([], False)): a .tps loads as a valid QgsRasterLayer through
  the "gdal" provider with the plugin on GDAL_DRIVER_PATH, with the right
  extent, CRS and size, and the QGIS map renderer draws it pixel for pixel
  (RGBA bytes, max |diff| == 0) as it draws the translated GeoTIFF with the
  same pseudocolor style, extent and size. QGIS runs in a subprocess
  (autotest/clients/qgis_render.py) so that neither a QGIS crash nor its
  init touches the pytest process.
* rioxarray + Dask distributed (python3-rioxarray, python3-distributed):
  `rioxarray.open_rasterio(x.tps, chunks=..., lock=False)` computed on a
  LocalCluster of 2 worker processes (which inherit GDAL_DRIVER_PATH and run
  the reads) is array_equal to the GeoTIFF; the workers read the persisted
  solve (.tps.model.<hash>, MODEL_SOURCE=FILE, SOLVES=0) written by the client's
  earlier open instead of each solving (docs/distributed.md).
* rasterio (python3-rasterio): `rasterio.open(x.tps).read()` is array_equal
  to the GeoTIFF, and rasterio sees the same CRS and transform.
* gdalwarp: `-t_srs EPSG:4326` (bilinear) and `-multi -wo NUM_THREADS=ALL_CPUS`
  (cubic, reprojected to UTM) of a .tps are array_equal to the same warp of
  the GeoTIFF: the warper reads the .tps through the same windows.
* docs/python.md: its ```python blocks (gdal.Open, windowed ReadAsArray,
  gdal.Translate, gdal.Info, gdal.OpenEx open options, the TPS metadata) run
  without error from a copy of the repository's data/ folder, so the
  documented example cannot rot.

A client's tests are skipped (with the reason) only when its Python package
is not installed (importlib.util.find_spec finds nothing), i.e.
scripts/install-deps.sh could not install it; an installed package that
fails to import fails the test.
"""
import glob
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from conftest import (run, DATA_DIR, PYTHON, REPO, grid_around, random_points, smooth_values,
                      subprocess_env, tps_xml, write_csv, write_tps)

CLIENTS = os.path.join(REPO, 'autotest', 'clients')
MEUSE_EXTENT = [178440.0, 329600.0, 181560.0, 333760.0]



_installed = {}

# Asked of PYTHON in a subprocess (the interpreter the clients run with):
# exit 3 when the package (argv[2], a top-level module) is not installed at
# all; any other failure to import argv[1] is the test's failure, not a
# reason to skip.
FIND_SPEC = r'''
import importlib, importlib.util, sys
if importlib.util.find_spec(sys.argv[2]) is None:
    sys.exit(3)
importlib.import_module(sys.argv[1])
'''


def need(module, package, installed=None):
    """Skip (with the reason) only when the Debian package's top-level module
    (`installed`, by default the first part of `module`) is not installed for
    PYTHON: importlib.util.find_spec finds nothing. When it is installed but
    `module` does not import, fail with the import's error."""
    installed = installed or module.split('.')[0]
    if module not in _installed:
        r = subprocess.run([PYTHON, '-c', FIND_SPEC, module, installed], env=subprocess_env(),
                           capture_output=True, text=True, timeout=120)
        _installed[module] = r
    r = _installed[module]
    if r.returncode == 3:
        pytest.skip('%s is not installed for %s: the Debian package %s is missing; '
                    'scripts/install-deps.sh installs it' % (installed, PYTHON, package))
    assert r.returncode == 0, '%s is installed but does not import:\n%s' % (module,
                                                                           r.stderr[-3000:])


def read_all(path):
    ds = gdal.Open(str(path))
    assert ds is not None, path
    return ds.ReadAsArray()


def translate(tps, tif):
    run(['gdal_translate', '-q', tps, tif])
    return str(tif)


@pytest.fixture
def meuse(tmp_path):
    """data/meuse_zinc.tps (312 x 416, Float32, EPSG:28992) in a scratch copy
    (its model file is written there, not in the repository), and its GeoTIFF."""
    for f in ('meuse.csv', 'meuse_zinc.tps'):
        shutil.copy(os.path.join(DATA_DIR, f), tmp_path / f)
    tps = str(tmp_path / 'meuse_zinc.tps')
    return {'tps': tps, 'tif': translate(tps, tmp_path / 'meuse_zinc.tif'), 'dir': tmp_path}


@pytest.fixture
def synth64(tmp_path):
    """A Float64 .tps in UTM 31N with an odd size (333 x 251) and 100 x 70
    blocks, so that neither rioxarray's chunks nor QGIS tiles line up."""
    rng = np.random.default_rng(5)
    x, y = random_points(300, rng, 600000.0, 5700000.0, 20000.0, 15000.0)
    z = smooth_values(x, y, rng) + 300
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'v': z})
    gt = grid_around(x, y, 333, 251)
    tps = write_tps(tmp_path / 's.tps', tps_xml('p.csv', ['v'], points_srs='EPSG:32631',
                                                geotransform=gt, size=(333, 251),
                                                data_type='Float64', block_size=(100, 70)))
    return {'tps': tps, 'tif': translate(tps, tmp_path / 's.tif'), 'dir': tmp_path, 'gt': gt}


# --------------------------------------------------------------------------
# QGIS
# --------------------------------------------------------------------------

def qgis_render(outdir, rasters, scale=1):
    env = subprocess_env()
    env['QT_QPA_PLATFORM'] = 'offscreen'
    env.setdefault('XDG_RUNTIME_DIR', str(outdir))
    env['HOME'] = str(outdir)  # QGIS writes its profile under HOME
    args = [PYTHON, os.path.join(CLIENTS, 'qgis_render.py')]
    if scale != 1:
        args += ['--scale', str(scale)]
    out_json = os.path.join(str(outdir), 'qgis.json')
    pngs = []
    args.append(out_json)
    for r in rasters:
        png = os.path.join(str(outdir), os.path.basename(r) + '.qgis.png')
        args += [r, png]
        pngs.append(png)
    run(args, env=env, timeout=300)
    with open(out_json) as f:
        return json.load(f), pngs


def png_rgba(path):
    ds = gdal.Open(path)
    assert ds is not None and ds.RasterCount == 4, path
    return ds.ReadAsArray().astype(np.int16)


def test_qgis_renders_tps_like_its_geotiff(meuse):
    need('qgis.core', 'python3-qgis')
    report, (png_tps, png_tif) = qgis_render(meuse['dir'], [meuse['tps'], meuse['tif']])
    lt, lg = report['layers']
    for layer in (lt, lg):
        assert layer['valid'], layer
        assert layer['provider'] == 'gdal'
        assert layer['crs'] == 'EPSG:28992'
        assert layer['bands'] == 1
        assert (layer['width'], layer['height']) == (312, 416)
        assert np.allclose(layer['extent'], MEUSE_EXTENT, rtol=0, atol=1e-6), layer['extent']
        assert layer['render_errors'] == [] and layer['saved'], layer
        assert layer['image_size'] == [312, 416]
    assert 'TPS' in lt['driver'] and 'GTiff' in lg['driver'], (lt['driver'], lg['driver'])
    a, b = png_rgba(png_tps), png_rgba(png_tif)
    assert a.shape == (4, 416, 312)
    # not a blank image: opaque everywhere, many colours
    assert (a[3] == 255).all()
    assert len(np.unique(a[:3].reshape(3, -1), axis=1)[0]) > 100
    diff = np.abs(a - b)
    assert diff.max() == 0, 'QGIS renders differ: %d pixels, max |diff| %d' % (
        (diff.max(axis=0) > 0).sum(), diff.max())


def test_qgis_renders_float64_utm_tps_like_its_geotiff(synth64):
    need('qgis.core', 'python3-qgis')
    report, (png_tps, png_tif) = qgis_render(synth64['dir'], [synth64['tps'], synth64['tif']])
    gt = synth64['gt']
    extent = [gt[0], gt[3] + 251 * gt[5], gt[0] + 333 * gt[1], gt[3]]
    for layer in report['layers']:
        assert layer['valid'] and layer['crs'] == 'EPSG:32631', layer
        assert (layer['width'], layer['height']) == (333, 251)
        assert np.allclose(layer['extent'], extent, rtol=0, atol=1e-6)
        assert layer['render_errors'] == []
    a, b = png_rgba(png_tps), png_rgba(png_tif)
    assert (a[3] == 255).all()
    assert np.abs(a - b).max() == 0


def test_docs_qgis_picture():
    """The QGIS render kept for the docs exists, is the meuse map and is linked."""
    png = os.path.join(REPO, 'docs', 'img', 'qgis_meuse_zinc.png')
    ds = gdal.Open(png)
    assert ds is not None and ds.RasterCount == 4
    assert ds.RasterXSize * 416 == ds.RasterYSize * 312
    with open(os.path.join(REPO, 'docs', 'python.md')) as f:
        assert 'img/qgis_meuse_zinc.png' in f.read()


# --------------------------------------------------------------------------
# rioxarray + Dask distributed, rasterio
# --------------------------------------------------------------------------

@pytest.mark.parametrize('which,chunk', [('meuse', 100), ('synth64', 64)])
def test_rioxarray_dask_distributed_equals_translate(which, chunk, request):
    need('rioxarray', 'python3-rioxarray')
    need('dask.distributed', 'python3-distributed', installed='distributed')
    d = request.getfixturevalue(which)
    # the fixture's gdal_translate opened the .tps: the solve is persisted
    assert glob.glob(glob.escape(d['tps']) + '.model.*')
    out_npy, out_json = str(d['dir'] / 'dask.npy'), str(d['dir'] / 'dask.json')
    run([PYTHON, os.path.join(CLIENTS, 'dask_read.py'), d['tps'], out_npy, out_json, chunk],
        cwd=str(d['dir']), timeout=300)
    with open(out_json) as f:
        info = json.load(f)
    arr = np.load(out_npy)
    ref = read_all(d['tif'])
    ref = ref.reshape((1,) + ref.shape) if ref.ndim == 2 else ref
    assert arr.dtype == ref.dtype and arr.shape == ref.shape, (arr.dtype, arr.shape, ref.shape)
    assert np.array_equal(arr, ref)
    # really distributed: 2 worker processes (not the client) did the reads
    assert info['workers'] == 2 and info['client_pid'] not in info['worker_pids'], info
    assert info['chunks'] > 4
    assert info['worker_pids_used'] and set(info['worker_pids_used']) <= set(info['worker_pids'])
    assert info['driver_path_on_workers'] == [os.environ['GDAL_DRIVER_PATH']]
    # ... reading the persisted solve, not solving again
    assert info['worker_model_source'] == ['FILE'], info
    assert info['worker_solves'] == ['0'], info
    ds = gdal.Open(d['tif'])
    assert np.allclose(info['transform'], [ds.GetGeoTransform()[i] for i in (1, 2, 0, 4, 5, 3)],
                       rtol=0, atol=1e-9)
    assert info['crs'] and ('28992' in info['crs'] or '32631' in info['crs'])


RASTERIO_READ = '''
import json, sys
import numpy as np
import rasterio
with rasterio.open(sys.argv[1]) as src:
    np.save(sys.argv[2], src.read())
    json.dump({"driver": src.driver, "crs": src.crs.to_epsg(), "transform": list(src.transform)[:6],
               "dtypes": list(src.dtypes), "nodata": src.nodata,
               "tps": src.tags(ns="TPS")}, open(sys.argv[3], "w"))
'''


@pytest.mark.parametrize('which', ['meuse', 'synth64'])
def test_rasterio_read_equals_translate(which, request):
    need('rasterio', 'python3-rasterio')
    d = request.getfixturevalue(which)
    out_npy, out_json = str(d['dir'] / 'rio.npy'), str(d['dir'] / 'rio.json')
    run([PYTHON, '-c', RASTERIO_READ, d['tps'], out_npy, out_json])
    with open(out_json) as f:
        info = json.load(f)
    ref = read_all(d['tif'])
    arr = np.load(out_npy)
    assert np.array_equal(arr, ref.reshape(arr.shape)) and arr.dtype == ref.dtype
    assert info['driver'] == 'TPS'
    assert info['crs'] == (28992 if which == 'meuse' else 32631)
    assert info['tps'].get('POINT_COUNT') == ('155' if which == 'meuse' else '300')


# --------------------------------------------------------------------------
# gdalwarp
# --------------------------------------------------------------------------

WARPS = {
    't_srs_4326': ['-t_srs', 'EPSG:4326', '-r', 'bilinear'],
    'multi_threads': ['-multi', '-wo', 'NUM_THREADS=ALL_CPUS', '-t_srs', 'EPSG:32631',
                      '-r', 'cubic', '-wm', '1'],
}


@pytest.mark.parametrize('which', ['meuse', 'synth64'])
@pytest.mark.parametrize('warp', sorted(WARPS))
def test_gdalwarp_tps_equals_warp_of_geotiff(warp, which, request):
    d = request.getfixturevalue(which)
    if warp == 'multi_threads' and which == 'synth64':
        opts = ['-multi', '-wo', 'NUM_THREADS=ALL_CPUS', '-t_srs', 'EPSG:3857', '-r', 'cubic',
                '-wm', '1']
    else:
        opts = WARPS[warp]
    a, b = str(d['dir'] / 'w_tps.tif'), str(d['dir'] / 'w_tif.tif')
    run(['gdalwarp', '-q', '-overwrite'] + opts + [d['tps'], a])
    run(['gdalwarp', '-q', '-overwrite'] + opts + [d['tif'], b])
    da, db = gdal.Open(a), gdal.Open(b)
    assert (da.RasterXSize, da.RasterYSize) == (db.RasterXSize, db.RasterYSize)
    assert np.allclose(da.GetGeoTransform(), db.GetGeoTransform(), rtol=1e-12, atol=0)
    assert da.GetProjection() == db.GetProjection()
    x, y = da.ReadAsArray(), db.ReadAsArray()
    assert np.array_equal(x, y), 'max |diff| %g' % np.nanmax(np.abs(x.astype(float) - y))


# --------------------------------------------------------------------------
# docs/python.md
# --------------------------------------------------------------------------

def test_python_md_example_runs(tmp_path):
    with open(os.path.join(REPO, 'docs', 'python.md')) as f:
        blocks = re.findall(r'^```python\n(.*?)^```', f.read(), re.S | re.M)
    assert len(blocks) >= 2
    code = '\n'.join(blocks)
    for name in ('gdal.Open(', 'ReadAsArray(', 'gdal.Translate(', 'gdal.Info(', 'gdal.OpenEx(',
                 "GetMetadata('TPS')"):
        assert name in code, name
    shutil.copytree(DATA_DIR, tmp_path / 'data')
    r = run([PYTHON, '-c', code], cwd=str(tmp_path))
    assert 'TPS 312 416 1' in r.stdout, r.stdout
