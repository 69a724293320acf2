"""The QGIS Processing algorithm gdaltps:thinplatespline (qgis/gdal_tps/,
issue 15), run by the real QGIS 3.22 of Debian 12:

* with `qgis_process.bin run` (the command line; the plugin enabled through
  a scratch profile's QGIS3.ini and found through QGIS_PLUGINPATH), and with
  PyQGIS's processing.run (autotest/clients/qgis_processing.py, headless);
* its raster is, byte for byte, what `gdal_translate` writes from the .tps
  it keeps (OUTPUT_TPS), and its values equal those of a .tps this test
  writes by hand over the CSV the layers were made from (the independent
  reference): GeoPackage (with a subset, which becomes <Where>), Shapefile,
  delimited text (CSV), a memory layer and a delimited text layer with a
  QGIS-expression subset (both saved to a GeoPackage first), PostGIS (a
  private server), and every setting (extent, CRS, GCV, weights, quantity,
  masks, mode, device) at once;
* the driver's errors reach the caller as QgsProcessingException;
* solve progress (from the driver's debug lines) and evaluation progress
  reach the feedback; the run is a gdal_translate child process, given the
  driver options set in QGIS's process; Cancel stops it during the solve
  (checked by mechanism: no child left, no model file, no 'solved' line)
  and during the evaluation, and no output is left;
* a PostGIS password is in a 0600 .tps, never on the command line;
* the loaded result is styled over the data's range;
* a screenshot of the real dialog under Xvfb (autotest/clients/qgis_dialog.py),
  which docs/img/qgis_tps_dialog.png is.

Skips come from independent probes only: python3-qgis importable,
qgis_process.bin, xvfb-run, PostgreSQL + PostGIS installed, a usable GPU.
"""
import ast
import csv
import glob
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA_DIR, PYTHON, REPO, run, subprocess_env, tps_xml, write_csv, write_tps

CLIENTS = os.path.join(REPO, 'autotest', 'clients')
QGIS_PROCESS = '/usr/bin/qgis_process.bin'
ALG = 'gdaltps:thinplatespline'
CONTRACT = ['INPUT', 'FIELD', 'WEIGHT_FIELD', 'EXTENT', 'PIXEL_SIZE', 'CRS', 'SMOOTHING', 'MODE',
            'DEVICE', 'QUANTITY', 'MAX_DISTANCE', 'CONVEX_HULL', 'OUTPUT', 'OUTPUT_TPS']
PG_BIN = '/usr/lib/postgresql/15/bin'
PG_PASSWORD = 'pw-not-on-the-command-line'


