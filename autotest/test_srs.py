"""A CRS given as text is taken whole or refused (docs/format.md, "CRS strings").

GDAL 3.6's SetFromUserInput reads "EPSG:<code>" with atoi(): alone it takes
"EPSG:28992x" as EPSG:28992 and "EPSG:2899x" as EPSG:2899 (US feet, 8,000 km
away), drops a coordinate epoch, ignores text after a WKT's closing bracket,
and PROJ ignores bare words in a PROJ string. Every place that takes a CRS
string (<SRS>, <Points><SRS>, the SRS open option) is checked here with a
catalogue of near misses, each refused with one CE_Failure naming the file,
the element or option and the problem, and with the accepted forms, each
giving the CRS built independently (osr's ImportFromEPSG / ImportFromWkt /
ImportFromProj4, or the authority and code).
"""
import numpy as np
import pytest
from osgeo import osr

from conftest import open_tps, random_points, tps_xml, write_csv, write_tps


def _epsg(code):
    s = osr.SpatialReference()
    assert s.ImportFromEPSG(code) == 0
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # as the driver's
    return s


def _wkt(code, fmt):
    return _epsg(code).ExportToWkt(['FORMAT=' + fmt])


def _projjson(code):
    return _epsg(code).ExportToPROJJSON()


WKT1 = _wkt(28992, 'WKT1')
WKT2 = _wkt(28992, 'WKT2_2019')
PROJJSON = _projjson(28992)
UTM31 = '+proj=utm +zone=31 +datum=WGS84 +units=m +no_defs'


def _same_as(reference):
    def check(srs):
        assert srs.IsSame(reference), srs.ExportToWkt()
    return check


def _authority(name, code):
    def check(srs):
        assert (srs.GetAuthorityName(None), srs.GetAuthorityCode(None)) == (name, code), \
            srs.ExportToWkt()
    return check


def _proj4(text):
    ref = osr.SpatialReference()
    assert ref.ImportFromProj4(text) == 0
    ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return _same_as(ref)


def _crs84(srs):
    """WGS 84, longitude first (GDAL 3.6 keeps no OGC identifier)."""
    assert srs.IsGeographic() and srs.GetAttrValue('DATUM') == 'WGS_1984', srs.ExportToWkt()
    assert srs.GetAxisOrientation(None, 0) == osr.OAO_East, srs.ExportToWkt()


def _compound(horizontal, vertical):
    def check(srs):
        assert srs.IsCompound(), srs.ExportToWkt()
        assert srs.GetAuthorityCode('PROJCS') == str(horizontal)
        assert srs.GetAuthorityCode('VERT_CS') == str(vertical)
    return check


# (text, check of the dataset's CRS)
ACCEPTED = [
    ('EPSG:28992', _same_as(_epsg(28992))),
    ('epsg:28992', _same_as(_epsg(28992))),        # authority names: any case (GDAL, PROJ)
    ('EPSGA:28992', _same_as(_epsg(28992))),
    ('  EPSG:28992\n', _same_as(_epsg(28992))),    # white space around: trimmed
    ('EPSG:28992+5709', _compound(28992, 5709)),   # RD New + NAP height
    ('EPSG:28992+EPSG:5709', _compound(28992, 5709)),
    ('urn:ogc:def:crs:EPSG::28992', _same_as(_epsg(28992))),
    ('http://www.opengis.net/def/crs/EPSG/0/28992', _same_as(_epsg(28992))),
    ('ESRI:102100', _authority('ESRI', '102100')),
    ('IGNF:LAMB93', _authority('IGNF', 'LAMB93')),
    ('OGC:CRS84', _crs84),
    ('WGS84', _same_as(_epsg(4326))),
    (WKT1, _same_as(_epsg(28992))),
    (WKT2, _same_as(_epsg(28992))),
    (WKT2 + '\n  ', _same_as(_epsg(28992))),
    (PROJJSON, _same_as(_epsg(28992))),
    (UTM31, _proj4(UTM31)),
]

# (text, words the message must hold besides the file and the element)
REFUSED = [
    ('EPSG:28992x', ["trailing characters 'x' after 'EPSG:28992'"]),
    ('EPSG:2899x', ["trailing characters 'x' after 'EPSG:2899'"]),
    ('EPSG:28992 x', ["trailing characters ' x'"]),
    ('EPSG:28992,', ["trailing characters ','"]),
    ('EPSG:28992;', ["trailing characters ';'"]),
    ('EPSG:28992.0', ["trailing characters '.0'"]),
    ('EPSG:28992 EPSG:4326', ['trailing characters']),
    ('EPSG:9000@2025.0', ["trailing characters '@2025.0'"]),   # GDAL 3.6 drops the epoch
    ('EPSG:', ["no code after 'EPSG:'"]),
    ('EPSG::28992', ['expected an EPSG code']),
    ('EPSG: 28992', ['expected an EPSG code']),
    ('EPSG:+28992', ['expected an EPSG code']),
    ('EPSG:-28992', ['expected an EPSG code']),
    ('EPSG:028992', ["does not start with 0, got '028992'"]),
    ('EPSG:0x28992', ["does not start with 0, got '0x28992'"]),
    ('EPSGA:28992x', ['trailing characters']),
    ('EPSG:28992+', ['no code after']),
    ('EPSG:28992+5709x', ["trailing characters 'x'"]),
    ('EPSG:28992+NAP', ['expected an EPSG code']),
    ('EPSG:999999', ['cannot interpret']),           # well formed, no such code
    ('EPSG 28992', ['cannot interpret']),
    ('28992', ['cannot interpret']),
    ('urn:ogc:def:crs:EPSG::28992x', ['cannot interpret']),
    ('urn:ogc:def:crs:EPSG::28992:junk', ['cannot interpret']),
    ('http://www.opengis.net/def/crs/EPSG/0/28992x', ['cannot interpret']),
    ('ESRI:102100x', ['cannot interpret']),
    ('IGNF:LAMB93x', ['cannot interpret']),
    ('OGC:CRS84x', ['cannot interpret']),
    ('WGS84x', ['cannot interpret']),
    ('garbage', ['cannot interpret']),
    (WKT1 + 'junk', ["trailing characters 'junk' after the WKT's closing bracket"]),
    (WKT1 + ']', ["trailing characters ']'"]),
    (WKT2 + ' EPSG:4326', ["trailing characters 'EPSG:4326'"]),
    (WKT1[:-1], ['cannot interpret']),             # PROJ's own message
    (WKT1.replace('"Amersfoort"', '"Amersfoort'), ['cannot interpret']),
    (PROJJSON + 'junk', ['cannot interpret']),
    (PROJJSON + '}', ['cannot interpret']),
    (UTM31 + ' junk', ["'junk' in a PROJ string is not a +key"]),
    ('+proj=utm zone=31 +datum=WGS84', ["'zone=31' in a PROJ string"]),
]

