"""Curvature bands through GDAL (issue 12): profile_curvature,
tangential_curvature and mean_curvature are rows of the engine's quantity
table, which a .tps file reaches with no driver code of their own.

References, none of them the engine's derivative code:
  - finite differences of our own value band (central first and second
    differences, the mixed one from the four diagonal neighbours) put into
    GRASS v.surf.rst's formulas, written out here from their definitions:
    the difference to the curvature bands must shrink like h^2 between two
    steps, on a global and on a LOCAL model;
  - a plane: every curvature is 0;
and the plumbing: any window, block or thread split gives the bytes of the
full read; the band metadata (QUANTITY, QUANTITY_DESCRIPTION, unit,
description) comes from the table; docs/format.md documents exactly the
quantities the driver accepts (the names its error message lists, which it
takes from the table).
"""
import os
import re

import numpy as np
import pytest
from osgeo import gdal

from conftest import (ErrorCapture, md, open_tps, random_points, smooth_values, tps_xml,
                      write_csv, write_tps)

CURVATURES = ['profile_curvature', 'tangential_curvature', 'mean_curvature']
FORMAT_MD = os.path.join(os.path.dirname(__file__), '..', 'docs', 'format.md')


def bands(quantities, field='elev'):
    return [dict(field=field, quantity=q) for q in quantities]


def open_grid(d, name, gt, size, quantities, **kw):
    path = write_tps(d / name, tps_xml('pts.csv', bands(quantities), geotransform=gt,
                                       size=size, data_type='Float64', **kw))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    return ds


def curvatures_fd(f, h):
    """Profile, tangential and mean curvature of the interior cells of f, a
    north-up grid of square cells of side h (rows run south, y north), from
    central differences (second order), by GRASS v.surf.rst's formulas:
    p = fx^2 + fy^2, q = 1 + p,
    profile = (fxx fx^2 + 2 fxy fx fy + fyy fy^2) / (p q^3/2),
    tangential = (fxx fy^2 - 2 fxy fx fy + fyy fx^2) / (p q^1/2),
    mean = ((1 + fy^2) fxx - 2 fxy fx fy + (1 + fx^2) fyy) / (2 q^3/2)."""
    c = f[1:-1, 1:-1]
    east, west = f[1:-1, 2:], f[1:-1, :-2]
    north, south = f[:-2, 1:-1], f[2:, 1:-1]
    fx, fy = (east - west) / (2 * h), (north - south) / (2 * h)
    fxx, fyy = (east - 2 * c + west) / h ** 2, (north - 2 * c + south) / h ** 2
    fxy = (f[:-2, 2:] - f[:-2, :-2] - f[2:, 2:] + f[2:, :-2]) / (4 * h * h)
    p = fx * fx + fy * fy
    q = 1 + p
    profile = (fxx * fx * fx + 2 * fxy * fx * fy + fyy * fy * fy) / (p * q ** 1.5)
    tangential = (fxx * fy * fy - 2 * fxy * fx * fy + fyy * fx * fx) / (p * np.sqrt(q))
    mean = ((1 + fy * fy) * fxx - 2 * fxy * fx * fy + (1 + fx * fx) * fyy) / (2 * q ** 1.5)
    return (profile, tangential, mean), np.sqrt(p)


def far_from(X, Y, x, y, dist):
    """Cells farther than dist from every data point: the spline's third and
    fourth derivatives, which set the differences' error, are singular at
    the points."""
    d2 = np.full(X.shape, np.inf)
    for px, py in zip(x, y):
        d2 = np.minimum(d2, (X - px) ** 2 + (Y - py) ** 2)
    return d2 > dist * dist


