"""Derivative bands (<Quantity>, issue 7): dzdx, dzdy, slope, aspect and
laplacian evaluated analytically from the same model as the value band.

References, none of them our own derivative code:
  - a plane z = a + b x + c y: the spline is the plane, so dzdx = b and
    dzdy = c exactly, the laplacian is 0, slope and aspect follow from b, c
    by gdaldem's formulas (written out here);
  - finite differences of our own value band on a fine grid, at two steps:
    the difference to the analytic band must shrink like h^2 (central
    differences are second order), which it cannot if the analytic band is
    off by anything but the differences' own truncation error; on north-up,
    south-up and rotated grids (the derivatives are w.r.t. the CRS axes,
    whatever the grid's orientation);
  - `gdaldem slope` and `gdaldem aspect` (Horn's method) run on a GeoTIFF of
    the value band, away from the edges;
and the plumbing: one solve for all quantities of a field (and an unchanged
model file hash when derivative bands are added), metadata, units,
descriptions, the block-cache read path, bad <Quantity> values refused.
LOCAL models (a blend of patch splines) get the same checks: finite
differences with step halving inside the points' box and over its corner
(the clamped region), gdaldem, and byte-identical windows and threads.
"""
import math
import shutil

import numpy as np
import pytest
from osgeo import gdal

from conftest import (assert_open_fails, md, open_tps, random_points, run, smooth_values,
                      tps_xml, write_csv, write_tps)

QUANTITIES = ['value', 'dzdx', 'dzdy', 'slope', 'aspect', 'laplacian']


def gdaldem_aspect(dzdx, dzdy):
    """gdaldem's GDALAspectAlg (azimuth form), with its window sums written
    as the gradient: dx ~ +dz/dx, dy ~ -dz/dy (rows run south)."""
    a = np.degrees(np.arctan2(-dzdy, -dzdx))
    a = np.where(a > 90.0, 450.0 - a, 90.0 - a)
    return np.where(a == 360.0, 0.0, a)


def angle_diff(a, b):
    """|a - b| for angles in degrees, 359.9 and 0.1 being 0.2 apart."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def all_bands(field='elev', quantities=QUANTITIES, **kw):
    return [dict(field=field, quantity=q, **kw) for q in quantities]


@pytest.fixture(scope='module')
def wiggly(tmp_path_factory):
    """150 points over 1 km, a smooth field of ~200 m relief (slopes up to
    ~35 degrees), interpolated exactly."""
    d = tmp_path_factory.mktemp('wiggly')
    rng = np.random.default_rng(7)
    x, y = random_points(150, rng, 500000.0, 4000000.0, 1000.0)
    z = smooth_values(x, y, rng, noise=0.0)
    write_csv(d / 'pts.csv', {'x': x, 'y': y, 'elev': z})
    return {'dir': d, 'x': x, 'y': y, 'z': z}


def open_grid(d, name, gt, size, bands, **kw):
    path = write_tps(d / name, tps_xml('pts.csv', bands, geotransform=gt, size=size,
                                       data_type='Float64', **kw))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    return ds


# ------------------------------------------------------------------ plane

def test_plane_exact(tmp_path):
    rng = np.random.default_rng(3)
    x, y = random_points(60, rng, 300000.0, 5000000.0, 2000.0)
    a, b, c = 140.0, 0.031, -0.047
    write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'elev': a + b * x + c * y})
    gt = (299900.0, 25.0, 0.0, 5002100.0, 0.0, -25.0)
    ds = open_grid(tmp_path, 'plane.tps', gt, (88, 88), all_bands())
    arr = ds.ReadAsArray()
    assert np.allclose(arr[1], b, rtol=1e-9, atol=0)
    assert np.allclose(arr[2], c, rtol=1e-9, atol=0)
    slope = math.degrees(math.atan(math.hypot(b, c)))
    assert np.max(np.abs(arr[3] - slope)) < 1e-9
    # the plane rises to the east and falls to the north: it faces north-west
    aspect = float(gdaldem_aspect(b, c))
    assert 270.0 < aspect < 360.0
    assert np.max(angle_diff(arr[4], aspect)) < 1e-9
    # second derivatives of order |c| / extent would be ~2e-5
    assert np.max(np.abs(arr[5])) < 1e-11


@pytest.mark.parametrize('b,c', [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-2, 1), (-1, -3),
                                 (3, -1)])
def test_plane_aspect_quadrants(tmp_path, b, c):
    """Aspect is the azimuth the slope faces (downhill), clockwise from north,
    on every quadrant and axis, as gdaldem defines it."""
    rng = np.random.default_rng(5)
    x, y = random_points(30, rng, 0.0, 0.0, 100.0)
    write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'elev': 0.01 * (b * x + c * y)})
    ds = open_grid(tmp_path, 'q.tps', (0, 10, 0, 100, 0, -10), (10, 10),
                   all_bands(quantities=['aspect']))
    got = ds.ReadAsArray()
    downhill = {(1, 0): 270, (0, 1): 180, (-1, 0): 90, (0, -1): 0}.get((b, c))
    want = downhill if downhill is not None else float(gdaldem_aspect(0.01 * b, 0.01 * c))
    assert np.max(angle_diff(got, want)) < 1e-9


# ---------------------------------------------------- finite differences

def grid_gt(kind, h, n):
    """The geotransform of an n x n grid of cells of side h centred on the
    points' square (1 km from (500000, 4000000)), oriented as `kind` says."""
    cx, cy = 500500.0, 4000500.0
    if kind == 'north-up':
        steps = (h, 0.0, 0.0, -h)
    elif kind == 'south-up':
        steps = (h, 0.0, 0.0, h)
    else:  # rotated by 30 degrees
        t = math.radians(30)
        steps = (h * math.cos(t), h * math.sin(t), h * math.sin(t), -h * math.cos(t))
    gt1, gt2, gt4, gt5 = steps
    return (cx - n / 2 * (gt1 + gt2), gt1, gt2, cy - n / 2 * (gt4 + gt5), gt4, gt5)


