"""Reading: windows, blocks, buffer types, bands, threads and metadata.

* random RasterIO windows (1x1, partial blocks, whole raster) equal the
  slice of the whole read bit for bit (a pixel's value does not depend on
  the window it is read through); ReadBlock over all blocks tiles to the
  whole read;
  Byte / Int16 / Float32 buffer types equal numpy's conversion of the
  Float64 read; a decimated read stays within the surface's range;
* multi-band: each band equals its scipy reference (different fields and
  lambdas), and ds.ReadAsArray / ReadRaster (any band order) equal the
  per-band reads;
* two threads with their own handles read byte-identical rasters to a serial
  read;
* metadata domain TPS: POINT_COUNT (distinct points), SMOOTHING,
  SOLVE_SECONDS, MAX_ABS_RESIDUAL (vs scipy), DEVICE, SOLVES (1 after two
  opens of the same file; a changed point source is solved again).
"""
import struct
import threading
import time

import numpy as np
import pytest
from osgeo import gdal

from conftest import (assert_close64, grid_around, md, open_tps, random_points, scipy_ds_ref,
                      scipy_tps, smooth_values, tps_xml, write_csv, write_tps)


def _ok(path, oo=None):
    ds, cap = open_tps(path, oo)
    assert ds is not None, cap.errors
    return ds


@pytest.fixture
def blocky(tmp_path):
    """50 x 37 Float64 raster in 16 x 16 blocks over 200 points."""
    rng = np.random.default_rng(202)
    x, y = random_points(200, rng, 640000.0, 5200000.0, 5000.0)
    z = smooth_values(x, y, rng) + 60.0
    write_csv(tmp_path / 'b.csv', {'x': x, 'y': y, 'z': z})
    gt = grid_around(x, y, 50, 37)
    path = write_tps(tmp_path / 'b.tps', tps_xml('b.csv', ['z'], geotransform=gt, size=(50, 37),
                                                 block_size=(16, 16), data_type='Float64',
                                                 smoothing=1e3))
    return {'path': path, 'x': x, 'y': y, 'z': z}


def test_full_read_matches_scipy(blocky):
    ds = _ok(blocky['path'])
    assert ds.GetRasterBand(1).GetBlockSize() == [16, 16]
    a = ds.ReadAsArray()
    assert a.shape == (37, 50)
    assert_close64(a, scipy_ds_ref(ds, blocky['x'], blocky['y'], blocky['z'], 1e3), np.ptp(blocky['z']))


def test_random_windows_equal_full_read(blocky):
    full = _ok(blocky['path']).ReadAsArray()
    r = np.ptp(full)
    rng = np.random.default_rng(1)
    wins = [(0, 0, 1, 1), (49, 36, 1, 1), (15, 15, 2, 2), (16, 16, 16, 16), (48, 32, 2, 5),
            (0, 0, 50, 37), (3, 0, 47, 1), (0, 5, 1, 32), (31, 31, 19, 6)]
    for _ in range(60):
        xs, ys = rng.integers(1, 51), rng.integers(1, 38)
        wins.append((int(rng.integers(0, 51 - xs)), int(rng.integers(0, 38 - ys)), int(xs), int(ys)))
    # twice through one fresh handle: first with an empty block cache, then
    # with whatever the first pass left cached
    ds = _ok(blocky['path'])
    band = ds.GetRasterBand(1)
    for _pass in range(2):
        for (xo, yo, xs, ys) in wins:
            w = band.ReadAsArray(xo, yo, xs, ys, buf_xsize=xs, buf_ysize=ys)
            assert w.shape == (ys, xs)
            assert np.array_equal(w, full[yo:yo + ys, xo:xo + xs]), (
                str((xo, yo, xs, ys)), np.max(np.abs(w - full[yo:yo + ys, xo:xo + xs])) / r)
    # raw ReadRaster bytes of a window decode to the same values
    ds2 = _ok(blocky['path'])
    raw = ds2.GetRasterBand(1).ReadRaster(7, 9, 13, 11)
    w = np.frombuffer(raw, dtype=np.float64).reshape(11, 13)
    assert np.array_equal(w, full[9:20, 7:20])


def test_read_blocks_tile_full(blocky):
    full = _ok(blocky['path']).ReadAsArray()
    ds = _ok(blocky['path'])
    band = ds.GetRasterBand(1)
    bx, by = band.GetBlockSize()
    out = np.full(full.shape, np.nan)
    nbx, nby = (50 + bx - 1) // bx, (37 + by - 1) // by
    assert (nbx, nby) == (4, 3)
    for j in range(nby):
        for i in range(nbx):
            raw = band.ReadBlock(i, j)
            assert len(raw) == bx * by * 8
            blk = np.frombuffer(raw, dtype=np.float64).reshape(by, bx)
            h, w = min(by, 37 - j * by), min(bx, 50 - i * bx)
            out[j * by:j * by + h, i * bx:i * bx + w] = blk[:h, :w]
    assert not np.isnan(out).any()
    assert np.array_equal(out, full)


