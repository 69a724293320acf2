"""Derivative bands of a model with covariates (issue 13): f = spline +
affine + b c, c the covariate raster resampled onto the output grid; its
derivatives are the spline's (analytic) plus b times differences of the
resampled covariate on the output grid's lattice (docs/format.md,
"Covariates").

The covariate raster holds an exact quadratic c = u^2 + 0.5 v^2 + u v (u, v
the map coordinates in km from the middle), on the output grid's very
lattice, so resampling reads its cells' own values and the lattice's
differences (central, or one-sided of second order at the raster's edge)
are exact. The reference for each derivative band is then, independently
of our derivative code:
    finite differences of the VALUE band (tested against R fields
    elsewhere) read through the driver on grids shifted by +-h and +-2h
    (Richardson's extrapolation), with the covariate's term b c taken out
    (c at the shifted pixel centres by numpy's bilinear interpolation of
    the raster, b from COVARIATE_COEFFICIENTS) and b times c's analytic
    derivatives put back;
    the slope, mean and profile curvature by gdaldem's and GRASS's
    formulas (written out here) of those.
On north-up and rotated grids (the covariate raster rotated alike). Then
the rules: one-sided differences where the raster ends at the grid's edge
(the same bands as with a margin), NoData cells in a stencil, a raster too
narrow for any difference, and that the derivative bands are no longer
refused.
"""
import math

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import bilinear, open_tps, tps_xml, write_csv, write_tps

X0, Y0 = 500000.0, 6000000.0  # the points' corner; 3 km x 2 km
XM, YM = X0 + 1500.0, Y0 + 1000.0
RES = 50.0
NX, NY = 60, 40  # output pixels
MARGIN = 3  # raster cells beyond the grid on each side


def quad(x, y):
    u, v = (x - XM) / 1000.0, (y - YM) / 1000.0
    return u * u + 0.5 * v * v + u * v


def quad_derivs(x, y):
    """dc/dx, dc/dy, d2c/dx2, d2c/dxdy, d2c/dy2 per metre."""
    u, v = (x - XM) / 1000.0, (y - YM) / 1000.0
    one = np.ones_like(u)
    return ((2 * u + v) / 1e3, (v + u) / 1e3, 2e-6 * one, 1e-6 * one, 1e-6 * one)


def grid_gt(kind):
    """The output grid: north-up, or rotated by 25 degrees about the
    points' middle."""
    if kind == 'north-up':
        steps = (RES, 0.0, 0.0, -RES)
    else:
        t = math.radians(25)
        steps = (RES * math.cos(t), RES * math.sin(t), RES * math.sin(t), -RES * math.cos(t))
    g1, g2, g4, g5 = steps
    return (XM - NX / 2 * g1 - NY / 2 * g2, g1, g2, YM - NX / 2 * g4 - NY / 2 * g5, g4, g5)


def centres(gt, nx, ny, first=0):
    c, r = np.meshgrid(np.arange(nx) + 0.5 - first, np.arange(ny) + 0.5 - first)
    return gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5]


def write_raster(path, gt, values, nodata=None):
    ds = gdal.GetDriverByName('GTiff').Create(str(path), values.shape[1], values.shape[0], 1,
                                              gdal.GDT_Float64)
    ds.SetGeoTransform(list(gt))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    return str(path)


def quad_raster(path, gt, margin=MARGIN, nx=NX, ny=NY, nodata_cells=()):
    """The quadratic on the grid gt's lattice, `margin` cells more on each
    side; returns its path and geotransform."""
    rgt = (gt[0] - margin * (gt[1] + gt[2]), gt[1], gt[2],
           gt[3] - margin * (gt[4] + gt[5]), gt[4], gt[5])
    X, Y = centres(rgt, nx + 2 * margin, ny + 2 * margin)
    values = quad(X, Y)
    for r, c in nodata_cells:
        values[r + margin, c + margin] = -9999.0
    return write_raster(path, rgt, values, -9999.0 if nodata_cells else None), rgt


@pytest.fixture(scope='module')
def pts(tmp_path_factory):
    d = tmp_path_factory.mktemp('covderiv')
    rng = np.random.default_rng(11)
    x = X0 + 3000 * rng.random(120)
    y = Y0 + 2000 * rng.random(120)
    c = quad(x, y)
    z = np.sin((x - X0) / 700) * np.cos((y - Y0) / 900) + 2.0 * c + 0.02 * rng.standard_normal(120)
    write_csv(d / 'points.csv', {'x': x, 'y': y, 'z': z, 'c': c})
    return {'dir': d, 'x': x, 'y': y}


DERIVS = ['dzdx', 'dzdy', 'slope', 'laplacian', 'mean_curvature', 'profile_curvature']


