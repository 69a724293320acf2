"""The solved models kept next to the .tps file (<name>.tps.model.<hash>,
one per configuration).

References are independent of the model file: an open with MODEL_CACHE=NO
(which neither reads nor writes it, and solves), and scipy's
RBFInterpolator for values after the points change.

* the first open solves and writes the file; another *process* reuses it
  (MODEL_SOURCE=FILE, SOLVES=0) with the same bytes and CRS as a solve;
* points changed in place with the same size and modification time (only
  the content hash can tell) are solved again, with the new values; a
  shapefile's .dbf changed the same way too;
* truncated, damaged, garbage, empty files, a folder in the file's place,
  and a model of another .tps: solved, correct, no error and no warning
  (a debug line says why), and the file is rewritten;
* MODEL_CACHE=NO neither reads nor writes; READ_ONLY reads, never writes;
  the TPS_MODEL_CACHE configuration option; bad values fail the open;
* no file where none can be written: a .tps inside a tar (read-only for
  everyone, root included), and TPS: connection strings;
* MODE=LOCAL models are kept too: a second process reads the file (no
  solve), with the same bytes, MODE and PATCHES as a solve, and the values
  still interpolate the points; a damaged local file is solved again;
* the grid is not part of the hash: another SIZE reuses the model;
* /vsimem/ .tps files keep their model in /vsimem/;
* processes: 4 started together on a kept model all read it (one solve in
  all, the first process's); 4 started together without one solve once
  (one takes <model file>.lock, the others wait and read its model;
  also with a lock that must be kept fresh by its holder's heartbeat),
  agree bit for bit with a solve that never sees the file, and leave one
  valid file and no lock or temporary files;
* several configurations: alternating GCV and fixed-lambda opens solve each
  once (in this process and in others), with a solve's bytes; READ_ONLY
  and NO change no file; TPS_MODEL_CACHE_MAX_FILES bounds the files per
  .tps, the least recently used (reads count as use) going first, another
  .tps's files untouched; the default bound is 8; a bad value warns; a
  lock held for one configuration does not delay another;
* the lock: one left by a dead process of this host, or by another
  machine and not refreshed, is broken and the open solves; one held by a
  live process is waited for TPS_MODEL_LOCK_TIMEOUT seconds, then the open
  solves and leaves that lock alone; one for another model is not waited
  for; a folder where no lock can be created solves as before; a failed
  solve (collinear points) removes its lock; 3 processes on a MODE=LOCAL
  .tps solve once (local models are kept too).
"""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import (PYTHON, VSIMem, assert_close64, grid_around, md, open_tps, random_points,
                      scipy_ds_ref, smooth_values, subprocess_env, tps_xml, write_csv, write_tps)

GRID = (40, 30)

# One open in a fresh process: metadata, a digest of every band's bytes, the
# CRS and how many errors/warnings GDAL reported, as JSON. argv: path, a
# barrier folder ('' for none: there the process says it is ready, GDAL
# imported, and waits for the file "go", so that several processes open at
# once however long their start takes), options.
PROBE = r'''
import hashlib, json, os, sys, time
from osgeo import gdal
gdal.DontUseExceptions()
msgs = []
gdal.PushErrorHandler(lambda c, n, m: msgs.append((c, m)))
barrier = sys.argv[2]
if barrier:
    open(os.path.join(barrier, 'ready.%d' % os.getpid()), 'w').close()
    while not os.path.exists(os.path.join(barrier, 'go')):
        time.sleep(0.001)
ds = gdal.OpenEx(sys.argv[1], gdal.OF_RASTER, open_options=sys.argv[3:])
out = {'opened': ds is not None,
       'failures': [m for c, m in msgs if c >= gdal.CE_Failure],
       'warnings': [m for c, m in msgs if c == gdal.CE_Warning],
       'debug': ' | '.join(m for c, m in msgs if c == gdal.CE_Debug)}
if ds is not None:
    m = ds.GetMetadata('TPS')
    out.update(source=m.get('MODEL_SOURCE'), solves=m.get('SOLVES'), mode=m.get('MODE'),
               patches=m.get('PATCHES'), model_file=m.get('MODEL_FILE'),
               digest=hashlib.sha256(ds.ReadRaster()).hexdigest(), srs=ds.GetProjection())
print(json.dumps(out))
'''


