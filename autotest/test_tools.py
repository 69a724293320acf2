"""GDAL's command line tools and a plain Python one-liner work on the plugin
(run as subprocesses with GDAL_DRIVER_PATH pointing at it):

* `gdalinfo --formats` lists "TPS -raster- (rov)"; `gdalinfo --format TPS`
  lists every open option of the contract;
* `gdalinfo` describes a .tps (driver, size, CRS, -stats);
* `gdal_translate` .tps -> GTiff equals ReadAsArray, also from the TPS: form
  with -oo options (the README's example), and to an 8-bit PNG;
* `gdalwarp -t_srs EPSG:4326` of a .tps equals gdalwarp of its GTiff copy;
* the shipped data/meuse_zinc.tps opens in a `python3 -c` one-liner run from
  the repository root.
"""
import json
import os
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from conftest import (run, DATA_DIR, PYTHON, REPO, grid_around, open_tps, random_points, smooth_values,
                      subprocess_env, tps_xml, write_csv, write_tps)

OPEN_OPTIONS = ['FIELD', 'LAYER', 'XFIELD', 'YFIELD', 'SRS', 'EXTENT', 'RESOLUTION', 'SIZE',
                'SMOOTHING', 'DATA_TYPE', 'NUM_THREADS', 'DEVICE']



@pytest.fixture
def tps28992(tmp_path):
    rng = np.random.default_rng(99)
    x, y = random_points(200, rng, 179000.0, 330000.0, 3000.0, 3500.0)
    z = smooth_values(x, y, rng) + 500
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'zinc': z})
    gt = grid_around(x, y, 60, 70)
    path = write_tps(tmp_path / 'z.tps', tps_xml('p.csv', ['zinc'], points_srs='EPSG:28992',
                                                 geotransform=gt, size=(60, 70), nodata=-9999))
    return {'path': path, 'dir': tmp_path, 'x': x, 'y': y, 'z': z}


def test_plugin_registered():
    drv = gdal.GetDriverByName('TPS')
    assert drv is not None
    assert drv.GetMetadataItem(gdal.DCAP_RASTER) == 'YES'
    assert drv.GetMetadataItem(gdal.DCAP_VIRTUALIO) == 'YES'
    assert drv.GetMetadataItem(gdal.DCAP_CREATECOPY) is None
    assert drv.GetMetadataItem(gdal.DCAP_CREATE) is None


def test_gdalinfo_formats_lists_tps():
    r = run(['gdalinfo', '--formats'])
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith('TPS ')]
    assert lines, r.stdout[-2000:]
    assert lines[0].startswith('TPS -raster- (rov)'), lines


def test_gdalinfo_format_tps_lists_open_options():
    r = run(['gdalinfo', '--format', 'TPS'])
    out = r.stdout
    assert 'TPS' in out
    for opt in OPEN_OPTIONS:
        assert "name='%s'" % opt in out or 'name="%s"' % opt in out, opt
    # the device choices are listed
    for dev in ('AUTO', 'CPU', 'GPU'):
        assert dev in out


def test_gdalinfo_on_tps(tps28992):
    r = run(['gdalinfo', '-json', '-stats', tps28992['path']])
    info = json.loads(r.stdout)
    assert info['driverShortName'] == 'TPS'
    assert info['size'] == [60, 70]
    assert 'EPSG' in info['coordinateSystem']['wkt'] and '28992' in info['coordinateSystem']['wkt']
    b = info['bands'][0]
    assert b['type'] == 'Float32'
    assert b['noDataValue'] == -9999
    ds, cap = open_tps(tps28992['path'])
    a = ds.ReadAsArray().astype(float)
    # gdalinfo prints statistics with 3 decimals
    assert b['minimum'] == pytest.approx(a.min(), abs=1e-3)
    assert b['maximum'] == pytest.approx(a.max(), abs=1e-3)
    assert b['mean'] == pytest.approx(a.mean(), abs=1e-3)


def test_gdal_translate_to_gtiff_equals_read(tps28992):
    out = str(tps28992['dir'] / 'out.tif')
    run(['gdal_translate', '-q', '-of', 'GTiff', tps28992['path'], out])
    t = gdal.Open(out)
    ds, cap = open_tps(tps28992['path'])
    assert np.array_equal(t.ReadAsArray(), ds.ReadAsArray())
    assert t.GetGeoTransform() == pytest.approx(ds.GetGeoTransform(), rel=1e-15)
    assert t.GetSpatialRef().IsSame(ds.GetSpatialRef())
    assert t.GetRasterBand(1).GetNoDataValue() == -9999
    assert t.GetRasterBand(1).DataType == gdal.GDT_Float32


