"""GCV and fixed-lambda splines against R's fields::Tps (Debian r-cran-fields),
run as a real program (autotest/r/fields_tps.R), on real data with the
coordinates unscaled (fields' scale.type = "unscaled").

fields::Tps solves (K_f + lambda_f W^-1) c + T d = z with the radial basis
K_f = r^2 log r / (8 pi) (its radbas.constant(2, 2)); ours is scipy's
(K + lambda I) with K = r^2 log r, so lambda = 8 pi lambda_f
(docs/design.md, "GCV and R's fields::Tps"). Checked per data set:

* the mapping itself: our fixed-lambda surface at 8 pi lambda_f equals
  fields' predict(fit, lambda = lambda_f) at pixel centres, and fields' GCV
  score and tr A at our chosen lambda equal our GCV_SCORE and EFFECTIVE_DF;
* the choice: when fields' minimum lies inside its search grid, the same
  lambda within 2% (the GCV curve is flat near its minimum), the same
  effective df within 0.5; in any case our GCV score is no higher than
  fields' (lower when fields stops at the end of its grid);
* the surfaces at the two GCV choices agree to 3e-3 x the data range (fields
  stops its golden section within ~1% of the minimum; measured 1e-5 to
  1e-3 x range).

R missing is a failure, not a skip: scripts/install-deps.sh installs it.
"""
import csv
import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import (DATA_DIR, REPO, grid_around, md, open_tps, pixel_centres, tps_xml,
                      write_csv, write_tps)

FIELDS_SCRIPT = os.path.join(REPO, 'autotest', 'r', 'fields_tps.R')
TO_FIELDS = 1.0 / (8.0 * math.pi)  # lambda_f = lambda / (8 pi)


def rscript():
    path = shutil.which('Rscript')
    assert path, ('Rscript not found: R and r-cran-fields are test dependencies '
                  '(scripts/install-deps.sh installs them)')
    return path