def central_gradient(f, gt):
    """dz/dx, dz/dy from central differences along columns and rows, through
    the geotransform (d/dcol = gt1 d/dx + gt4 d/dy, d/drow = gt2 d/dx + gt5
    d/dy), on the interior cells."""
    dc = (f[1:-1, 2:] - f[1:-1, :-2]) / 2
    dr = (f[2:, 1:-1] - f[:-2, 1:-1]) / 2
    m = np.array([[gt[1], gt[4]], [gt[2], gt[5]]])
    inv = np.linalg.inv(m)
    return inv[0, 0] * dc + inv[0, 1] * dr, inv[1, 0] * dc + inv[1, 1] * dr


def five_point_laplacian(f, h):
    """Only for square cells of side h (rotation does not change it)."""
    return (f[1:-1, 2:] + f[1:-1, :-2] + f[2:, 1:-1] + f[:-2, 1:-1] - 4 * f[1:-1, 1:-1]) / (h * h)


def far_from_points(gt, shape, x, y, dist):
    """Interior cells farther than `dist` from every data point: there the
    spline is smooth (its third derivatives are singular at the points)."""
    rows, cols = shape
    c, r = np.meshgrid(np.arange(1, cols - 1) + 0.5, np.arange(1, rows - 1) + 0.5)
    X = gt[0] + c * gt[1] + r * gt[2]
    Y = gt[3] + c * gt[4] + r * gt[5]
    d2 = np.full(X.shape, np.inf)
    for px, py in zip(x, y):
        d2 = np.minimum(d2, (X - px) ** 2 + (Y - py) ** 2)
    return d2 > dist * dist


