"""Local mode through GDAL (docs/design.md, "Local mode"; docs/format.md).

* <Mode>/MODE, <PatchPoints>/PATCH_POINTS, <Overlap>/OVERLAP parsed, bad
  values refused with a message naming them;
* MODE=GLOBAL and MODE=LOCAL of the same points agree (Franke, 3000
  points) within the engine test's bounds; metadata MODE and PATCHES;
* AUTO: GLOBAL for small N, LOCAL when TPS_MAX_MEMORY is too small for
  the dense system;
* a block-by-block read equals a whole read, byte for byte;
* lambda = 0: exact at the data points, read back through the raster, not
  taken from the engine's own MAX_ABS_RESIDUAL: 1500 points at random
  pixel centres of a 512 x 512 grid, each value read as its pixel of a
  whole read and (every 10th) of a 1 x 1 window, for LOCAL and GLOBAL
  models; the reported MAX_ABS_RESIDUAL agrees with what was read;
* a model file of a global solve is never used for MODE=LOCAL, nor one of
  a local solve for MODE=GLOBAL (the file holds the latest solve);
* DEVICE=GPU on a local model evaluates on the GPU, as the CPU does (where
  the probe finds a GPU, conftest.gpu_expected; there a DEVICE=GPU open
  that fails is a failure; on the GPU host test_gdal_gpu share checks it).
"""
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import (assert_open_fails, md, open_tps, tps_xml, write_csv, write_tps)


def franke(x, y):
    return (0.75 * np.exp(-((9 * x - 2) ** 2 + (9 * y - 2) ** 2) / 4)
            + 0.75 * np.exp(-((9 * x + 1) ** 2) / 49 - (9 * y + 1) / 10)
            + 0.5 * np.exp(-((9 * x - 7) ** 2 + (9 * y - 3) ** 2) / 4)
            - 0.2 * np.exp(-((9 * x - 4) ** 2) - (9 * y - 7) ** 2))


GT = (0.0, 1.0 / 64, 0.0, 1.0, 0.0, -1.0 / 64)


def make(tmp_path, n=3000, seed=5, extra='', name='f'):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    z = franke(x, y)
    write_csv(tmp_path / (name + '.csv'), {'x': x, 'y': y, 'z': z})
    path = write_tps(tmp_path / (name + '.tps'),
                     tps_xml(name + '.csv', ['z'], geotransform=GT, size=(64, 64),
                             data_type='Float64', block_size=(16, 16), extra=extra))
    return path, (x, y, z)


def read(path, options):
    ds, cap = open_tps(path, options)
    assert ds is not None, cap.errors
    return ds, ds.GetRasterBand(1).ReadAsArray()


def test_global_and_local_agree(tmp_path):
    path, (x, y, z) = make(tmp_path)
    rng_z = z.max() - z.min()
    dg, ag = read(path, ['MODE=GLOBAL', 'MODEL_CACHE=NO'])
    dl, al = read(path, ['MODE=LOCAL', 'PATCH_POINTS=200', 'MODEL_CACHE=NO'])
    assert md(dg, 'MODE') == 'GLOBAL' and md(dg, 'PATCHES') == '0'
    assert md(dl, 'MODE') == 'LOCAL' and int(md(dl, 'PATCHES')) >= 16
    assert md(dl, 'DEVICE') == 'CPU'
    diff = np.abs(ag - al)
    # the grid (pixel centres 1/128 .. 127/128) lies within the points' box
    assert diff.max() <= 5e-3 * rng_z, diff.max()
    assert np.sqrt(np.mean(diff ** 2)) <= 1e-4 * rng_z


