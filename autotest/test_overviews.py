"""Virtual overviews: a zoomed-out read evaluates the spline at the coarser
pixel centres and costs about the pixels it returns.

* levels of factor 2, 4, 8, ... while the larger side stays >= 256 pixels,
  sized ceil(size / factor), each over the raster's extent (pixel size =
  extent / overview size);
* an overview read is byte-identical (Float64) to a .tps written with that
  overview's grid: the overview's geotransform is computed as
  gt[1] * (X / ovX) etc. in double, the same operations as here, and the
  engine turns a geotransform into pixel centres one way
  (tps_grid_from_geotransform), so both evaluate at the same doubles;
  and it matches scipy's spline at those centres (independent reference);
* a 1000 x 1000 downsampled read of a 65536 x 65536 raster evaluates about
  10^6 pixels (the TPS metadata item PIXELS_EVALUATED), not 4.3e9, through
  the band, the dataset, gdal.Translate and gdal_translate -outsize 1% 1%;
* downsampled values are the spline at overview pixel centres (GDAL's
  nearest pick among them), not averages of full-resolution pixels.
"""
import math
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from conftest import (assert_close64, grid_around, random_points, scipy_grid, scipy_tps,
                      smooth_values, subprocess_env, tps_xml, write_csv, write_tps)

BIG = 65536


def pixels(ds):
    return int(ds.GetMetadataItem('PIXELS_EVALUATED', 'TPS'))


def ovr_gt(gt, xsize, ysize, ovx, ovy):
    sx, sy = xsize / ovx, ysize / ovy
    return (gt[0], gt[1] * sx, gt[2] * sy, gt[3], gt[4] * sx, gt[5] * sy)


@pytest.fixture(scope='module')
def points(tmp_path_factory):
    d = tmp_path_factory.mktemp('ovr')
    rng = np.random.default_rng(7)
    x, y = random_points(60, rng, 1000.0, 2000.0, 800.0, 600.0)
    z = smooth_values(x, y, rng)
    write_csv(d / 'p.csv', {'x': x, 'y': y, 'z': z, 'w': 2 * z + x / 100})
    return {'dir': d, 'x': x, 'y': y, 'z': z, 'w': 2 * z + x / 100}


def make_tps(points, name, gt, size, data_type='Float64', bands=('z',)):
    return write_tps(points['dir'] / name,
                     tps_xml('p.csv', list(bands), geotransform=gt, size=size,
                             data_type=data_type))


def big_gt():
    return (900.0, 1000.0 / BIG, 0.0, 2700.0, 0.0, -800.0 / BIG)


@pytest.mark.parametrize('size, expected', [
    ((1025, 777), [(513, 389), (257, 195)]),
    ((511, 300), [(256, 150)]),
    ((510, 1000), [(255, 500)]),
    ((400, 300), []),
    ((BIG, BIG), [(BIG >> k, BIG >> k) for k in range(1, 9)]),
])
def test_overview_count_and_sizes(points, size, expected):
    gt = grid_around(points['x'], points['y'], *size)
    ds = gdal.Open(make_tps(points, 'sizes.tps', gt, size))
    for b in (1,):
        band = ds.GetRasterBand(b)
        got = [(band.GetOverview(i).XSize, band.GetOverview(i).YSize)
               for i in range(band.GetOverviewCount())]
        assert got == expected
        assert band.GetOverview(band.GetOverviewCount()) is None
        assert band.GetOverview(-1) is None
        for i, (ovx, ovy) in enumerate(expected):
            # GDAL's own sizing rule, and the extent kept.
            f = 2 ** (i + 1)
            assert (ovx, ovy) == (math.ceil(size[0] / f), math.ceil(size[1] / f))
            ovr = band.GetOverview(i)
            assert ovr.GetOverviewCount() == 0  # no overviews of overviews
            ods = ovr.GetDataset()
            assert ods is not None and ods.RasterCount == ds.RasterCount
            assert ods.GetGeoTransform() == pytest.approx(ovr_gt(gt, size[0], size[1], ovx, ovy),
                                                         rel=0, abs=0)
    assert pixels(ds) == 0  # opening evaluates nothing