# Where a CRS string is given: (.tps element or open option, its label in messages)
PLACES = ['output', 'points', 'option']
LABEL = {'output': '<SRS>:', 'points': '<Points><SRS>:', 'option': 'SRS:'}


@pytest.fixture
def src(tmp_path):
    """30 points in [0, 10]^2 (plausible in any CRS of the catalogue), no CRS."""
    rng = np.random.default_rng(5)
    x, y = random_points(30, rng, 0.0, 0.0, 10.0)
    write_csv(tmp_path / 'pts.csv', {'x': x, 'y': y, 'v': x + 2 * y})
    return tmp_path


def _open(src, place, text, name='s.tps'):
    """Opens the points with `text` as the CRS at `place`; returns (ds, errors,
    the name a message must hold)."""
    oo = ['MODEL_CACHE=NO']
    if place == 'option':
        path = 'TPS:' + str(src / 'pts.csv')
        oo += ['FIELD=v', 'XFIELD=x', 'YFIELD=y', 'EXTENT=0 0 10 10', 'SIZE=4 4', 'SRS=' + text]
        shown = 'pts.csv'
    else:
        kw = {'srs': text} if place == 'output' else {'points_srs': text}
        path = write_tps(src / name, tps_xml('pts.csv', ['v'], size=(4, 4), extent=(0, 0, 10, 10),
                                             **kw))
        shown = name
    ds, cap = open_tps(path, oo)
    return ds, cap, shown


# An open option's value is a line of its own: no new lines there.
ACCEPTED_CASES = [pytest.param(place, text, check, id='%s-%s' % (place, text[:30]))
                  for text, check in ACCEPTED for place in PLACES
                  if not (place == 'option' and '\n' in text)]


@pytest.mark.parametrize('place,text,check', ACCEPTED_CASES)
def test_accepted(src, place, text, check):
    ds, cap, _ = _open(src, place, text)
    assert ds is not None, cap.errors
    assert not cap.failures, cap.failures
    check(ds.GetSpatialRef())
    assert np.isfinite(ds.ReadAsArray()).all()


@pytest.mark.parametrize('place', PLACES)
@pytest.mark.parametrize('text,words', REFUSED, ids=[r[0][:30] for r in REFUSED])
def test_refused(src, place, text, words):
    ds, cap, shown = _open(src, place, text)
    assert ds is None, 'a CRS of %r was taken: %s' % (text, ds.GetSpatialRef().ExportToWkt())
    fails = cap.failures
    assert len(fails) == 1, fails
    msg = fails[0]
    assert shown in msg and LABEL[place] in msg, msg
    if place == 'output':
        assert '<Points><SRS>' not in msg, msg
    assert "cannot interpret '%s" % text.strip()[:60] in msg, msg
    for w in words:
        assert w in msg, msg


def test_mistyped_points_crs_is_not_another_crs(src):
    """The issue's case: points in EPSG:2899x, output EPSG:28992. GDAL alone
    would take EPSG:2899 (Mississippi East, US feet) and move every point
    8,000 km; the open must fail instead."""
    path = write_tps(src / 'm.tps', tps_xml('pts.csv', ['v'], size=(4, 4), extent=(0, 0, 10, 10),
                                            points_srs='EPSG:2899x', srs='EPSG:28992'))
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'])
    assert ds is None
    assert len(cap.failures) == 1 and 'm.tps' in cap.failures[0] and \
        "<Points><SRS>: cannot interpret 'EPSG:2899x' as a CRS: trailing characters 'x'" \
        in cap.failures[0], cap.failures



@pytest.mark.parametrize('place', PLACES)
def test_file_named_as_crs_is_not_read(src, place):
    """GDAL would read a CRS from a file named in its place; a data file must
    not make the driver read other files (nor fetch URLs)."""
    wkt_file = src / 'crs.wkt'
    wkt_file.write_text(WKT1)
    ds, cap, shown = _open(src, place, str(wkt_file))
    assert ds is None
    assert len(cap.failures) == 1 and shown in cap.failures[0] and \
        LABEL[place] in cap.failures[0], cap.failures