@pytest.mark.parametrize('buf_type,np_type,lo,hi', [
    (gdal.GDT_Byte, np.uint8, 0, 255),
    (gdal.GDT_Int16, np.int16, -32768, 32767),
    (gdal.GDT_Float32, np.float32, None, None),
])
def test_buffer_type_conversion(blocky, buf_type, np_type, lo, hi):
    """Reads into another buffer type: GDAL's conversion of the Float64
    values (rounded and clamped for integers)."""
    full = _ok(blocky['path']).ReadAsArray()
    scale_ds = _ok(blocky['path'])
    a = scale_ds.GetRasterBand(1).ReadAsArray(buf_type=buf_type)
    assert a.dtype == np_type and a.shape == full.shape
    if lo is None:
        assert np.array_equal(a, full.astype(np.float32))
    else:
        expect = np.clip(full, lo, hi)
        assert np.all(np.abs(a.astype(float) - expect) <= 0.5 + 1e-9)
        # the data do span several integer values (not a trivial check)
        assert len(np.unique(a)) > 20
    # a window into the odd type as well
    w = scale_ds.GetRasterBand(1).ReadAsArray(13, 5, 30, 20, buf_type=buf_type)
    assert np.array_equal(w, a[5:25, 13:43])


def test_decimated_read(blocky):
    """buf smaller than the window (overview-like read): right shape, finite,
    within the surface's range; close to the full-resolution surface at the
    sampled area (the surface is smooth at this scale)."""
    full = _ok(blocky['path']).ReadAsArray()
    ds = _ok(blocky['path'])
    band = ds.GetRasterBand(1)
    d = band.ReadAsArray(0, 0, 50, 37, buf_xsize=25, buf_ysize=12)
    assert d.shape == (12, 25)
    assert np.isfinite(d).all()
    r = np.ptp(full)
    assert d.min() >= full.min() - 0.1 * r and d.max() <= full.max() + 0.1 * r


@pytest.fixture
def multiband(tmp_path):
    rng = np.random.default_rng(303)
    x, y = random_points(300, rng, 120000.0, 480000.0, 8000.0, 6000.0)
    a = smooth_values(x, y, rng)
    b = 0.002 * (x - 120000) ** 1.5 / 100 + 50 * np.cos((y - 480000) / 900)
    c = rng.uniform(0, 10, 300)
    write_csv(tmp_path / 'mb.csv', {'x': x, 'y': y, 'fa': a, 'fb': b, 'fc': c})
    lams = [0.0, 4e6, 1e5]
    gt = grid_around(x, y, 64, 48)
    path = write_tps(tmp_path / 'mb.tps',
                     tps_xml('mb.csv', [{'field': 'fa', 'smoothing': lams[0]},
                                        {'field': 'fb', 'smoothing': lams[1]},
                                        {'field': 'fc', 'smoothing': lams[2]}],
                             geotransform=gt, size=(64, 48), data_type='Float64',
                             block_size=(32, 16)))
    return {'path': path, 'x': x, 'y': y, 'vals': [a, b, c], 'lams': lams}


def test_multiband_each_band_matches_scipy(multiband):
    ds = _ok(multiband['path'])
    assert ds.RasterCount == 3
    x, y = multiband['x'], multiband['y']
    for i, (v, lam) in enumerate(zip(multiband['vals'], multiband['lams'])):
        ref = scipy_ds_ref(ds, x, y, v, lam)
        assert_close64(ds.GetRasterBand(i + 1).ReadAsArray(), ref, np.ptp(v), what='band %d' % (i + 1))
    # guard: band 2's lambda matters
    ref0 = scipy_ds_ref(ds, x, y, multiband['vals'][1], 0.0)
    assert np.max(np.abs(ref0 - scipy_ds_ref(ds, x, y, multiband['vals'][1], 4e6))) > 1e-3 * np.ptp(multiband['vals'][1])


def test_multiband_all_at_once_equals_per_band(multiband):
    per = []
    for i in (1, 2, 3):
        one = _ok(multiband['path'])   # a fresh handle per band
        per.append(one.GetRasterBand(i).ReadAsArray())
        one = None
    ds = _ok(multiband['path'])   # fresh handle: nothing cached per band
    allb = ds.ReadAsArray()
    assert allb.shape == (3, 48, 64)
    for i in range(3):
        assert np.array_equal(allb[i], per[i])
    ds = _ok(multiband['path'])
    raw = ds.ReadRaster(5, 3, 40, 30, band_list=[3, 1])
    arr = np.frombuffer(raw, dtype=np.float64).reshape(2, 30, 40)
    assert np.array_equal(arr[0], per[2][3:33, 5:45])
    assert np.array_equal(arr[1], per[0][3:33, 5:45])
    # pixel-interleaved buffer
    ds = _ok(multiband['path'])
    raw = ds.ReadRaster(0, 0, 64, 48, buf_pixel_space=24, buf_line_space=24 * 64, buf_band_space=8)
    arr = np.frombuffer(raw, dtype=np.float64).reshape(48, 64, 3)
    for i in range(3):
        assert np.array_equal(arr[:, :, i], per[i])


