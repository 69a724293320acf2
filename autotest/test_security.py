"""Safe to open from strangers (docs/security.md).

* TPS_ALLOWED_SOURCES: under the default (LOCAL) a loopback HTTP server
  and a loopback TCP listener receive no connection from .tps files, TPS:
  strings or inline XML that name them (/vsicurl/, CSV:/vsicurl/, http://,
  /vsizip/ over /vsicurl/, a local OGR VRT that names them, PG:); with ALL
  the same sources do connect (the probes can see a connection);
  SIBLING_OR_CHILD refuses '..', absolute paths, symbolic links out of the
  folder (of the source and of a shapefile's .dbf), the TPS: form and
  inline XML, and takes files and archives in the folder; LOCAL takes local
  files anywhere, refuses FIFOs; prefix lists;
* leaks: the refusals say nothing about a 0600 file outside the folder
  (the same text whether it exists or not, whatever <Where> says); field
  values and secrets of connection strings are not in error messages
  (values are, with CPL_DEBUG=TPS);
* caps, checked before the work: 20,000 bands refused by TPS_MAX_BANDS
  before the source is even looked at; distinct solves (TPS_MAX_SOLVES, at
  parse time and from the missing values); bands of one smoothing share
  one factorisation; TPS_MAX_POINTS and TPS_MAX_MEMORY stop reading (a bad
  value after the cap is never reached); TPS_MAX_MEMORY is one budget for
  the process; a one-pixel read of a many-band data set stays within
  GDAL_CACHEMAX;
* locks: a garbage lock, a symbolic link, another user's lock are not
  waited for, and no model file is written;
* the model file: its mode is no wider than the source's; it is not read
  when it is a link, another user's, writable by others, or inside an
  archive; it is not written in a world-writable folder without the
  sticky bit nor in another user's folder.
Timeouts here only keep a broken build from hanging the suite; nothing is
asserted about time.
"""
import http.server
import os
import socket
import stat
import subprocess
import threading
import zipfile

import numpy as np
import pytest
from osgeo import gdal

from conftest import (PYTHON, ErrorCapture, assert_open_fails, md, open_tps, random_points,
                      smooth_values, subprocess_env, tps_xml, write_csv, write_tps)

EXT = (0.0, 0.0, 10.0, 10.0)
IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0
OTHER_UID = 54321  # a user that owns nothing here


def csv_text(n=40, seed=5):
    rng = np.random.default_rng(seed)
    x, y = random_points(n, rng, 0.0, 0.0, 10.0)
    z = smooth_values(x, y, rng)
    lines = ['x,y,z'] + ['%r,%r,%r' % (float(a), float(b), float(c)) for a, b, c in zip(x, y, z)]
    return '\n'.join(lines) + '\n'


def points(folder, name='pts.csv', n=40, seed=5):
    p = folder / name
    p.write_text(csv_text(n, seed))
    return str(p)


def tps(folder, source, name='t.tps', bands=('z',), **kw):
    kw.setdefault('size', (8, 8))
    kw.setdefault('extent', EXT)
    return write_tps(folder / name, tps_xml(source, list(bands), **kw))


class config:
    """GDAL configuration options for a block (None: unset)."""

    def __init__(self, **options):
        self.options = options

    def __enter__(self):
        self.old = {k: gdal.GetConfigOption(k) for k in self.options}
        for k, v in self.options.items():
            gdal.SetConfigOption(k, v)

    def __exit__(self, *a):
        for k, v in self.old.items():
            gdal.SetConfigOption(k, v)


def opens(name, oo=None, **options):
    with config(**options):
        ds, cap = open_tps(name, oo)
    return ds, cap


def model_path(p):
    """The file this configuration's model is kept in (MODEL_FILE, one per
    configuration: docs/format.md), found by an open that writes nothing."""
    with config(TPS_MODEL_CACHE='READ_ONLY'):
        ds, cap = open_tps(p)
    assert ds is not None, cap.errors
    path = md(ds, 'MODEL_FILE')
    ds = None
    assert path and path.startswith(str(p) + '.model.'), path
    return path


def refusal(name, oo=None, **options):
    """The open fails; its failure messages, joined."""
    ds, cap = opens(name, oo, **options)
    assert ds is None, 'opened %s' % name
    assert cap.failures, cap.errors
    return ' | '.join(cap.failures)


# ----------------------------------------------------------------- probes

