#!/usr/bin/env python3
"""se_lowrank_probe.py: the standard error's low-rank form per tile of cells,
against the exact form, in numpy (issue 13; docs/design.md, "The standard
error", has the method the C code follows).

usage: se_lowrank_probe.py N GRID TILE Q MARGIN TOL [clustered] [lam=..]

N points in the unit square (uniform, or 'clustered': 20 Gaussian clusters),
a GRID^2 grid of cells over it, tiles of TILE^2 cells; the far points' kernel
interpolated over a tile on a Q x Q Chebyshev grid, compressed by a
column-pivoted QR to TOL; near points (within MARGIN tile widths of the tile)
kept exact. Prints, per lambda and tile, the worst relative SE difference
against the exact SE and the low-rank form's size. Not part of the tests.
"""
import sys
import numpy as np
import scipy.linalg as sl
from scipy.linalg import lapack


def phi(r2):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * r2 * np.log(r2)
    out[r2 == 0] = 0.0
    return out


def kmat(pu, pv, xu, xv):
    return phi((pu[:, None] - xu[None, :]) ** 2 + (pv[:, None] - xv[None, :]) ** 2)


class Factor:
    def __init__(self, u, v, lam):
        n = len(u)
        self.u, self.v, self.n, self.lam = u, v, n, lam
        t = np.column_stack([np.ones(n), u, v])
        self.qr, self.tau, _, _ = lapack.dgeqrf(t)
        self.r = np.triu(self.qr[:3, :3])
        m = kmat(u, v, u, v) + lam * np.eye(n)
        a = self.qt(m)
        a = self.qt(np.ascontiguousarray(a.T))
        self.m11 = a[:3, :3].copy()
        self.m21 = a[3:, :3].copy()
        b = a[3:, 3:]
        del a, m
        lo = sl.cholesky(b, lower=True, overwrite_a=True, check_finite=False)
        self.linv, info = lapack.dtrtri(lo, lower=1, overwrite_c=1)
        assert info == 0
        self.linv = np.tril(self.linv)
        # D = L^-1 M21: fixed per factorisation
        self.d = self.linv @ self.m21

    def saddle(self, xu, xv):
        if not hasattr(self, "lu"):
            n = self.n
            s = np.zeros((n + 3, n + 3))
            s[:n, :n] = kmat(self.u, self.v, self.u, self.v) + self.lam * np.eye(n)
            t = np.column_stack([np.ones(n), self.u, self.v])
            s[:n, n:], s[n:, :n] = t, t.T
            self.lu = sl.lu_factor(s)
        vv = np.vstack([kmat(self.u, self.v, xu, xv), np.ones_like(xu), xu, xv])
        return -np.sum(vv * sl.lu_solve(self.lu, vv), 0)

    def qt(self, x):
        """Q^T x"""
        lw = lapack.dormqr("L", "T", self.qr, self.tau, x, -1)[1][0]
        c, _, info = lapack.dormqr("L", "T", self.qr, self.tau, x, int(lw))
        assert info == 0
        return c

    def hvec(self, xu, xv):
        t = np.vstack([np.ones_like(xu), xu, xv])
        return sl.solve_triangular(self.r, t, trans="T", lower=False)

    def exact(self, xu, xv):
        """k(x,x) - v^T S^-1 v = h^T M11 h - 2 q1^T h - |L^-1 y|^2"""
        k = kmat(self.u, self.v, xu, xv)
        q = self.qt(k)
        h = self.hvec(xu, xv)
        y = q[3:] - self.m21 @ h
        w = self.linv @ y
        return np.einsum("ij,ik,kj->j", h, self.m11, h) - 2 * np.sum(q[:3] * h, 0) - np.sum(w * w, 0)


def cheb(q, a, b):
    k = np.arange(q)
    return 0.5 * (a + b) + 0.5 * (b - a) * np.cos((2 * k + 1) * np.pi / (2 * q))


def lagrange(nodes, x):
    """l_a(x) for each node a (rows) and x (columns), barycentric"""
    q = len(nodes)
    w = np.array([1.0 / np.prod([nodes[a] - nodes[b] for b in range(q) if b != a]) for a in range(q)])
    diff = x[None, :] - nodes[:, None]
    exact = diff == 0
    diff[exact] = 1.0
    t = w[:, None] / diff
    out = t / t.sum(0)
    cols = exact.any(0)
    out[:, cols] = exact[:, cols].astype(float)
    return out