def test_two_threads_separate_handles(multiband):
    serial_ds = _ok(multiband['path'])
    serial = serial_ds.ReadRaster()
    serial_strips = {r0: serial_ds.ReadRaster(0, r0, 64, min(7, 48 - r0), band_list=[1, 2, 3])
                     for r0 in range(0, 48, 7)}
    serial_ds = None
    results, errors = {}, []

    def work(k):
        try:
            ds = gdal.Open(multiband['path'])
            assert ds is not None
            out = []
            for rep in range(3):
                # different window orders in each thread
                rows = range(0, 48, 7) if (k + rep) % 2 == 0 else reversed(range(0, 48, 7))
                bands = {}
                for r0 in rows:
                    h = min(7, 48 - r0)
                    bands[r0] = ds.ReadRaster(0, r0, 64, h, band_list=[1, 2, 3])
                whole = ds.ReadRaster()
                out.append((bands, whole))
            results[k] = out
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    ser = np.frombuffer(serial, dtype=np.float64).reshape(3, 48, 64)
    for k in range(2):
        for bands, whole in results[k]:
            # byte-identical to the same reads done serially
            assert whole == serial
            for r0, raw in bands.items():
                assert raw == serial_strips[r0], 'strip at row %d differs' % r0
                # and the strips are the whole raster's rows
                h = min(7, 48 - r0)
                blk = np.frombuffer(raw, dtype=np.float64).reshape(3, h, 64)
                assert np.array_equal(blk, ser[:, r0:r0 + h, :])


# ---------------------------------------------------------------- metadata

def test_metadata_lambda0(tmp_path):
    rng = np.random.default_rng(404)
    x, y = random_points(180, rng, 0.0, 0.0, 1.0)
    z = smooth_values(x, y, rng)
    # 7 exact duplicate rows (same x, y, z): not distinct points
    X, Y, Z = np.r_[x, x[:7]], np.r_[y, y[:7]], np.r_[z, z[:7]]
    write_csv(tmp_path / 'm.csv', {'x': X, 'y': Y, 'z': Z})
    path = write_tps(tmp_path / 'm.tps', tps_xml('m.csv', ['z'], size=(20, 20),
                                                 extent=(0, 0, 1, 1)))
    t0 = time.perf_counter()
    ds = _ok(path)
    elapsed = time.perf_counter() - t0
    m = ds.GetMetadata('TPS')
    assert m, 'no metadata in domain TPS'
    distinct = len({(a, b) for a, b in zip(X, Y)})
    assert distinct == 180
    assert int(m['POINT_COUNT']) == distinct
    assert float(m['SMOOTHING']) == 0.0
    s = float(m['SOLVE_SECONDS'])
    assert 0.0 <= s <= elapsed + 0.05
    assert float(m['MAX_ABS_RESIDUAL']) < 1e-9 * np.ptp(z)
    assert m['DEVICE'] == 'CPU'
    assert m['SOLVES'] == '1'


@pytest.mark.parametrize('lam', [1e-3, 2e-2])
def test_metadata_residual_matches_scipy(tmp_path, lam):
    rng = np.random.default_rng(505)
    x, y = random_points(250, rng, 0.0, 0.0, 1.0)
    z = smooth_values(x, y, rng, noise=0.2)
    write_csv(tmp_path / 'r.csv', {'x': x, 'y': y, 'z': z})
    path = write_tps(tmp_path / 'r.tps', tps_xml('r.csv', ['z'], size=(10, 10), extent=(0, 0, 1, 1),
                                                 smoothing=lam))
    ds = _ok(path)
    res = np.max(np.abs(scipy_tps(x, y, z, lam)(np.column_stack([x, y])) - z))
    assert res > 1e-3 * np.ptp(z)  # lambda > 0 leaves real residuals
    got = float(md(ds, 'MAX_ABS_RESIDUAL'))
    assert abs(got - res) <= 1e-6 * res + 1e-9 * np.ptp(z), (got, res)
    assert float(md(ds, 'SMOOTHING')) == pytest.approx(lam, rel=1e-12)
    assert md(ds, 'POINT_COUNT') == '250'


