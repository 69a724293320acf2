#!/usr/bin/env python3
"""The global spline against today's LOCAL model of the same points, as a
map for docs/ (issue 17): reads the raw Float32 grid of global - local that
tps_bench_iterative writes (SIDE x SIDE, row 0 north, over the points'
10 km square) and draws log10 of its magnitude over the value range.

    /usr/bin/python3 bench/iterative_map.py DIFF.f32 SIDE RANGE OUT.png TITLE

RANGE: the data's value range (tps_bench_iterative prints it).
"""
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    path, side, value_range, out, title = sys.argv[1:6]
    side, value_range = int(side), float(value_range)
    d = np.fromfile(path, dtype=np.float32).reshape(side, side) / value_range
    lim = float(np.max(np.abs(d)))
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    # log10 |global - local|: the edge, where both extrapolate, is orders of
    # magnitude above the inside, which a linear scale would show blank
    logd = np.log10(np.abs(d) + 1e-16)
    hi = np.ceil(np.log10(lim)) if lim > 0 else -15.0
    im = ax.imshow(logd, cmap='magma', vmin=hi - 6, vmax=hi, extent=(0, 10, 0, 10),
                   interpolation='nearest')
    ax.set_xlabel('x (km)')
    ax.set_ylabel('y (km)')
    inner = d[side // 20: side - side // 20, side // 20: side - side // 20]
    ax.set_title('%s\nmax %.1e, inside 5%% margin %.1e, RMS %.1e (x value range)'
                 % (title, lim, np.max(np.abs(inner)), np.sqrt(np.mean(d * d))), fontsize=9)
    fig.colorbar(im, ax=ax, label='log10 |global - local| / value range')
    fig.tight_layout()
    fig.savefig(out)
    print('%s: max %.3e, inner max %.3e, RMS %.3e of the range' %
          (out, lim, np.max(np.abs(inner)), np.sqrt(np.mean(d * d))))


if __name__ == '__main__':
    main()
