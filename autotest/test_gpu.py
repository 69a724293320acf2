"""The GPU path through GDAL: DEVICE=GPU/AUTO/CPU, PRECISION, TOLERANCE, DEVICE_UPLOADS.

Whether there is a GPU is asked of the CUDA driver (conftest.gpu_expected),
not of the plugin. Where the probe finds none (this project's CI, any
machine without an NVIDIA driver, or CUDA_VISIBLE_DEVICES=), the fallback
test runs: DEVICE=GPU fails at open with a message naming the GPU, AUTO
evaluates on the CPU and reports it. Where it finds one, the parity and
sharing test runs instead, and a DEVICE=GPU open that fails is a failure:
DOUBLE within 1e-9 and MIXED within TOLERANCE (1e-5) of the value range of
the CPU path with its MIXED_* metadata, and one upload of the model for many
blocks and bands read through two handles. Each test that does not apply is skipped with the reason. (The GPU
host has no GDAL Python bindings: there autotest/c/test_gdal_gpu.cpp checks
the same, run by bench/gpu_host.sh.)
"""
import numpy as np
import pytest

from conftest import (assert_open_fails, md, open_tps, random_points, smooth_values, tps_xml,
                      write_csv, write_tps)


@pytest.fixture
def gpu_tps(tmp_path):
    rng = np.random.default_rng(11)
    x, y = random_points(600, rng, 350000.0, 5600000.0, 3000.0)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'a': smooth_values(x, y, rng),
                                   'b': 3 * x - 2 * y + smooth_values(x, y, rng)})
    xml = tps_xml('p.csv', ['a', {'field': 'b', 'smoothing': 1e4}],
                  geotransform=[349900.0, 7.0, 0, 5603100.0, 0, -7.0], size=(512, 448),
                  block_size=(64, 64), data_type='Float64')
    return write_tps(tmp_path / 'gpu.tps', xml)


def test_precision_option_checked(gpu_tps):
    assert_open_fails(gpu_tps, 'gpu.tps', 'PRECISION', open_options=['PRECISION=HALF'])
    for bad in ('0', '-1e-5', 'abc', 'nan', 'inf'):
        assert_open_fails(gpu_tps, 'gpu.tps', 'TOLERANCE', open_options=['TOLERANCE=' + bad])


@pytest.mark.parametrize('precision', ['MIXED', 'AUTO'])
def test_cpu_device_reports_cpu(gpu_tps, precision):
    ds, cap = open_tps(gpu_tps, ['DEVICE=CPU', 'PRECISION=' + precision, 'TOLERANCE=1e-3'])
    assert ds is not None, cap.errors
    ref, _ = open_tps(gpu_tps, ['DEVICE=CPU'])
    # the CPU evaluates in double whatever PRECISION says
    np.testing.assert_array_equal(ds.ReadAsArray(), ref.ReadAsArray())
    assert md(ds, 'DEVICE') == 'CPU'
    assert md(ds, 'DEVICE_UPLOADS') == '0'
    assert md(ds, 'MIXED_BLOCKS') is None and md(ds, 'TOLERANCE') is None


def test_fallback_without_gpu(gpu_tps, needs_no_gpu):
    assert_open_fails(gpu_tps, 'gpu.tps', 'GPU', open_options=['DEVICE=GPU'])
    auto, cap = open_tps(gpu_tps, ['DEVICE=AUTO'])
    cpu, _ = open_tps(gpu_tps, ['DEVICE=CPU'])
    assert auto is not None, cap.errors
    assert md(auto, 'DEVICE') == 'CPU'
    np.testing.assert_array_equal(auto.ReadAsArray(), cpu.ReadAsArray())
    assert md(auto, 'DEVICE_UPLOADS') == '0'


def test_gpu_parity_and_one_upload(gpu_tps, needs_gpu):
    cpu, _ = open_tps(gpu_tps, ['DEVICE=CPU'])
    ref = cpu.ReadAsArray()
    rng_ = ref.reshape(2, -1).ptp(axis=1)
    a, cap = open_tps(gpu_tps, ['DEVICE=GPU'])
    assert a is not None, 'the probe finds %s, yet DEVICE=GPU fails: %r' % (needs_gpu, cap.errors)
    b, _ = open_tps(gpu_tps, ['DEVICE=GPU'])
    assert md(a, 'DEVICE') == 'GPU'
    # 64 blocks x 2 bands through two handles
    for by in range(7):
        for bx in range(8):
            for k in (1, 2):
                h = a if (bx + by + k) % 2 else b
                blk = np.frombuffer(h.GetRasterBand(k).ReadBlock(bx, by), dtype=np.float64)
                blk = blk.reshape(64, 64)
                ref_blk = ref[k - 1, by * 64:(by + 1) * 64, bx * 64:(bx + 1) * 64]
                assert np.abs(blk - ref_blk).max() <= 1e-9 * rng_[k - 1]
    assert md(a, 'DEVICE_UPLOADS') == '1' and md(b, 'DEVICE_UPLOADS') == '1'
    for precision in ('MIXED', 'AUTO'):
        mixed, _ = open_tps(gpu_tps, ['DEVICE=GPU', 'PRECISION=' + precision])
        got = mixed.ReadAsArray()
        for k in range(2):
            assert np.abs(got[k] - ref[k]).max() <= 1e-5 * rng_[k]
        assert md(mixed, 'DEVICE_UPLOADS') == '1'
        assert md(mixed, 'PRECISION') == precision and md(mixed, 'TOLERANCE') == '1e-05'
        assert int(md(mixed, 'MIXED_BLOCKS')) > 0
        assert md(mixed, 'MIXED_CHECK_FAILURES') == '0'
        assert 0 <= int(md(mixed, 'MIXED_FALLBACK_BLOCKS')) <= int(md(mixed, 'MIXED_BLOCKS'))
        assert float(md(mixed, 'MIXED_MAX_ERROR_ESTIMATE')) <= 1e-5