@pytest.mark.parametrize('mode', ['LOCAL', 'GLOBAL'])
def test_exact_at_data_points(tmp_path, mode):
    size = 512
    rng = np.random.default_rng(17)
    cells = rng.choice(size * size, 1500, replace=False)
    rows, cols = cells // size, cells % size
    gt = (0.0, 1.0 / size, 0.0, 1.0, 0.0, -1.0 / size)
    # pixel centres, exact in binary: the engine evaluates at these doubles
    x, y = gt[0] + (cols + 0.5) * gt[1], gt[3] + (rows + 0.5) * gt[5]
    z = franke(x, y)
    write_csv(tmp_path / 'c.csv', {'x': x, 'y': y, 'z': z})
    path = write_tps(tmp_path / 'c.tps', tps_xml('c.csv', ['z'], geotransform=gt,
                                                 size=(size, size), data_type='Float64'))
    ds, whole = read(path, ['MODE=' + mode, 'PATCH_POINTS=100', 'MODEL_CACHE=NO'])
    assert md(ds, 'MODE') == mode
    if mode == 'LOCAL':
        assert int(md(ds, 'PATCHES')) >= 8
    rng_z = np.ptp(z)
    err = np.abs(whole[rows, cols] - z)
    assert err.max() <= 1e-9 * rng_z, err.max() / rng_z
    # each point alone: a 1 x 1 window (the fast path evaluates just it)
    ds1, _ = read(path, ['MODE=' + mode, 'PATCH_POINTS=100', 'MODEL_CACHE=NO'])
    for i in range(0, len(z), 10):
        v = ds1.ReadAsArray(int(cols[i]), int(rows[i]), 1, 1)
        assert v.shape == (1, 1) and abs(v[0, 0] - z[i]) <= 1e-9 * rng_z, (i, v, z[i])
    # the engine's own figure agrees with what was read
    assert abs(float(md(ds, 'MAX_ABS_RESIDUAL')) - err.max()) <= 1e-12 * rng_z


def test_auto(tmp_path):
    path, _ = make(tmp_path, n=400)
    ds, _ = read(path, ['MODEL_CACHE=NO'])
    assert md(ds, 'MODE') == 'GLOBAL'
    # the dense system of 400 points is 1.3 MB: under a 1 MB limit AUTO goes local
    gdal.SetConfigOption('TPS_MAX_MEMORY', '1000000')
    try:
        ds, _ = read(path, ['MODEL_CACHE=NO', 'PATCH_POINTS=50'])
    finally:
        gdal.SetConfigOption('TPS_MAX_MEMORY', None)
    assert md(ds, 'MODE') == 'LOCAL'
    assert int(md(ds, 'PATCHES')) >= 4


def test_memory_guard_local(tmp_path):
    path, _ = make(tmp_path, n=400)
    gdal.SetConfigOption('TPS_MAX_MEMORY', '2000')
    try:
        cap = assert_open_fails(path, 'f.tps', ['local solve', 'TPS_MAX_MEMORY', '2000 bytes'],
                                ['MODE=LOCAL', 'MODEL_CACHE=NO'])
    finally:
        gdal.SetConfigOption('TPS_MAX_MEMORY', None)
    assert cap.failures


def test_elements_and_blocks(tmp_path):
    extra = '<Mode>LOCAL</Mode>\n  <PatchPoints>100</PatchPoints>\n  <Overlap>1.3</Overlap>'
    path, _ = make(tmp_path, n=1500, extra=extra)
    ds, whole = read(path, ['MODEL_CACHE=NO'])
    assert md(ds, 'MODE') == 'LOCAL' and int(md(ds, 'PATCHES')) >= 16
    band = ds.GetRasterBand(1)
    blocks = np.empty_like(whole)
    for yo in range(0, 64, 16):
        for xo in range(0, 64, 16):
            blocks[yo:yo + 16, xo:xo + 16] = band.ReadAsArray(xo, yo, 16, 16)
    assert blocks.tobytes() == whole.tobytes()
    # odd windows in a fresh handle (no block cache shared)
    ds2, _ = read(path, ['MODEL_CACHE=NO'])
    w = ds2.GetRasterBand(1).ReadAsArray(7, 9, 33, 21)
    assert w.tobytes() == whole[9:30, 7:40].tobytes()
    # the options override the elements
    ds3, g = read(path, ['MODEL_CACHE=NO', 'MODE=GLOBAL'])
    assert md(ds3, 'MODE') == 'GLOBAL'