def qgis_importable():
    r = subprocess.run([PYTHON, '-c', 'import qgis.core'], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    return r.returncode == 0


@pytest.fixture(scope='module')
def need_qgis():
    if not qgis_importable():
        pytest.skip('qgis.core is not importable: python3-qgis is not installed '
                    '(scripts/install-deps.sh installs it)')


def qgis_env(home):
    """QGIS with the repository's plugin enabled in a scratch profile."""
    env = subprocess_env()
    profile = os.path.join(home, 'profile')
    os.makedirs(os.path.join(profile, 'profiles', 'default', 'QGIS'), exist_ok=True)
    with open(os.path.join(profile, 'profiles', 'default', 'QGIS', 'QGIS3.ini'), 'w') as f:
        f.write('[PythonPlugins]\ngdal_tps=true\n')
    env.update(QT_QPA_PLATFORM='offscreen', HOME=home, QGIS_CUSTOM_CONFIG_PATH=profile,
               QGIS_PLUGINPATH=os.path.join(REPO, 'qgis'))
    env.pop('TPS_ALLOWED_SOURCES', None)
    return env


# --------------------------------------------------------------------------
# Data: meuse.csv's points as CSV, GeoPackage and Shapefile, plus a weight
# --------------------------------------------------------------------------

def meuse_rows():
    with open(os.path.join(DATA_DIR, 'meuse.csv')) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('qgis_data')
    rows = meuse_rows()
    cols = {'x': [float(r['x']) for r in rows], 'y': [float(r['y']) for r in rows],
            'zinc': [float(r['zinc']) for r in rows], 'copper': [float(r['copper']) for r in rows],
            'landuse': [r['landuse'] or 'NA' for r in rows],
            'w': [1.0 + (i % 5) / 4.0 for i in range(len(rows))]}
    write_csv(d / 'pts.csv', cols)
    with open(d / 'pts.csvt', 'w') as f:  # typed columns: the reference's <Where> compares numbers
        f.write('Real,Real,Real,Real,String,Real\n')
    src = gdal.OpenEx(str(d / 'pts.csv'), gdal.OF_VECTOR,
                      open_options=['X_POSSIBLE_NAMES=x', 'Y_POSSIBLE_NAMES=y'])
    for fmt, name in (('GPKG', 'pts.gpkg'), ('ESRI Shapefile', 'pts.shp')):
        out = gdal.VectorTranslate(str(d / name), src, format=fmt, layerName='pts',
                                   dstSRS='EPSG:28992', reproject=False)
        assert out is not None and out.GetLayer(0).GetGeomType() != 100, name  # wkbNone
        out = None
    src = None
    return {'dir': d, 'cols': cols,
            'gpkg': str(d / 'pts.gpkg'), 'shp': str(d / 'pts.shp'), 'csv': str(d / 'pts.csv'),
            'csv_uri': 'file://%s?type=csv&delimiter=,&xField=x&yField=y&crs=EPSG:28992'
                       '&detectTypes=yes&spatialIndex=no&subsetIndex=no&watchFile=no'
                       % (d / 'pts.csv')}


def reference(folder, name, tps_text):
    """gdal_translate of a .tps this test wrote: the independent reference."""
    tps = write_tps(os.path.join(folder, name + '.tps'), tps_text)
    tif = os.path.join(folder, name + '.tif')
    run(['gdal_translate', '-q', tps, tif])
    return read(tif)


def read(path):
    ds = gdal.Open(str(path))
    assert ds is not None, path
    return ds.GetRasterBand(1).ReadAsArray(), ds.GetGeoTransform(), ds.GetProjection()


def assert_same_raster(a, b):
    (va, gta, pa), (vb, gtb, pb) = a, b
    assert va.shape == vb.shape
    assert np.allclose(gta, gtb, rtol=1e-15, atol=0), (gta, gtb)
    assert pa == pb
    assert np.array_equal(va, vb, equal_nan=True), 'max |diff| %g' % np.nanmax(np.abs(va - vb))


def assert_translate_of_tps_is(out_tif, tps, folder, config=()):
    """`gdal_translate` of the kept .tps writes exactly the algorithm's bytes."""
    again = os.path.join(str(folder), os.path.basename(out_tif) + '.again.tif')
    args = ['gdal_translate', '-q']
    for k, v in config:
        args += ['--config', k, v]
    run(args + [tps, again])
    with open(out_tif, 'rb') as f1, open(again, 'rb') as f2:
        assert f1.read() == f2.read(), 'the algorithm\'s %s differs from gdal_translate of %s' % (
            out_tif, tps)


def tps_points(tps):
    with open(tps) as f:
        text = f.read()
    return {k: v for k, v in re.findall(r'<(Source|Layer|Where|XField)>(.*?)</', text)}


# --------------------------------------------------------------------------
# qgis_process
# --------------------------------------------------------------------------

def test_qgis_process_run_equals_gdal_translate_of_its_tps(need_qgis, data, tmp_path):
    if not os.access(QGIS_PROCESS, os.X_OK):
        pytest.skip('%s is not installed (Debian package qgis; scripts/install-deps.sh)'
                    % QGIS_PROCESS)
    env = qgis_env(str(tmp_path))
    r = run([QGIS_PROCESS, 'plugins'], env=env, timeout=300)
    assert re.search(r'^\* gdal_tps$', r.stdout, re.M), r.stdout
    r = run([QGIS_PROCESS, 'list'], env=env, timeout=300)
    assert re.search(r'gdaltps:thinplatespline\s+Thin plate spline \(gdal-tps\)', r.stdout)
    out, tps = str(tmp_path / 'zinc.tif'), str(tmp_path / 'zinc.tps')
    r = run([QGIS_PROCESS, 'run', ALG, '--INPUT=%s|layername=pts' % data['gpkg'], '--FIELD=zinc',
             '--PIXEL_SIZE=25', '--QUANTITY=aspect', '--OUTPUT=' + out, '--OUTPUT_TPS=' + tps],
            env=env, timeout=300)
    assert 'OUTPUT:\t' + out in r.stdout and 'OUTPUT_TPS:\t' + tps in r.stdout, r.stdout
    assert_translate_of_tps_is(out, tps, tmp_path)
    # the .tps reads the GeoPackage itself (nothing copied)
    assert tps_points(tps) == {'Source': data['gpkg'], 'Layer': 'pts'}
    assert not glob.glob(str(tmp_path / '*.gpkg'))
    ref = reference(tmp_path, 'ref', tps_xml(data['csv'], [{'field': 'zinc', 'quantity': 'aspect'}],
                                             points_srs='EPSG:28992', resolution=25))
    assert_same_raster(read(out), ref)


def test_qgis_process_shows_driver_errors(need_qgis, data, tmp_path):
    if not os.access(QGIS_PROCESS, os.X_OK):
        pytest.skip('%s is not installed' % QGIS_PROCESS)
    out = tmp_path / 'two.tif'
    r = subprocess.run([QGIS_PROCESS, 'run', ALG,
                        '--INPUT=%s|layername=pts|subset="zinc" > 1600' % data['gpkg'],
                        '--FIELD=zinc', '--PIXEL_SIZE=25', '--OUTPUT=%s' % out],
                       env=qgis_env(str(tmp_path)), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert '2 distinct usable points, at least 3 are needed' in r.stdout + r.stderr, r
    assert 'Traceback' not in r.stdout + r.stderr
    assert not out.exists()


# --------------------------------------------------------------------------
# processing.run: one QGIS process runs every job of this module
# --------------------------------------------------------------------------

def jobs(data, out):
    gpkg = {'uri': data['gpkg'] + '|layername=pts', 'provider': 'ogr'}
    csvl = {'uri': data['csv_uri'], 'provider': 'delimitedtext'}

    def p(name, **kw):
        params = {'FIELD': 'zinc', 'PIXEL_SIZE': 40, 'OUTPUT': str(out / (name + '.tif')),
                  'OUTPUT_TPS': str(out / (name + '.tps'))}
        params.update(kw)
        return params
    big = str(out / 'big.csv')
    rng = np.random.default_rng(3)
    write_csv(big, {'x': rng.random(1500) * 1000, 'y': rng.random(1500) * 1000,
                    'v': rng.standard_normal(1500)})
    big_layer = {'uri': 'file://%s?type=csv&xField=x&yField=y&crs=EPSG:28992' % big,
                 'provider': 'delimitedtext'}
    # a GCV solve of 2,500 points: O(N^3) work (an eigendecomposition and a
    # Cholesky factorisation) that outlasts the first progress line by far
    long_solve = str(out / 'long_solve.csv')
    write_csv(long_solve, {'x': rng.random(2500) * 1000, 'y': rng.random(2500) * 1000,
                           'v': rng.standard_normal(2500)})
    long_layer = {'uri': 'file://%s?type=csv&xField=x&yField=y&crs=EPSG:28992' % long_solve,
                  'provider': 'delimitedtext'}
    return [
        {'id': 'gpkg_subset', 'layer': dict(gpkg, subset='"zinc" > 300'),
         'params': p('gpkg_subset')},
        {'id': 'shp', 'layer': {'uri': data['shp'], 'provider': 'ogr'}, 'params': p('shp')},
        {'id': 'csv', 'layer': csvl, 'params': p('csv', QUANTITY='slope')},
        {'id': 'memory', 'layer': {'memory_from': data['csv_uri'], 'provider': 'delimitedtext',
                                   'crs': 'EPSG:28992'}, 'params': p('memory')},
        {'id': 'csv_expression', 'layer': dict(csvl, subset='"zinc" > 300'),
         'params': p('csv_expression')},
        {'id': 'temporary', 'layer': gpkg,
         'params': {'FIELD': 'zinc', 'PIXEL_SIZE': 40, 'OUTPUT': str(out / 'temporary.tif')}},
        {'id': 'settings', 'layer': gpkg, 'params': p(
            'settings', EXTENT='691000,694000,5648400,5652600 [EPSG:32631]', CRS='EPSG:32631',
            PIXEL_SIZE=30, SMOOTHING='gcv', WEIGHT_FIELD='w', QUANTITY='slope',
            MAX_DISTANCE=400, CONVEX_HULL=True, MODE='GLOBAL', DEVICE='CPU')},
        {'id': 'styled', 'layer': gpkg, 'params': p('styled'), 'load': True,
         'render': str(out / 'styled.png')},
        {'id': 'styled_slope', 'layer': gpkg, 'params': p('styled_slope', QUANTITY='slope'),
         'load': True},
        # errors
        {'id': 'text_field', 'layer': csvl, 'params': p('text_field', FIELD='landuse')},
        {'id': 'two_points', 'layer': dict(gpkg, subset='"zinc" > 1600'), 'params': p('two')},
        {'id': 'gcv_three', 'layer': dict(gpkg, subset='"zinc" > 1560'),
         'params': p('gcv_three', SMOOTHING='GCV')},
        {'id': 'gpu', 'layer': gpkg, 'params': p('gpu', DEVICE='GPU')},
        {'id': 'bad_smoothing', 'layer': gpkg, 'params': p('bad_smoothing', SMOOTHING='-1')},
        {'id': 'max_points', 'layer': gpkg, 'params': p('max_points'),
         'config': {'TPS_MAX_POINTS': '100'}},
        # progress and cancel
        {'id': 'progress', 'layer': big_layer,
         'params': p('progress', FIELD='v', PIXEL_SIZE=2, MODE='GLOBAL'),
         'config': {'TPS_PROGRESS_INTERVAL': '0'}},
        {'id': 'cancel_evaluation', 'layer': big_layer,
         'params': p('cancel_evaluation', FIELD='v', PIXEL_SIZE=2, SMOOTHING='1'),
         'cancel_at': 60},
        {'id': 'cancel_solve', 'layer': long_layer,
         'params': p('cancel_solve', FIELD='v', PIXEL_SIZE=20, SMOOTHING='GCV'),
         'config': {'TPS_PROGRESS_INTERVAL': '0'}, 'cancel_on_text': 'Solving: '},
    ]


def run_processing(folder, job_list, env=None):
    folder = str(folder)
    jobs_json, out_json = os.path.join(folder, 'jobs.json'), os.path.join(folder, 'out.json')
    with open(jobs_json, 'w') as f:
        json.dump({'jobs': job_list}, f)
    run([PYTHON, os.path.join(CLIENTS, 'qgis_processing.py'), jobs_json, out_json],
        env=env or qgis_env(folder), timeout=600)
    with open(out_json) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def processed(need_qgis, data, tmp_path_factory):
    out = tmp_path_factory.mktemp('qgis_out')
    report = run_processing(out, jobs(data, out))
    report['dir'] = out
    return report


def job(processed, name):
    return processed['jobs'][name]


def test_algorithm_is_registered_with_its_contract(processed):
    alg = processed['algorithm']
    assert alg is not None, 'QGIS has no gdaltps:thinplatespline'
    assert alg['display_name'] == 'Thin plate spline (gdal-tps)' and alg['provider'] == 'gdaltps'
    assert sorted(alg['parameters']) == sorted(CONTRACT)
    assert alg['can_execute'] == [True, '']


def test_quantities_are_the_drivers(processed, tmp_path):
    """Every option opens (the driver takes it), and the list is the driver's
    when the driver publishes one (TPS_QUANTITIES), else docs/format.md's."""
    quantities = processed['algorithm']['quantities']
    listed = gdal.GetDriverByName('TPS').GetMetadataItem('TPS_QUANTITIES')
    if listed:
        assert quantities == [q.strip() for q in listed.split(',')]
    else:
        with open(os.path.join(REPO, 'docs', 'format.md')) as f:
            row = next(line for line in f if line.startswith('| `<Band><Quantity>`'))
        assert quantities == re.findall(r'`(\w+)`', row.split('|')[2])
    shutil.copy(os.path.join(DATA_DIR, 'meuse.csv'), tmp_path / 'meuse.csv')
    for q in quantities:
        tps = write_tps(tmp_path / (q + '.tps'),
                        tps_xml('meuse.csv', [{'field': 'zinc', 'quantity': q}], resolution=200))
        ds = gdal.Open(tps)
        assert ds is not None and ds.GetRasterBand(1).GetMetadataItem('QUANTITY', 'TPS') == q


@pytest.mark.parametrize('name,copied,where', [
    ('gpkg_subset', False, '"zinc" > 300'),
    ('shp', False, None),
    ('csv', False, None),
    ('memory', True, None),
    ('csv_expression', True, None),
])
def test_layers_give_the_reference_surface(processed, data, name, copied, where):
    j = job(processed, name)
    assert j['ok'], j['error']
    out, tps = j['results']['OUTPUT'], j['results']['OUTPUT_TPS']
    assert_translate_of_tps_is(out, tps, processed['dir'])
    points = tps_points(tps)
    gpkg_copy = os.path.splitext(tps)[0] + '.points.gpkg'
    if copied:
        # saved next to the .tps, named relative to it; subset applied by QGIS
        assert points == {'Source': os.path.basename(gpkg_copy), 'Layer': 'points'}
        assert os.path.exists(gpkg_copy)
        assert any('Saved the points' in m for m in j['info'])
    else:
        assert not os.path.exists(gpkg_copy)
        assert points['Source'] == {'gpkg_subset': data['gpkg'], 'shp': data['shp'],
                                    'csv': data['csv']}[name]
        assert points.get('Where') == (where and where.replace('>', '&gt;'))
        assert (points.get('XField') == 'x') == (name == 'csv')
    quantity = 'slope' if name == 'csv' else None
    subset = '"zinc" > 300' if name in ('gpkg_subset', 'csv_expression') else None
    ref = reference(processed['dir'], 'ref_' + name, tps_xml(
        data['csv'], [{'field': 'zinc', 'quantity': quantity}], points_srs='EPSG:28992',
        resolution=40, where=subset and 'zinc > 300'))
    assert_same_raster(read(out), ref)
    assert j['allowed_sources_after'] is None


def test_temporary_tps_is_not_reported(processed):
    """Without OUTPUT_TPS the .tps is a temporary file of Processing's."""
    j = job(processed, 'temporary')
    assert j['ok'], j['error']
    assert j['results']['OUTPUT_TPS'] is None
    tps = re.search(r'^Wrote (.*\.tps)$', '\n'.join(j['info']), re.M).group(1)
    assert os.path.basename(os.path.dirname(os.path.dirname(tps))).startswith('processing_')
    assert os.path.exists(j['results']['OUTPUT'])


def test_every_setting_reaches_the_tps(processed, data):
    j = job(processed, 'settings')
    assert j['ok'], j['error']
    out, tps = j['results']['OUTPUT'], j['results']['OUTPUT_TPS']
    assert_translate_of_tps_is(out, tps, processed['dir'])
    ref = reference(processed['dir'], 'ref_settings', tps_xml(
        data['csv'], [{'field': 'zinc', 'quantity': 'slope'}], points_srs='EPSG:28992',
        srs='EPSG:32631', extent=[691000, 5648400, 694000, 5652600], resolution=30,
        smoothing='GCV', points_extra='<WeightField>w</WeightField>',
        extra='<Mode>GLOBAL</Mode><MaxDistance>400</MaxDistance><ConvexHull>true</ConvexHull>'))
    got = read(out)
    assert_same_raster(got, ref)
    assert got[0].shape == (140, 100)
    assert np.isnan(got[0]).any() and np.isfinite(got[0]).any()  # the masks are on
    solved = next(m for m in j['info'] if m.startswith('Solved: '))
    assert 'SMOOTHING_METHOD=GCV' in solved and 'DEVICE=CPU' in solved and 'MODE=GLOBAL' in solved


@pytest.mark.parametrize('name,message', [
    ('text_field', "field 'landuse', feature 1: the value is not a number"),
    ('two_points', '2 distinct usable points, at least 3 are needed'),
    ('gcv_three', 'GCV needs at least 4 distinct usable points, got 3'),
])
def test_driver_errors_are_processing_errors(processed, name, message):
    j = job(processed, name)
    assert not j['ok']
    assert j['error'].startswith('QgsProcessingException: '), j['error']
    assert message in j['error'], j['error']
    assert '.tps' in j['error']  # the driver names the file
    assert not os.path.exists(os.path.join(processed['dir'], name + '.tif'))


def gpu_usable():
    try:
        r = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and 'GPU' in r.stdout


def test_device_gpu_without_gpu_is_an_error(processed):
    if gpu_usable():
        pytest.skip('a GPU is usable here (nvidia-smi -L): DEVICE=GPU does not fail')
    j = job(processed, 'gpu')
    assert not j['ok'] and j['error'].startswith('QgsProcessingException: ')
    assert 'DEVICE=GPU: GPU evaluation is not available' in j['error'], j['error']


def test_bad_smoothing_is_refused_before_running(processed):
    j = job(processed, 'bad_smoothing')
    assert not j['ok'] and 'Smoothing must be a number >= 0 or GCV' in j['error']


def test_progress_reaches_the_feedback(processed):
    j = job(processed, 'progress')
    assert j['ok'], j['error']
    stages = [t for t in j['texts'] if t.startswith('Solving: ')]
    assert any('factorising (Cholesky' in t for t in stages), j['texts']
    assert any(t.startswith('Evaluating ') for t in j['texts'])
    # the solve moves the bar from 0 to 50 through each of its stages, the
    # evaluation from 50 to 100, steadily
    progress = j['progress']
    start = max(i for i, v in enumerate(progress) if v == 50.0 and
                all(w >= 50 for w in progress[i:]))
    solve, evaluation = progress[:start], progress[start:]
    assert any(0 < v < 50 for v in solve) and all(0 <= v <= 50 for v in solve), progress
    assert len(evaluation) > 3 and evaluation == sorted(evaluation) and evaluation[-1] == 100
    # it ran as the gdal_translate command, given the option this process
    # set (gdal.SetConfigOption, not the environment)
    command = j['commands'][0]
    assert re.match(r'\S*gdal_translate .* -if TPS -of GTiff \S+progress\.tps \S+progress\.tif$',
                    command), command
    assert '--config TPS_PROGRESS_INTERVAL 0 ' in command and j['running_after'] == []


def test_configuration_options_reach_the_run(processed):
    """A driver option set in QGIS's process applies to the run."""
    j = job(processed, 'max_points')
    assert not j['ok'] and j['error'].startswith('QgsProcessingException: ')
    assert 'TPS_MAX_POINTS=100 caps the points of a source' in j['error'], j['error']


def test_every_driver_option_is_passed_on():
    """gdal_run.FORWARDED holds every configuration option the driver reads:
    the TPS_ names in the driver's sources that are not items of its
    metadata (TPS_QUANTITIES), and nothing else of TPS_."""
    with open(os.path.join(REPO, 'qgis', 'gdal_tps', 'gdal_run.py')) as f:
        tree = ast.parse(f.read())
    forwarded = next(ast.literal_eval(node.value) for node in tree.body
                     if isinstance(node, ast.Assign) and
                     getattr(node.targets[0], 'id', None) == 'FORWARDED')
    names = set()
    for path in glob.glob(os.path.join(REPO, 'driver', '*.cpp')):
        with open(path) as f:
            names |= set(re.findall(r'"(TPS_[A-Z0-9_]+)"', f.read()))
    names -= set(gdal.GetDriverByName('TPS').GetMetadata() or {})
    assert names and names == {n for n in forwarded if n.startswith('TPS_')}, names


def test_cancel_stops_the_evaluation(processed):
    j = job(processed, 'cancel_evaluation')
    assert not j['ok'] and j['canceled']
    assert 'Canceled while evaluating' in j['error'], j['error']
    assert all(v < 100 for v in j['progress'])
    assert not os.path.exists(j_out(processed, 'cancel_evaluation'))
    assert j['running_after'] == []


def test_cancel_during_the_solve_stops_it(processed):
    """Cancel as the solve reports its first stage: gdal_translate is
    stopped there, inside the solve, not when the solve ends."""
    j = job(processed, 'cancel_solve')
    assert not j['ok'] and j['canceled']
    assert 'Canceled while solving; no raster was written' in j['error'], j['error']
    assert j['texts'][-1].startswith('Solving: ')   # Cancel came at the first stage
    # the child is gone (no process names the output as the run returns)
    assert j['running_after'] == []
    # ... and it was stopped inside the solve: it wrote no model file (which
    # a finished solve writes) and left neither the lock it had taken nor a
    # temporary file; no 'solved' line or summary reached the log
    messages = j['info'] + j['debug']
    assert any(': lock taken by pid ' in m for m in messages), messages
    assert not any(re.search(r': solved \d+ bands? over ', m) for m in messages), messages
    assert not any(m.startswith('Solved: ') for m in j['info'])
    tps = os.path.join(str(processed['dir']), 'cancel_solve.tps')
    assert os.path.exists(tps) and glob.glob(tps + '.model*') == []
    # no evaluation, no raster
    assert not any(t.startswith('Evaluating') for t in j['texts'])
    assert all(v <= 50 for v in j['progress'])
    assert not os.path.exists(j_out(processed, 'cancel_solve'))


def j_out(processed, name):
    return os.path.join(str(processed['dir']), name + '.tif')


def test_result_style_stretches_over_the_data(processed, data):
    j = job(processed, 'styled')
    assert j['ok'], j['error']
    style = j['style']
    assert style['type'] == 'singlebandpseudocolor' and style['clip'] is False
    zinc = data['cols']['zinc']
    assert (style['min'], style['max']) == (min(zinc), max(zinc))
    # the colours at the field's quantiles (numpy's, computed here)
    assert np.allclose(style['stops'], np.quantile(zinc, [0, .2, .4, .6, .8, 1]), rtol=1e-12)
    assert style['name'] == 'zinc (thin plate spline)'
    # the raster itself extrapolates far beyond: the stretch is not its range
    values = read(j['results']['OUTPUT'])[0]
    assert values.min() < style['min'] - 100 and values.max() > style['max'] + 100
    # QGIS draws it: many colours, the whole raster
    assert j['render'] == {'errors': [], 'saved': True}
    img = gdal.Open(os.path.join(str(processed['dir']), 'styled.png')).ReadAsArray()
    assert img.shape[1:] == values.shape and (img[3] == 255).mean() > 0.9
    assert len(np.unique(img[:3].reshape(3, -1), axis=1)[0]) > 100
    s = job(processed, 'styled_slope')['style']
    assert s['type'] == 'singlebandpseudocolor' and s['min'] == 0 and 0 < s['max'] < 90
    assert np.allclose(np.diff(s['stops']), s['max'] / 5)  # evenly spaced


# --------------------------------------------------------------------------
# PostGIS: a private server (initdb in a scratch folder, a Unix socket only)
# --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def postgis(need_qgis, data):
    if not os.path.exists(os.path.join(PG_BIN, 'initdb')) or not glob.glob(
            '/usr/share/postgresql/15/extension/postgis.control'):
        pytest.skip('PostgreSQL 15 + PostGIS are not installed (postgresql-15-postgis-3; '
                    'scripts/install-deps.sh)')
    as_user = []
    folder = tempfile.mkdtemp(prefix='tps_pg_')
    if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
        as_user = ['runuser', '-u', 'postgres', '--']
        shutil.chown(folder, 'postgres')
    pgdata = os.path.join(folder, 'data')
    # The server is a tool here, not code under test: `make sanitize`
    # preloads ASan into every child, and initdb hangs under it (CI, December)
    server_env = {k: v for k, v in subprocess_env().items()
                  if k not in ('LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS')}
    try:
        run(as_user + [os.path.join(PG_BIN, 'initdb'), '-D', pgdata, '-A', 'trust', '-U',
                       'postgres'], env=server_env)
        run(as_user + [os.path.join(PG_BIN, 'pg_ctl'), '-D', pgdata, '-w', '-l',
                       os.path.join(folder, 'log'), '-o',
                       "-k %s -c listen_addresses='' -c fsync=off" % folder, 'start'],
            env=server_env)
        conn = "dbname=postgres host=%s user=postgres" % folder
        run(['psql', '-q', '-d', conn, '-c', 'CREATE EXTENSION postgis'], env=server_env)
        out = gdal.VectorTranslate('PG:' + conn, data['gpkg'], format='PostgreSQL',
                                   layerName='pts', options=['-lco', 'SCHEMA=public'])
        assert out is not None
        out = None
        # a password as QGIS keeps one in a connection (the server trusts
        # any: -A trust), to see where it goes
        uri = ("dbname='postgres' host=%s user='postgres' password='%s' key='fid' srid=28992 "
               "type=Point table=\"public\".\"pts\" (geom)" % (folder, PG_PASSWORD))
        yield {'dir': folder, 'uri': uri}
    finally:
        subprocess.run(as_user + [os.path.join(PG_BIN, 'pg_ctl'), '-D', pgdata, '-m', 'fast',
                                  'stop'], env=server_env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgis_layer(postgis, data, tmp_path):
    out, tps = str(tmp_path / 'pg.tif'), str(tmp_path / 'pg.tps')
    report = run_processing(tmp_path, [
        {'id': 'pg', 'layer': {'uri': postgis['uri'], 'provider': 'postgres',
                               'subset': '"zinc" > 300'},
         'params': {'FIELD': 'zinc', 'PIXEL_SIZE': 40, 'OUTPUT': out, 'OUTPUT_TPS': tps}}])
    j = report['jobs']['pg']
    assert j['ok'], j['error']
    points = tps_points(tps)
    assert points['Source'].startswith('PG:') and points['Layer'] == 'pts(geom)'
    assert points['Where'] == '"zinc" &gt; 300'
    # the password is in the .tps, which only its owner may read, and the
    # log warns; it is not on gdal_translate's command line (which `ps`
    # shows everyone) nor in any message
    assert PG_PASSWORD in points['Source'] and stat.S_IMODE(os.stat(tps).st_mode) == 0o600
    assert any('with its password' in w for w in j['warnings']), j['warnings']
    assert j['commands'] and not any(PG_PASSWORD in c for c in j['commands'])
    assert not any(PG_PASSWORD in m for m in j['info'] + j['debug'] + j['warnings'])
    # the run allowed PG: for itself only, and said so
    assert any('TPS_ALLOWED_SOURCES=LOCAL,PG:' in m for m in j['info']), j['info']
    assert j['allowed_sources_after'] is None
    assert_translate_of_tps_is(out, tps, tmp_path, config=[('TPS_ALLOWED_SOURCES', 'LOCAL,PG:')])
    ref = reference(str(tmp_path), 'ref', tps_xml(data['csv'], ['zinc'], points_srs='EPSG:28992',
                                                  resolution=40, where='zinc > 300'))
    assert_same_raster(read(out), ref)
    # under the default policy, the kept .tps is refused (docs/security.md)
    env = subprocess_env()
    env.pop('TPS_ALLOWED_SOURCES', None)
    r = subprocess.run(['gdalinfo', tps], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'refused by TPS_ALLOWED_SOURCES' in r.stderr


def test_no_driver_is_a_clear_error(need_qgis, data, tmp_path):
    """QGIS without the GDAL plugin: the algorithm says how to install it."""
    empty = tmp_path / 'no_plugins'
    empty.mkdir()
    env = qgis_env(str(tmp_path))
    env['GDAL_DRIVER_PATH'] = str(empty)
    report = run_processing(tmp_path, [
        {'id': 'x', 'layer': {'uri': data['gpkg'], 'provider': 'ogr'},
         'params': {'FIELD': 'zinc', 'PIXEL_SIZE': 40, 'OUTPUT': str(tmp_path / 'x.tif')}}], env)
    assert report['algorithm']['can_execute'][0] is False
    j = report['jobs']['x']
    assert not j['ok'] and 'the GDAL driver TPS is not loaded in this QGIS' in j['error']


# --------------------------------------------------------------------------
# The dialog, on a real (virtual) screen
# --------------------------------------------------------------------------

def test_dialog_screenshot(need_qgis, data, tmp_path):
    if not shutil.which('xvfb-run'):
        pytest.skip('xvfb-run is not installed (package xvfb; scripts/install-deps.sh)')
    png, out_json = str(tmp_path / 'dialog.png'), str(tmp_path / 'dialog.json')
    env = qgis_env(str(tmp_path))
    env.pop('QT_QPA_PLATFORM')
    run(['xvfb-run', '-a', '-s', '-screen 0 1280x1024x24', PYTHON,
         os.path.join(CLIENTS, 'qgis_dialog.py'), data['gpkg'], png, out_json], env=env)
    with open(out_json) as f:
        report = json.load(f)
    assert report['title'] == 'Thin plate spline (gdal-tps)' and report['saved']
    for label in ('Points', 'Field to interpolate', 'Pixel size (output CRS units)', 'Quantity',
                  'Smoothing (0: exact; a number > 0; or GCV)', 'Interpolated raster',
                  'Thin plate spline file (.tps)', 'Device', 'Weight field'):
        assert any(text.startswith(label) for text in report['labels']), (label, report['labels'])
    img = gdal.Open(png).ReadAsArray()
    assert img.shape[0] in (3, 4) and img.shape[1] > 500 and img.shape[2] > 700
    assert len(np.unique(img[:3].reshape(3, -1), axis=1)[0]) > 20  # a drawn dialog, not blank


def test_docs_show_the_dialog_and_the_install():
    with open(os.path.join(REPO, 'docs', 'guide.md')) as f:
        guide = f.read()
    for name in ('qgis_tps_dialog.png', 'qgis_tps_result.png'):
        ds = gdal.Open(os.path.join(REPO, 'docs', 'img', name))
        assert ds is not None and ds.RasterXSize > 200, name
        assert 'img/' + name in guide
    install = guide[guide.index('## Install'):guide.index('## A first')]
    assert install.index('make package') < install.index('cmake -S . -B build')
    assert 'qgis_process.bin' in guide


def test_plugin_version_is_the_projects():
    with open(os.path.join(REPO, 'CMakeLists.txt')) as f:
        version = re.search(r'project\(gdal_tps VERSION ([0-9.]+)', f.read()).group(1)
    with open(os.path.join(REPO, 'qgis', 'gdal_tps', 'metadata.txt')) as f:
        assert re.search(r'^version=%s$' % re.escape(version), f.read(), re.M)
