"""Many threads, many handles: GDAL applications (QGIS render threads, gdalwarp
-multi, Dask workers with threads) read one dataset through separate handles.

* 8 threads, each with its own handle, read random windows (and whole blocks)
  of the same .tps: every window is byte-identical to the same window of a
  serial read done before the threads start.
* A handle closed while the others read does not disturb them: the shared
  solved model lives as long as any handle does (SOLVES stays 1).
"""
import threading

import numpy as np

from conftest import md, open_tps, random_points, smooth_values, tps_xml, write_csv, write_tps

THREADS = 8


def make(tmp_path):
    rng = np.random.default_rng(21)
    x, y = random_points(400, rng, 120000.0, 480000.0, 5000.0)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'a': smooth_values(x, y, rng),
                                   'b': smooth_values(x, y, rng)})
    xml = tps_xml('p.csv', ['a', {'field': 'b', 'smoothing': 500.0}],
                  geotransform=[119900.0, 25.0, 0, 485100.0, 0, -25.0], size=(210, 206),
                  block_size=(32, 32), data_type='Float64')
    return write_tps(tmp_path / 'c.tps', xml)


def windows(seed, n, cols, rows):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x0, y0 = int(rng.integers(0, cols)), int(rng.integers(0, rows))
        out.append((x0, y0, int(rng.integers(1, cols - x0 + 1)), int(rng.integers(1, rows - y0 + 1))))
    return out


def test_eight_threads_eight_handles_byte_identical(tmp_path):
    path = make(tmp_path)
    ref_ds, cap = open_tps(path, ['NUM_THREADS=2'])
    assert ref_ds is not None, cap.errors
    ref = ref_ds.ReadAsArray()  # serial, whole raster, both bands
    cols, rows = ref_ds.RasterXSize, ref_ds.RasterYSize
    bad, errors = [], []

    def reader(k):
        try:
            ds, c = open_tps(path, ['NUM_THREADS=1'])
            assert ds is not None, c.errors
            for (x0, y0, w, h) in windows(100 + k, 25, cols, rows):
                got = ds.ReadAsArray(x0, y0, w, h)
                if not np.array_equal(got, ref[:, y0:y0 + h, x0:x0 + w]):
                    bad.append((k, x0, y0, w, h))
            band = ds.GetRasterBand(1 + k % 2)
            for by in range(0, 7, 2):
                for bx in range(k % 3, 7, 3):
                    blk = np.frombuffer(band.ReadBlock(bx, by), dtype=np.float64).reshape(32, 32)
                    want = ref[k % 2, by * 32:by * 32 + 32, bx * 32:bx * 32 + 32]
                    if not np.array_equal(blk[:want.shape[0], :want.shape[1]], want):
                        bad.append((k, 'block', bx, by))
        except Exception as e:  # surfaced below, with the thread
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not bad, bad[:5]
    assert md(ref_ds, 'SOLVES') == '1'


def test_handle_closed_while_others_read(tmp_path):
    path = make(tmp_path)
    ref_ds, _ = open_tps(path)
    ref = ref_ds.ReadAsArray()
    cols, rows = ref_ds.RasterXSize, ref_ds.RasterYSize
    handles = [open_tps(path)[0] for _ in range(4)]
    assert all(h is not None for h in handles)
    start, bad, errors = threading.Barrier(4), [], []

    def reader(k):
        try:
            ds = handles[k]
            start.wait()
            for i, (x0, y0, w, h) in enumerate(windows(200 + k, 20, cols, rows)):
                if k == 0 and i == 3:
                    handles[0] = None  # this thread drops its handle mid-way ...
                    ds = None
                    ds = open_tps(path)[0]  # ... and reopens: the model is still shared
                got = ds.ReadAsArray(x0, y0, w, h)
                if not np.array_equal(got, ref[:, y0:y0 + h, x0:x0 + w]):
                    bad.append((k, x0, y0, w, h))
        except Exception as e:
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not bad, bad[:5]
    # the model never went away: still one solve in this process
    assert md(ref_ds, 'SOLVES') == '1'