class HTTPProbe:
    """A loopback HTTP server that serves pts.csv and counts the
    connections it accepts."""

    def __init__(self, body):
        probe = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = body.encode()
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self):
                self.send_response(200)
                self.send_header('Content-Length', str(len(body.encode())))
                self.end_headers()

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def verify_request(self, request, client_address):
                probe.connections += 1
                return True

        self.connections = 0
        self.server = Server(('127.0.0.1', 0), Handler)
        self.server.timeout = 0.2
        self.port = self.server.server_address[1]
        self.url = 'http://127.0.0.1:%d/pts.csv' % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.1},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TCPProbe:
    """A loopback TCP listener that accepts, counts and closes connections
    (a database client then fails at once)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # accept() wakes up to see `stop`
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def http_probe():
    p = HTTPProbe(csv_text())
    yield p
    p.close()


@pytest.fixture
def tcp_probe():
    p = TCPProbe()
    yield p
    p.close()


# Bounded HTTP for the opens that are allowed to connect.
HTTP_BOUNDS = dict(GDAL_HTTP_TIMEOUT='10', GDAL_HTTP_MAX_RETRY='0', CPL_VSIL_CURL_USE_HEAD='NO',
                   GDAL_DISABLE_READDIR_ON_OPEN='EMPTY_DIR')


def network_sources(url, folder):
    """Ways a .tps can name the loopback server."""
    vrt = folder / 'remote.vrt'
    vrt.write_text('<OGRVRTDataSource><OGRVRTLayer name="pts">'
                   '<SrcDataSource>/vsicurl/%s</SrcDataSource>'
                   '<GeometryType>wkbNone</GeometryType></OGRVRTLayer></OGRVRTDataSource>' % url)
    return {'vsicurl': '/vsicurl/' + url,
            'csv_prefix': 'CSV:/vsicurl/' + url,
            'http': url,
            'zip_over_curl': '/vsizip//vsicurl/%s.zip/pts.csv' % url,
            'local_ogr_vrt': str(vrt)}


@pytest.mark.parametrize('form', ['tps', 'connection', 'inline'])
def test_default_policy_makes_no_http_connection(tmp_path, http_probe, form):
    sources = network_sources(http_probe.url, tmp_path)
    for key, src in sources.items():
        if form == 'tps':
            name, oo = tps(tmp_path, src, name=key + '.tps'), None
        elif form == 'connection':
            name, oo = 'TPS:' + src, ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=8,8']
        else:
            name, oo = tps_xml(src, ['z'], size=(8, 8), extent=EXT), None
        msg = refusal(name, oo, **HTTP_BOUNDS)
        assert 'TPS_ALLOWED_SOURCES' in msg, (key, msg)
        assert http_probe.connections == 0, (key, msg)


def test_all_policy_does_connect(tmp_path, http_probe):
    """The control: the probe sees a connection when the policy allows one,
    and the raster is the server's points."""
    p = tps(tmp_path, '/vsicurl/' + http_probe.url)
    ds, cap = opens(p, TPS_ALLOWED_SOURCES='ALL', **HTTP_BOUNDS)
    assert ds is not None, cap.errors
    assert http_probe.connections >= 1
    ref, cap = opens(tps(tmp_path, points(tmp_path), name='local.tps'))
    assert ref is not None, cap.errors
    np.testing.assert_array_equal(ds.ReadAsArray(), ref.ReadAsArray())


def test_prefix_list_allows_what_it_lists(tmp_path, http_probe):
    p = tps(tmp_path, '/vsicurl/' + http_probe.url)
    prefix = '/vsicurl/http://127.0.0.1:%d/' % http_probe.port
    ds, cap = opens(p, TPS_ALLOWED_SOURCES='LOCAL,' + prefix, **HTTP_BOUNDS)
    assert ds is not None, cap.errors
    assert http_probe.connections >= 1
    seen = http_probe.connections
    # another port is not listed; neither is a host name that only starts
    # like the listed one
    other = '/vsicurl/http://127.0.0.1:%d/pts.csv' % (http_probe.port + 1)
    longer = '/vsicurl/http://127.0.0.1:%d0/pts.csv' % http_probe.port
    for src in (other, longer):
        msg = refusal(tps(tmp_path, src, name='o.tps'),
                      TPS_ALLOWED_SOURCES='LOCAL ' + prefix.rstrip('/'), **HTTP_BOUNDS)
        assert 'TPS_ALLOWED_SOURCES' in msg
    assert http_probe.connections == seen
    # local files still open under that list (LOCAL is in it) ...
    ds, cap = opens(tps(tmp_path, points(tmp_path), name='l.tps'),
                    TPS_ALLOWED_SOURCES='LOCAL,' + prefix)
    assert ds is not None, cap.errors
    # ... and not under a list of prefixes only
    msg = refusal(tps(tmp_path, points(tmp_path), name='l2.tps'), TPS_ALLOWED_SOURCES=prefix)
    assert 'prefixes' in msg


