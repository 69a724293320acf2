#!/usr/bin/env python3
"""local_cov_se_probe.py: which blend of the patches' standard errors best
approximates the global standard error of a partial spline (covariates), in
numpy (issue 14; docs/design.md, "The standard error", LOCAL models, has the
choice and the C code's own measurements).

usage: local_cov_se_probe.py [N] [GRID]     (defaults 2000 and 41)

N uniform points in the unit square, z = Franke + 2 c + uniform noise of
width 0.02, c = sin(17x + 3y) cos(13y) (it varies within a patch); 4 x 4
patches on a regular grid, supports 1.3 times their cells, C2 bumps as the
partition of unity. The global standard error (the saddle system solved
densely, rho its maximum-likelihood estimate, used by every form so that
only the forms differ) against, on a GRID^2 grid of cells:

  ignore b   the patches' [1 u v] standard errors blended (b's variance left out)
  A          each patch's own partial spline (fixed part [1 u v c] over its
             points): its b known only to the patch's points
  B          each patch's [1 u v] variance plus rho d^T G^-1 d, d = c(x) minus
             the patch's spline of c at x, G = C^T R C with R the blend of the
             patches' operators (what core/cpu_local_se.c computes)
  B, global G   the same with the global G (what B approximates)

Twice: with the grid's covariate as at the points, and with a peak added on
the grid where no point sampled it (c(x) far from every spline of c: b's
variance a large share of the global variance there). Each at lambda 1e-5
(noise level) and 1e-3 (heavy). Not part of the tests.
"""
import sys

import numpy as np


def franke(x, y):
    return (0.75 * np.exp(-((9 * x - 2) ** 2 + (9 * y - 2) ** 2) / 4)
            + 0.75 * np.exp(-(9 * x + 1) ** 2 / 49 - (9 * y + 1) / 10)
            + 0.5 * np.exp(-((9 * x - 7) ** 2 + (9 * y - 3) ** 2) / 4)
            - 0.2 * np.exp(-(9 * x - 4) ** 2 - (9 * y - 7) ** 2))


def cov(x, y):
    return np.sin(17 * x + 3 * y) * np.cos(13 * y)


def peak(x, y):
    return 3 * np.exp(-((x - 0.3) ** 2 + (y - 0.7) ** 2) / 0.01)


def kmat(ax, ay, bx, by):
    r2 = (ax[:, None] - bx[None, :]) ** 2 + (ay[:, None] - by[None, :]) ** 2
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.nan_to_num(0.5 * r2 * np.log(r2))


def fixed(x, y, c=None):
    cols = [np.ones(len(x)), x, y] + ([] if c is None else [c])
    return np.column_stack(cols)


def kriging(px, py, T, lam, tx, ty, Tt):
    """v^T S^-1 v's complement (the variance over rho) and the predictor's
    weights at the targets."""
    n, m = len(px), T.shape[1]
    S = np.block([[kmat(px, py, px, py) + lam * np.eye(n), T], [T.T, np.zeros((m, m))]])
    V = np.vstack([kmat(px, py, tx, ty), Tt.T])
    X = np.linalg.solve(S, V)
    return -np.sum(V * X, 0), X[:n]


def bump(t):
    t = np.abs(t)
    return np.where(t < 1, (1 - np.minimum(t, 1) ** 2) ** 3, 0.0)


def main():
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    G = int(sys.argv[2]) if len(sys.argv) > 2 else 41
    rng = np.random.default_rng(1)
    x, y = rng.random(N), rng.random(N)
    c = cov(x, y)
    z = franke(x, y) + 2 * c + 0.02 * (rng.random(N) - 0.5)
    gx, gy = (a.ravel() for a in np.meshgrid(np.linspace(0, 1, G), np.linspace(0, 1, G)))
    inside = (gx >= 0.05) & (gx <= 0.95) & (gy >= 0.05) & (gy <= 0.95)
    P, grow = 4, 1.3
    patches = [((i + 0.5) / P, (j + 0.5) / P, 0.5 / P * grow) for i in range(P) for j in range(P)]
    wpts = np.array([bump((x - cx) / h) * bump((y - cy) / h) for cx, cy, h in patches])
    wgrid = np.array([bump((gx - cx) / h) * bump((gy - cy) / h) for cx, cy, h in patches])
    for lam in (1e-5, 1e-3):
        T = fixed(x, y, c)
        M = kmat(x, y, x, y) + lam * np.eye(N)
        S = np.block([[M, T], [T.T, np.zeros((4, 4))]])
        w = np.linalg.solve(S, np.concatenate([z, np.zeros(4)]))[:N]
        rho = w @ z / N
        T0 = fixed(x, y)
        R = np.linalg.inv(np.block([[M, T0], [T0.T, np.zeros((3, 3))]]))[:N, :N]
        g_global = c @ R @ c
        # the patches: R_p c blended at the points gives the blended G
        local = []
        rc = np.zeros(N)
        for k, (cx, cy, h) in enumerate(patches):
            sel = (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
            px, py, n = x[sel], y[sel], int(sel.sum())
            Mp = kmat(px, py, px, py) + lam * np.eye(n)
            Tp = fixed(px, py)
            Rp = np.linalg.inv(np.block([[Mp, Tp], [Tp.T, np.zeros((3, 3))]]))[:n, :n]
            rc[sel] += wpts[k][sel] / wpts.sum(0)[sel] * (Rp @ c[sel])
            local.append((sel, px, py))
        g_blend = c @ rc
        for with_peak in (0, 1):
            cg = cov(gx, gy) + (peak(gx, gy) if with_peak else 0)
            vg, _ = kriging(x, y, T, lam, gx, gy, fixed(gx, gy, cg))
            se_g = np.sqrt(rho * np.maximum(vg, 0))
            v0, _ = kriging(x, y, T0, lam, gx, gy, fixed(gx, gy))
            forms = {k: np.zeros(G * G) for k in ('ignore b', 'A', 'B', 'B, global G')}
            wsum = wgrid.sum(0)
            for k, (sel, px, py) in enumerate(local):
                on = wgrid[k] > 0
                if not on.any():
                    continue
                tx, ty = gx[on], gy[on]
                v0p, weights = kriging(px, py, fixed(px, py), lam, tx, ty, fixed(tx, ty))
                vap, _ = kriging(px, py, fixed(px, py, c[sel]), lam, tx, ty,
                                 fixed(tx, ty, cg[on]))
                d = cg[on] - weights.T @ c[sel]
                wt = wgrid[k][on] / wsum[on]
                for name, var in (('ignore b', v0p), ('A', vap),
                                  ('B', v0p + d * d / g_blend),
                                  ('B, global G', v0p + d * d / g_global)):
                    forms[name][on] += wt * np.sqrt(rho * np.maximum(var, 0))
            share = 1 - v0 / vg
            print('lambda %g%s: G blended %.4g, global %.4g; b\'s share of the global variance '
                  'up to %.3f' % (lam, ', a peak on the grid' if with_peak else '', g_blend,
                                  g_global, share.max()))
            for name, se in forms.items():
                r = np.abs(se - se_g) / se_g
                print('  %-12s max %.4f  inside %.4f  RMS %.4f' % (
                    name, r.max(), r[inside].max(), np.sqrt(np.mean(r ** 2))))


if __name__ == '__main__':
    main()
