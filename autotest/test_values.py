"""Pixel values are right: each test compares the driver's raster with an
independent reference.

* exact interpolation at data points placed on pixel centres (lambda = 0),
  within 1e-9 x value range;
* an affine field z = a + b x + c y reproduced everywhere, for any lambda;
* agreement with scipy's RBFInterpolator(kernel='thin_plate_spline',
  degree=1, smoothing=lambda) for lambda = 0 and lambda > 0, 200-2000 random
  points, unit-square and UTM-sized coordinates (lambda in output CRS units),
  Float64 (1e-8 x range) and Float32 (float32 rounding);
* rotated geotransforms (pixel centres include gt[2], gt[4]);
* reprojection of EPSG:4326 points to an EPSG:28992 raster against scipy on
  the points transformed with osr;
* coincident points are averaged; NaN / empty / NA / inf values dropped;
* the shipped Meuse data (zinc, and om with NA values).
"""
import os

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import (DATA_DIR, assert_close32, assert_close64, grid_around,
                      md, meuse_columns, open_tps, pixel_centres, random_points,
                      scipy_ds_ref, scipy_grid, scipy_tps, smooth_values, tps_xml,
                      write_csv, write_tps)

# coordinate systems: (x0, y0, width) -- unit square and UTM-sized offsets
UNIT = (0.0, 0.0, 1.0)


def utm(n):
    """UTM-like frame with about 1000 m between points."""
    return (500000.0, 5000000.0, 1000.0 * np.sqrt(n))


def _open64(tmp_path, x, y, z, gt, size, smoothing=None, name='p'):
    csv = write_csv(tmp_path / (name + '.csv'), {'x': x, 'y': y, 'z': z})
    path = write_tps(tmp_path / (name + '.tps'),
                     tps_xml(os.path.basename(csv), ['z'], geotransform=gt, size=size,
                             smoothing=smoothing, data_type='Float64'))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Float64
    return ds


@pytest.mark.parametrize('frame', ['unit', 'utm'])
def test_interpolates_data_points(tmp_path, frame):
    """lambda = 0: the raster equals z_i at the pixels whose centres are the
    data points."""
    rng = np.random.default_rng(11)
    cols, rows = 60, 40
    if frame == 'unit':
        gt = (-1.0, 0.0625, 0.0, 2.0, 0.0, -0.0625)
    else:
        gt = (500000.0, 250.0, 0.0, 5010000.0, 0.0, -250.0)
    idx = rng.choice(cols * rows, 150, replace=False)
    c, r = idx % cols, idx // cols
    x = gt[0] + (c + 0.5) * gt[1]
    y = gt[3] + (r + 0.5) * gt[5]
    z = rng.uniform(-50, 250, len(x))
    ds = _open64(tmp_path, x, y, z, gt, (cols, rows))
    a = ds.ReadAsArray()
    assert a.shape == (rows, cols)
    vrange = np.ptp(z)
    err = np.max(np.abs(a[r, c] - z))
    assert err <= 1e-9 * vrange, 'max |f(x_i) - z_i| = %g, range %g' % (err, vrange)
    # and the surface is not trivially z at those pixels only: elsewhere it is
    # the spline (scipy), a guard that the pixel/point mapping is the right one
    ref = scipy_ds_ref(ds, x, y, z, 0.0)
    assert_close64(a, ref, vrange)


@pytest.mark.parametrize('frame', ['unit', 'utm'])
@pytest.mark.parametrize('lam_unit', [0.0, 1e-2, 10.0])
def test_affine_field_reproduced(tmp_path, frame, lam_unit):
    """z = a + b x + c y is in the spline's null space: reproduced exactly,
    inside and outside the points' hull, whatever lambda."""
    rng = np.random.default_rng(5)
    n = 120
    x0, y0, w = UNIT if frame == 'unit' else utm(n)
    x, y = random_points(n, rng, x0, y0, w)
    z = 7.0 + 3.0 * (x - x0) / w - 2.0 * (y - y0) / w
    lam = lam_unit * w * w
    # grid reaching 20 % beyond the points
    gt = grid_around(x, y, 41, 37, margin=0.2)
    ds = _open64(tmp_path, x, y, z, gt, (41, 37), smoothing=lam)
    a = ds.ReadAsArray()
    X, Y = pixel_centres(ds.GetGeoTransform(), 41, 37)
    exact = 7.0 + 3.0 * (X - x0) / w - 2.0 * (Y - y0) / w
    vrange = np.ptp(exact)
    err = np.max(np.abs(a - exact))
    assert err <= 1e-9 * vrange, 'affine field off by %g (range %g)' % (err, vrange)