def start_probe(path, oo=(), barrier='', env=None):
    env = dict(subprocess_env(), **(env or {}))
    env['CPL_DEBUG'] = 'TPS'
    return subprocess.Popen([PYTHON, '-c', PROBE, str(path), str(barrier)] + list(oo),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def start_together(path, n, tmp_path, env=None):
    """n probes that open `path` at the same moment: each waits, GDAL
    imported, until all are ready (a barrier, not a guess of how long a
    process takes to start)."""
    barrier = tmp_path / ('barrier.%d' % len(os.listdir(tmp_path)))
    barrier.mkdir()
    procs = [start_probe(path, barrier=barrier, env=env) for _ in range(n)]
    while len([f for f in os.listdir(barrier) if f.startswith('ready.')]) < n:
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, [p.communicate() for p in dead]
        time.sleep(0.01)
    (barrier / 'go').touch()
    return procs


def finish_probe(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def probe(path, oo=(), env=None):
    return finish_probe(start_probe(path, oo, env=env))


def make_points(folder, n=200, seed=41, name='p.csv'):
    rng = np.random.default_rng(seed)
    x, y = random_points(n, rng, 155000.0, 463000.0, 3000.0)
    cols = {'x': x, 'y': y, 'z': smooth_values(x, y, rng), 'w': smooth_values(x, y, rng)}
    write_csv(folder / name, cols)
    return cols


def make_tps(folder, cols, name='m.tps', source='p.csv', bands=None, **kw):
    gt = grid_around(cols['x'], cols['y'], *GRID)
    kw.setdefault('points_srs', 'EPSG:28992')
    xml = tps_xml(source, bands or ['z', {'field': 'w', 'smoothing': 300.0}], geotransform=gt,
                  size=GRID, data_type='Float64', **kw)
    return write_tps(folder / name, xml)


def open_read(path, oo=()):
    """In this process: (MODEL_SOURCE, SOLVES, bytes, CRS, errors captured),
    with the handle closed again (the in-process model goes with it)."""
    gdal.SetConfigOption('CPL_DEBUG', 'TPS')
    try:
        ds, cap = open_tps(path, list(oo))
    finally:
        gdal.SetConfigOption('CPL_DEBUG', None)
    assert ds is not None, cap.errors
    res = (md(ds, 'MODEL_SOURCE'), md(ds, 'SOLVES'), ds.ReadRaster(), ds.GetProjection(), cap)
    ds = None
    return res


def solved_bytes(path):
    """The reference: a solve that never sees the model file."""
    src, _, data, _, _ = open_read(path, ['MODEL_CACHE=NO'])
    assert src == 'SOLVED'
    return data


def digest(data):
    return hashlib.sha256(data).hexdigest()


def debug_lines(cap):
    return [m for c, _, m in cap.errors if c == gdal.CE_Debug]


def assert_quiet(cap):
    assert not cap.failures and not cap.warnings, cap.errors


def assert_valid_model(path):
    """The file at path loads: a fresh process reads its model."""
    res = probe(path)
    assert res['source'] == 'FILE', res['debug']
    return res


def temp_files(folder):
    return [f for f in os.listdir(folder) if '.tmp.' in f]


def model_files(path):
    """Every model file kept for the .tps at path (one per configuration)."""
    folder, base = os.path.split(str(path))
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if re.fullmatch(re.escape(base) + r'\.model\.[0-9a-f]{16}', f))


def model_file(path, oo=()):
    """The file this configuration's model is kept in (MODEL_FILE), as a
    fresh process that writes nothing (MODEL_CACHE=READ_ONLY) reports it."""
    res = probe(path, list(oo) + ['MODEL_CACHE=READ_ONLY'])
    assert res['opened'] and res['model_file'], res
    return res['model_file']


# ------------------------------------------------------------- the basics

def test_written_after_first_open_and_reused_by_another_process(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    src, solves, data, srs, cap = open_read(path)
    assert_quiet(cap)
    assert (src, solves) == ('SOLVED', '1')
    [model] = model_files(path)
    assert re.fullmatch(r'm\.tps\.model\.[0-9a-f]{16}', os.path.basename(model))
    with open(model, 'rb') as f:
        assert f.read(8) == b'TPSMODEL'
    assert any('wrote the solved model to' in m for m in debug_lines(cap)), debug_lines(cap)
    assert not temp_files(tmp_path)
    ds, _ = open_tps(path)
    assert model in ds.GetFileList() and md(ds, 'MODEL_FILE') == model
    ds = None

    res = probe(path)
    assert res['opened'] and not res['failures'] and not res['warnings'], res
    assert (res['source'], res['solves']) == ('FILE', '0'), res['debug']
    assert 'reused the solved model from' in res['debug']
    assert res['digest'] == digest(data) == digest(solved_bytes(path))
    assert res['srs'] == srs and 'Amersfoort' in srs
    # and the values are the spline's (scipy, independently)
    ds, _ = open_tps(path)
    for b, (field, lam) in enumerate([('z', 0.0), ('w', 300.0)], start=1):
        ref = scipy_ds_ref(ds, cols['x'], cols['y'], cols[field], lam)
        assert_close64(ds.GetRasterBand(b).ReadAsArray(), ref, np.ptp(cols[field]), what=field)


def make_local_tps(folder, n=4000, seed=7):
    """A MODE=LOCAL .tps: n uniform random points, band 1 interpolating
    (lambda = 0), band 2 smoothed; the grid's pixel centres include the
    first 5 points."""
    rng = np.random.default_rng(seed)
    x = 155000.0 + 3000.0 * rng.random(n)
    y = 463000.0 + 3000.0 * rng.random(n)
    gt = (154900.0, 10.0, 0.0, 466100.0, 0.0, -10.0)
    for i in range(5):  # onto pixel centres: the interpolation check below
        x[i] = gt[0] + (40 + 37 * i + 0.5) * gt[1]
        y[i] = gt[3] + (30 + 41 * i + 0.5) * gt[5]
    cols = {'x': x, 'y': y, 'z': smooth_values(x, y, rng), 'w': smooth_values(x, y, rng)}
    write_csv(folder / 'loc.csv', cols)
    xml = tps_xml('loc.csv', ['z', {'field': 'w', 'smoothing': 300.0}], geotransform=gt,
                  size=(320, 320), data_type='Float64', points_srs='EPSG:28992',
                  extra='<Mode>LOCAL</Mode>\n  <PatchPoints>150</PatchPoints>')
    return write_tps(folder / 'loc.tps', xml), cols, gt


def test_local_model_written_and_reused_by_another_process(tmp_path):
    path, cols, gt = make_local_tps(tmp_path)
    first = probe(path)
    assert first['opened'] and not first['failures'] and not first['warnings'], first
    assert (first['source'], first['solves'], first['mode']) == ('SOLVED', '1', 'LOCAL')
    assert int(first['patches']) >= 16
    assert 'wrote the solved model to' in first['debug'], first['debug']
    assert model_files(path) == [first['model_file']]

    second = probe(path)
    assert not second['failures'] and not second['warnings'], second
    assert (second['source'], second['solves']) == ('FILE', '0'), second['debug']
    assert 'reused the solved model from' in second['debug']
    assert (second['mode'], second['patches']) == ('LOCAL', first['patches'])
    # the same bytes as a solve that never sees the file
    assert second['digest'] == first['digest'] == digest(solved_bytes(path))

    # the loaded surface is still the interpolant: the points on pixel
    # centres get their values back (band 1, lambda = 0)
    ds, _ = open_tps(path)
    assert md(ds, 'MODEL_SOURCE') == 'FILE'
    band = ds.GetRasterBand(1).ReadAsArray()
    for i in range(5):
        col, row = 40 + 37 * i, 30 + 41 * i
        assert abs(band[row, col] - cols['z'][i]) <= 1e-8 * np.ptp(cols['z']), i
    ds = None


def test_damaged_local_model_file_is_solved_again(tmp_path):
    path, _, _ = make_local_tps(tmp_path, n=1500)
    first = probe(path)
    model = first['model_file']
    assert first['source'] == 'SOLVED' and model_files(path) == [model]
    data = bytearray(open(model, 'rb').read())
    data[len(data) // 2] ^= 0x40  # inside the patches' arrays
    with open(model, 'wb') as f:
        f.write(data)
    res = probe(path)
    assert not res['failures'] and not res['warnings'], res
    assert res['source'] == 'SOLVED' and 'checksum' in res['debug'], res['debug']
    assert res['digest'] == first['digest']
    assert_valid_model(path)  # and rewritten


def test_in_process_cache_stays_in_front(tmp_path):
    """A second handle while the first is open shares its model: the file
    is not read again (SOLVES stays 1, MODEL_SOURCE says where it came from)."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    ds1, _ = open_tps(path)
    [model] = model_files(path)
    os.remove(model)
    ds2, _ = open_tps(path)
    assert md(ds1, 'MODEL_SOURCE') == md(ds2, 'MODEL_SOURCE') == 'SOLVED'
    assert md(ds2, 'SOLVES') == '1'
    assert not model_files(path)
    ds1 = ds2 = None
    # all handles closed: the file is consulted again, and written
    open_read(path)
    src, solves, _, _, _ = open_read(path)
    assert (src, solves) == ('FILE', '2')  # two solves so far in this process, none now


def test_copied_folder_and_other_spellings_keep_the_model(tmp_path):
    """The hash names the source relative to the .tps folder: m.tps,
    ./m.tps, an absolute path, and a copy of the folder (times kept, as
    cp -p and rsync -a do) elsewhere all read the one model."""
    src_dir = tmp_path / 'a'
    src_dir.mkdir()
    cols = make_points(src_dir)
    make_tps(src_dir, cols)
    open_read(str(src_dir / 'm.tps'))
    for name in ['m.tps', './m.tps', str(src_dir / 'm.tps'), '../a/m.tps']:
        r = subprocess.run([PYTHON, '-c', PROBE, name, ''], cwd=src_dir, env=subprocess_env(),
                           capture_output=True, text=True, check=True)
        assert json.loads(r.stdout)['source'] == 'FILE', (name, r.stdout)
    shutil.copytree(src_dir, tmp_path / 'b')
    assert probe(tmp_path / 'b' / 'm.tps')['source'] == 'FILE'


def test_grid_is_not_in_the_hash(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    open_read(path)
    res = probe(path, ['SIZE=17,9'])
    assert res['source'] == 'FILE', res['debug']
    ds, _ = open_tps(path, ['SIZE=17,9', 'MODEL_CACHE=NO'])
    assert res['digest'] == digest(ds.ReadRaster())


def test_other_settings_are_in_the_hash(tmp_path):
    """Another configuration is another model, kept in a file of its own:
    the first one's stays."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    open_read(path)
    [first] = model_files(path)
    with open(first, 'rb') as f:
        first_bytes = f.read()
    res = probe(path, ['SMOOTHING=5'])
    assert res['source'] == 'SOLVED' and 'no file ' + res['model_file'] in res['debug'], res['debug']
    assert res['model_file'] != first and model_files(path) == sorted([first, res['model_file']])
    with open(first, 'rb') as f:
        assert f.read() == first_bytes
    ds, _ = open_tps(path, ['SMOOTHING=5', 'MODEL_CACHE=NO'])
    assert res['digest'] == digest(ds.ReadRaster())


# ------------------------------------------------------- changed points

def test_changed_points_same_size_same_mtime_are_solved_again(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    csv = tmp_path / 'p.csv'
    open_read(path)
    st = os.stat(csv)
    text = csv.read_text()
    # one value changed, byte count kept: the 5th data row's z loses its
    # last digit to another digit
    lines = text.split('\n')
    fields = lines[5].split(',')
    last = fields[2][-1]
    fields[2] = fields[2][:-1] + ('7' if last != '7' else '3')
    lines[5] = ','.join(fields)
    new_text = '\n'.join(lines)
    assert len(new_text) == len(text) and new_text != text
    csv.write_text(new_text)
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(csv).st_mtime_ns == st.st_mtime_ns and os.stat(csv).st_size == st.st_size

    res = probe(path)
    assert res['source'] == 'SOLVED' and 'stale' in res['debug'], res['debug']
    z = cols['z'].copy()
    z[4] = float(fields[2])
    ds, _ = open_tps(path, ['MODEL_CACHE=NO'])
    ref = scipy_ds_ref(ds, cols['x'], cols['y'], z, 0.0)
    assert_close64(ds.GetRasterBand(1).ReadAsArray(), ref, np.ptp(z))
    assert res['digest'] == digest(ds.ReadRaster())
    # rewritten for the new points
    assert assert_valid_model(path)['digest'] == res['digest']


def test_changed_shapefile_dbf_is_solved_again(tmp_path):
    cols = make_points(tmp_path)
    drv = ogr.GetDriverByName('ESRI Shapefile')
    src = drv.CreateDataSource(str(tmp_path / 'p.shp'))
    lyr = src.CreateLayer('p', None, ogr.wkbPoint)
    lyr.CreateField(ogr.FieldDefn('z', ogr.OFTReal))
    for i in range(len(cols['x'])):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField('z', float(cols['z'][i]))
        f.SetGeometry(ogr.CreateGeometryFromWkt('POINT (%r %r)' % (cols['x'][i], cols['y'][i])))
        lyr.CreateFeature(f)
    src = lyr = None
    path = make_tps(tmp_path, cols, source='p.shp', bands=['z'], xfield=None, yfield=None)
    open_read(path)
    dbf = tmp_path / 'p.dbf'
    stamps = {p: os.stat(p) for p in tmp_path.glob('p.*')}
    src = ogr.Open(str(tmp_path / 'p.shp'), 1)
    lyr = src.GetLayer(0)
    f = lyr.GetFeature(7)
    f.SetField('z', 12345.0)
    lyr.SetFeature(f)
    src = lyr = f = None
    for p, st in stamps.items():
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(dbf).st_size == stamps[dbf].st_size

    res = probe(path)
    assert res['source'] == 'SOLVED' and 'stale' in res['debug'], res['debug']
    z = cols['z'].copy()
    z[7] = 12345.0
    ds, _ = open_tps(path, ['MODEL_CACHE=NO'])
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, cols['x'], cols['y'], z, 0.0), np.ptp(z))
    assert res['digest'] == digest(ds.ReadRaster())


# ------------------------------------------------------- damaged files

def _truncate_half(b):
    return b[:len(b) // 2]


def _flip_middle(b):
    b = bytearray(b)
    b[len(b) // 2] ^= 0x40
    return bytes(b)


DAMAGES = {
    'truncated_half': (_truncate_half, 'truncated'),
    'truncated_1': (lambda b: b[:-1], 'truncated'),
    'header_only': (lambda b: b[:128], 'truncated'),
    'one_byte_flipped': (_flip_middle, 'checksum'),
    'garbage_same_size': (lambda b: np.random.default_rng(5).bytes(len(b)), 'signature'),
    'empty': (lambda b: b'', 'header'),
    'other_version': (lambda b: b[:8] + b'\x09' + b[9:], 'version'),
    'other_byte_order': (lambda b: b[:12] + b[12:16][::-1] + b[16:], 'byte order'),
    'longer': (lambda b: b + b'\0' * 8, 'truncated or damaged'),
}


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_damaged_model_file_is_solved_again(tmp_path, damage):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    reference = solved_bytes(path)
    open_read(path)
    [model] = model_files(path)
    with open(model, 'rb') as f:
        good = f.read()
    fn, why = DAMAGES[damage]
    with open(model, 'wb') as f:
        f.write(fn(good))
    src, solves, data, _, cap = open_read(path)
    assert_quiet(cap)
    assert src == 'SOLVED'
    assert data == reference
    debug = ' '.join(debug_lines(cap))
    assert 'solving' in debug and why in debug, debug
    # rewritten, valid again (not byte-identical: SOLVE_SECONDS is kept too)
    with open(model, 'rb') as f:
        assert len(f.read()) == len(good)
    src, solves, again, _, _ = open_read(path)
    assert src == 'FILE' and again == reference


def test_folder_in_place_of_the_model_file(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    model = model_file(path)
    os.mkdir(model)
    src, _, data, _, cap = open_read(path)
    assert_quiet(cap)
    assert src == 'SOLVED' and data == solved_bytes(path)
    debug = ' '.join(debug_lines(cap))
    assert 'not a file' in debug and 'not kept' in debug, debug
    assert os.path.isdir(model) and not temp_files(tmp_path)


def test_model_of_another_tps_is_ignored(tmp_path):
    cols = make_points(tmp_path)
    a = make_tps(tmp_path, cols, name='a.tps', bands=['z'])
    b = make_tps(tmp_path, cols, name='b.tps', bands=['w'])
    open_read(a)
    [file_a] = model_files(a)
    with open(file_a, 'rb') as f:
        model_a = f.read()
    with open(model_file(b), 'wb') as f:
        f.write(model_a)
    src, _, data, _, cap = open_read(b)
    assert_quiet(cap)
    assert src == 'SOLVED' and 'stale' in ' '.join(debug_lines(cap))
    assert data == solved_bytes(b)
    ds, _ = open_tps(b, ['MODEL_CACHE=NO'])
    assert_close64(ds.ReadAsArray(), scipy_ds_ref(ds, cols['x'], cols['y'], cols['w'], 0.0),
                   np.ptp(cols['w']))


# ------------------------------------------------------- MODEL_CACHE

def test_model_cache_no_neither_reads_nor_writes(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    src, _, _, _, cap = open_read(path, ['MODEL_CACHE=NO'])
    assert src == 'SOLVED' and not model_files(path)
    assert not [m for m in debug_lines(cap) if '.model' in m], debug_lines(cap)
    open_read(path)  # writes it
    [model] = model_files(path)
    st = os.stat(model)
    res = probe(path, ['MODEL_CACHE=NO'])
    assert (res['source'], res['solves'], res['model_file']) == ('SOLVED', '1', None)
    assert os.stat(model).st_mtime_ns == st.st_mtime_ns and model_files(path) == [model]


def test_model_cache_read_only(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    res = probe(path, ['MODEL_CACHE=READ_ONLY'])
    assert res['source'] == 'SOLVED' and not model_files(path)
    open_read(path)
    [model] = model_files(path)
    st = os.stat(model)
    res = probe(path, ['MODEL_CACHE=READ_ONLY'])
    assert res['source'] == 'FILE' and res['digest'] == digest(solved_bytes(path))
    assert os.stat(model).st_mtime_ns == st.st_mtime_ns  # not even marked used
    # another configuration: solved, nothing written, the file left alone
    with open(model, 'rb') as f:
        kept = f.read()
    res = probe(path, ['MODEL_CACHE=READ_ONLY', 'SMOOTHING=2'])
    assert res['source'] == 'SOLVED' and model_files(path) == [model]
    with open(model, 'rb') as f:
        assert f.read() == kept


def test_config_option_and_bad_values(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    gdal.SetConfigOption('TPS_MODEL_CACHE', 'NO')
    try:
        src, _, _, _, _ = open_read(path)
        assert src == 'SOLVED' and not model_files(path)
        src, _, _, _, _ = open_read(path, ['MODEL_CACHE=YES'])  # the option wins
        assert len(model_files(path)) == 1
        gdal.SetConfigOption('TPS_MODEL_CACHE', 'maybe')
        ds, cap = open_tps(path)
        assert ds is None and any('TPS_MODEL_CACHE' in m and 'maybe' in m for m in cap.failures)
    finally:
        gdal.SetConfigOption('TPS_MODEL_CACHE', None)
    ds, cap = open_tps(path, ['MODEL_CACHE=sometimes'])
    assert ds is None
    assert any('MODEL_CACHE' in m and 'READ_ONLY' in m for m in cap.failures), cap.errors


def test_open_option_is_advertised():
    opts = gdal.GetDriverByName('TPS').GetMetadataItem('DMD_OPENOPTIONLIST')
    assert "name='MODEL_CACHE'" in opts and 'READ_ONLY' in opts


# ------------------------------------------------------- where no file can be kept

def test_unwritable_folder_inside_a_tar(tmp_path):
    """/vsitar/: the open solves, reports nothing, and neither reads nor
    writes a model file there."""
    inner = tmp_path / 'inner'
    inner.mkdir()
    cols = make_points(inner)
    path = make_tps(inner, cols)
    reference = solved_bytes(path)
    tar = tmp_path / 'pack.tar'
    with tarfile.open(tar, 'w') as t:
        t.add(inner / 'm.tps', 'm.tps')
        t.add(inner / 'p.csv', 'p.csv')
    vpath = '/vsitar/%s/m.tps' % tar
    src, _, data, _, cap = open_read(vpath)
    assert_quiet(cap)
    assert src == 'SOLVED' and data == reference
    debug = ' '.join(debug_lines(cap))
    # not even tried: a model inside an archive is never read or written
    # (it would come with whoever made the archive; docs/security.md)
    assert 'not kept' in debug and 'inside archives' in debug, debug
    assert not [f for f in gdal.ReadDir('/vsitar/%s' % tar) if '.model' in f]
    assert sorted(os.listdir(tmp_path)) == ['inner', 'pack.tar']


def test_connection_string_form_keeps_no_file(tmp_path):
    cols = make_points(tmp_path)
    before = sorted(os.listdir(tmp_path))
    src, _, _, _, cap = open_read('TPS:' + str(tmp_path / 'p.csv'),
                                  ['FIELD=z', 'XFIELD=x', 'YFIELD=y', 'SIZE=10,10'])
    assert_quiet(cap)
    assert src == 'SOLVED' and sorted(os.listdir(tmp_path)) == before
    assert any('no .tps file' in m for m in debug_lines(cap))


def test_vsimem_tps_keeps_its_model_in_vsimem(tmp_path):
    cols = make_points(tmp_path)
    with VSIMem() as mem:
        with open(tmp_path / 'p.csv') as f:
            mem.write('p.csv', f.read())
        path = mem.write('m.tps', open(make_tps(tmp_path, cols)).read())
        src, _, data, _, _ = open_read(path)
        kept = [mem.root + '/' + f for f in gdal.ReadDir(mem.root) if '.model.' in f]
        mem.files += kept
        assert src == 'SOLVED' and len(kept) == 1
        src, solves, again, _, _ = open_read(path)
        assert src == 'FILE' and again == data
        assert not [f for f in gdal.ReadDir(mem.root) if '.tmp.' in f]


# ------------------------------------------------------- several processes

def test_many_processes_one_solve(tmp_path):
    """The issue's promise: one solve, then every process reads it."""
    cols = make_points(tmp_path, n=600)
    path = make_tps(tmp_path, cols)
    first = probe(path)
    assert (first['source'], first['solves']) == ('SOLVED', '1')
    procs = start_together(path, 4, tmp_path)
    results = [finish_probe(p) for p in procs]
    for r in results:
        assert (r['source'], r['solves']) == ('FILE', '0'), r['debug']
        assert r['digest'] == first['digest'] and not r['failures'] and not r['warnings']
    total_solves = sum(int(r['solves']) for r in [first] + results)
    assert total_solves == 1


@pytest.mark.parametrize('stale', [None, '1'])
def test_concurrent_cold_start_solves_once(tmp_path, stale):
    """4 processes open a .tps with no model file at the same moment: one
    takes the lock and solves (about a second here), the others wait and
    read its model. With TPS_MODEL_LOCK_STALE=1 a lock whose holder stopped
    refreshing it would be broken after 1 s: the holder's heartbeat must
    keep it alive through the solve."""
    cols = make_points(tmp_path, n=2500)
    path = make_tps(tmp_path, cols)
    env = {'TPS_MODEL_LOCK_STALE': stale} if stale else None
    procs = start_together(path, 4, tmp_path, env=env)
    results = [finish_probe(p) for p in procs]
    for r in results:
        assert r['opened'] and not r['failures'] and not r['warnings'], r
    assert sorted(r['source'] for r in results) == ['FILE', 'FILE', 'FILE', 'SOLVED'], \
        [r['debug'] for r in results]
    assert sum(int(r['solves']) for r in results) == 1
    debug = [r['debug'] for r in results]
    assert sum('lock taken' in d for d in debug) == 1, debug
    assert not any('stale lock broken' in d or 'lock timeout' in d for d in debug), debug
    # they did run at the same time: someone waited for the solver
    assert any('waiting for lock holder' in d and 'the model appeared after' in d
               for d in debug), debug
    assert len({r['digest'] for r in results}) == 1
    assert not lock_files(tmp_path) and not temp_files(tmp_path)
    assert assert_valid_model(path)['digest'] == results[0]['digest'] == \
        digest(solved_bytes(path))


# ------------------------------------------------------------- the lock

def model_hash(model):
    """The hash a model file is made under (bytes 40-71 of its header): the
    one a lock for the same model names."""
    with open(model, 'rb') as f:
        return f.read(72)[40:].hex()


def pid_space():
    """Where a pid names one process (the driver's pidspace field): this
    boot and this pid namespace."""
    with open('/proc/sys/kernel/random/boot_id') as f:
        return f.read().strip() + '/' + os.readlink('/proc/self/ns/pid')


def write_lock(model_path, host, pid, model, space=None):
    """A lock on the model file model_path, naming the model hash `model`."""
    lock = model_path + '.lock'
    with open(lock, 'w') as f:
        f.write('gdal-tps model lock 1\nhost=%s\npidspace=%s\npid=%d\nstarted=%d\nmodel=%s\n'
                % (host, pid_space() if space is None else space, pid, int(time.time()), model))
    with open(lock) as f:
        return f.read()


def lock_files(folder):
    return [f for f in os.listdir(folder) if '.lock' in f]


def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def cold_tps(folder, n=600):
    """A .tps, the hash of its model, no model file; the reference bytes
    (a solve that never sees the file); and where its model file goes."""
    cols = make_points(folder, n=n)
    path = make_tps(folder, cols)
    first = probe(path)
    assert first['source'] == 'SOLVED'
    model = first['model_file']
    h = model_hash(model)
    os.remove(model)
    return path, h, digest(solved_bytes(path)), model


def timed_probe(path, env):
    """A probe and how long it took: only ever compared with a wait the
    driver must not cut short (a lower bound holds on any machine)."""
    t0 = time.monotonic()
    r = probe(path, env=env)
    return r, time.monotonic() - t0


def test_lock_of_a_dead_process_is_broken(tmp_path):
    path, h, reference, model = cold_tps(tmp_path)
    pid = dead_pid()
    write_lock(model, socket.gethostname(), pid, h)
    r, elapsed = timed_probe(path, {'TPS_MODEL_LOCK_TIMEOUT': '60', 'TPS_MODEL_LOCK_STALE': '60'})
    assert r['opened'] and not r['failures'] and not r['warnings'], r
    d = r['debug']
    assert 'stale lock broken (its holder, pid %d on this host, is gone)' % pid in d, d
    assert d.index('stale lock broken') < d.index('lock taken') and 'lock timeout' not in d, d
    # (its debug lines show it was broken at once: not by the 60 s timeout
    # nor the 60 s staleness)
    assert r['source'] == 'SOLVED' and r['digest'] == reference
    assert not lock_files(tmp_path) and not temp_files(tmp_path)
    assert assert_valid_model(path)['digest'] == reference


def test_dead_pid_of_another_pid_namespace_is_not_judged(tmp_path):
    """Same host name, other pid namespace (a container): the pid means
    nothing here, so the lock is not broken for it (only by its staleness
    or the timeout)."""
    path, h, reference, model = cold_tps(tmp_path)
    content = write_lock(model, socket.gethostname(), dead_pid(), h, space='other-container')
    r, elapsed = timed_probe(path, {'TPS_MODEL_LOCK_TIMEOUT': '1', 'TPS_MODEL_LOCK_STALE': '60'})
    d = r['debug']
    assert 'lock timeout' in d and 'stale lock broken' not in d, d
    assert r['source'] == 'SOLVED' and r['digest'] == reference
    assert open(model + '.lock').read() == content


def test_lock_of_another_machine_not_refreshed_is_broken(tmp_path):
    """Its pid cannot be checked from here: the lock is stale once this
    process has seen its modification time unchanged for
    TPS_MODEL_LOCK_STALE seconds."""
    path, h, reference, model = cold_tps(tmp_path)
    write_lock(model, 'another-machine.invalid', 1, h)
    r, elapsed = timed_probe(path, {'TPS_MODEL_LOCK_STALE': '1'})
    d = r['debug']
    assert 'waiting for lock holder pid 1 on another-machine.invalid' in d, d
    assert 'stale lock broken (not refreshed for' in d and 'lock taken' in d, d
    assert elapsed >= 1.0
    assert r['source'] == 'SOLVED' and r['digest'] == reference and not r['warnings']
    assert not lock_files(tmp_path)
    assert assert_valid_model(path)['digest'] == reference


def test_live_holder_is_waited_for_until_the_timeout(tmp_path):
    """A lock of a live process (this test's) that never writes the model:
    the open waits TPS_MODEL_LOCK_TIMEOUT seconds, then solves without the
    lock, writes the model, and leaves the other process's lock alone."""
    path, h, reference, model = cold_tps(tmp_path)
    content = write_lock(model, socket.gethostname(), os.getpid(), h)
    r, elapsed = timed_probe(path, {'TPS_MODEL_LOCK_TIMEOUT': '1.5'})
    d = r['debug']
    assert 'waiting for lock holder pid %d on %s' % (os.getpid(), socket.gethostname()) in d, d
    assert 'lock timeout after 1.' in d and 'lock taken' not in d, d
    assert elapsed >= 1.5
    assert r['source'] == 'SOLVED' and r['digest'] == reference and not r['warnings']
    assert open(model + '.lock').read() == content
    assert assert_valid_model(path)['digest'] == reference  # read, no wait: the model is there


def test_lock_for_another_model_is_not_waited_for(tmp_path):
    path, _, reference, model = cold_tps(tmp_path)
    content = write_lock(model, socket.gethostname(), os.getpid(), '00' * 32)
    r, elapsed = timed_probe(path, {'TPS_MODEL_LOCK_TIMEOUT': '60'})
    d = r['debug']
    assert 'held for another model' in d and 'waiting' not in d, d
    assert r['source'] == 'SOLVED' and r['digest'] == reference
    assert open(model + '.lock').read() == content


def test_bad_lock_timeout_value_warns(tmp_path):
    path, _, reference, model = cold_tps(tmp_path)
    r = probe(path, env={'TPS_MODEL_LOCK_TIMEOUT': 'soon'})
    assert r['opened'] and r['digest'] == reference
    assert any('TPS_MODEL_LOCK_TIMEOUT=soon' in w for w in r['warnings']), r


class ReadOnlyFolder:
    """A folder nobody can create files in: mode 555 for a normal user;
    for root (who ignores modes) the immutable attribute (chattr +i)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __enter__(self):
        if os.geteuid() != 0:
            os.chmod(self.folder, 0o555)
        else:
            subprocess.run(['chattr', '+i', self.folder], capture_output=True, check=True)
        return self

    def __exit__(self, *exc):
        if os.geteuid() != 0:
            os.chmod(self.folder, 0o755)
        else:
            subprocess.run(['chattr', '-i', self.folder], check=True)


@pytest.fixture
def read_only_folders(tmp_path):
    """Skip (with the reason) unless a scratch folder here can be made
    read-only: a probe of the file system and the user, before the test.
    Where it can, the test's own read-only folder must work."""
    scratch = tmp_path / 'ro_probe'
    scratch.mkdir()
    if os.geteuid() == 0:
        if shutil.which('chattr') is None:
            pytest.skip('running as root, and no chattr to make a folder read-only')
        r = subprocess.run(['chattr', '+i', str(scratch)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip('running as root, and chattr +i fails on this file system: ' +
                        r.stderr.strip())
    else:
        os.chmod(scratch, 0o555)
    try:
        open(os.path.join(scratch, 'probe'), 'w').close()
        writable = True
    except OSError:
        writable = False
    finally:
        if os.geteuid() == 0:
            subprocess.run(['chattr', '-i', str(scratch)], check=True)
        else:
            os.chmod(scratch, 0o755)
    if writable:
        pytest.skip('a folder made read-only (%s) still takes new files here'
                    % ('chattr +i' if os.geteuid() == 0 else 'mode 555'))


def test_read_only_folder_solves_without_a_lock(tmp_path, read_only_folders):
    folder = tmp_path / 'ro'
    folder.mkdir()
    path, _, reference, model = cold_tps(folder)
    before = sorted(os.listdir(folder))
    with ReadOnlyFolder(folder):
        with pytest.raises(OSError):
            open(os.path.join(folder, 'probe'), 'w')
        r = probe(path, env={'TPS_MODEL_LOCK_TIMEOUT': '60'})
        after = sorted(os.listdir(folder))
    assert r['opened'] and not r['failures'] and not r['warnings'], r
    assert 'cannot create the lock' in r['debug'] and 'not kept' in r['debug'], r['debug']
    assert r['source'] == 'SOLVED' and r['digest'] == reference
    assert after == before


def test_failed_solve_removes_its_lock(tmp_path):
    """Collinear points: the solve fails, in two processes at once; one
    took the lock and removed it, the other took it too (not at the same
    time) or waited and, left without a model, solved without it."""
    x = np.linspace(0.0, 100.0, 50)
    write_csv(tmp_path / 'p.csv', {'x': x, 'y': 2.0 * x, 'z': x})
    path = write_tps(tmp_path / 'm.tps', tps_xml('p.csv', ['z'], size=(10, 10),
                                                 extent=(0, 0, 100, 200)))
    results = [finish_probe(p) for p in start_together(path, 2, tmp_path)]
    for r in results:
        assert not r['opened'] and any('lie on one line' in m for m in r['failures']), r
        assert 'lock taken' in r['debug'] or (
            'waiting for lock holder' in r['debug'] and
            'finished without a model' in r['debug']), r['debug']
    assert sum('lock taken' in r['debug'] for r in results) >= 1
    assert not lock_files(tmp_path) and not temp_files(tmp_path)
    assert not model_files(path)


def test_local_model_cold_start_solves_once(tmp_path):
    """A local model is kept in the model file too: three processes started
    together on a MODE=LOCAL .tps solve it once; the others wait for the
    lock holder and read its file."""
    cols = make_points(tmp_path, n=2500)
    path = make_tps(tmp_path, cols, extra='<Mode>LOCAL</Mode><PatchPoints>200</PatchPoints>')
    reference = digest(solved_bytes(path))
    results = [finish_probe(p) for p in start_together(path, 3, tmp_path)]
    sources = sorted(r['source'] for r in results)
    for r in results:
        assert r['opened'] and r['mode'] == 'LOCAL' and r['digest'] == reference, r
        assert 'lock timeout' not in r['debug'], r['debug']
    assert sources == ['FILE', 'FILE', 'SOLVED'], results
    assert not lock_files(tmp_path) and len(model_files(path)) == 1


# ------------------------------------------------------- several configurations

def test_alternating_configurations_solve_each_once(tmp_path):
    """A GCV open and a fixed-lambda open of one .tps, one after the other,
    three times over: each configuration is solved once, then read from its
    own file (SOLVES stays 1 in this process); other processes read both;
    the bytes are those of a solve that never sees a file."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols, bands=['z'])
    configs = [('SMOOTHING=GCV',), ('SMOOTHING=5',)]
    first = {}
    for round_ in range(3):
        for oo in configs:
            src, solves, data, _, cap = open_read(path, oo)
            assert_quiet(cap)
            if round_ == 0:
                assert (src, solves) == ('SOLVED', '1'), debug_lines(cap)
                first[oo] = data
            else:
                assert (src, solves) == ('FILE', '1'), debug_lines(cap)
                assert data == first[oo]
    assert first[configs[0]] != first[configs[1]]
    assert len(model_files(path)) == 2
    for oo in configs:
        r = probe(path, oo)
        assert (r['source'], r['solves']) == ('FILE', '0'), r['debug']
        ref = probe(path, oo + ('MODEL_CACHE=NO',))
        assert ref['source'] == 'SOLVED'
        assert r['digest'] == ref['digest'] == digest(first[oo])


def test_several_configurations_read_only_and_no(tmp_path):
    """With two configurations kept: READ_ONLY reads each from its file and
    changes nothing (bytes, times); NO solves each and changes nothing."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols, bands=['z'])
    configs = [['SMOOTHING=GCV'], ['SMOOTHING=5']]
    for oo in configs:
        assert probe(path, oo)['source'] == 'SOLVED'
    files = model_files(path)
    assert len(files) == 2

    def state():
        return [(f, os.stat(f).st_mtime_ns, open(f, 'rb').read()) for f in model_files(path)]
    before = state()
    for _ in range(2):
        for oo in configs:
            assert probe(path, oo + ['MODEL_CACHE=READ_ONLY'])['source'] == 'FILE'
            r = probe(path, oo + ['MODEL_CACHE=NO'])
            assert (r['source'], r['solves']) == ('SOLVED', '1')
    assert state() == before and not lock_files(tmp_path) and not temp_files(tmp_path)


def test_least_recently_used_files_go_beyond_the_bound(tmp_path):
    """TPS_MODEL_CACHE_MAX_FILES=3: a 4th configuration removes the least
    recently used file; reading a file makes it recently used; another
    .tps's files in the same folder are not counted nor removed."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols, bands=['z'])
    other = make_tps(tmp_path, cols, name='other.tps', bands=['z'])
    env = {'TPS_MODEL_CACHE_MAX_FILES': '3'}
    for lam in (1, 2, 3):
        assert probe(other, ['SMOOTHING=%d' % lam], env=env)['source'] == 'SOLVED'
    files = {}
    for lam in (1, 2, 3):
        r = probe(path, ['SMOOTHING=%d' % lam], env=env)
        assert r['source'] == 'SOLVED' and 'removed' not in r['debug'], r['debug']
        files[lam] = r['model_file']
    assert model_files(path) == sorted(files.values())
    # a known order of use: 1 the oldest, then 2, then 3
    now = time.time()
    for age, lam in ((300, 1), (200, 2), (100, 3)):
        os.utime(files[lam], (now - age, now - age))
    # reading 1 makes it the most recently used ...
    r = probe(path, ['SMOOTHING=1'], env=env)
    assert r['source'] == 'FILE' and os.stat(files[1]).st_mtime >= now - 1
    # ... so a 4th configuration pushes out 2
    r = probe(path, ['SMOOTHING=4'], env=env)
    assert r['source'] == 'SOLVED'
    assert '%s: removed, the least recently used of more than 3 model files' % files[2] \
        in r['debug'], r['debug']
    files[4] = r['model_file']
    assert model_files(path) == sorted([files[1], files[3], files[4]])
    assert len(model_files(other)) == 3
    for lam in (1, 3, 4):
        assert probe(path, ['SMOOTHING=%d' % lam], env=env)['source'] == 'FILE', lam
    r = probe(path, ['SMOOTHING=2'], env=env)
    assert r['source'] == 'SOLVED' and len(model_files(path)) == 3


def test_default_bound_is_eight_files(tmp_path):
    cols = make_points(tmp_path, n=60)
    path = make_tps(tmp_path, cols, bands=['z'])
    for lam in range(1, 10):
        src, _, _, _, cap = open_read(path, ['SMOOTHING=%d' % lam])
        assert src == 'SOLVED' and len(model_files(path)) == min(lam, 8)
    assert md(open_tps(path, ['SMOOTHING=9'])[0], 'MODEL_FILE') in model_files(path)


def test_bad_bound_value_warns(tmp_path):
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    r = probe(path, env={'TPS_MODEL_CACHE_MAX_FILES': 'lots'})
    assert r['opened'] and r['source'] == 'SOLVED' and len(model_files(path)) == 1
    assert any('TPS_MODEL_CACHE_MAX_FILES=lots' in w for w in r['warnings']), r


def test_lock_of_another_configuration_is_not_in_the_way(tmp_path):
    """Each configuration has its own lock: a live holder solving one (a
    lock of this test's process) does not delay an open of another."""
    cols = make_points(tmp_path)
    path = make_tps(tmp_path, cols)
    other = model_file(path, ['SMOOTHING=5'])
    content = write_lock(other, socket.gethostname(), os.getpid(), '00' * 32)
    r = probe(path, env={'TPS_MODEL_LOCK_TIMEOUT': '60'})
    assert r['source'] == 'SOLVED' and 'waiting' not in r['debug'], r['debug']
    assert 'lock taken' in r['debug'] and r['model_file'] != other
    assert open(other + '.lock').read() == content