@pytest.mark.parametrize('kind', ['north-up', 'south-up', 'rotated'])
def test_finite_differences(wiggly, kind):
    """At steps h = 4 m and 2 m the central differences of the value band
    approach the dzdx, dzdy and laplacian bands like h^2: the error ratio is
    ~4 (asserted > 3), and the fine-grid error is small (asserted below 1e-3
    of the gradient's / laplacian's largest magnitude)."""
    errors = {}
    for h, n in ((4.0, 260), (2.0, 520)):
        gt = grid_gt(kind, h, n)
        ds = open_grid(wiggly['dir'], '%s_%g.tps' % (kind, h), gt, (n, n),
                       all_bands(quantities=['value', 'dzdx', 'dzdy', 'laplacian']))
        f, dzdx, dzdy, lap = ds.ReadAsArray()
        gx, gy = central_gradient(f, gt)
        lap_fd = five_point_laplacian(f, h)
        # cells 16 m (4 coarse steps) from every point, the same cells at
        # both steps (they cover the same area)
        keep = far_from_points(gt, f.shape, wiggly['x'], wiggly['y'], 16.0)
        scale_g = np.max(np.hypot(dzdx, dzdy))
        scale_l = np.nanmax(np.abs(lap))
        errors[h] = (np.max(np.abs(gx - dzdx[1:-1, 1:-1])[keep]) / scale_g,
                     np.max(np.abs(gy - dzdy[1:-1, 1:-1])[keep]) / scale_g,
                     np.max(np.abs(lap_fd - lap[1:-1, 1:-1])[keep]) / scale_l)
    coarse, fine = errors[4.0], errors[2.0]
    print(kind, 'coarse', coarse, 'fine', fine)
    for what, ec, ef in zip(('dzdx', 'dzdy', 'laplacian'), coarse, fine):
        assert ef < 1e-3, '%s: %s finite differences off by %.3g x scale' % (kind, what, ef)
        assert ec / ef > 3.0, '%s: %s error does not shrink like h^2 (%.3g -> %.3g)' % (
            kind, what, ec, ef)


def test_south_up_matches_north_up(wiggly):
    """The same pixel centres on a north-up and a south-up grid: the same
    CRS derivatives (a grid's row direction must not flip dzdy or aspect)."""
    h, n = 8.0, 130
    north = open_grid(wiggly['dir'], 'n.tps', grid_gt('north-up', h, n), (n, n),
                      all_bands(quantities=QUANTITIES[1:])).ReadAsArray()
    south = open_grid(wiggly['dir'], 's.tps', grid_gt('south-up', h, n), (n, n),
                      all_bands(quantities=QUANTITIES[1:])).ReadAsArray()[:, ::-1, :]
    for k, q in enumerate(QUANTITIES[1:]):
        scale = np.nanmax(np.abs(north[k]))
        diff = angle_diff(north[k], south[k]) if q == 'aspect' else np.abs(north[k] - south[k])
        assert np.nanmax(diff) <= 1e-9 * scale, q


# --------------------------------------------------------------- gdaldem

def test_against_gdaldem(wiggly, tmp_path):
    """gdaldem slope and aspect (Horn's 3x3 method, second order) on a 2 m
    GeoTIFF of the value band against our slope and aspect bands, on the
    interior cells 16 m from every data point: slope within 0.03 degrees,
    aspect within 0.15 degrees where the slope exceeds 2 degrees (aspect is
    ill-conditioned on flats). Horn's O(h^2) truncation error sets these:
    measured 0.012 and 0.054 degrees at worst (printed)."""
    h, n = 2.0, 520
    gt = grid_gt('north-up', h, n)
    tps = write_tps(wiggly['dir'] / 'dem.tps',
                    tps_xml('pts.csv', all_bands(quantities=['value', 'slope', 'aspect']),
                            geotransform=gt, size=(n, n), data_type='Float64'))
    value_tif, slope_tif, aspect_tif = (str(tmp_path / f) for f in
                                        ('value.tif', 'slope.tif', 'aspect.tif'))
    run(['gdal_translate', '-q', '-b', '1', tps, value_tif])
    run(['gdaldem', 'slope', '-q', value_tif, slope_tif])
    run(['gdaldem', 'aspect', '-q', value_tif, aspect_tif])
    ds = gdal.Open(tps)
    ours_slope, ours_aspect = ds.GetRasterBand(2).ReadAsArray(), ds.GetRasterBand(3).ReadAsArray()
    dem_slope = gdal.Open(slope_tif).ReadAsArray()[1:-1, 1:-1]
    dem_aspect = gdal.Open(aspect_tif).ReadAsArray()[1:-1, 1:-1]
    ours_slope, ours_aspect = ours_slope[1:-1, 1:-1], ours_aspect[1:-1, 1:-1]
    assert (dem_slope != -9999).all() and (dem_aspect != -9999).all()
    # Horn's truncation error grows near the data points, where the
    # spline's third derivatives are singular: cells 16 m from every point.
    keep = far_from_points(gt, (n, n), wiggly['x'], wiggly['y'], 16.0)
    slope_err = np.abs(ours_slope - dem_slope)[keep]
    steep = (ours_slope > 2.0) & keep
    aspect_err = angle_diff(ours_aspect, dem_aspect)[steep]
    print('gdaldem: slope max %.3g deg (99th pct %.3g), aspect max %.3g deg over %d cells'
          % (slope_err.max(), np.percentile(slope_err, 99), aspect_err.max(), steep.sum()))
    assert ours_slope.max() > 20, 'the test surface should be steep somewhere'
    assert keep.mean() > 0.7 and steep.sum() > 0.8 * keep.sum()
    assert slope_err.max() < 0.03
    assert aspect_err.max() < 0.15