@pytest.mark.parametrize('n,frame,lam_unit', [
    (200, 'unit', 0.0),
    (200, 'utm', 0.0),
    (2000, 'utm', 0.0),
    (2000, 'unit', 0.0),
    (300, 'unit', 1e-3),
    (300, 'utm', 1e-3),
    (2000, 'utm', 1e-4),
])
def test_matches_scipy_float64(tmp_path, n, frame, lam_unit):
    """Float64 raster == scipy RBFInterpolator within 1e-8 x value range;
    lambda is in the output CRS units (the UTM cases use lambda x width^2)."""
    rng = np.random.default_rng(n + int(lam_unit * 1e6) + (frame == 'utm'))
    x0, y0, w = UNIT if frame == 'unit' else utm(n)
    x, y = random_points(n, rng, x0, y0, w)
    z = smooth_values(x, y, rng)
    lam = lam_unit * w * w
    cols, rows = (100, 90) if n <= 300 else (60, 50)
    gt = grid_around(x, y, cols, rows, margin=0.05)
    ds = _open64(tmp_path, x, y, z, gt, (cols, rows), smoothing=lam)
    a = ds.ReadAsArray()
    ref = scipy_ds_ref(ds, x, y, z, lam)
    vrange = np.ptp(z)
    assert_close64(a, ref, vrange, what='n=%d %s lambda=%g' % (n, frame, lam))
    if lam > 0:
        # guard: lambda matters here far beyond the tolerance (a driver that
        # ignored or mis-scaled it would fail)
        ref4 = scipy_ds_ref(ds, x, y, z, 4 * lam)
        ref0 = scipy_ds_ref(ds, x, y, z, 0.0)
        assert np.max(np.abs(ref4 - ref)) > 1e3 * 1e-8 * vrange
        assert np.max(np.abs(ref0 - ref)) > 1e3 * 1e-8 * vrange


@pytest.mark.parametrize('frame', ['unit', 'utm'])
def test_matches_scipy_float32_default(tmp_path, frame):
    """Default data type is Float32 and holds scipy's values to float32
    rounding; it is the Float64 raster rounded."""
    rng = np.random.default_rng(77)
    n = 250
    x0, y0, w = UNIT if frame == 'unit' else utm(n)
    x, y = random_points(n, rng, x0, y0, w)
    z = smooth_values(x, y, rng) + 1000.0
    lam = 1e-4 * w * w
    gt = grid_around(x, y, 80, 70)
    csv = write_csv(tmp_path / 'p.csv', {'x': x, 'y': y, 'z': z})
    p32 = write_tps(tmp_path / 'f32.tps', tps_xml(csv, ['z'], geotransform=gt, size=(80, 70),
                                                  smoothing=lam))
    p64 = write_tps(tmp_path / 'f64.tps', tps_xml(csv, ['z'], geotransform=gt, size=(80, 70),
                                                  smoothing=lam, data_type='Float64'))
    ds32, cap = open_tps(p32)
    assert ds32 is not None, cap.errors
    assert ds32.GetRasterBand(1).DataType == gdal.GDT_Float32
    a32 = ds32.ReadAsArray()
    assert a32.dtype == np.float32
    ref = scipy_ds_ref(ds32, x, y, z, lam)
    assert_close32(a32, ref, np.ptp(z))
    ds64, cap = open_tps(p64)
    assert ds64 is not None, cap.errors
    a64 = ds64.ReadAsArray()
    # Float32 = Float64 rounded to float32 (allow one float32 ulp)
    ulp = np.spacing(np.abs(a64).astype(np.float32))
    assert np.all(np.abs(a32.astype(float) - a64) <= ulp)


def test_rotated_geotransform(tmp_path):
    """Pixel (col,row) is evaluated at gt0+(col+.5)gt1+(row+.5)gt2,
    gt3+(col+.5)gt4+(row+.5)gt5, rotation terms included."""
    rng = np.random.default_rng(3)
    x, y = random_points(150, rng, 1000.0, 2000.0, 500.0)
    z = smooth_values(x, y, rng)
    d = 6.0
    c, s = np.cos(0.4), np.sin(0.4)
    gt = (1000.0 - 50.0, d * c, d * s, 2000.0 + 300.0, d * s, -d * c)
    ds = _open64(tmp_path, x, y, z, gt, (70, 60))
    assert np.allclose(ds.GetGeoTransform(), gt, rtol=1e-14, atol=0)
    ref = scipy_grid(x, y, z, 0.0, gt, 70, 60)
    assert_close64(ds.ReadAsArray(), ref, np.ptp(z))


def _lonlat_points(n, rng):
    lon, lat = random_points(n, rng, 5.70, 50.95, 0.10, 0.06)
    src = osr.SpatialReference()
    src.ImportFromEPSG(4326)
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(28992)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    xy = np.array(ct.TransformPoints(np.column_stack([lon, lat]).tolist()))
    return lon, lat, xy[:, 0], xy[:, 1]