@pytest.mark.parametrize('opt,value,words', [
    ('MODE', 'PATCHY', ['MODE', 'AUTO, GLOBAL or LOCAL']),
    ('PATCH_POINTS', '5', ['PATCH_POINTS', '20']),
    ('PATCH_POINTS', '12.5', ['PATCH_POINTS', 'integer']),
    ('OVERLAP', '1', ['OVERLAP', '> 1']),
    ('OVERLAP', 'nan', ['OVERLAP']),
])
def test_bad_options(tmp_path, opt, value, words):
    path, _ = make(tmp_path, n=50)
    assert_open_fails(path, 'f.tps', words, ['%s=%s' % (opt, value)])


def test_bad_element(tmp_path):
    path, _ = make(tmp_path, n=50, extra='<Overlap>9</Overlap>')
    assert_open_fails(path, 'f.tps', ['<Overlap>', '<= 4'])


def test_collinear_local(tmp_path):
    t = np.linspace(0, 1, 100)
    write_csv(tmp_path / 'l.csv', {'x': t, 'y': 2 * t + 1, 'z': t})
    path = write_tps(tmp_path / 'l.tps', tps_xml('l.csv', ['z'], size=(10, 10),
                                                 extent=(0, 0, 1, 1)))
    assert_open_fails(path, 'l.tps', ['one line'], ['MODE=LOCAL', 'MODEL_CACHE=NO'])


def test_model_file_not_shared(tmp_path):
    """GLOBAL and LOCAL are two configurations: each has its own model
    file, neither serves the other, and both stay."""
    path, _ = make(tmp_path, n=300)
    ds, ag = read(path, ['MODE=GLOBAL'])
    global_file = md(ds, 'MODEL_FILE')
    assert os.path.exists(global_file) and md(ds, 'MODEL_SOURCE') == 'SOLVED'
    del ds
    before = open(global_file, 'rb').read()
    ds, al = read(path, ['MODE=LOCAL', 'PATCH_POINTS=50'])
    # solved, not read from the global file, and kept in a file of its own
    local_file = md(ds, 'MODEL_FILE')
    assert md(ds, 'MODE') == 'LOCAL' and md(ds, 'MODEL_SOURCE') == 'SOLVED'
    assert local_file != global_file and os.path.exists(local_file)
    assert open(global_file, 'rb').read() == before
    assert not np.array_equal(ag, al)
    del ds
    ds, al2 = read(path, ['MODE=LOCAL', 'PATCH_POINTS=50'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE' and al2.tobytes() == al.tobytes()
    del ds
    # the global model comes from its own file
    ds, ag2 = read(path, ['MODE=GLOBAL'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE' and ag2.tobytes() == ag.tobytes()


def test_gpu_request_on_local(tmp_path, needs_gpu):
    path, _ = make(tmp_path, n=600)
    ds, cap = open_tps(path, ['MODE=LOCAL', 'DEVICE=GPU', 'MODEL_CACHE=NO'])
    assert ds is not None, 'the probe finds %s, yet DEVICE=GPU fails: %r' % (needs_gpu, cap.errors)
    assert md(ds, 'DEVICE') == 'GPU'
    got = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
    ds_cpu, cap = open_tps(path, ['MODE=LOCAL', 'DEVICE=CPU', 'MODEL_CACHE=NO'])
    ref = ds_cpu.GetRasterBand(1).ReadAsArray().astype(np.float64)
    assert np.max(np.abs(got - ref)) <= 1e-9 * (ref.max() - ref.min()) + 1e-6 * np.abs(ref).max()
