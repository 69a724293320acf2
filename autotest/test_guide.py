"""The user guide (docs/guide.md), the README's commands, and the Jura example.

* data/jura_co.tps, fitted to jura_pred.csv only, predicts the 100
  held-out samples of jura_val.csv (independent measurements) with an RMSE
  well under their standard deviation;
* every file the guide links or shows exists, and its pictures are small;
* every `$ command` of the guide's ```sh blocks runs, in order, in a folder
  holding the guide's zinc.tps and a copy of data/meuse.csv, and prints the
  lines the guide shows after it (in that order; `...` and other lines may
  come between; numbers with a fraction or exponent, such as times and
  rounding residuals, stand for any number); then the guide's Python
  example runs with this Python (/usr/bin/python3 under `make test`);
* the README's "Use" commands run as written (the build and export lines
  aside) in a folder holding a copy of data/, the Python line with
  /usr/bin/python3.
"""
import csv
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA_DIR, PYTHON, REPO, subprocess_env

GUIDE = os.path.join(REPO, 'docs', 'guide.md')


def samples(name, field):
    with open(os.path.join(DATA_DIR, name)) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r['Xloc']), float(r['Yloc']), float(r[field])] for r in rows])


def test_jura_predicts_held_out_samples():
    ds = gdal.OpenEx(os.path.join(DATA_DIR, 'jura_co.tps'), open_options=['MODEL_CACHE=NO'])
    assert ds is not None
    tps = ds.GetMetadata('TPS')
    assert tps['SMOOTHING_METHOD'] == 'GCV' and tps['POINT_COUNT'] == '259', tps
    held_out = samples('jura_val.csv', 'Co')
    # The pixel holding each held-out sample (20 m cells of a smooth surface).
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    co = ds.GetRasterBand(1).ReadAsArray()
    cols = np.floor((held_out[:, 0] - x0) / dx).astype(int)
    rows = np.floor((held_out[:, 1] - y0) / dy).astype(int)
    error = co[rows, cols] - held_out[:, 2]
    rmse, sd = np.sqrt(np.mean(error ** 2)), held_out[:, 2].std()
    # sd is the RMSE of predicting every sample by the held-out mean: the
    # spline must do clearly better without having seen them.
    assert rmse < 0.8 * sd, (rmse, sd)


def test_guide_links_exist():
    with open(GUIDE) as f:
        text = f.read()
    links = re.findall(r'\]\(([^)#]+)(?:#[^)]*)?\)', text)
    assert len(links) >= 8, links
    for link in links:
        if link.startswith('http'):
            continue
        path = os.path.join(REPO, 'docs', link)
        assert os.path.exists(path), link
        if link.endswith('.png'):
            assert os.path.getsize(path) < 300_000, (link, os.path.getsize(path))
    with open(os.path.join(REPO, 'README.md')) as f:
        assert '(docs/guide.md)' in f.read()


# -------------------------------------------------------------- runnable docs

def read(path):
    with open(path) as f:
        return f.read()


def shell_examples(text):
    """(command, lines shown after it) for each '$ ' line of the ```sh blocks."""
    out = []
    for block in re.findall(r'```sh\n(.*?)```', text, re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith('$ '):
                i += 1
                continue
            command = lines[i][2:]
            while command.endswith('\\'):
                i += 1
                command = command[:-1] + lines[i]
            i += 1
            shown = []
            while i < len(lines) and not lines[i].startswith('$ '):
                shown.append(lines[i])
                i += 1
            out.append((command, shown))
    return out


NUMBER = re.compile(r'\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+')


def normal(line):
    return NUMBER.sub('<number>', line.rstrip())


def assert_prints(command, shown, printed):
    """The shown lines ('...' aside) come in the printed ones, in order."""
    got = [normal(line) for line in printed.splitlines()]
    j = 0
    for line in shown:
        if line.strip() == '...':
            continue
        want = normal(line)
        while j < len(got) and got[j] != want:
            j += 1
        assert j < len(got), 'the guide shows %r after %r; it printed:\n%s' % (
            line, command, printed)
        j += 1


def run_shell(command, cwd):
    r = subprocess.run(['bash', '-c', command], cwd=str(cwd), env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_guide_commands_print_what_it_shows(tmp_path):
    text = read(GUIDE)
    first = text.index('## A first `.tps`')
    xml = re.search(r'```xml\n(.*?)```', text[first:], re.S).group(1)
    with open(tmp_path / 'zinc.tps', 'w') as f:
        f.write(xml)
    shutil.copy(os.path.join(DATA_DIR, 'meuse.csv'), tmp_path)
    # the covariate demo's files ("Covariates and standard errors")
    for name in ('meuse_logzinc_dist.tps', 'meuse_logzinc.csv', 'meuse_dist.tif'):
        shutil.copy(os.path.join(DATA_DIR, name), tmp_path)
    examples = shell_examples(text)
    assert len(examples) >= 8, examples
    for command, shown in examples:
        rc, printed = run_shell(command, tmp_path)
        fails = any(line.startswith('ERROR') for line in shown)
        assert (rc != 0) == fails, '%r -> %d:\n%s' % (command, rc, printed)
        assert_prints(command, shown, printed)

    python = re.findall(r'```python\n(.*?)```', text, re.S)
    assert len(python) == 1
    r = subprocess.run([PYTHON, '-c', python[0]], cwd=str(tmp_path), env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['155'], r.stdout   # the comment in the guide says so


def test_readme_commands_run_as_written(tmp_path):
    """README, "Use": the commands after the build, as written."""
    readme = read(os.path.join(REPO, 'README.md'))
    use = readme[readme.index('## Use'):]
    block = re.search(r'```sh\n(.*?)```', use, re.S).group(1)
    commands, pending = [], ''
    for line in block.splitlines():
        line = pending + line
        if line.endswith('\\'):
            pending = line[:-1]
            continue
        pending = ''
        if line.strip() and not line.startswith(('#', 'cmake', 'export')):
            commands.append(line)
    assert any(c.startswith('/usr/bin/python3 ') for c in commands), commands
    if not os.access('/usr/bin/python3', os.X_OK):
        pytest.skip('no /usr/bin/python3 (the README is for Debian)')
    shutil.copytree(DATA_DIR, tmp_path / 'data')
    for command in commands:
        rc, printed = run_shell(command, tmp_path)
        assert rc == 0, '%r -> %d:\n%s' % (command, rc, printed)
        if command.startswith('/usr/bin/python3 '):
            assert float(printed.split()[-1]) > 1000, printed   # zinc, ppm: up to 1839
