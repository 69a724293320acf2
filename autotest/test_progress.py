"""Progress: of a long solve (CPLDebug lines, since GDAL's Open takes no
progress function) and of gdal_translate's evaluation (the progress bar).

* gdalinfo --debug on with TPS_PROGRESS_INTERVAL=0 prints a line per whole
  percent of each stage of the solve: building the system, the Cholesky
  factorisation in panels, GCV's eigendecomposition, a local model's
  patches; within a stage the percentages start at 0, strictly increase
  and end at 100;
* at most one line per interval: with the default (1 s), no more lines
  than whole seconds the run took; a bad TPS_PROGRESS_INTERVAL is a
  warning naming it, and the open succeeds;
* a read with a progress function evaluates in chunks of whole rows of
  about 2.5e8 point-pixel pairs (TPS_PROGRESS_CHUNK_PAIRS), reporting after
  each: the reported fractions are exactly the chunk boundaries, so the
  count does not depend on the machine's speed; a bad value is a warning;
* gdal.Translate's progress function is called after the driver's first
  chunk, long before GDAL's first swath is read, and then after every
  chunk (PIXELS_EVALUATED, read at each call, says how much work lay
  between two calls), with non-decreasing fractions ending at 1; the
  chunking does not change a single value.
"""
import math
import re
import time

import numpy as np
from osgeo import gdal

from conftest import (PYTHON, ErrorCapture, md, open_tps, run, tps_xml, write_csv,  # noqa: F401
                      write_tps)

LINE = re.compile(r'^TPS: (\S+): solving: (.*) (\d+)%$')


def make(tmp_path, n, name, seed=3, smoothing=None, extra='', size=64):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    z = np.sin(6 * x) * np.cos(4 * y) + 0.01 * rng.standard_normal(n)
    write_csv(tmp_path / (name + '.csv'), {'x': x, 'y': y, 'z': z})
    return write_tps(tmp_path / (name + '.tps'),
                     tps_xml(name + '.csv', ['z'], smoothing=smoothing, extra=extra,
                             geotransform=(0, 1.0 / size, 0, 1, 0, -1.0 / size),
                             size=(size, size)))


def progress_lines(path, interval='0', threads=None):
    """The solve's progress lines of gdalinfo --debug on, as
    [(stage, percent)], and gdalinfo's stderr."""
    args = ['gdalinfo', '--debug', 'on', '-oo', 'MODEL_CACHE=NO', path]
    if threads is not None:
        args[1:1] = ['-oo', 'NUM_THREADS=' + threads]
    if interval is not None:
        args[1:1] = ['--config', 'TPS_PROGRESS_INTERVAL', interval]
    r = run(args)
    out = []
    for line in r.stderr.splitlines():
        m = LINE.match(line)
        if m:
            assert m.group(1).endswith('.tps'), line
            out.append((m.group(2), int(m.group(3))))
    return out, r.stderr


def stages(lines):
    """{stage: [percent, ...]} in order; asserts each stage's structure."""
    by_stage = {}
    for stage, pct in lines:
        by_stage.setdefault(stage, []).append(pct)
    for stage, pcts in by_stage.items():
        assert pcts[0] == 0 and pcts[-1] == 100, (stage, pcts)
        assert all(b > a for a, b in zip(pcts, pcts[1:])), (stage, pcts)
    # One stage at a time: a stage's lines are contiguous.
    seen = [s for i, (s, _) in enumerate(lines) if i == 0 or lines[i - 1][0] != s]
    assert len(seen) == len(by_stage), seen
    return by_stage


def test_global_solve_progress(tmp_path):
    # 1500 points: a 1497 x 1497 Cholesky in three panels of 512.
    lines, err = progress_lines(make(tmp_path, 1500, 'g'))
    by_stage = stages(lines)
    assert set(by_stage) == {'band 1: building the 1500 x 1500 system',
                             'band 1: factorising (Cholesky, 1497 x 1497)'}, by_stage
    assert len(by_stage['band 1: factorising (Cholesky, 1497 x 1497)']) == 4, by_stage
    assert len(by_stage['band 1: building the 1500 x 1500 system']) >= 10, by_stage


def test_gcv_and_local_progress(tmp_path):
    by_stage = stages(progress_lines(make(tmp_path, 400, 'c', smoothing='GCV'))[0])
    assert by_stage['band 1: GCV: eigendecomposition (397 x 397)'] == [0, 100], by_stage
    assert 'band 1: factorising (Cholesky, 397 x 397)' in by_stage, by_stage

    # One thread: it takes (and reports) every patch, whatever the scheduler does.
    lines, _ = progress_lines(make(tmp_path, 6000, 'l', extra='<Mode>LOCAL</Mode>'
                                   '<PatchPoints>50</PatchPoints>'), threads='1')
    by_stage = stages(lines)
    assert len(by_stage) == 1, by_stage  # the patches' own solves report nothing
    (stage, pcts), = by_stage.items()
    assert re.fullmatch(r'solving \d+ patches', stage), stage
    assert len(pcts) >= 10, pcts