def test_solves_once_for_two_handles(tmp_path):
    rng = np.random.default_rng(606)
    x, y = random_points(300, rng, 1000.0, 1000.0, 100.0)
    z = smooth_values(x, y, rng)
    write_csv(tmp_path / 's.csv', {'x': x, 'y': y, 'z': z})
    path = write_tps(tmp_path / 's.tps', tps_xml('s.csv', ['z'], size=(30, 30), data_type='Float64',
                                                 extent=(1000, 1000, 1100, 1100)))
    ds1 = _ok(path)
    ds2 = _ok(path)
    assert md(ds1, 'SOLVES') == '1'
    assert md(ds2, 'SOLVES') == '1'
    assert ds1.ReadRaster() == ds2.ReadRaster()
    ds1 = ds2 = None


def test_changed_source_is_solved_again(tmp_path):
    """Same .tps, point source rewritten (another point count and values)
    while an old handle is still open: the new handle reflects the new
    data; the old handle keeps the old surface."""
    rng = np.random.default_rng(707)
    x, y = random_points(120, rng, 0.0, 0.0, 10.0)
    z1 = smooth_values(x, y, rng)
    csv = tmp_path / 'c.csv'
    write_csv(csv, {'x': x, 'y': y, 'z': z1})
    path = write_tps(tmp_path / 'c.tps', tps_xml('c.csv', ['z'], size=(25, 25), extent=(0, 0, 10, 10),
                                                 data_type='Float64'))
    old = _ok(path)
    a_old = old.ReadAsArray()
    z2 = z1[:110] * -0.5 + 3.0
    write_csv(csv, {'x': x[:110], 'y': y[:110], 'z': z2})
    new = _ok(path)
    assert_close64(new.ReadAsArray(), scipy_ds_ref(new, x[:110], y[:110], z2, 0), np.ptp(z2))
    assert md(new, 'POINT_COUNT') == '110'
    assert np.array_equal(old.ReadAsArray(), a_old)
    assert_close64(a_old, scipy_ds_ref(old, x, y, z1, 0), np.ptp(z1))


def test_band_value_bytes_are_native_doubles(tmp_path):
    """A single pixel read through ReadRaster as bytes decodes to the value
    scipy gives at that pixel centre."""
    rng = np.random.default_rng(808)
    x, y = random_points(60, rng, 0.0, 0.0, 4.0)
    z = smooth_values(x, y, rng)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'z': z})
    ds = _ok(write_tps(tmp_path / 'p.tps', tps_xml('p.csv', ['z'], geotransform=(0, 0.25, 0, 4, 0, -0.25),
                                                   size=(16, 16), data_type='Float64')))
    raw = ds.GetRasterBand(1).ReadRaster(3, 11, 1, 1)
    (v,) = struct.unpack('=d', raw)
    ref = scipy_tps(x, y, z)([[0.25 * 3.5, 4 - 0.25 * 11.5]])[0]
    assert abs(v - ref) <= 1e-8 * np.ptp(z)


def test_shared_model_cache_keeps_definitions_apart(tmp_path):
    """Several .tps on one point source, differing only in what the model
    depends on (field, lambda, <Where>, XField/YField swap), all open at the
    same time: each has its own surface (scipy), none is served another's
    cached model; the first definition on another grid is still right."""
    rng = np.random.default_rng(909)
    x, y = random_points(150, rng, 0.0, 0.0, 100.0)
    z = smooth_values(x, y, rng)
    w = np.cos(x / 20.0) * 30 + y
    grp = np.where(np.arange(150) % 3 == 0, 'a', 'b')
    write_csv(tmp_path / 'k.csv', {'x': x, 'y': y, 'z': z, 'w': w, 'grp': grp})
    kw = dict(size=(30, 30), extent=(0, 0, 100, 100), data_type='Float64')
    k = grp == 'a'
    cases = [
        ({}, ['z'], (x, y, z, 0.0)),
        ({}, ['w'], (x, y, w, 0.0)),
        ({'smoothing': 50.0}, ['z'], (x, y, z, 50.0)),
        ({'where': "grp = 'a'"}, ['z'], (x[k], y[k], z[k], 0.0)),
        ({'xfield': 'y', 'yfield': 'x'}, ['z'], (y, x, z, 0.0)),
    ]
    handles = []
    for i, (extra, bands, ref) in enumerate(cases):
        args = dict(kw)
        args.update(extra)
        ds = _ok(write_tps(tmp_path / ('k%d.tps' % i), tps_xml('k.csv', bands, **args)))
        handles.append((ds, ref))
    for ds, (rx, ry, rz, lam) in handles:
        assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, rx, ry, rz, lam), np.ptp(rz))
    # the first definition again, another grid (a model may be shared)
    ds = _ok(write_tps(tmp_path / 'k_grid.tps', tps_xml('k.csv', ['z'], size=(17, 11),
                                                        extent=(-10, -10, 110, 110),
                                                        data_type='Float64')))
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x, y, z, 0.0), np.ptp(z))
