"""Masks: <MaxDistance> and <ConvexHull> (open options MAX_DISTANCE,
CONVEX_HULL) make pixels NoData, and the GDAL mask band says so.

The reference is computed here, independently of the driver, at the pixel
centres of the grid: scipy.spatial.cKDTree's nearest-point distance for
MaxDistance (kept when <= MaxDistance) and scipy.spatial.Delaunay's
find_simplex >= 0 for the convex hull, on random points; one case with
integer geometry (pixel centres exactly on the hull and exactly
MaxDistance from a point) is checked against the answer worked out by hand.

Checked: the NaN pattern of Float32/Float64 reads and the 0/255 mask band
against the reference, for the full raster, several windows, block-cache
reads, a rotated grid and the overviews; kept pixels equal the unmasked
surface byte for byte; NoData reporting (NaN by default, <NoDataValue>
when given) and mask flags; integer buffers; thread counts; fully masked
windows evaluate nothing (PIXELS_EVALUATED); the TPS: form's open options;
gdal_translate to GeoTIFF keeps NoData and the mask.
"""
import numpy as np
import pytest
from osgeo import gdal
from scipy.spatial import Delaunay, cKDTree

from conftest import (assert_close32, open_tps, pixel_centres, random_points, run, scipy_grid,
                      smooth_values, tps_xml, write_csv, write_tps)

MAXD = 0.9
EXTENT = (-2.0, -1.5, 12.0, 11.5)  # the points fill [0, 10]^2: a margin to mask
SIZE = (140, 130)


@pytest.fixture(scope='module')
def pts(tmp_path_factory):
    d = tmp_path_factory.mktemp('masks')
    rng = np.random.default_rng(21)
    x, y = random_points(120, rng, 0.0, 0.0, 10.0)
    # a hull with a long, slanted edge: drop the points above the diagonal's top
    keep = y < 4 + 0.8 * x
    x, y = x[keep], y[keep]
    z = smooth_values(x, y, rng)
    write_csv(d / 'p.csv', {'x': x, 'y': y, 'z': z, 'w': 3 * z - x})
    return {'dir': d, 'x': x, 'y': y, 'z': z}


def make(pts, name, maxd=None, hull=False, **kw):
    extra = kw.pop('extra', '')
    if maxd is not None:
        extra += '<MaxDistance>%r</MaxDistance>' % maxd
    if hull:
        extra += '<ConvexHull>true</ConvexHull>'
    kw.setdefault('extent', EXTENT)
    kw.setdefault('size', SIZE)
    bands = kw.pop('bands', ['z'])
    return write_tps(pts['dir'] / name, tps_xml('p.csv', bands, extra=extra, **kw))


def reference_keep(pts, gt, cols, rows, maxd, hull, xoff=0, yoff=0):
    """True where the pixel is kept, from scipy."""
    X, Y = pixel_centres(gt, cols, rows, xoff, yoff)
    q = np.column_stack([X.ravel(), Y.ravel()])
    p = np.column_stack([pts['x'], pts['y']])
    keep = np.ones(len(q), bool)
    if maxd is not None:
        dist, _ = cKDTree(p).query(q)
        keep &= dist <= maxd
    if hull:
        keep &= Delaunay(p).find_simplex(q) >= 0
    return keep.reshape(X.shape)


def opened(path, oo=None):
    ds, cap = open_tps(path, oo)
    assert ds is not None, cap.errors
    return ds


CASES = [(MAXD, False), (None, True), (MAXD, True), (2.5, True)]


@pytest.mark.parametrize('data_type', ['Float32', 'Float64'])
@pytest.mark.parametrize('maxd,hull', CASES)
def test_mask_matches_scipy(pts, maxd, hull, data_type):
    ds = opened(make(pts, 'm.tps', maxd, hull, data_type=data_type))
    plain = opened(make(pts, 'plain.tps', data_type=data_type))
    band = ds.GetRasterBand(1)
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, maxd, hull)
    assert 0.2 < ref.mean() < 0.95  # both kinds of pixels, many of each
    a = band.ReadAsArray()
    np.testing.assert_array_equal(~np.isnan(a), ref)
    # kept pixels: the unmasked surface, bit for bit, which is scipy's spline
    b = plain.GetRasterBand(1).ReadAsArray()
    assert a[ref].tobytes() == b[ref].tobytes()
    zref = scipy_grid(pts['x'], pts['y'], pts['z'], 0.0, ds.GetGeoTransform(), *SIZE)
    assert_close32(a[ref], zref[ref], np.ptp(pts['z']), rel=1e-6)
    # the mask band
    assert band.GetMaskFlags() == gdal.GMF_PER_DATASET
    m = band.GetMaskBand()
    assert m.DataType == gdal.GDT_Byte
    mv = m.ReadAsArray()
    assert set(np.unique(mv)) == {0, 255}
    np.testing.assert_array_equal(mv == 255, ref)
    # NoData: NaN when <NoDataValue> is not given
    nd = band.GetNoDataValue()
    assert nd is not None and np.isnan(nd)