# -------------------------------------------------------------- plumbing

def test_one_solve_metadata_units(wiggly):
    bands = all_bands() + [dict(field='elev', quantity='slope', smoothing=1e4,
                                description='smoothed slope')]
    ds = open_grid(wiggly['dir'], 'meta.tps', grid_gt('north-up', 40.0, 26), (26, 26), bands,
                   extra='<NoDataValue>-9999</NoDataValue>')
    assert md(ds, 'SOLVES') == '1'
    descs = [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]
    assert descs == ['elev', 'elev dzdx', 'elev dzdy', 'elev slope', 'elev aspect',
                     'elev laplacian', 'smoothed slope']
    quantities = [ds.GetRasterBand(i + 1).GetMetadataItem('QUANTITY', 'TPS')
                  for i in range(ds.RasterCount)]
    assert quantities == QUANTITIES + ['slope']
    units = [ds.GetRasterBand(i + 1).GetUnitType() for i in range(ds.RasterCount)]
    assert units == ['', '', '', 'degrees', 'degrees', '', 'degrees']
    # the smoothed band is its own surface (lambda 1e4): flatter than the exact one
    smoothing = [ds.GetRasterBand(i + 1).GetMetadataItem('SMOOTHING', 'TPS')
                 for i in range(ds.RasterCount)]
    assert smoothing == ['0'] * 6 + ['10000']
    arr = ds.ReadAsArray()
    assert arr[6].mean() < arr[3].mean()


def test_model_file_and_cache_shared_with_value_band(wiggly, tmp_path):
    """Adding derivative bands of a field already present changes neither the
    persisted model's hash (the value-only file's model is read) nor the
    in-process cache key (no second solve)."""
    shutil.copy(wiggly['dir'] / 'pts.csv', tmp_path / 'pts.csv')  # a key of its own
    gt, size = grid_gt('north-up', 40.0, 26), (26, 26)
    plain = write_tps(tmp_path / 'plain.tps', tps_xml('pts.csv', ['elev'], geotransform=gt,
                                                      size=size))
    deriv = write_tps(tmp_path / 'deriv.tps',
                      tps_xml('pts.csv', all_bands(quantities=['slope', 'value']),
                              geotransform=gt, size=size))
    ds_plain = gdal.Open(plain)
    assert md(ds_plain, 'SOLVES') == '1' and md(ds_plain, 'MODEL_SOURCE') == 'SOLVED'
    value = ds_plain.ReadAsArray()
    ds_deriv = gdal.Open(deriv)  # while plain is open: the cached model, no solve
    assert md(ds_deriv, 'SOLVES') == '1'
    assert np.array_equal(ds_deriv.GetRasterBand(2).ReadAsArray(), value)
    plain_file, deriv_file = md(ds_plain, 'MODEL_FILE'), md(ds_deriv, 'MODEL_FILE')
    ds_plain = ds_deriv = None
    # nothing holds the model now: plain.tps's model file serves deriv.tps
    shutil.copy(plain_file, deriv_file)
    ds = gdal.OpenEx(deriv, open_options=['MODEL_CACHE=READ_ONLY'])
    assert md(ds, 'MODEL_SOURCE') == 'FILE', 'the model hash changed with derivative bands'
    assert md(ds, 'SOLVES') == '1'
    assert np.array_equal(ds.GetRasterBand(2).ReadAsArray(), value)