@pytest.mark.parametrize('lam', [0.0, 5e4])
def test_reprojection_4326_to_28992(tmp_path, lam):
    """Points in lon/lat (EPSG:4326, traditional GIS order), raster in
    EPSG:28992: equals scipy fitted on the osr-transformed points; lambda is
    in metres (the output CRS)."""
    rng = np.random.default_rng(17)
    lon, lat, x, y = _lonlat_points(300, rng)
    z = smooth_values(x, y, rng)
    gt = grid_around(x, y, 90, 80)
    csv = write_csv(tmp_path / 'll.csv', {'lon': lon, 'lat': lat, 'zz': z})
    path = write_tps(tmp_path / 'll.tps',
                     tps_xml('ll.csv', ['zz'], xfield='lon', yfield='lat', points_srs='EPSG:4326',
                             srs='EPSG:28992', geotransform=gt, size=(90, 80),
                             smoothing=lam, data_type='Float64'))
    assert csv
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    sr = ds.GetSpatialRef()
    assert sr is not None and sr.GetAuthorityCode(None) == '28992'
    ref = scipy_ds_ref(ds, x, y, z, lam)
    assert_close64(ds.ReadAsArray(), ref, np.ptp(z))
    if lam > 0:
        ref0 = scipy_ds_ref(ds, x, y, z, 0.0)
        assert np.max(np.abs(ref0 - ref)) > 1e-4 * np.ptp(z)  # lambda matters
    # guard: not reprojecting (fitting in degrees) would be grossly different
    assert np.ptp(x) > 1000 * np.ptp(lon)