def test_windows_blocks_and_threads_give_the_same_bytes(pts):
    p = make(pts, 'win.tps', MAXD, True, data_type='Float64', block_size=(37, 23),
             bands=['z', 'w'])
    ds = opened(p, ['NUM_THREADS=1'])
    full = ds.ReadAsArray()
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    for b in range(2):
        np.testing.assert_array_equal(~np.isnan(full[b]), ref)
    for (x0, y0, w, h) in [(0, 0, 140, 130), (3, 5, 40, 33), (100, 90, 40, 40), (0, 0, 1, 1),
                           (70, 0, 1, 130), (0, 64, 140, 1), (120, 0, 20, 20)]:
        win = ds.ReadAsArray(x0, y0, w, h)
        assert win.tobytes() == full[:, y0:y0 + h, x0:x0 + w].tobytes(), (x0, y0, w, h)
        mw = ds.GetRasterBand(1).GetMaskBand().ReadAsArray(x0, y0, w, h)
        np.testing.assert_array_equal(mw == 255, ref[y0:y0 + h, x0:x0 + w])
    # block-cache path: a complex buffer type is not the direct path, so
    # GDAL reads the 37 x 23 blocks (all bands of a block at once)
    blocks = opened(p, ['NUM_THREADS=2'])
    for b in range(2):
        c = blocks.GetRasterBand(b + 1).ReadAsArray(buf_type=gdal.GDT_CFloat64)
        assert c.real.tobytes() == full[b].tobytes()
    # several threads: the same bytes
    threads = opened(p, ['NUM_THREADS=4'])
    assert threads.ReadAsArray().tobytes() == full.tobytes()


def test_nodata_value_given(pts):
    ds = opened(make(pts, 'nd.tps', MAXD, True, nodata=-9999))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == -9999
    a = band.ReadAsArray()
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    assert (a[~ref] == -9999).all() and (a[ref] != -9999).all() and np.isfinite(a).all()
    # Float64 reads of the Float32 raster give the same values
    a64 = band.ReadAsArray(buf_type=gdal.GDT_Float64)
    np.testing.assert_array_equal(a64, a.astype(np.float64))


def test_no_mask_no_nodata(pts):
    ds = opened(make(pts, 'none.tps'))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() is None
    assert band.GetMaskFlags() == gdal.GMF_ALL_VALID
    assert np.isfinite(band.ReadAsArray()).all()
    # MaxDistance larger than the raster's diagonal: every pixel kept
    ds = opened(make(pts, 'huge.tps', 100.0))
    assert ds.GetRasterBand(1).GetMaskBand().ReadAsArray().min() == 255
    assert np.isfinite(ds.ReadAsArray()).all()


def test_integer_buffers(pts):
    """Integer reads (NaN cannot be stored) rely on the mask band; with an
    integer <NoDataValue> the masked pixels carry it too."""
    ds = opened(make(pts, 'int.tps', MAXD, True, nodata=-32768))
    band = ds.GetRasterBand(1)
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    a = band.ReadAsArray(buf_type=gdal.GDT_Int16)
    assert a.dtype == np.int16
    assert (a[~ref] == -32768).all()
    f = band.ReadAsArray()
    np.testing.assert_array_equal(a[ref], np.round(f[ref]).astype(np.int16))
    np.testing.assert_array_equal(band.GetMaskBand().ReadAsArray() == 255, ref)


def test_rotated_grid(pts):
    gt = (-3.0, 0.08, 0.03, 12.0, 0.02, -0.09)
    ds = opened(make(pts, 'rot.tps', MAXD, True, geotransform=gt, extent=None, size=(150, 140)))
    ref = reference_keep(pts, gt, 150, 140, MAXD, True)
    assert 0.2 < ref.mean() < 0.9
    np.testing.assert_array_equal(~np.isnan(ds.ReadAsArray()), ref)
    np.testing.assert_array_equal(ds.GetRasterBand(1).GetMaskBand().ReadAsArray() == 255, ref)