def fd_errors(ds, col, row, size, h, gt, pts, dist, extra_keep=None):
    """Reads a size x size window (one cell of margin each side) of the value
    band and the three curvature bands (bands 1..4), returns for each
    curvature the max and median |analytic - differences| over the kept
    interior cells, relative to the largest |curvature| there. Kept: cells
    `dist` from every point, where the slope is not small (profile and
    tangential curvature divide by |grad f|^2) and extra_keep(X, Y)."""
    f, *curv = ds.ReadAsArray(col, row, size, size)
    fd, grad = curvatures_fd(f, h)
    c, r = np.meshgrid(np.arange(1, size - 1) + 0.5, np.arange(1, size - 1) + 0.5)
    X, Y = gt[0] + (col + c) * h, gt[3] - (row + r) * h
    near = (np.abs(pts['x'] - X.mean()) < size * h) & (np.abs(pts['y'] - Y.mean()) < size * h)
    keep = far_from(X, Y, pts['x'][near], pts['y'][near], dist) & (grad > 0.1 * grad.max())
    if extra_keep is not None:
        keep &= extra_keep(X, Y)
    assert keep.mean() > 0.3, keep.mean()
    out = []
    for analytic, numeric in zip(curv, fd):
        err = np.abs(analytic[1:-1, 1:-1] - numeric)[keep]
        scale = np.max(np.abs(analytic[1:-1, 1:-1][keep]))
        assert np.isfinite(err).all() and scale > 0
        out.append((err.max() / scale, np.median(err) / scale))
    return out


# ------------------------------------------------------------------ global

@pytest.fixture(scope='module')
def wiggly(tmp_path_factory):
    """150 points over 1 km, a smooth field of ~200 m relief, interpolated
    exactly (the fixture of test_derivatives.py)."""
    d = tmp_path_factory.mktemp('curv_wiggly')
    rng = np.random.default_rng(7)
    x, y = random_points(150, rng, 500000.0, 4000000.0, 1000.0)
    z = smooth_values(x, y, rng, noise=0.0)
    write_csv(d / 'pts.csv', {'x': x, 'y': y, 'elev': z})
    return {'dir': d, 'x': x, 'y': y}


def test_global_finite_differences(wiggly):
    """On a 600 m window at steps 4 m and 2 m, each curvature band against
    the differences of the value band: the largest error shrinks like h^2
    (ratio ~4, asserted > 3) and is small at 2 m (asserted < 1e-3 of the
    window's largest curvature; measured 1e-4 to 3.5e-4)."""
    errors = {}
    for h in (4.0, 2.0):
        n = int(round(600.0 / h)) + 2
        gt = (500200.0 - h, h, 0.0, 4000800.0 + h, 0.0, -h)
        ds = open_grid(wiggly['dir'], 'g_%g.tps' % h, gt, (n, n), ['value'] + CURVATURES)
        errors[h] = fd_errors(ds, 0, 0, n, h, gt, wiggly, 16.0)
    print('global: coarse', errors[4.0], 'fine', errors[2.0])
    for q, (ec, _), (ef, _) in zip(CURVATURES, errors[4.0], errors[2.0]):
        assert ef < 1e-3, '%s: differences off by %.3g x scale' % (q, ef)
        assert ec / ef > 3.0, '%s: error does not shrink like h^2 (%.3g -> %.3g)' % (q, ec, ef)


def test_plane_is_flat(tmp_path):
    """A tilted plane: the spline is the plane, every curvature 0 (the
    second derivatives of order |grad| / extent would be ~1e-5), global and
    local models alike."""
    rng = np.random.default_rng(3)
    x, y = random_points(600, rng, 300000.0, 5000000.0, 2000.0)
    write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'elev': 140.0 + 0.031 * x - 0.047 * y})
    gt = (299900.0, 25.0, 0.0, 5002100.0, 0.0, -25.0)
    for mode in ('GLOBAL', 'LOCAL'):
        ds = open_grid(tmp_path, 'plane_%s.tps' % mode, gt, (88, 88), CURVATURES,
                       extra='<Mode>%s</Mode><PatchPoints>100</PatchPoints>' % mode)
        assert md(ds, 'MODE') == mode
        arr = ds.ReadAsArray()
        assert np.isfinite(arr).all()
        assert np.max(np.abs(arr)) < 1e-12, (mode, np.max(np.abs(arr), axis=(1, 2)))


# ------------------------------------------------------------------- local

LOCAL_X0, LOCAL_Y0, LOCAL_EXT = 600000.0, 5000000.0, 2000.0