def open_cov(d, name, gt, raster, quantities, size=(NX, NY), nodata=None, extra=''):
    bands = [{'field': 'z', 'quantity': q} for q in quantities]
    xml = tps_xml('points.csv', bands, srs='EPSG:32633', points_srs='EPSG:32633',
                  geotransform=gt, size=size, smoothing=10, data_type='Float64', nodata=nodata,
                  extra='<Covariate><Field>c</Field><Raster>%s</Raster></Covariate>' % raster +
                  extra)
    ds, cap = open_tps(write_tps(d / name, xml))
    assert ds is not None, cap.errors
    return ds


def far_from_points(X, Y, x, y, dist):
    d2 = np.full(X.shape, np.inf)
    for px, py in zip(x, y):
        d2 = np.minimum(d2, (X - px) ** 2 + (Y - py) ** 2)
    return d2 > dist * dist


@pytest.mark.parametrize('kind', ['north-up', 'rotated'])
def test_against_finite_differences_of_the_value_band(pts, kind):
    d = pts['dir']
    gt = grid_gt(kind)
    raster, rgt = quad_raster(d / ('quad_%s.tif' % kind), gt)
    cells = gdal.Open(raster).ReadAsArray()
    ds = open_cov(d, 'deriv_%s.tps' % kind, gt, raster, DERIVS)
    got = dict(zip(DERIVS, ds.ReadAsArray()))
    b = float(ds.GetRasterBand(1).GetMetadata('TPS')['COVARIATE_COEFFICIENTS'])
    X, Y = centres(gt, NX, NY)

    def spline_part(dx, dy):
        """The value band at the pixel centres moved by (dx, dy) metres,
        its covariate term taken out."""
        sgt = (gt[0] + dx, gt[1], gt[2], gt[3] + dy, gt[4], gt[5])
        v = open_cov(d, 'v_%s_%g_%g.tps' % (kind, dx, dy), sgt, raster, ['value']).ReadAsArray()
        return v - b * bilinear(cells, rgt, X + dx, Y + dy)

    def richardson(f, h):
        return (4 * f(h) - f(2 * h)) / 3

    s0 = spline_part(0, 0)
    cx, cy, cxx, cxy, cyy = quad_derivs(X, Y)
    # the spline's third derivatives are singular at the data points:
    # finite differences are compared 30 m away from them
    keep = far_from_points(X, Y, pts['x'], pts['y'], 30.0)
    assert keep.sum() > NX * NY // 3

    def reference(h):
        sx = richardson(lambda s: (spline_part(s, 0) - spline_part(-s, 0)) / (2 * s), h)
        sy = richardson(lambda s: (spline_part(0, s) - spline_part(0, -s)) / (2 * s), h)
        sxx = richardson(lambda s: (spline_part(s, 0) - 2 * s0 + spline_part(-s, 0)) / (s * s), h)
        syy = richardson(lambda s: (spline_part(0, s) - 2 * s0 + spline_part(0, -s)) / (s * s), h)
        sxy = richardson(lambda s: (spline_part(s, s) - spline_part(s, -s) - spline_part(-s, s) +
                                    spline_part(-s, -s)) / (4 * s * s), h)
        fx, fy = sx + b * cx, sy + b * cy
        fxx, fxy, fyy = sxx + b * cxx, sxy + b * cxy, syy + b * cyy
        p = fx * fx + fy * fy
        q = 1 + p
        return {
            'dzdx': fx, 'dzdy': fy,
            'slope': np.degrees(np.arctan(np.sqrt(p))),
            'laplacian': fxx + fyy,
            'mean_curvature': ((1 + fy * fy) * fxx - 2 * fxy * fx * fy + (1 + fx * fx) * fyy) /
                              (2 * q ** 1.5),
            'profile_curvature': (fxx * fx * fx + 2 * fxy * fx * fy + fyy * fy * fy) /
                                 (p * q ** 1.5),
        }

    errors = {}
    for h in (2.0, 1.0):
        ref = reference(h)
        errors[h] = {qn: np.max(np.abs(got[qn] - ref[qn])[keep]) /
                     np.max(np.abs(ref[qn][keep])) for qn in DERIVS}
    for qn in DERIVS:
        coarse, fine = errors[2.0][qn], errors[1.0][qn]
        print(kind, qn, 'off the differences by %.2e (h = 2 m), %.2e (h = 1 m)' % (coarse, fine))
        # Richardson's differences are fourth order: the difference to the
        # band shrinks like h^4 (measured: 16x per halving) as long as the
        # band is right; an error in the covariate's term (b times its
        # derivative is 10% to 70% of each quantity) would stay put
        assert fine < 2e-6, '%s %s: %.3g' % (kind, qn, fine)
        assert coarse / fine > 8, '%s %s: %.3g -> %.3g' % (kind, qn, coarse, fine)
    ref = reference(1.0)
    # the covariate's term is a large part of each quantity
    for qn, part in (('dzdx', b * cx), ('laplacian', b * (cxx + cyy))):
        assert np.max(np.abs(part)) > 0.1 * np.max(np.abs(ref[qn][keep])), qn