def test_gdal_translate_tps_syntax_readme_example(tmp_path):
    """`gdal_translate -oo FIELD=zinc -oo XFIELD=x -oo YFIELD=y -oo
    RESOLUTION=40 TPS:meuse.csv z.tif`, run in the data folder; equals the
    same from a .tps (default extent = points' bbox)."""
    out = str(tmp_path / 'z.tif')
    run(['gdal_translate', '-q', '-oo', 'FIELD=zinc', '-oo', 'XFIELD=x', '-oo', 'YFIELD=y',
         '-oo', 'RESOLUTION=40', 'TPS:meuse.csv', out], cwd=DATA_DIR)
    t = gdal.Open(out)
    assert t is not None
    gt = t.GetGeoTransform()
    assert gt[1] == 40 and gt[5] == -40
    p = write_tps(tmp_path / 'm.tps', tps_xml(os.path.join(DATA_DIR, 'meuse.csv'), ['zinc'],
                                              resolution='40'))
    ds, cap = open_tps(p)
    assert ds is not None, cap.errors
    assert ds.GetGeoTransform() == gt
    assert np.array_equal(ds.ReadAsArray(), t.ReadAsArray())


def test_gdal_translate_png(tps28992):
    out = str(tps28992['dir'] / 'out.png')
    run(['gdal_translate', '-q', '-of', 'PNG', '-ot', 'Byte', '-scale', tps28992['path'], out])
    p = gdal.Open(out)
    a = p.ReadAsArray()
    assert a.shape == (70, 60) and a.dtype == np.uint8
    assert a.max() - a.min() > 200   # scaled over the data range


def test_gdalwarp_to_4326(tps28992):
    warped = str(tps28992['dir'] / 'w.tif')
    run(['gdalwarp', '-q', '-t_srs', 'EPSG:4326', '-r', 'bilinear', tps28992['path'], warped])
    w = gdal.Open(warped)
    assert w.GetSpatialRef().GetAuthorityCode(None) == '4326'
    a = w.ReadAsArray()
    valid = a != -9999
    assert valid.sum() > 0.5 * a.size
    # the same warp of a GTiff copy (plain GDAL path) gives the same result
    copy = str(tps28992['dir'] / 'copy.tif')
    run(['gdal_translate', '-q', tps28992['path'], copy])
    warped2 = str(tps28992['dir'] / 'w2.tif')
    run(['gdalwarp', '-q', '-t_srs', 'EPSG:4326', '-r', 'bilinear', copy, warped2])
    b = gdal.Open(warped2).ReadAsArray()
    assert a.shape == b.shape
    assert np.array_equal(a == -9999, b == -9999)
    assert np.allclose(a[valid], b[valid], rtol=1e-6, atol=1e-4)
    assert a[valid].min() >= tps28992['z'].min() - 0.2 * np.ptp(tps28992['z'])


def test_python_one_liner_shipped_meuse():
    assert os.path.exists(os.path.join(DATA_DIR, 'meuse_zinc.tps')), 'data/meuse_zinc.tps is not shipped'
    r = run([PYTHON, '-c', "from osgeo import gdal; a = gdal.Open('data/meuse_zinc.tps').ReadAsArray(); "
             "print(a.shape, float(a.min()), float(a.max()))"], cwd=REPO)
    assert r.stdout.startswith('(')


def test_gdal_translate_shipped_meuse(tmp_path):
    """The README's demo path: the shipped .tps to a GeoTIFF in EPSG:28992."""
    out = str(tmp_path / 'meuse_zinc.tif')
    run(['gdal_translate', '-q', os.path.join(DATA_DIR, 'meuse_zinc.tps'), out])
    t = gdal.Open(out)
    sr = t.GetSpatialRef()
    assert sr is not None and sr.GetAuthorityCode(None) == '28992'
    a = t.ReadAsArray()
    assert np.isfinite(a).all() and np.ptp(a) > 100   # zinc ppm: 113 .. 1839 at the points