@pytest.mark.parametrize('rotated', [False, True])
def test_overview_equals_direct_evaluation(points, rotated):
    size = (1025, 777)
    gt = list(grid_around(points['x'], points['y'], *size))
    if rotated:
        gt[2], gt[4] = 0.1 * gt[1], 0.05 * abs(gt[5])
    ds = gdal.Open(make_tps(points, 'main.tps', gt, size, bands=('z', 'w')))
    band = ds.GetRasterBand(1)
    assert band.GetOverviewCount() == 2
    for i in range(2):
        ovr = band.GetOverview(i)
        ovx, ovy = ovr.XSize, ovr.YSize
        ogt = ovr_gt(gt, size[0], size[1], ovx, ovy)
        direct = gdal.Open(make_tps(points, 'direct%d.tps' % i, ogt, (ovx, ovy),
                                    bands=('z', 'w')))
        for b in (1, 2):
            want = direct.GetRasterBand(b).ReadAsArray()
            # Fast path (straight into the buffer), one band.
            got = ds.GetRasterBand(b).GetOverview(i).ReadAsArray()
            assert np.array_equal(got, want), 'overview %d band %d' % (i, b)
            # Through the block cache: a block of the overview.
            bx, by = ovr.GetBlockSize()
            blk = np.frombuffer(ds.GetRasterBand(b).GetOverview(i).ReadBlock(1, 0),
                                dtype=np.float64).reshape(by, bx)
            w = want[:by, bx:2 * bx]
            assert np.array_equal(blk[:w.shape[0], :w.shape[1]], w)
        # Both bands at once through the overview data set.
        both = ovr.GetDataset().ReadAsArray()
        assert np.array_equal(both[0], direct.GetRasterBand(1).ReadAsArray())
        assert np.array_equal(both[1], direct.GetRasterBand(2).ReadAsArray())
        # Independent reference: scipy at the overview's pixel centres.
        ref = scipy_grid(points['x'], points['y'], points['z'], 0.0, ogt, ovx, ovy)
        assert_close64(both[0], ref, np.ptp(ref), rel=1e-8, what='overview %d vs scipy' % i)


def test_downsampled_read_evaluates_overview_pixels_not_averages(points):
    size = (1025, 777)
    gt = grid_around(points['x'], points['y'], *size)
    ds = gdal.Open(make_tps(points, 'main.tps', gt, size))
    # 257 x 195 is the factor-4 overview's size: GDAL picks it, 1:1.
    got = ds.GetRasterBand(1).ReadAsArray(buf_xsize=257, buf_ysize=195)
    assert pixels(ds) == 257 * 195
    ogt = ovr_gt(gt, size[0], size[1], 257, 195)
    ref = scipy_grid(points['x'], points['y'], points['z'], 0.0, ogt, 257, 195)
    rng = np.ptp(ref)
    assert_close64(got, ref, rng, rel=1e-8, what='downsampled vs scipy at overview centres')
    # Not an average of the full-resolution pixels each one covers.
    full = ds.GetRasterBand(1).ReadAsArray()
    sx, sy = size[0] / 257, size[1] / 195
    avg = np.array([[full[int(r * sy):int((r + 1) * sy), int(c * sx):int((c + 1) * sx)].mean()
                     for c in range(257)] for r in range(195)])
    assert np.max(np.abs(got - avg)) > 1e-6 * rng
    # The dataset path (both of GDAL's routes: TryOverviewRasterIO) agrees.
    assert np.array_equal(ds.ReadAsArray(buf_xsize=257, buf_ysize=195), got)


@pytest.fixture(scope='module')
def big(points):
    return make_tps(points, 'big.tps', big_gt(), (BIG, BIG), data_type='Float32')


def nearest_rows(n_src, n_buf):
    """The source pixel GDAL's nearest-neighbour RasterIO picks for each
    buffer pixel: the one under the buffer pixel's centre."""
    return np.floor((np.arange(n_buf) + 0.5) * (n_src / n_buf)).astype(int)