def pg_source(port, password='hunter2x'):
    return ('PG:host=127.0.0.1 port=%d dbname=points user=reader password=%s connect_timeout=5'
            % (port, password))


def test_default_policy_makes_no_database_connection(tmp_path, tcp_probe):
    src = pg_source(tcp_probe.port)
    for name, oo in [(tps(tmp_path, src), None),
                     ('TPS:' + src, ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=8,8']),
                     (tps_xml(src, ['z'], size=(8, 8), extent=EXT), None)]:
        msg = refusal(name, oo)
        assert 'TPS_ALLOWED_SOURCES' in msg and 'PG:' in msg, msg
        assert 'hunter2x' not in msg, msg
    assert tcp_probe.connections == 0


def test_default_policy_where_is_no_oracle(tmp_path, tcp_probe, http_probe):
    """Under the default policy a database or web source is refused before
    <Where> means anything: the same answer whatever it asks."""
    for src in (pg_source(tcp_probe.port), '/vsicurl/' + http_probe.url):
        msgs = set()
        for where in ["password = 'hunter2x'", "password = 'other'", 'z &gt; 0', '1 = 0']:
            msgs.add(refusal(tps(tmp_path, src, name='w.tps', where=where), **HTTP_BOUNDS))
        assert len(msgs) == 1, msgs
    assert tcp_probe.connections == 0 and http_probe.connections == 0


def test_prefix_list_allows_a_database(tmp_path, tcp_probe):
    """With 'PG:' listed the driver connects (the control); the failure
    that follows does not carry the password."""
    if gdal.GetDriverByName('PostgreSQL') is None:
        pytest.skip('this GDAL has no PostgreSQL driver')
    msg = refusal(tps(tmp_path, pg_source(tcp_probe.port)), TPS_ALLOWED_SOURCES='LOCAL,PG:')
    assert tcp_probe.connections >= 1
    assert 'hunter2x' not in msg, msg


# -------------------------------------------------------- SIBLING_OR_CHILD

@pytest.fixture
def site(tmp_path):
    """A .tps folder, a subfolder, and a 0600 secret CSV outside it."""
    site = tmp_path / 'site'
    (site / 'sub').mkdir(parents=True)
    outside = tmp_path / 'outside'
    outside.mkdir()
    secret = outside / 'secret.csv'
    secret.write_text('x,y,z,password\n' + ''.join(
        '%d,%d,%d,pw%06d\n' % (i % 7, (i * 3) % 11, 1000 + i, 424242 + i) for i in range(30)))
    os.chmod(secret, 0o600)
    points(site)
    points(site / 'sub')
    return {'site': site, 'outside': outside, 'secret': str(secret)}


def test_sibling_or_child_takes_the_folder(site):
    s = site['site']
    (s / 'link_in.csv').symlink_to(s / 'pts.csv')
    with zipfile.ZipFile(s / 'pts.zip', 'w') as z:
        z.write(s / 'pts.csv', 'pts.csv')
    for src in ['pts.csv', 'sub/pts.csv', './sub/../pts.csv', 'link_in.csv', str(s / 'pts.csv'),
                '/vsizip/%s/pts.csv' % (s / 'pts.zip'), 'CSV:' + str(s / 'sub' / 'pts.csv')]:
        ds, cap = opens(tps(s, src, name='in.tps'), TPS_ALLOWED_SOURCES='SIBLING_OR_CHILD')
        assert ds is not None, (src, cap.errors)
        ds = None


def test_sibling_or_child_refuses_outside(site):
    s = site['site']
    (s / 'link_out.csv').symlink_to(site['secret'])
    (s / 'link_dir').symlink_to(site['outside'], target_is_directory=True)
    texts = []
    for src in ['../outside/secret.csv', site['secret'], 'link_out.csv', 'link_dir/secret.csv',
                'sub/../../outside/secret.csv', '/vsizip/../outside/x.zip/secret.csv',
                '../outside/missing.csv', 'link_dir/missing.csv']:
        msg = refusal(tps(s, src, name='out.tps'), TPS_ALLOWED_SOURCES='SIBLING_OR_CHILD')
        assert 'SIBLING_OR_CHILD' in msg and 'TPS_ALLOWED_SOURCES=LOCAL' in msg, msg
        for leak in ('password', 'pw424', '1000'):
            assert leak not in msg, msg
        texts.append(msg.rsplit(': ', 1)[0])  # without the source, which ends it
    # an existing and a missing file outside are refused with the same words
    assert texts[0] == texts[6] and texts[3] == texts[7], texts
    # the source as written: no path the links resolve to
    assert all(site['secret'] not in t for t in texts[2:4])


def test_sibling_or_child_where_is_no_oracle(site):
    """The refusal comes before the points: what <Where> asks changes
    nothing in the answer."""
    s = site['site']
    msgs = set()
    for where in ["password = 'pw424242'", "password = 'nothing'", 'z &gt; 1010', 'z &lt; 0']:
        p = tps(s, '../outside/secret.csv', name='w.tps', where=where)
        msgs.add(refusal(p, TPS_ALLOWED_SOURCES='SIBLING_OR_CHILD'))
    assert len(msgs) == 1, msgs


def test_sibling_or_child_checks_every_file_of_the_source(site):
    """A shapefile in the folder whose .dbf (its values) is a link out."""
    from osgeo import ogr
    s = site['site']
    ds = ogr.GetDriverByName('ESRI Shapefile').CreateDataSource(str(site['outside'] / 'p.shp'))
    lyr = ds.CreateLayer('p', None, ogr.wkbPoint)
    lyr.CreateField(ogr.FieldDefn('z', ogr.OFTReal))
    rng = np.random.default_rng(3)
    for i in range(20):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField('z', float(i))
        g = ogr.Geometry(ogr.wkbPoint)
        g.AddPoint_2D(*(rng.random(2) * 10))
        f.SetGeometry(g)
        lyr.CreateFeature(f)
    ds = None
    for ext in ('shp', 'shx'):
        os.rename(site['outside'] / ('p.' + ext), s / ('p.' + ext))
    (s / 'p.dbf').symlink_to(site['outside'] / 'p.dbf')
    p = tps(s, 'p.shp', xfield=None, yfield=None)
    msg = refusal(p, TPS_ALLOWED_SOURCES='SIBLING_OR_CHILD')
    assert 'p.dbf' in msg and 'SIBLING_OR_CHILD' in msg, msg
    ds, cap = opens(p)  # LOCAL: any local file
    assert ds is not None, cap.errors


def test_sibling_or_child_refuses_forms_without_a_folder(site):
    src = str(site['site'] / 'pts.csv')
    for name, oo in [('TPS:' + src, ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=8,8']),
                     (tps_xml(src, ['z'], size=(8, 8), extent=EXT), None)]:
        msg = refusal(name, oo, TPS_ALLOWED_SOURCES='SIBLING_OR_CHILD')
        assert 'no .tps folder' in msg, msg


def test_local_takes_local_files_anywhere(site):
    """The default: '..' and absolute paths (LOCAL is about networks and
    databases; SIBLING_OR_CHILD is for servers)."""
    for src in ['../outside/secret.csv', site['secret']]:
        ds, cap = opens(tps(site['site'], src, name='l.tps'))
        assert ds is not None, cap.errors


def test_local_refuses_a_fifo(tmp_path):
    """A FIFO would block the open forever: refused before it is opened
    (in a subprocess, so that a regression hangs only that)."""
    fifo = tmp_path / 'pts.csv'
    os.mkfifo(fifo)
    p = tps(tmp_path, 'pts.csv')
    script = ('import sys\nfrom osgeo import gdal\ngdal.PushErrorHandler("CPLQuietErrorHandler")\n'
              'print(gdal.Open(sys.argv[1]) is None, gdal.GetLastErrorMsg())\n')
    r = subprocess.run([PYTHON, '-c', script, p], env=subprocess_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith('True'), (r.stdout, r.stderr)
    assert 'not a regular file or folder' in r.stdout, r.stdout


def test_bad_policy_words_are_prefixes(tmp_path):
    """An unknown word is a prefix that matches nothing: nothing opens
    (a typo never widens the policy)."""
    msg = refusal(tps(tmp_path, points(tmp_path)), TPS_ALLOWED_SOURCES='LOACL')
    assert 'TPS_ALLOWED_SOURCES=LOACL' in msg


# ------------------------------------------------------------------ leaks

def test_values_are_not_in_error_messages(tmp_path):
    rows = ['x,y,z'] + ['%d,%d,%d' % (i, (i * 7) % 11, i) for i in range(10)]
    rows[5] = '4,6,s3cr3tvalue'
    (tmp_path / 'v.csv').write_text('\n'.join(rows) + '\n')
    p = tps(tmp_path, 'v.csv')
    msg = refusal(p)
    assert "field 'z'" in msg and 'not a number' in msg, msg
    assert 's3cr3t' not in msg, msg
    # with debug output on, the value is there (the gate is the debug switch)
    msg = refusal(p, CPL_DEBUG='TPS')
    assert 's3cr3tvalue' in msg, msg


def test_coordinates_are_not_in_error_messages(tmp_path):
    write_csv(tmp_path / 'g.csv', {'x': [5.123456789, 5.5, 6.0, 5.2], 'y': [95.987654321, 51.0, 52.0, 51.5],
                                   'z': [1.0, 2.0, 3.0, 4.0]})
    p = write_tps(tmp_path / 'g.tps', tps_xml('g.csv', ['z'], points_srs='EPSG:4326',
                                              srs='EPSG:28992', size=(8, 8),
                                              extent=(150000, 300000, 250000, 400000)))
    msg = refusal(p)
    assert 'transform' in msg and '95.98' not in msg, msg


def test_secrets_of_connection_strings_are_hidden(tmp_path):
    cases = {
        '/vsicurl/http://alice:pw4711@127.0.0.1:9/p.csv?token=tok4711&x=1': ['pw4711', 'tok4711'],
        'PG:host=db dbname=x password=pw4711 user=u': ['pw4711'],
        "PG:host=db password='pw 4711' dbname=x": ['pw 4711', '4711'],
        'MSSQL:server=db;database=x;uid=u;pwd=pw4711': ['pw4711'],
        'OCI:scott/pw4711@tns': ['pw4711'],
        'MYSQL:x,user=u,password=pw4711': ['pw4711'],
    }
    for src, secrets in cases.items():
        msg = refusal(tps(tmp_path, src, name='c.tps'))
        for s in secrets:
            assert s not in msg, msg
        assert src.split(':')[0] in msg, msg


# ------------------------------------------------------------------- caps

def bands_xml(n, source='missing_points.csv', distinct_smoothing=True):
    out = ['<TPSDataset><Points><Source>%s</Source><XField>x</XField><YField>y</YField>'
           '</Points><Extent>0 0 10 10</Extent><Size>8 8</Size>' % source]
    for i in range(n):
        out.append('<Band><Field>z</Field><Smoothing>%d</Smoothing></Band>'
                   % (i if distinct_smoothing else 0))
    return ''.join(out) + '</TPSDataset>'


def test_twenty_thousand_bands_refused_before_anything(tmp_path):
    """The source does not even exist: a refusal by TPS_MAX_BANDS proves
    that no point was read and nothing solved."""
    p = tmp_path / 'many.tps'
    p.write_text(bands_xml(20000))
    with config(CPL_DEBUG='TPS'):
        ds, cap = open_tps(p)
    assert ds is None
    assert any('TPS_MAX_BANDS=256' in m for m in cap.failures), cap.failures
    assert not any('solv' in m for _, _, m in cap.errors if 'TPS_MAX' not in m), cap.errors
    assert not [f for f in os.listdir(tmp_path) if '.model' in f]
    # raising the band cap meets the solve cap, still before the source
    msg = refusal(p, TPS_MAX_BANDS='30000')
    assert 'TPS_MAX_SOLVES=16' in msg and '20000 distinct solves' in msg, msg


def test_equal_settings_share_one_factorisation(tmp_path):
    rng = np.random.default_rng(8)
    x, y = random_points(60, rng, 0.0, 0.0, 10.0)
    cols = {'x': x, 'y': y, 'a': x + y, 'b': x * y, 'c': np.sin(x) + y}
    write_csv(tmp_path / 'f.csv', cols)
    one = tps(tmp_path, 'f.csv', name='one.tps', bands=['a', 'b', 'c',
                                                         {'field': 'a', 'quantity': 'slope'}])
    ds, cap = opens(one, ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'FACTORISATIONS') == '1'
    two = tps(tmp_path, 'f.csv', name='two.tps', bands=['a', {'field': 'b', 'smoothing': 5.0}, 'c'])
    ds, cap = opens(two, ['MODEL_CACHE=NO'])
    assert md(ds, 'FACTORISATIONS') == '2'
    # one band missing a value: its own factorisation
    cols['c'] = np.where(np.arange(60) == 7, np.nan, cols['c'])
    write_csv(tmp_path / 'g.csv', {k: [('' if isinstance(v, float) and np.isnan(v) else v)
                                       for v in vals] for k, vals in cols.items()})
    ds, cap = opens(tps(tmp_path, 'g.csv', name='miss.tps', bands=['a', 'b', 'c']),
                    ['MODEL_CACHE=NO'])
    assert ds is not None, cap.errors
    assert md(ds, 'FACTORISATIONS') == '2'


def test_missing_values_count_as_solves(tmp_path):
    """20 fields of one smoothing, each missing a value at another point:
    20 factorisations, refused once the points are read, before the solve."""
    rng = np.random.default_rng(9)
    x, y = random_points(60, rng, 0.0, 0.0, 10.0)
    cols = {'x': x, 'y': y}
    for k in range(20):
        cols['f%d' % k] = [('' if i == k else float(x[i] + k)) for i in range(60)]
    write_csv(tmp_path / 'm.csv', cols)
    p = tps(tmp_path, 'm.csv', bands=['f%d' % k for k in range(20)])
    with config(CPL_DEBUG='TPS'):
        ds, cap = open_tps(p)
    assert ds is None
    assert any('TPS_MAX_SOLVES=16' in m and '20 distinct' in m for m in cap.failures), cap.errors
    assert not any(' solved ' in m for _, _, m in cap.errors), cap.errors
    ds, cap = opens(p, ['MODEL_CACHE=NO'], TPS_MAX_SOLVES='20')
    assert ds is not None and md(ds, 'FACTORISATIONS') == '20', cap.errors


def test_points_cap_stops_reading(tmp_path):
    """Row 150 is not a number: refused by TPS_MAX_POINTS=100, not by that
    value, so reading stopped at the cap."""
    rows = ['x,y,z'] + ['%d,%d,%d' % (i % 13, (i * 7) % 17, i) for i in range(500)]
    rows[151] = '1,2,abc'
    (tmp_path / 'c.csv').write_text('\n'.join(rows) + '\n')
    msg = refusal(tps(tmp_path, 'c.csv'), TPS_MAX_POINTS='100')
    assert 'TPS_MAX_POINTS=100' in msg and 'not a number' not in msg, msg
    msg = refusal(tps(tmp_path, 'c.csv'), TPS_MAX_POINTS='1000')
    assert 'not a number' in msg, msg


def test_memory_cap_counts_the_points_while_reading(tmp_path):
    """20,000 rows of 8 fields under a 256 kB budget: refused for the points
    read (a bad value in the last row is never reached)."""
    rng = np.random.default_rng(10)
    n = 20000
    cols = {'x': rng.random(n) * 10, 'y': rng.random(n) * 10}
    for k in range(8):
        cols['f%d' % k] = rng.random(n)
    cols['f0'] = list(cols['f0'][:-1]) + ['abc']
    write_csv(tmp_path / 'big.csv', cols)
    p = tps(tmp_path, 'big.csv', bands=['f%d' % k for k in range(8)])
    msg = refusal(p, TPS_MAX_MEMORY='256K')
    assert 'points read' in msg and 'TPS_MAX_MEMORY' in msg and 'not a number' not in msg, msg


PROCESS_BUDGET = r'''
import sys
from osgeo import gdal
gdal.DontUseExceptions()
msgs = []
gdal.PushErrorHandler(lambda c, n, m: msgs.append(m))
a_path, b_path, budget = sys.argv[1], sys.argv[2], sys.argv[3]
gdal.SetConfigOption('TPS_MAX_MEMORY', budget)
a = gdal.Open(a_path)
print('A', a is not None and a.GetMetadataItem('MODEL_SOURCE', 'TPS'))
b = gdal.Open(b_path)
print('B_WITH_A', b is not None and b.GetMetadataItem('MODEL_SOURCE', 'TPS'))
print('MSG', ' | '.join(msgs).replace('\n', ' '))
b = None
a = None
b = gdal.Open(b_path)
print('B_ALONE', b is not None and b.GetMetadataItem('MODEL_SOURCE', 'TPS'))
'''


def test_memory_budget_is_the_processs(tmp_path):
    """Two data sets whose model files each fit TPS_MAX_MEMORY, but not
    together: the second one opens only once the first is closed."""
    paths = []
    for name in ('a', 'b'):
        folder = tmp_path / name
        folder.mkdir()
        points(folder, n=3000, seed=11)
        paths.append(tps(folder, 'pts.csv'))
        ds, cap = opens(paths[-1])  # solves and writes the model file
        assert ds is not None and os.path.exists(model_path(paths[-1])), cap.errors
        ds = None
    size = os.path.getsize(model_path(paths[0]))
    assert size == os.path.getsize(model_path(paths[1]))
    # A holds `size`; B needs 2 x size to load (bytes and model): 2.5 x size
    # has room for one of them, not both.
    r = subprocess.run([PYTHON, '-c', PROCESS_BUDGET, paths[0], paths[1], str(int(2.5 * size))],
                       env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = dict(line.split(' ', 1) for line in r.stdout.strip().split('\n'))
    assert out['A'] == 'FILE', r.stdout
    assert out['B_WITH_A'] == 'False' and 'TPS_MAX_MEMORY' in out['MSG'], r.stdout
    assert out['B_ALONE'] == 'FILE', r.stdout


def test_block_reads_stay_within_the_cache(tmp_path):
    """A 1 x 1 read through the block cache of 50 bands of 2 MB blocks
    under a 8 MB GDAL_CACHEMAX: the cache holds what it may, and the other
    bands' values are computed when read, the same."""
    points(tmp_path)
    p = write_tps(tmp_path / 'b.tps', tps_xml('pts.csv', ['z'] * 50, size=(512, 512), extent=EXT,
                                             block_size=(512, 512), data_type='Float64'))
    old = gdal.GetCacheMax()
    gdal.SetCacheMax(8 * 1024 * 1024)
    try:
        ds, cap = opens(p, ['MODEL_CACHE=NO'])
        assert ds is not None, cap.errors
        one = ds.GetRasterBand(1).ReadRaster(100, 100, 1, 1, buf_type=gdal.GDT_Int32)
        assert one is not None
        assert gdal.GetCacheUsed() <= 8 * 1024 * 1024, gdal.GetCacheUsed()
        for b in (2, 50):
            v = ds.GetRasterBand(b).ReadAsArray(100, 100, 1, 1, buf_type=gdal.GDT_Float64)
            w = ds.GetRasterBand(b).ReadRaster(100, 100, 1, 1, buf_type=gdal.GDT_Int32)
            assert w == one and np.isfinite(v).all()
        assert gdal.GetCacheUsed() <= 8 * 1024 * 1024
        ds = None
    finally:
        gdal.SetCacheMax(old)


# ------------------------------------------------------------------ locks

LOCK_PROBE = r'''
import sys
from osgeo import gdal
gdal.DontUseExceptions()
gdal.SetConfigOption('CPL_DEBUG', 'TPS')
msgs = []
gdal.PushErrorHandler(lambda c, n, m: msgs.append(m))
ds = gdal.Open(sys.argv[1])
print('OPENED', ds is not None and ds.GetMetadataItem('MODEL_SOURCE', 'TPS'))
print('DEBUG', ' | '.join(msgs).replace('\n', ' '))
'''


def lock_probe(path):
    # The default timeout is 60 s; a wait would show as a hang guard trip.
    env = subprocess_env()
    env['TPS_MODEL_LOCK_TIMEOUT'] = '600'
    r = subprocess.run([PYTHON, '-c', LOCK_PROBE, path], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return dict(line.split(' ', 1) for line in r.stdout.strip().split('\n'))


@pytest.mark.parametrize('kind', ['garbage', 'symlink', 'other_user'])
def test_untrusted_lock_is_not_waited_for(tmp_path, kind):
    points(tmp_path)
    p = tps(tmp_path, 'pts.csv')
    model = model_path(p)
    lock = model + '.lock'
    if kind == 'garbage':
        with open(lock, 'w') as f:
            f.write('\x00garbage that is no lock\n')
    elif kind == 'symlink':
        os.symlink(str(tmp_path / 'elsewhere'), lock)
    else:
        if not IS_ROOT:
            pytest.skip('making a file of another user needs root')
        with open(lock, 'w') as f:
            f.write('gdal-tps model lock 1\nhost=h\npidspace=\npid=1\nstarted=0\nmodel=%s\n'
                    % ('0' * 64))
        os.chown(lock, OTHER_UID, OTHER_UID)
    out = lock_probe(p)
    assert out['OPENED'] == 'SOLVED', out
    assert 'not waited for' in out['DEBUG'], out['DEBUG']
    assert 'waiting for lock holder' not in out['DEBUG'], out['DEBUG']
    assert not os.path.exists(model)
    assert os.path.lexists(lock)  # not ours to remove


# -------------------------------------------------------------- model file

def test_model_file_mode_follows_the_sources(tmp_path):
    old = os.umask(0o022)
    try:
        for mode in (0o600, 0o640, 0o644):
            folder = tmp_path / ('m%o' % mode)
            folder.mkdir()
            src = points(folder)
            os.chmod(src, mode)
            p = tps(folder, 'pts.csv')
            ds, cap = opens(p)
            assert ds is not None, cap.errors
            ds = None
            assert stat.S_IMODE(os.stat(model_path(p)).st_mode) == mode
        # the .tps counts too
        folder = tmp_path / 'tps0600'
        folder.mkdir()
        points(folder)
        p = tps(folder, 'pts.csv')
        os.chmod(p, 0o600)
        ds, cap = opens(p)
        ds = None
        assert stat.S_IMODE(os.stat(model_path(p)).st_mode) == 0o600
    finally:
        os.umask(old)


def model_source(p, **options):
    with config(CPL_DEBUG='TPS', **options):
        ds, cap = open_tps(p)
    assert ds is not None, cap.errors
    src = md(ds, 'MODEL_SOURCE')
    ds = None
    return src, ' | '.join(m for c, _, m in cap.errors if c == gdal.CE_Debug)


@pytest.fixture
def kept(tmp_path):
    """A .tps with a valid model file beside it."""
    points(tmp_path)
    p = tps(tmp_path, 'pts.csv')
    assert model_source(p)[0] == 'SOLVED'
    assert model_source(p)[0] == 'FILE'
    return p


def test_model_file_read_only_when_trusted(kept):
    model = model_path(kept)
    data = open(model, 'rb').read()
    os.chmod(model, 0o664)
    src, debug = model_source(kept, TPS_MODEL_CACHE='READ_ONLY')
    assert src == 'SOLVED' and 'writable by other users' in debug, debug
    os.chmod(model, 0o644)
    assert model_source(kept)[0] == 'FILE'
    # a link to a valid model elsewhere
    os.rename(model, model + '.real')
    os.symlink(model + '.real', model)
    src, debug = model_source(kept, TPS_MODEL_CACHE='READ_ONLY')
    assert src == 'SOLVED' and 'symbolic link' in debug, debug
    os.unlink(model)
    if IS_ROOT:
        with open(model, 'wb') as f:
            f.write(data)
        os.chown(model, OTHER_UID, OTHER_UID)
        src, debug = model_source(kept, TPS_MODEL_CACHE='READ_ONLY')
        assert src == 'SOLVED' and 'not by the owner' in debug, debug


def test_model_file_in_an_archive_is_never_read(kept, tmp_path):
    """A zip carrying a .tps, its points and a model file (which could be
    forged: its hash covers only what anyone can compute)."""
    folder = os.path.dirname(kept)
    z = tmp_path / 'pack.zip'
    with zipfile.ZipFile(z, 'w') as f:
        for name in ('t.tps', 'pts.csv', os.path.basename(model_path(kept))):
            f.write(os.path.join(folder, name), name)
    src, debug = model_source('/vsizip/%s/t.tps' % z)
    assert src == 'SOLVED' and 'inside archives' in debug, debug


@pytest.mark.parametrize('folder_kind', ['world_writable', 'other_user', 'sticky'])
def test_model_file_not_written_in_unsafe_folders(tmp_path, folder_kind):
    folder = tmp_path / 'f'
    folder.mkdir()
    points(folder)
    p = tps(folder, 'pts.csv')
    model = model_path(p)
    if folder_kind == 'world_writable':
        os.chmod(folder, 0o777)
    elif folder_kind == 'sticky':
        os.chmod(folder, 0o1777)
    else:
        if not IS_ROOT:
            pytest.skip('making a folder of another user needs root')
        os.chown(folder, OTHER_UID, OTHER_UID)
    try:
        src, debug = model_source(p)
        assert src == 'SOLVED'
        if folder_kind == 'sticky':
            assert os.path.exists(model)  # a shared folder done right
        else:
            assert not os.path.exists(model), debug
            assert not os.path.exists(model + '.lock')
            assert 'will not be written' in debug, debug
    finally:
        os.chmod(folder, 0o755)
        if folder_kind == 'other_user':
            os.chown(folder, os.getuid(), os.getgid())