def test_raster_ending_at_the_grid_edge(pts):
    """A raster that is exactly the grid (no margin): the edge pixels take
    one-sided differences of second order, exact for the quadratic like the
    central ones, so every band equals the one read with a margin."""
    d = pts['dir']
    gt = grid_gt('north-up')
    wide, _ = quad_raster(d / 'wide.tif', gt)
    exact, _ = quad_raster(d / 'exact.tif', gt, margin=0)
    a = open_cov(d, 'wide.tps', gt, wide, DERIVS).ReadAsArray()
    e = open_cov(d, 'exact.tps', gt, exact, DERIVS).ReadAsArray()
    assert not np.isnan(e).any()
    for k, qn in enumerate(DERIVS):
        scale = np.max(np.abs(a[k]))
        assert np.max(np.abs(a[k] - e[k])) <= 1e-9 * scale, qn


def test_nodata_in_the_stencil(pts):
    """A NoData cell: NoData values at its pixel; NoData gradients where it
    is one step along a grid axis (the gradient's stencil), NoData second
    derivatives in the 3 x 3 pixels around it; everything else as without
    it."""
    d = pts['dir']
    gt = grid_gt('north-up')
    hole, _ = quad_raster(d / 'hole.tif', gt, nodata_cells=[(20, 30)])
    full, _ = quad_raster(d / 'full.tif', gt)
    qs = ['value', 'dzdx', 'slope', 'laplacian', 'mean_curvature']
    h = open_cov(d, 'hole.tps', gt, hole, qs, nodata=-1e30).ReadAsArray()
    f = open_cov(d, 'full.tps', gt, full, qs, nodata=-1e30).ReadAsArray()
    plus = np.zeros((NY, NX), bool)
    plus[19:22, 30] = plus[20, 29:32] = True
    block = np.zeros((NY, NX), bool)
    block[19:22, 29:32] = True
    point = np.zeros((NY, NX), bool)
    point[20, 30] = True
    for k, (qn, where) in enumerate(zip(qs, [point, plus, plus, block, block])):
        assert np.array_equal(h[k] == -1e30, where), qn
        assert np.array_equal(h[k][~where], f[k][~where]), qn
    # the data set's mask band (with a <MaxDistance> mask): every band's
    # NoData pixels, the value's and the derivatives'
    for quantities, where in ((qs, block), (['value', 'dzdx'], plus), (['value'], point)):
        ds = open_cov(d, 'hole_mask.tps', gt, hole, quantities,
                      extra='<MaxDistance>100000</MaxDistance>')
        assert ds.GetRasterBand(1).GetMaskFlags() == gdal.GMF_PER_DATASET
        mask = ds.GetRasterBand(1).GetMaskBand().ReadAsArray()
        assert np.array_equal(mask == 0, where), quantities


def test_raster_too_narrow_for_a_difference(pts):
    """A grid and raster two pixels wide: no difference fits along x (the
    central one needs three pixels, a one-sided one three on one side): the
    derivative bands are NoData, the value band is not."""
    d = pts['dir']
    gt = (X0 + 1000, RES, 0.0, Y0 + 1500, 0.0, -RES)
    narrow, _ = quad_raster(d / 'narrow.tif', gt, margin=0, nx=2, ny=10)
    a = open_cov(d, 'narrow.tps', gt, narrow, ['value', 'dzdx', 'laplacian'], size=(2, 10),
                 nodata=-1e30).ReadAsArray()
    assert (a[0] != -1e30).all()
    assert (a[1] == -1e30).all() and (a[2] == -1e30).all()


def test_windows_and_blocks_match(pts):
    """A pixel's derivative depends only on its indices: windows read one
    by one (their stencils read beyond them) give the whole read's bytes."""
    d = pts['dir']
    gt = grid_gt('rotated')
    raster, _ = quad_raster(d / 'win.tif', gt)
    ds = open_cov(d, 'win.tps', gt, raster, ['dzdy', 'profile_curvature'])
    whole = ds.ReadAsArray()
    for k in range(2):
        band = ds.GetRasterBand(k + 1)
        parts = np.vstack([np.hstack([band.ReadAsArray(x0, y0, 20, 8) for x0 in range(0, NX, 20)])
                           for y0 in range(0, NY, 8)])
        assert np.array_equal(parts, whole[k])
