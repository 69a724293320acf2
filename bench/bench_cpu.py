#!/usr/bin/python3
"""CPU benchmark: gdal-tps against scipy's RBFInterpolator, same points, same
grid, same run. Prints JSON lines and a Markdown table for docs/benchmarks.md.

    /usr/bin/python3 bench/bench_cpu.py [--sizes 1000,4000] [--grid 1024]

For each N (random points in a 10 km square with UTM-sized offsets):
  solve    scipy RBFInterpolator(...) construction vs our model solve
           (SOLVE_SECONDS, reported with OpenBLAS's default kernels and with
           OPENBLAS_CORETYPE=SkylakeX, since Debian's OpenBLAS 0.3.21 does not
           recognise this CPU), each in a fresh process;
  evaluate pairs/s of scipy on a subset of rows of the grid (a full 1024^2
           grid would take minutes) vs ours over the full grid through GDAL
           (ReadAsArray of the .tps, Float64, all cores); the max difference is
           taken on scipy's rows.
Not a test: timings depend on the machine and its load.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))

CHILD = r"""
import json, sys, time
from osgeo import gdal
gdal.UseExceptions()
path, threads = sys.argv[1], sys.argv[2]
t = time.perf_counter()
ds = gdal.OpenEx(path, open_options=["NUM_THREADS=" + threads])
t_open = time.perf_counter() - t
md = ds.GetMetadata("TPS")
t = time.perf_counter()
a = ds.ReadAsArray()
t_read = time.perf_counter() - t
out = sys.argv[3]
if out != "-":
    a.astype("float64").tofile(out)
print(json.dumps({"open_s": t_open, "solve_s": float(md["SOLVE_SECONDS"]), "read_s": t_read,
                  "kernel": md.get("CPU_KERNEL", "?")}))
"""


def run_child(tps, threads, out, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", CHILD, tps, str(threads), out],
                       env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def openblas_core():
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except OSError:
        return "?"


def main():
    from scipy.interpolate import RBFInterpolator
    import scipy

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000")
    ap.add_argument("--grid", type=int, default=1024)
    ap.add_argument("--scipy-rows", type=int, default=32)
    args = ap.parse_args()
    g = args.grid
    threads = os.cpu_count()
    rng = np.random.default_rng(42)
    rows = []
    print(f"# machine: {platform.processor() or platform.machine()}, {threads} cores, "
          f"scipy {scipy.__version__}, numpy {np.__version__}, OpenBLAS core {openblas_core()}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            x0, y0, ext = 500000.0, 5000000.0, 10000.0
            pts = rng.random((n, 2)) * ext + [x0, y0]
            u = (pts - [x0, y0]) / ext
            z = 100 * np.sin(6 * u[:, 0]) * np.cos(4 * u[:, 1]) + 20 * u[:, 0]
            csv = os.path.join(tmp, f"p{n}.csv")
            np.savetxt(csv, np.c_[pts, z], delimiter=",", header="x,y,z", comments="",
                       fmt="%.17g")
            res = ext / g
            tps = os.path.join(tmp, f"p{n}.tps")
            with open(tps, "w") as f:
                f.write(f"""<TPSDataset>
  <Points><Source>{csv}</Source><XField>x</XField><YField>y</YField></Points>
  <GeoTransform>{x0}, {res}, 0, {y0 + ext}, 0, {-res}</GeoTransform>
  <Size>{g} {g}</Size>
  <DataType>Float64</DataType>
  <Band><Field>z</Field></Band>
</TPSDataset>
""")
            out = os.path.join(tmp, f"out{n}.raw")
            ours = run_child(tps, threads, out)
            ours_skx = run_child(tps, threads, "-", {"OPENBLAS_CORETYPE": "SkylakeX"})
            grid = np.fromfile(out).reshape(g, g)

            t = time.perf_counter()
            rbf = RBFInterpolator(pts, z, kernel="thin_plate_spline", degree=1)
            scipy_solve = time.perf_counter() - t
            rr = np.linspace(0, g - 1, args.scipy_rows).astype(int)
            cols = np.arange(g)
            px = x0 + (cols + 0.5) * res
            py = y0 + ext - (rr + 0.5) * res
            q = np.c_[np.tile(px, len(rr)), np.repeat(py, g)]
            t = time.perf_counter()
            ref = rbf(q).reshape(len(rr), g)
            scipy_eval = time.perf_counter() - t
            scipy_rate = n * q.shape[0] / scipy_eval
            ours_rate = n * g * g / ours["read_s"]
            vr = float(z.max() - z.min())
            row = {
                "n": n, "grid": g, "threads": threads, "kernel": ours["kernel"],
                "scipy_solve_s": scipy_solve, "ours_solve_s": ours["solve_s"],
                "ours_solve_skylakex_s": ours_skx["solve_s"],
                "scipy_pairs_per_s": scipy_rate, "ours_pairs_per_s": ours_rate,
                "eval_ratio": ours_rate / scipy_rate,
                "solve_ratio": scipy_solve / ours["solve_s"],
                "max_abs_diff": float(np.abs(grid[rr] - ref).max()),
                "max_diff_over_range": float(np.abs(grid[rr] - ref).max() / vr),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| N | grid | scipy solve s | ours solve s (default / SkylakeX) | scipy pairs/s "
          "| ours pairs/s | eval ratio | max diff / range |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['grid']}² | {r['scipy_solve_s']:.3f} | {r['ours_solve_s']:.3f} / "
              f"{r['ours_solve_skylakex_s']:.3f} | {r['scipy_pairs_per_s']:.3g} | "
              f"{r['ours_pairs_per_s']:.3g} | {r['eval_ratio']:.1f}x | "
              f"{r['max_diff_over_range']:.1e} |")


if __name__ == "__main__":
    main()