def test_coincident_points_averaged(tmp_path):
    """Points at the same (x, y) with different z: open succeeds with a
    CE_Warning; lambda = 0 surface passes through their mean, and equals
    scipy on the de-duplicated (averaged) points."""
    rng = np.random.default_rng(23)
    gt = (0.0, 0.5, 0.0, 40.0, 0.0, -0.5)
    cols, rows = 60, 80
    idx = rng.choice(cols * rows, 120, replace=False)
    x = gt[0] + (idx % cols + 0.5) * gt[1]
    y = gt[3] + (idx // cols + 0.5) * gt[5]
    z = rng.uniform(0, 100, len(x))
    # duplicate 5 locations, one of them three times
    dup = [3, 10, 50, 77, 99, 99]
    dz = rng.uniform(0, 100, len(dup))
    X = np.concatenate([x, x[dup]])
    Y = np.concatenate([y, y[dup]])
    Z = np.concatenate([z, dz])
    perm = rng.permutation(len(X))
    csv = write_csv(tmp_path / 'dup.csv', {'x': X[perm], 'y': Y[perm], 'z': Z[perm]})
    path = write_tps(tmp_path / 'dup.tps', tps_xml(csv, ['z'], geotransform=gt,
                                                   size=(cols, rows), data_type='Float64'))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    assert cap.warnings, 'coincident points must raise a CE_Warning'
    mean = z.copy()
    for k in set(dup):
        vals = [z[k]] + [dz[j] for j, d in enumerate(dup) if d == k]
        mean[k] = np.mean(vals)
    a = ds.ReadAsArray()
    c, r = idx % cols, idx // cols
    vrange = np.ptp(Z)
    assert np.max(np.abs(a[r, c] - mean)) <= 1e-9 * vrange
    assert_close64(a, scipy_ds_ref(ds, x, y, mean, 0.0), vrange)
    assert md(ds, 'POINT_COUNT') == str(len(x))


@pytest.mark.parametrize('token', ['', 'nan', 'NaN', 'NA', 'inf', '-inf'])
def test_missing_values_dropped(tmp_path, token):
    """Empty, NaN, NA and infinite values are missing: those points are left
    out and the others interpolated exactly (scipy on the remaining points)."""
    rng = np.random.default_rng(29)
    x, y = random_points(200, rng, 100.0, 100.0, 50.0)
    z = smooth_values(x, y, rng)
    miss = rng.choice(200, 17, replace=False)
    cells = [fmt_ for fmt_ in map(repr, map(float, z))]
    for i in miss:
        cells[i] = token
    csv = write_csv(tmp_path / 'm.csv', {'x': x, 'y': y, 'z': cells})
    gt = grid_around(x, y, 50, 50)
    path = write_tps(tmp_path / 'm.tps', tps_xml(csv, ['z'], geotransform=gt, size=(50, 50),
                                                 data_type='Float64'))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    keep = np.setdiff1d(np.arange(200), miss)
    ref = scipy_ds_ref(ds, x[keep], y[keep], z[keep], 0.0)
    assert_close64(ds.ReadAsArray(), ref, np.ptp(z[keep]))
    # and the full set would have been different (guard)
    full = scipy_ds_ref(ds, x, y, np.where(np.isin(np.arange(200), miss), 0.0, z), 0.0)
    assert np.max(np.abs(full - ref)) > 1e-3 * np.ptp(z)


def _meuse_tps_params(path):
    """(field, smoothing, where) from the shipped .tps, read with ElementTree."""
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    assert root.tag == 'TPSDataset'
    top = root.findtext('Smoothing')
    band = root.find('Band')
    field = band.findtext('Field')
    lam = band.findtext('Smoothing') or top or '0'
    where = root.find('Points').findtext('Where')
    return field, float(lam), where


def test_meuse_zinc_shipped_file():
    """data/meuse_zinc.tps (shipped) equals scipy fitted on meuse x, y and
    the band's field, at every pixel centre (Float32 tolerance)."""
    path = os.path.join(DATA_DIR, 'meuse_zinc.tps')
    assert os.path.exists(path), 'data/meuse_zinc.tps is not shipped'
    field, lam, where = _meuse_tps_params(path)
    assert field == 'zinc'
    cols = meuse_columns()
    keep = np.isfinite(cols[field])
    if where:
        from osgeo import ogr
        src = ogr.Open(os.path.join(DATA_DIR, 'meuse.csv'))
        lyr = src.GetLayer(0)
        assert lyr.SetAttributeFilter(where) == 0
        fids = {f.GetFID() for f in lyr}
        # CSV FIDs start at 1 for the first data line
        keep &= np.isin(np.arange(1, len(keep) + 1), list(fids))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    a = ds.ReadAsArray()
    ref = scipy_ds_ref(ds, cols['x'][keep], cols['y'][keep], cols[field][keep], lam)
    if ds.GetRasterBand(1).DataType == gdal.GDT_Float64:
        assert_close64(a, ref, np.ptp(cols[field][keep]))
    else:
        assert_close32(a, ref, np.ptp(cols[field][keep]))
    assert md(ds, 'POINT_COUNT') == str(int(keep.sum()))


def test_meuse_om_with_na(tmp_path):
    """meuse.csv 'om' has NA entries: they are missing values; the surface is
    scipy's on the other rows; a second band (zinc, lambda>0) is independent."""
    cols = meuse_columns()
    assert np.isnan(cols['om']).sum() >= 1
    keep = np.isfinite(cols['om'])
    gt = (178400.0, 40.0, 0.0, 333800.0, 0.0, -40.0)
    lam = 2e5
    xml = tps_xml(os.path.join(DATA_DIR, 'meuse.csv'),
                  [{'field': 'om'}, {'field': 'zinc', 'smoothing': lam}],
                  geotransform=gt, size=(80, 105), data_type='Float64')
    path = write_tps(tmp_path / 'om.tps', xml)
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    ref = scipy_ds_ref(ds, cols['x'][keep], cols['y'][keep], cols['om'][keep], 0.0)
    assert_close64(ds.GetRasterBand(1).ReadAsArray(), ref, np.nanmax(cols['om']) - np.nanmin(cols['om']))
    refz = scipy_ds_ref(ds, cols['x'], cols['y'], cols['zinc'], lam)
    assert_close64(ds.GetRasterBand(2).ReadAsArray(), refz, np.ptp(cols['zinc']))


def test_geometry_z_band(tmp_path):
    """<GeometryZ/> interpolates the points' Z (GeoJSON 3D points, no
    XField/YField)."""
    from conftest import write_geojson
    rng = np.random.default_rng(31)
    x, y = random_points(150, rng, 10.0, 20.0, 5.0)
    z = smooth_values(x, y, rng)
    src = write_geojson(tmp_path / 'z.geojson', x, y, {'other': np.zeros(150)}, z=z)
    gt = grid_around(x, y, 40, 40)
    path = write_tps(tmp_path / 'gz.tps',
                     tps_xml(src, [{'geometry_z': True}], xfield=None, yfield=None,
                             geotransform=gt, size=(40, 40), data_type='Float64'))
    ds, cap = open_tps(path)
    assert ds is not None, cap.errors
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, x, y, z, 0.0), np.ptp(z))


def test_scipy_reference_sanity():
    """The reference itself: scipy's spline interpolates and reproduces
    planes (so agreement with it is meaningful)."""
    rng = np.random.default_rng(1)
    x, y = random_points(100, rng)
    z = smooth_values(x, y, rng)
    f = scipy_tps(x, y, z)
    assert np.max(np.abs(f(np.column_stack([x, y])) - z)) < 1e-9 * np.ptp(z)
    g = scipy_tps(x, y, 1 + 2 * x - 3 * y, smoothing=1.0)
    q = rng.random((50, 2)) * 3 - 1
    assert np.allclose(g(q), 1 + 2 * q[:, 0] - 3 * q[:, 1], atol=1e-10)