def run_fields(points_csv, zcol, targets, out_csv, lambdas_f=(), weight_col=None,
               xcol='x', ycol='y'):
    """fields::Tps on points_csv: ({key: [values]}, predictions dict)."""
    tcsv = str(out_csv) + '.targets.csv'
    write_csv(tcsv, {'x': targets[0].ravel(), 'y': targets[1].ravel()})
    args = [rscript(), FIELDS_SCRIPT, str(points_csv), xcol, ycol, zcol, weight_col or '-',
            tcsv, str(out_csv)] + ['%.17g' % v for v in lambdas_f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, 'fields_tps.R failed (%d): %s' % (r.returncode, r.stderr[-3000:])
    stats = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == '@@':  # fields' own messages go to stdout too
            stats[parts[1]] = [float(v) for v in parts[2:]]
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    preds = {k: np.array([float(row[k]) for row in rows]) for k in rows[0] if k not in ('x', 'y')}
    return stats, preds


def read_columns(path, names):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {n: np.array([float(r[n]) for r in rows]) for n in names}


def open_band(path, options):
    ds, cap = open_tps(path, ['MODEL_CACHE=NO'] + options)
    assert ds is not None, cap.errors
    return ds.GetRasterBand(1).GetMetadata('TPS'), ds.GetRasterBand(1).ReadAsArray()


def meuse(tmp_path, log_values):
    cols = read_columns(os.path.join(DATA_DIR, 'meuse.csv'), ['x', 'y', 'zinc'])
    z = np.log(cols['zinc']) if log_values else cols['zinc']
    return write_csv(tmp_path / 'meuse_z.csv', {'x': cols['x'], 'y': cols['y'], 'z': z})


def jura(tmp_path, metal):
    cols = read_columns(os.path.join(DATA_DIR, 'jura_pred.csv'), ['Xloc', 'Yloc', metal])
    return write_csv(tmp_path / 'jura_z.csv', {'x': cols['Xloc'], 'y': cols['Yloc'],
                                               'z': cols[metal]})


def wiggly_exact(tmp_path):
    """Noise-free smooth data: GCV wants (nearly) no smoothing, at the low end."""
    rng = np.random.default_rng(11)
    x, y = rng.random(120) * 1000.0, rng.random(120) * 1000.0
    z = np.sin(x / 300.0) * np.cos(y / 250.0) * 50.0 + x * 0.01
    return write_csv(tmp_path / 'exact_z.csv', {'x': x, 'y': y, 'z': z})


DATASETS = {
    'meuse_zinc': lambda p: meuse(p, False),
    'meuse_log_zinc': lambda p: meuse(p, True),
    'jura_cd': lambda p: jura(p, 'Cd'),
    'jura_zn': lambda p: jura(p, 'Zn'),
    'smooth_exact': wiggly_exact,
}


@pytest.mark.parametrize('name', sorted(DATASETS))
def test_gcv_against_fields(tmp_path, name):
    points = DATASETS[name](tmp_path)
    cols = read_columns(points, ['x', 'y', 'z'])
    x, y, z = cols['x'], cols['y'], cols['z']
    cols_n, rows_n = 24, 18
    gt = grid_around(x, y, cols_n, rows_n)
    path = write_tps(tmp_path / 'z.tps', tps_xml(os.path.basename(points), ['z'],
                                                 geotransform=gt, size=(cols_n, rows_n),
                                                 data_type='Float64'))
    gmd, gcv_surface = open_band(path, ['SMOOTHING=GCV'])
    lam = float(gmd['SMOOTHING'])
    score, df = float(gmd['GCV_SCORE']), float(gmd['EFFECTIVE_DF'])
    lam_fixed = 10.0 * lam  # a second, fixed lambda: the mapping away from the optimum
    _, fixed_surface = open_band(path, ['SMOOTHING=%.17g' % lam_fixed])

    targets = pixel_centres(gt, cols_n, rows_n)
    stats, preds = run_fields(points, 'z', targets, tmp_path / 'fields.csv',
                              [lam * TO_FIELDS, lam_fixed * TO_FIELDS])
    value_range = np.ptp(z)

    # the mapping: same surface at the same (mapped) lambda, same criterion
    for col, ours in (('lam1', gcv_surface), ('lam2', fixed_surface)):
        err = np.max(np.abs(ours.ravel() - preds[col]))
        assert err <= 1e-7 * value_range, (name, col, err / value_range)
    fields_score_at_ours, fields_tr_at_ours = stats['at_1']
    assert abs(fields_score_at_ours - score) <= 1e-7 * score, (fields_score_at_ours, score)
    assert abs(fields_tr_at_ours - df) <= 1e-6 * df, (fields_tr_at_ours, df)

    # the choice
    lam_f, df_f, score_f = stats['lambda'][0], stats['eff_df'][0], stats['gcv'][0]
    assert score <= score_f * (1.0 + 1e-9), (score, score_f)
    at_grid_end = stats['grid_index'][0] in (1, stats['grid_size'][0])
    if not at_grid_end:
        assert abs(lam * TO_FIELDS / lam_f - 1.0) < 0.02, (lam * TO_FIELDS, lam_f)
        assert abs(df - df_f) < 0.5, (df, df_f)
        # fields' golden section stops within ~1% of the minimum: surfaces
        # at lambdas 1% apart differ by ~1e-3 x range on these data
        err = np.max(np.abs(gcv_surface.ravel() - preds['gcv']))
        assert err <= 3e-3 * value_range, (name, err / value_range)
    else:
        # fields stopped at the end of its grid: ours goes past it, lower
        assert score < score_f * (1.0 - 1e-6), (score, score_f)
    assert 3.0 < df < len(z) + 1e-9
    print('%s: lambda ours %.6g (fields units %.6g) fields %.6g; df %.4f / %.4f; '
          'GCV %.8g / %.8g; fields grid min %d of %d'
          % (name, lam, lam * TO_FIELDS, lam_f, df, df_f, score, score_f,
             stats['grid_index'][0], stats['grid_size'][0]))