@pytest.mark.parametrize('how', ['band', 'dataset', 'readraster'])
def test_big_downsampled_read_costs_screen_pixels(points, big, how):
    ds = gdal.Open(big)
    assert (ds.RasterXSize, ds.RasterYSize) == (BIG, BIG)
    if how == 'band':
        a = ds.GetRasterBand(1).ReadAsArray(buf_xsize=1000, buf_ysize=1000)
    elif how == 'dataset':
        a = ds.ReadAsArray(buf_xsize=1000, buf_ysize=1000)
    else:
        raw = ds.GetRasterBand(1).ReadRaster(0, 0, BIG, BIG, 1000, 1000,
                                             buf_type=gdal.GDT_Float64)
        a = np.frombuffer(raw, dtype=np.float64).reshape(1000, 1000)
    n = pixels(ds)
    # The factor-64 overview (1024 x 1024) read once, then GDAL's nearest:
    # the work is counted (PIXELS_EVALUATED), not timed.
    assert n == 1024 * 1024
    a = np.asarray(a, dtype=float).reshape(1000, 1000)
    assert np.all(np.isfinite(a))
    # Values: the spline at the picked 1024^2-overview pixel centres.
    ovr = ds.GetRasterBand(1).GetOverview(5)
    assert (ovr.XSize, ovr.YSize) == (1024, 1024)
    full_ovr = ovr.ReadAsArray().astype(float)
    idx = nearest_rows(1024, 1000)
    assert np.array_equal(a, full_ovr[np.ix_(idx, idx)])
    ogt = ovr_gt(big_gt(), BIG, BIG, 1024, 1024)
    f = scipy_tps(points['x'], points['y'], points['z'])
    sel = idx[::37]
    cx = ogt[0] + (sel + 0.5) * ogt[1]
    cy = ogt[3] + (sel + 0.5) * ogt[5]
    X, Y = np.meshgrid(cx, cy)
    ref = f(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)
    err = np.max(np.abs(a[::37, ::37] - ref))
    assert err <= 1e-6 * np.max(np.abs(ref)) + 1e-8 * np.ptp(ref), err


def test_gdal_translate_outsize_uses_overview(points, big, tmp_path):
    out = str(tmp_path / 'small.tif')
    r = subprocess.run(['gdal_translate', '-q', '-outsize', '1%', '1%', big, out],
                       env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    small = gdal.Open(out)
    assert (small.RasterXSize, small.RasterYSize) == (655, 655)
    got = small.ReadAsArray()
    # Same pixels as the overview read with GDAL's nearest pick.
    ds = gdal.Open(big)
    full_ovr = ds.GetRasterBand(1).GetOverview(5).ReadAsArray()
    idx = nearest_rows(1024, 655)
    assert np.array_equal(got, full_ovr[np.ix_(idx, idx)])
    # In-process, the source handle's counter shows the overview was used.
    ds = gdal.Open(big)
    gdal.Translate('/vsimem/ovr_small.tif', ds, widthPct=1, heightPct=1)
    gdal.Unlink('/vsimem/ovr_small.tif')
    assert pixels(ds) == 1024 * 1024


def test_full_resolution_reads_are_counted(points):
    size = (300, 200)
    gt = grid_around(points['x'], points['y'], *size)
    ds = gdal.Open(make_tps(points, 'small.tps', gt, size, bands=('z', 'w')))
    assert ds.GetRasterBand(1).GetOverviewCount() == 0
    ds.ReadAsArray(10, 20, 30, 40)  # fast path, both bands in one pass
    assert pixels(ds) == 30 * 40
    ds.GetRasterBand(1).ReadAsArray(0, 0, 30, 40, buf_type=gdal.GDT_Int32)  # one block
    assert pixels(ds) == 30 * 40 + 256 * 200


def test_gdalinfo_lists_overviews_and_counter(big):
    r = subprocess.run(['gdalinfo', '-mdd', 'TPS', big], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ('Overviews: 32768x32768, 16384x16384, 8192x8192, 4096x4096, 2048x2048, '
            '1024x1024, 512x512, 256x256') in r.stdout
    assert 'PIXELS_EVALUATED=0' in r.stdout
    assert 'POINT_COUNT=60' in r.stdout