@pytest.fixture(scope='module')
def local(tmp_path_factory):
    """~2,500 points over 2 km (a grid 40 m apart, jittered), a smooth field
    of ~400 m relief, a LOCAL model of PatchPoints 100 (a few dozen
    patches)."""
    d = tmp_path_factory.mktemp('curv_local')
    rng = np.random.default_rng(11)
    n = int(LOCAL_EXT // 40.0)
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    x = LOCAL_X0 + (i.ravel() + 0.2 + 0.6 * rng.random(i.size)) * 40.0
    y = LOCAL_Y0 + (j.ravel() + 0.2 + 0.6 * rng.random(j.size)) * 40.0
    z = 2 * smooth_values(x, y, rng, noise=0.0)
    write_csv(d / 'pts.csv', {'x': x, 'y': y, 'elev': z})
    return {'dir': d, 'x': x, 'y': y, 'box': (x.min(), y.min(), x.max(), y.max()),
            'extra': '<Mode>LOCAL</Mode><PatchPoints>100</PatchPoints>'}


def local_grid(local, name, h, quantities, **kw):
    """A north-up grid of cells of side h over the points' box and 100 m
    around it."""
    n = int(round((LOCAL_EXT + 200.0) / h))
    gt = (LOCAL_X0 - 100.0, h, 0.0, LOCAL_Y0 + LOCAL_EXT + 100.0, 0.0, -h)
    ds = open_grid(local['dir'], name, gt, (n, n), quantities, extra=local['extra'], **kw)
    assert md(ds, 'MODE') == 'LOCAL' and int(md(ds, 'PATCHES')) > 16
    return ds, gt


def test_local_finite_differences(local):
    """A LOCAL model's curvature bands against the differences of its value
    band at steps 1 m and 0.5 m, in 150 m windows inside the points' box
    (across patch edges) and over its south-west corner (clamped weights).
    Cells 8 m from a point or from the box's edge lines are left out. As
    for the laplacian (test_derivatives.py): the bump weights are C2, not
    C3, so next to a patch's support edge a second difference's error is
    O(h) and the largest error need not halve; it stays small while the
    typical (median) cell converges like h^2 (ratio ~4, asserted > 3).
    Measured at 0.5 m: the largest error up to 3e-3 of the window's largest
    curvature (asserted < 1e-2), the median 1e-6 to 6e-6."""
    x0, y0, x1, y1 = local['box']

    def off_edges(X, Y):
        return np.minimum(np.minimum(np.abs(X - x0), np.abs(X - x1)),
                          np.minimum(np.abs(Y - y0), np.abs(Y - y1))) > 8.0

    for where, (wx, wy) in {'inside': (LOCAL_X0 + 900.0, LOCAL_Y0 + 800.0),
                            'corner': (x0 - 60.0, y0 - 60.0)}.items():
        errors = {}
        for h in (1.0, 0.5):
            ds, gt = local_grid(local, 'fd_%g.tps' % h, h, ['value'] + CURVATURES)
            size = int(round(150.0 / h)) + 2
            col = int(round((wx - gt[0]) / h)) - 1
            row = int(round((gt[3] - (wy + 150.0)) / h)) - 1
            errors[h] = fd_errors(ds, col, row, size, h, gt, local, 8.0, off_edges)
        print(where, 'coarse', errors[1.0], 'fine', errors[0.5])
        for q, (ec_max, ec_med), (ef_max, ef_med) in zip(CURVATURES, errors[1.0], errors[0.5]):
            assert ef_max < 1e-2, '%s %s: differences off by %.3g x scale' % (where, q, ef_max)
            assert ec_med / ef_med > 3.0, '%s %s: median error does not shrink like h^2 ' \
                '(%.3g -> %.3g)' % (where, q, ec_med, ef_med)


# ---------------------------------------------------------------- plumbing

@pytest.mark.parametrize('mode', ['global', 'local'])
def test_windows_blocks_threads(wiggly, local, mode):
    """Any window, block or thread count gives the bytes of the full read,
    and the value band's bytes do not change when curvature bands ride
    along."""
    quantities = ['value'] + CURVATURES
    if mode == 'global':
        gt = (500000.0, 5.0, 0.0, 4001000.0, 0.0, -5.0)
        ds1 = open_grid(wiggly['dir'], 'bytes.tps', gt, (200, 200), quantities,
                        block_size=(64, 48))
        path = str(wiggly['dir'] / 'bytes.tps')
        values = open_grid(wiggly['dir'], 'values.tps', gt, (200, 200), ['value'])
    else:
        ds1, _ = local_grid(local, 'bytes.tps', 11.0, quantities, block_size=(64, 48))
        path = str(local['dir'] / 'bytes.tps')
        values, _ = local_grid(local, 'values.tps', 11.0, ['value'])
    whole = ds1.ReadAsArray(0, 0, 200, 200)
    assert np.isfinite(whole).mean() > 0.999
    ds2 = gdal.OpenEx(path, open_options=['NUM_THREADS=2'])
    parts = np.full_like(whole, np.nan)
    for (c, r, w, hh) in ((0, 0, 77, 50), (77, 0, 123, 50), (0, 50, 200, 1), (0, 51, 130, 149),
                          (130, 51, 70, 149)):
        parts[:, r:r + hh, c:c + w] = ds2.ReadAsArray(c, r, w, hh)
    assert parts.tobytes() == whole.tobytes()
    for band in range(2, 5):  # a block through the block cache
        block = np.frombuffer(ds2.GetRasterBand(band).ReadBlock(1, 2), dtype=np.float64)
        assert block.tobytes() == whole[band - 1, 96:144, 64:128].tobytes()
    assert values.ReadAsArray(0, 0, 200, 200).tobytes() == whole[0].tobytes()


def documented_quantities():
    """The first column of docs/format.md's table of <Quantity> values
    (section "Derivative bands"): {name: unit column}."""
    text = open(FORMAT_MD, encoding='utf-8').read()
    section = text[text.index('### Derivative bands'):]
    section = section[:section.index('\n### ', 1)]
    rows = [line for line in section.splitlines() if line.startswith('| `')]
    out = {}
    for line in rows:
        cells = [c.strip() for c in line.strip('|').split('|')]
        for name in re.findall(r'`([a-z_]+)`', cells[0]):
            out[name] = cells[-1]
    return out


def driver_quantities(d):
    """The quantities the driver takes: the names its message for a bad
    <Quantity> lists, which it takes from the engine's table."""
    path = write_tps(d / 'bad.tps', tps_xml('pts.csv', bands(['no_such_quantity']), size=(8, 8)))
    with ErrorCapture() as cap:
        assert gdal.Open(path) is None
    message = ' '.join(cap.failures)
    listed = re.search(r'<Quantity>: expected (.*), got', message).group(1)
    return re.split(r', | or ', listed)


def test_format_md_documents_the_table(wiggly):
    """docs/format.md lists exactly the quantities the driver takes, which
    are the engine's table's. A row added to the table fails here until it
    is documented."""
    table = driver_quantities(wiggly['dir'])
    assert set(CURVATURES) <= set(table) and 'value' in table and 'slope' in table, table
    assert sorted(documented_quantities()) == sorted(table)


def test_metadata_from_the_table(wiggly):
    """Every documented quantity opens as a band whose QUANTITY is its name,
    whose unit is 'degrees' exactly where docs/format.md says so, whose
    default description is the field and the name, and whose
    QUANTITY_DESCRIPTION is the table's (v.surf.rst's for curvatures)."""
    docs = documented_quantities()
    names = driver_quantities(wiggly['dir'])
    ds = open_grid(wiggly['dir'], 'meta.tps', (500000.0, 50.0, 0.0, 4001000.0, 0.0, -50.0),
                   (20, 20), names)
    for k, name in enumerate(names):
        band = ds.GetRasterBand(k + 1)
        assert band.GetMetadataItem('QUANTITY', 'TPS') == name
        assert band.GetUnitType() == ('degrees' if 'degrees' in docs[name] else ''), name
        assert band.GetDescription() == ('elev' if name == 'value' else 'elev ' + name)
        desc = band.GetMetadataItem('QUANTITY_DESCRIPTION', 'TPS')
        assert desc, name
        if name in CURVATURES:
            assert 'v.surf.rst' in desc, desc
    arr = ds.ReadAsArray()
    for k, name in enumerate(names):
        if name != 'aspect':  # NaN where flat, only
            assert np.isfinite(arr[k]).all(), name
    # a few dozen pixels, a smooth surface: curvatures of ~1e-3 per metre
    for name in CURVATURES:
        a = arr[names.index(name)]
        assert 1e-5 < np.max(np.abs(a)) < 1e-1, (name, np.max(np.abs(a)))