def test_overviews_mask_consistently(pts):
    size = (1100, 1000)
    p = make(pts, 'ovr.tps', MAXD, True, size=size, data_type='Float64')
    ds = opened(p)
    band = ds.GetRasterBand(1)
    mask = band.GetMaskBand()
    assert band.GetOverviewCount() == 2
    assert mask.GetOverviewCount() == 2
    gt = ds.GetGeoTransform()
    for i in range(2):
        ov = band.GetOverview(i)
        ovx, ovy = ov.XSize, ov.YSize
        ogt = (gt[0], gt[1] * size[0] / ovx, gt[2] * size[1] / ovy,
               gt[3], gt[4] * size[0] / ovx, gt[5] * size[1] / ovy)
        ref = reference_keep(pts, ogt, ovx, ovy, MAXD, True)
        a = ov.ReadAsArray()
        np.testing.assert_array_equal(~np.isnan(a), ref)
        assert ov.GetMaskFlags() == gdal.GMF_PER_DATASET
        np.testing.assert_array_equal(ov.GetMaskBand().ReadAsArray() == 255, ref)
        np.testing.assert_array_equal(mask.GetOverview(i).ReadAsArray() == 255, ref)
        # the same bytes as a .tps written with the overview's grid
        same = opened(make(pts, 'ovr%d.tps' % i, MAXD, True, geotransform=ogt, extent=None,
                           size=(ovx, ovy), data_type='Float64'))
        assert same.ReadAsArray().tobytes() == a.tobytes()
    # a downsampled read goes to an overview and keeps its NoData
    small = band.ReadAsArray(buf_xsize=275, buf_ysize=250)
    assert np.isnan(small).any() and np.isfinite(small).any()


def test_exact_geometry_on_the_boundary():
    """Corners of the square [0, 10]^2 plus its centre; pixel centres at the
    integers -2 .. 12. Hull: kept exactly for 0 <= x, y <= 10 (the boundary
    is inside). MaxDistance 1: kept exactly at the 5 points and their 4
    neighbours at distance 1 (distance == MaxDistance is kept)."""
    with_vsimem = '/vsimem/mask_exact'
    gdal.FileFromMemBuffer(with_vsimem + '/p.csv',
                           'x,y,z\n0,0,1\n10,0,2\n0,10,3\n10,10,4\n5,5,0\n')
    try:
        xml = tps_xml('p.csv', ['z'], extent=(-2.5, -2.5, 12.5, 12.5), size=(15, 15),
                      extra='<ConvexHull>true</ConvexHull>')
        gdal.FileFromMemBuffer(with_vsimem + '/h.tps', xml)
        ds = opened(with_vsimem + '/h.tps', ['MODEL_CACHE=NO'])
        X, Y = pixel_centres(ds.GetGeoTransform(), 15, 15)
        ref = (X >= 0) & (X <= 10) & (Y >= 0) & (Y <= 10)
        np.testing.assert_array_equal(ds.GetRasterBand(1).GetMaskBand().ReadAsArray() == 255, ref)

        xml = xml.replace('<ConvexHull>true</ConvexHull>', '<MaxDistance>1</MaxDistance>')
        gdal.FileFromMemBuffer(with_vsimem + '/d.tps', xml)
        ds = opened(with_vsimem + '/d.tps', ['MODEL_CACHE=NO'])
        pts = [(0, 0), (10, 0), (0, 10), (10, 10), (5, 5)]
        ref = np.zeros(X.shape, bool)
        for px, py in pts:
            ref |= (np.abs(X - px) + np.abs(Y - py)) <= 1  # integer lattice: L1 <= 1 <=> L2 <= 1
        assert ref.sum() == 25
        np.testing.assert_array_equal(ds.GetRasterBand(1).GetMaskBand().ReadAsArray() == 255, ref)
    finally:
        for f in ('p.csv', 'h.tps', 'd.tps'):
            gdal.Unlink(with_vsimem + '/' + f)


def test_masked_windows_are_not_evaluated(pts):
    ds = opened(make(pts, 'skip.tps', MAXD, True))
    band = ds.GetRasterBand(1)

    def evaluated():
        return int(ds.GetMetadataItem('PIXELS_EVALUATED', 'TPS'))
    # the top-left corner is far from every point
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    assert not ref[:15, :15].any()
    n0 = evaluated()
    assert np.isnan(band.ReadAsArray(0, 0, 15, 15)).all()
    assert evaluated() == n0
    # a partly masked window evaluates no more than the kept pixels' bounding box
    band.ReadAsArray(0, 0, 140, 130)
    rows, cols = np.nonzero(ref)
    assert evaluated() - n0 <= (np.ptp(rows) + 1) * 140
    assert evaluated() - n0 < 140 * 130