def test_block_cache_path_matches_direct_read(wiggly):
    """A block read (IReadBlock: every band's block at once, into the block
    cache) gives the bytes of the direct Float64 read of that window, for
    derivative bands next to a value band."""
    ds = open_grid(wiggly['dir'], 'blocks.tps', grid_gt('north-up', 20.0, 52), (52, 52),
                   all_bands(quantities=['slope', 'value', 'aspect']), block_size=(16, 16))
    for band in (1, 3):
        block = np.frombuffer(ds.GetRasterBand(band).ReadBlock(1, 2), dtype=np.float64)
        direct = ds.GetRasterBand(band).ReadAsArray(16, 32, 16, 16)
        assert np.array_equal(block.reshape(16, 16), direct)


# ------------------------------------------------------------ LOCAL models

LIDAR_X0, LIDAR_Y0, LIDAR_EXT = 600000.0, 5000000.0, 4000.0


@pytest.fixture(scope='module')
def lidar(tmp_path_factory):
    """~20,000 points over 4 km of a smooth field of ~900 m relief (slopes up
    to ~35 degrees), a LOCAL model with PatchPoints 200 (some hundred
    patches). The points are jittered grids (random, but never closer than
    40% of the spacing), 40 m apart in the west half and 23 m in the east
    half: the quadtree's leaves, so the patches, are twice as large in the
    west, and patches of both sizes meet along the middle. (Where every
    active patch has the same half-width across an edge of the box, the
    weights' normal derivative cancels in the normalisation and an error in
    the clamping would go unseen.)"""
    d = tmp_path_factory.mktemp('lidar')
    rng = np.random.default_rng(11)
    xs, ys = [], []
    for (xa, spacing) in ((0.0, 40.0), (2000.0, 23.0)):
        nx, ny = int(2000.0 // spacing), int(LIDAR_EXT // spacing)
        i, j = np.meshgrid(np.arange(nx), np.arange(ny))
        xs.append(xa + (i.ravel() + 0.2 + 0.6 * rng.random(i.size)) * 2000.0 / nx)
        ys.append((j.ravel() + 0.2 + 0.6 * rng.random(j.size)) * LIDAR_EXT / ny)
    x, y = LIDAR_X0 + np.concatenate(xs), LIDAR_Y0 + np.concatenate(ys)
    z = 4 * smooth_values(x, y, rng, noise=0.0)
    write_csv(d / 'pts.csv', {'x': x, 'y': y, 'elev': z})
    return {'dir': d, 'x': x, 'y': y, 'z': z,
            'box': (x.min(), y.min(), x.max(), y.max()),
            'extra': '<Mode>LOCAL</Mode><PatchPoints>200</PatchPoints>'}


def lidar_grid(lidar, name, h, quantities, **kw):
    """A north-up grid of cells of side h over the points' box and 200 m
    around it (windows are read from it: its size costs nothing)."""
    n = int(round((LIDAR_EXT + 400.0) / h))
    gt = (LIDAR_X0 - 200.0, h, 0.0, LIDAR_Y0 + LIDAR_EXT + 200.0, 0.0, -h)
    ds = open_grid(lidar['dir'], name, gt, (n, n), all_bands(quantities=quantities),
                   extra=lidar['extra'], **kw)
    assert md(ds, 'MODE') == 'LOCAL'
    return ds, gt


def test_local_finite_differences(lidar):
    """A LOCAL model's dzdx, dzdy and laplacian against central differences
    of its value band at steps 1 m and 0.5 m, like test_finite_differences,
    in 200 m windows: one inside the points' box (across patch edges), one
    over its south-west corner (inside, clamped in x, in y, in both), one
    over its south edge where patches of two sizes meet.
    The error ratio must be ~4 (asserted > 3): the analytic bands are the
    derivatives of the very surface the value band shows (a wrong or
    missing term leaves an error of the quantity's own size, which does not
    shrink). Cells 8 m from a
    data point or from the box's edge lines (where the weights' normal
    derivative jumps to 0, docs/design.md) are left out."""
    x0, y0, x1, y1 = lidar['box']
    windows = {'inside': (LIDAR_X0 + 1900.0, LIDAR_Y0 + 1700.0),  # south-west corners
               'corner': (x0 - 100.0, y0 - 100.0),
               'edge': (LIDAR_X0 + 1900.0, y0 - 100.0)}
    quantities = ['value', 'dzdx', 'dzdy', 'laplacian']
    for where, (wx, wy) in windows.items():
        errors = {}
        for h in (1.0, 0.5):
            ds, gt = lidar_grid(lidar, 'fd_%g.tps' % h, h, quantities)
            size = int(round(200.0 / h)) + 2  # one cell of margin on each side
            col = int(round((wx - gt[0]) / h)) - 1
            row = int(round((gt[3] - (wy + 200.0)) / h)) - 1
            f, dzdx, dzdy, lap = ds.ReadAsArray(col, row, size, size)
            wgt = (gt[0] + col * h, h, 0.0, gt[3] - row * h, 0.0, -h)
            gx, gy = central_gradient(f, wgt)
            lap_fd = five_point_laplacian(f, h)
            c, r = np.meshgrid(np.arange(1, size - 1) + 0.5, np.arange(1, size - 1) + 0.5)
            X, Y = wgt[0] + c * h, wgt[3] - r * h
            near = (np.abs(lidar['x'] - wx - 100.0) < 120.0) & \
                   (np.abs(lidar['y'] - wy - 100.0) < 120.0)
            keep = far_from_points(wgt, f.shape, lidar['x'][near], lidar['y'][near], 8.0)
            keep &= np.minimum(np.minimum(np.abs(X - x0), np.abs(X - x1)),
                               np.minimum(np.abs(Y - y0), np.abs(Y - y1))) > 8.0
            if where != 'inside':
                outside = (X < x0) | (Y < y0)
                assert (outside & keep).sum() > 0.4 * keep.sum() > 0
            scale_g = np.max(np.hypot(dzdx, dzdy))
            scale_l = np.nanmax(np.abs(lap))
            lap_err = np.abs(lap_fd - lap[1:-1, 1:-1])[keep] / scale_l
            errors[h] = (np.max(np.abs(gx - dzdx[1:-1, 1:-1])[keep]) / scale_g,
                         np.max(np.abs(gy - dzdy[1:-1, 1:-1])[keep]) / scale_g,
                         np.max(lap_err), np.median(lap_err))
            assert keep.mean() > 0.4
        coarse, fine = errors[1.0], errors[0.5]
        print(where, 'coarse', coarse, 'fine', fine)
        # Central first differences: the largest error shrinks like h^2
        # (measured at 0.5 m: up to 4e-6 of the window's largest |grad|).
        for what, ec, ef in zip(('dzdx', 'dzdy'), coarse, fine):
            assert ef < 5e-5, '%s: %s finite differences off by %.3g x scale' % (where, what, ef)
            assert ec / ef > 3.0, '%s: %s error does not shrink like h^2 (%.3g -> %.3g)' % (
                where, what, ec, ef)
        # The 5-point laplacian: the bump weights are C2, not C3 (b''' jumps
        # where a patch's support ends), so on the cells next to a support
        # edge the stencil's error is O(h) times a factor that depends on
        # where the edge falls between the cells, and the largest error
        # need not halve; it stays small (measured at 0.5 m: up to 2.8e-3 of
        # the window's largest |lap|, where the analytic band has a kink, as
        # a 0.05 m probe showed) while the typical (median) cell converges
        # like h^2. The C test (test_deriv.c) sees h^2 on every cell it
        # checks.
        assert fine[2] < 5e-3, '%s: laplacian off by %.3g x scale' % (where, fine[2])
        assert coarse[3] / fine[3] > 3.0, '%s: laplacian error does not shrink like h^2 ' \
            '(median %.3g -> %.3g)' % (where, coarse[3], fine[3])


def test_local_against_gdaldem(lidar, tmp_path):
    """gdaldem slope and aspect (Horn) on a 1 m GeoTIFF of a LOCAL model's
    value band (a 300 m window inside the box) against its slope and aspect
    bands, on cells 8 m from every data point, as test_against_gdaldem
    (there at 2 m on a sparser set)."""
    h = 1.0
    ds, gt = lidar_grid(lidar, 'dem.tps', h, ['value', 'slope', 'aspect'])
    size, col, row = 300, 2300, 1900
    value_tif, slope_tif, aspect_tif = (str(tmp_path / f) for f in
                                        ('value.tif', 'slope.tif', 'aspect.tif'))
    run(['gdal_translate', '-q', '-b', '1', '-srcwin', col, row, size, size,
         str(lidar['dir'] / 'dem.tps'), value_tif])
    run(['gdaldem', 'slope', '-q', value_tif, slope_tif])
    run(['gdaldem', 'aspect', '-q', value_tif, aspect_tif])
    ours_slope = ds.GetRasterBand(2).ReadAsArray(col, row, size, size)[1:-1, 1:-1]
    ours_aspect = ds.GetRasterBand(3).ReadAsArray(col, row, size, size)[1:-1, 1:-1]
    dem_slope = gdal.Open(slope_tif).ReadAsArray()[1:-1, 1:-1]
    dem_aspect = gdal.Open(aspect_tif).ReadAsArray()[1:-1, 1:-1]
    wgt = (gt[0] + col * h, h, 0.0, gt[3] - row * h, 0.0, -h)
    near = (np.abs(lidar['x'] - wgt[0] - 150.0) < 170.0) & \
           (np.abs(lidar['y'] - wgt[3] + 150.0) < 170.0)
    keep = far_from_points(wgt, (size, size), lidar['x'][near], lidar['y'][near], 8.0)
    slope_err = np.abs(ours_slope - dem_slope)[keep]
    steep = (ours_slope > 2.0) & keep
    aspect_err = angle_diff(ours_aspect, dem_aspect)[steep]
    print('local vs gdaldem: slope max %.3g deg, aspect max %.3g deg over %d cells (slope up '
          'to %.1f deg)' % (slope_err.max(), aspect_err.max(), steep.sum(), ours_slope.max()))
    assert ours_slope.max() > 10, 'the window should be steep'
    assert keep.mean() > 0.5 and steep.sum() > 0.8 * keep.sum()
    # Horn's O(h^2) error at 1 m: measured 5e-4 and 5e-3 degrees at worst
    assert slope_err.max() < 0.005
    assert aspect_err.max() < 0.05


def test_local_windows_threads_and_values(lidar):
    """A LOCAL model's derivative bands: any window, block or thread count
    gives the same bytes, and the value band's bytes do not change when
    derivative bands ride along."""
    quantities = ['value', 'slope', 'aspect', 'laplacian']
    ds1, _ = lidar_grid(lidar, 'bytes.tps', 20.0, quantities)
    whole = ds1.ReadAsArray(0, 0, 220, 220)
    ds2 = gdal.OpenEx(str(lidar['dir'] / 'bytes.tps'), open_options=['NUM_THREADS=2'])
    parts = np.full_like(whole, np.nan)
    for (c, r, w, hh) in ((0, 0, 77, 50), (77, 0, 143, 50), (0, 50, 220, 1), (0, 51, 130, 169),
                          (130, 51, 90, 169)):
        parts[:, r:r + hh, c:c + w] = ds2.ReadAsArray(c, r, w, hh)
    assert parts.tobytes() == whole.tobytes()
    values, _ = lidar_grid(lidar, 'values.tps', 20.0, ['value'])
    assert values.ReadAsArray(0, 0, 220, 220).tobytes() == whole[0].tobytes()
    # slope and aspect are the gradient's: consistent with dzdx and dzdy
    ds3, _ = lidar_grid(lidar, 'grad.tps', 20.0, ['dzdx', 'dzdy'])
    gx, gy = ds3.ReadAsArray(0, 0, 220, 220)
    assert np.max(np.abs(np.degrees(np.arctan(np.hypot(gx, gy))) - whole[1])) < 1e-9
    assert np.max(angle_diff(gdaldem_aspect(gx, gy), whole[2])) < 1e-9


@pytest.mark.parametrize('text', ['curvature', 'SLOPE ', '', 'dz/dx'])
def test_bad_quantity(wiggly, text):
    path = write_tps(wiggly['dir'] / 'badq.tps',
                     tps_xml('pts.csv', ['elev', dict(field='elev', quantity=text)],
                             size=(10, 10), extent=(500000, 4000000, 501000, 4001000)))
    if text.strip().lower() == 'slope':
        ds, cap = open_tps(path)  # surrounding blanks are trimmed, case does not matter
        assert ds is not None, cap.errors
        return
    assert_open_fails(path, 'badq.tps', ['<Band> #2: <Quantity>'])
