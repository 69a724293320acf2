"""Progress: of a long solve (CPLDebug lines, since GDAL's Open takes no
progress function) and of gdal_translate's evaluation (the progress bar).

* gdalinfo --debug on with TPS_PROGRESS_INTERVAL=0 prints a line per whole
  percent of each stage of the solve: building the system, the Cholesky
  factorisation in panels, GCV's eigendecomposition, a local model's
  patches; within a stage the percentages start at 0, strictly increase
  and end at 100;
* with the default interval (1 s) a quick solve prints none; a bad
  TPS_PROGRESS_INTERVAL is a warning naming it, and the open succeeds;
* gdal.Translate's progress function is called early (within the first
  30% of the run), many times, with non-decreasing fractions ending at 1,
  and the chunking that drives it does not change a single value.
"""
import re
import time

import numpy as np
from osgeo import gdal

from conftest import PYTHON, md, open_tps, run, tps_xml, write_csv, write_tps  # noqa: F401

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
    path = make(tmp_path, 200, 'q')
    lines, err = progress_lines(path, interval=None)
    assert lines == [], lines  # a solve of 0.01 s says nothing
    assert 'solved 1 bands over 200' in err  # yet debug output was on
    lines, err = progress_lines(path, interval='soon')
    assert 'TPS_PROGRESS_INTERVAL' in err and "'soon'" in err and 'q.tps' in err, err
    assert lines == [], lines


def test_translate_progress_is_steady(tmp_path):
    # ~2e9 point-pixel pairs: a few seconds on a 2-core VM.
    path = make(tmp_path, 2000, 't', size=1024)
    ds, cap = open_tps(path)  # the solve, outside the timed run
    assert ds is not None, cap.errors
    calls = []
    t0 = time.monotonic()

    def progress(fraction, message, data):
        calls.append((time.monotonic() - t0, fraction))
        return 1

    out = gdal.Translate(str(tmp_path / 'out.tif'), ds, callback=progress)
    total = time.monotonic() - t0
    assert out is not None
    fractions = [f for _, f in calls]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[-1] == 1.0, fractions
    moving = [(t, f) for t, f in calls if 0.0 < f < 1.0]
    assert len(moving) >= 8, (total, calls)
    assert moving[0][0] <= 0.3 * total, (total, calls)
    # Chunking is invisible in the values: the plain, unchunked read.
    np.testing.assert_array_equal(out.GetRasterBand(1).ReadAsArray(),
                                  ds.GetRasterBand(1).ReadAsArray())