def test_open_options_and_tps_form(pts):
    src = str(pts['dir'] / 'p.csv')
    common = ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'EXTENT=%s' % ','.join(map(repr, EXTENT)),
              'SIZE=%d,%d' % SIZE]
    ds = opened('TPS:' + src, common + ['MAX_DISTANCE=%r' % MAXD, 'CONVEX_HULL=YES'])
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    np.testing.assert_array_equal(~np.isnan(ds.ReadAsArray()), ref)
    # the options override the file
    p = make(pts, 'oo.tps', 5.0, False)
    ds = opened(p, ['MAX_DISTANCE=%r' % MAXD, 'CONVEX_HULL=TRUE'])
    np.testing.assert_array_equal(~np.isnan(ds.ReadAsArray()), ref)
    ds = opened(make(pts, 'oo2.tps', None, True), ['CONVEX_HULL=NO'])
    assert ds.GetRasterBand(1).GetMaskFlags() == gdal.GMF_ALL_VALID


def test_local_mode_masks_the_same(pts):
    p = make(pts, 'local.tps', MAXD, True, extra='<Mode>LOCAL</Mode><PatchPoints>30</PatchPoints>')
    ds = opened(p, ['MODEL_CACHE=NO'])
    assert ds.GetMetadataItem('MODE', 'TPS') == 'LOCAL'
    ref = reference_keep(pts, ds.GetGeoTransform(), *SIZE, MAXD, True)
    np.testing.assert_array_equal(~np.isnan(ds.ReadAsArray()), ref)


def test_gdal_translate_keeps_nodata_and_mask(pts, tmp_path):
    for name, nodata in (('nan', None), ('num', -9999)):
        p = make(pts, 'tr_%s.tps' % name, MAXD, True, nodata=nodata)
        out = tmp_path / ('out_%s.tif' % name)
        run(['gdal_translate', '-q', p, out])
        src = opened(p)
        t = gdal.Open(str(out))
        tb = t.GetRasterBand(1)
        nd = tb.GetNoDataValue()
        if nodata is None:
            assert nd is not None and np.isnan(nd)
        else:
            assert nd == nodata
        assert tb.ReadAsArray().tobytes() == src.ReadAsArray().tobytes()
        ref = reference_keep(pts, src.GetGeoTransform(), *SIZE, MAXD, True)
        np.testing.assert_array_equal(tb.GetMaskBand().ReadAsArray() == 255, ref)
        t = None
    # an integer copy: NaN cannot be its NoData, the mask still says what is missing
    out = tmp_path / 'int.tif'
    run(['gdal_translate', '-q', '-ot', 'Int16', make(pts, 'tr_int.tps', MAXD, True), out])
    t = gdal.Open(str(out))
    ref = reference_keep(pts, t.GetGeoTransform(), *SIZE, MAXD, True)
    np.testing.assert_array_equal(t.GetRasterBand(1).GetMaskBand().ReadAsArray() == 255, ref)


def test_threads_with_their_own_handles(pts):
    """The mask structures are read-only after open: 6 threads, each with its
    own handle (and its overview levels), reading random windows give the
    serial read's bytes."""
    import threading
    p = make(pts, 'conc.tps', MAXD, True, size=(600, 560), block_size=(64, 64),
             data_type='Float64')
    serial = opened(p).ReadAsArray()
    rng = np.random.default_rng(5)
    jobs = [[(int(rng.integers(0, 550)), int(rng.integers(0, 510)), int(rng.integers(1, 50)),
              int(rng.integers(1, 50))) for _ in range(25)] for _ in range(6)]
    bad, errors, done = [], [], []

    def worker(windows):
        # An exception in a thread would be lost with the thread: keep it.
        try:
            ds = opened(p)
            band = ds.GetRasterBand(1)
            for x0, y0, w, h in windows:
                a = band.ReadAsArray(x0, y0, w, h)
                m = band.GetMaskBand().ReadAsArray(x0, y0, w, h)
                s = serial[y0:y0 + h, x0:x0 + w]
                if a.tobytes() != s.tobytes() or not np.array_equal(m == 255, ~np.isnan(s)):
                    bad.append((x0, y0, w, h))
                done.append((x0, y0, w, h))
        except Exception as e:  # surfaced below, with the windows read so far
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not bad, bad
    assert len(done) == sum(len(j) for j in jobs)