def test_default_interval_and_bad_value(tmp_path):
    # The default interval (1 s) allows at most one line per whole second
    # of the run, the first after one second: a rate, checked against the
    # run's own duration (any machine, fast or slow).
    path = make(tmp_path, 1500, 'q')
    t0 = time.monotonic()
    lines, err = progress_lines(path, interval=None)
    elapsed = time.monotonic() - t0
    assert len(lines) <= int(elapsed), (elapsed, lines)
    assert 'solved 1 bands over 1500' in err  # yet debug output was on
    assert len(progress_lines(path)[0]) >= 10  # interval 0: a line per percent
    lines, err = progress_lines(path, interval='soon')
    assert 'TPS_PROGRESS_INTERVAL' in err and "'soon'" in err and 'q.tps' in err, err
    assert len(lines) <= int(time.monotonic() - t0)


PROGRESS_CHUNK_PAIRS = 2.5e8  # the driver's default on the CPU (docs/format.md)


def chunk_rows(pairs, points, width):
    """Rows per chunk by the documented rule: whole rows, at least one."""
    return max(1, math.floor(pairs / (points * width)))


def band_read_fractions(ds, height=1024):
    """The fractions a read of the first `height` rows reports. (GDAL's
    Python bindings pass on a report only 1% after the last one: keep the
    chunks above 1% of the read.)"""
    calls = []
    raw = ds.GetRasterBand(1).ReadRaster(0, 0, ds.RasterXSize, height,
                                         callback=lambda f, m, d: calls.append(f) or 1)
    assert raw is not None
    return calls, raw


def expected_fractions(rows, height):
    return [min(k * rows, height) / height for k in range(1, math.ceil(height / rows) + 1)]


def test_read_progress_in_chunks_of_pairs(tmp_path):
    path = make(tmp_path, 2000, 'c', size=1024)
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    # The default: 2.5e8 pairs of 2000 points over rows of 1024 pixels.
    rows = chunk_rows(PROGRESS_CHUNK_PAIRS, 2000, 1024)
    assert rows == 122
    calls, raw = band_read_fractions(ds)
    assert calls == expected_fractions(rows, 1024), calls
    # Set: 20 rows' worth of pairs (a read of 256 rows: 13 reports); less
    # than a row: one row (a read of 50 rows: 50 reports).
    for pairs, rows, height in ((2000 * 1024 * 20, 20, 256), (2000 * 1024 * 20 + 5, 20, 256),
                                (1000, 1, 50)):
        gdal.SetConfigOption('TPS_PROGRESS_CHUNK_PAIRS', str(pairs))
        try:
            calls, chunked = band_read_fractions(ds, height)
        finally:
            gdal.SetConfigOption('TPS_PROGRESS_CHUNK_PAIRS', None)
        assert calls == expected_fractions(rows, height), (pairs, calls[:5])
        assert chunked == raw[:len(chunked)]  # chunking changes no byte
    # A bad value: a warning naming it, and the default.
    gdal.SetConfigOption('TPS_PROGRESS_CHUNK_PAIRS', 'often')
    try:
        with ErrorCapture() as cap:
            calls, chunked = band_read_fractions(ds, 256)
    finally:
        gdal.SetConfigOption('TPS_PROGRESS_CHUNK_PAIRS', None)
    assert any('TPS_PROGRESS_CHUNK_PAIRS' in w and "'often'" in w and 'c.tps' in w
               for w in cap.warnings), cap.errors
    assert calls == expected_fractions(122, 256) and chunked == raw[:len(chunked)]


def test_translate_progress_is_steady(tmp_path):
    # 2000 points on 1024 x 1024: 2e9 point-pixel pairs, chunks of 122 rows.
    path = make(tmp_path, 2000, 't', size=1024)
    ds, cap = open_tps(path)  # the solve, before the copy
    assert ds is not None, cap.errors
    rows = chunk_rows(PROGRESS_CHUNK_PAIRS, 2000, 1024)
    calls = []

    def progress(fraction, message, data):
        calls.append((fraction, int(ds.GetMetadataItem('PIXELS_EVALUATED', 'TPS'))))
        return 1

    out = gdal.Translate(str(tmp_path / 'out.tif'), ds, callback=progress)
    assert out is not None
    fractions = [f for f, _ in calls]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[-1] == 1.0, fractions
    # The first report after work comes after exactly one chunk: before
    # GDAL has read its first swath (GDAL reports only at swath ends, and a
    # swath is whole blocks of 256 rows here).
    first = next(p for f, p in calls if p > 0)
    assert first == rows * 1024, calls
    assert first < 256 * 1024
    # Steady: never more than one chunk of work between two reports.
    pixels = [p for _, p in calls]
    assert pixels[-1] == 1024 * 1024, calls
    assert max(b - a for a, b in zip(pixels, pixels[1:])) <= rows * 1024, calls
    # Chunking is invisible in the values: the plain, unchunked read.
    np.testing.assert_array_equal(out.GetRasterBand(1).ReadAsArray(),
                                  ds.GetRasterBand(1).ReadAsArray())