class Tile:
    """The low-rank form of one tile [u0,u1] x [v0,v1] (cell centres inside)."""

    def __init__(self, f, u0, u1, v0, v1, q, margin, tol):
        self.f, self.box = f, (u0, u1, v0, v1)
        du, dv = margin * (u1 - u0), margin * (v1 - v0)
        near = (f.u >= u0 - du) & (f.u <= u1 + du) & (f.v >= v0 - dv) & (f.v <= v1 + dv)
        self.near = np.nonzero(near)[0]
        far = np.nonzero(~near)[0]
        self.nu, self.nv = cheb(q, u0, u1), cheb(q, v0, v1)
        gu, gv = np.meshgrid(self.nu, self.nv, indexing="ij")
        a = kmat(f.u[far], f.v[far], gu.ravel(), gv.ravel())  # far x q^2
        # interpolative decomposition: A ~= A[:, J] X
        _, rr, piv = sl.qr(a, mode="economic", pivoting=True)
        d = np.abs(np.diag(rr))
        r = int(np.sum(d > tol * d[0]))
        j = piv[:r]
        x = np.zeros((r, a.shape[1]))
        x[:, piv[:r]] = np.eye(r)
        x[:, piv[r:]] = sl.solve_triangular(rr[:r, :r], rr[:r, r:])
        self.x, self.rank = x, r
        bm = np.zeros((f.n, len(self.near) + r))
        bm[self.near, np.arange(len(self.near))] = 1.0
        bm[far, len(self.near):] = a[:, j]
        self.q = q
        qb = f.qt(bm)
        self.p1 = qb[:3]  # Q1^T B
        c = f.linv @ qb[3:]  # L^-1 Q2^T B
        # |C m - D h|^2 = |Rc [m; -h]|^2 with [C D] = U Rc
        self.rc = sl.qr(np.hstack([c, f.d]), mode="r")[0][: c.shape[1] + 3]
        self.cols = bm.shape[1]

    def mvec(self, xu, xv):
        f = self.f
        kn = kmat(f.u[self.near], f.v[self.near], xu, xv)
        lu, lv = lagrange(self.nu, xu), lagrange(self.nv, xv)
        l2 = (lu[:, None, :] * lv[None, :, :]).reshape(self.q * self.q, -1)
        return np.vstack([kn, self.x @ l2])

    def se(self, xu, xv):
        f = self.f
        mv = self.mvec(xu, xv)
        h = f.hvec(xu, xv)
        z = self.rc @ np.vstack([mv, -h])
        q1 = self.p1 @ mv
        return np.einsum("ij,ik,kj->j", h, f.m11, h) - 2 * np.sum(q1 * h, 0) - np.sum(z * z, 0)


def main():
    a = sys.argv[1:]
    n, grid, tile, q, margin, tol = int(a[0]), int(a[1]), int(a[2]), int(a[3]), float(a[4]), float(a[5])
    clustered = "clustered" in a
    lams = [float(s[4:]) for s in a if s.startswith("lam=")] or [1e-11, 1e-5]
    rng = np.random.default_rng(1)
    if clustered:
        c = rng.uniform(0.1, 0.9, (20, 2))
        p = c[rng.integers(0, 20, n)] + rng.normal(0, 0.03, (n, 2))
        p = np.clip(p, 0, 1)
    else:
        p = rng.uniform(0, 1, (n, 2))
    u, v = p[:, 0].copy(), p[:, 1].copy()
    cell = 1.0 / grid
    ntiles = grid // tile
    # tiles: a corner one, the one with most points, a middle one, a random one
    cnt = np.zeros((ntiles, ntiles), int)
    np.add.at(cnt, (np.minimum((u / (cell * tile)).astype(int), ntiles - 1),
                    np.minimum((v / (cell * tile)).astype(int), ntiles - 1)), 1)
    busiest = np.unravel_index(np.argmax(cnt), cnt.shape)
    tiles = [(0, 0), tuple(busiest), (ntiles // 2, ntiles // 2), tuple(rng.integers(0, ntiles, 2))]
    for lam in lams:
        f = Factor(u, v, lam)
        for (ti, tj) in tiles:
            i0, j0 = ti * tile, tj * tile
            cu = (np.arange(i0, i0 + tile) + 0.5) * cell
            cv = (np.arange(j0, j0 + tile) + 0.5) * cell
            gu, gv = np.meshgrid(cu, cv, indexing="ij")
            xu, xv = gu.ravel(), gv.ravel()
            u0, u1, v0, v1 = cu[0], cu[-1], cv[0], cv[-1]
            t = Tile(f, u0, u1, v0, v1, q, margin, tol)
            # targets: the cells, plus points right next to the tile's data points
            inside = np.nonzero((u >= u0) & (u <= u1) & (v >= v0) & (v <= v1))[0]
            eps = np.array([1e-7, 1e-5, 1e-3]) * (u1 - u0)
            for i in inside[:8]:
                xu = np.concatenate([xu, np.clip(u[i] + eps, u0, u1)])
                xv = np.concatenate([xv, np.clip(v[i] + eps, v0, v1)])
            ex, lr = f.exact(xu, xv), t.se(xu, xv)
            # the exact form's own rounding: the same targets one at a time
            # against the block (different BLAS blocking), and the saddle
            # system solved directly (LU) on the 40 smallest
            ex1 = np.array([f.exact(xu[i:i + 1], xv[i:i + 1])[0] for i in np.argsort(ex)[:40]])
            ex2 = f.saddle(xu[np.argsort(ex)[:40]], xv[np.argsort(ex)[:40]])
            exs = ex[np.argsort(ex)[:40]]
            noise1 = np.max(np.abs(np.sqrt(np.maximum(ex1, 0)) - np.sqrt(exs)) / np.sqrt(exs))
            noise2 = np.max(np.abs(np.sqrt(np.maximum(ex2, 0)) - np.sqrt(exs)) / np.sqrt(exs))
            # SE = sqrt(rho * -var); relative SE difference ~ half the variance's
            se_ex, se_lr = np.sqrt(np.maximum(ex, 0)), np.sqrt(np.maximum(lr, 0))
            rel = np.abs(se_lr - se_ex) / np.maximum(se_ex, 1e-300)
            w = np.argmax(rel)
            print(f"n={n} grid={grid} tile={tile} q={q} margin={margin} tol={tol:g} "
                  f"{'clustered' if clustered else 'uniform'} lam={lam:g} tile=({ti},{tj}) "
                  f"near={len(t.near)} rank={t.rank} cols={t.cols} pts_in={len(inside)} "
                  f"var_err/max_var={np.max(np.abs(lr - ex)) / ex.max():.1e} max_rel_se={rel.max():.2e} at se={se_ex[w]:.2e} (min se {se_ex.min():.2e}, "
                  f"max {se_ex.max():.2e}) exact-vs-itself {noise1:.1e} exact-vs-LU {noise2:.1e}", flush=True)


if __name__ == "__main__":
    main()
