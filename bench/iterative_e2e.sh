#!/usr/bin/env bash
# The global spline end to end through GDAL (issue 17): N random points in a
# CSV over a 10 km square -> a SIDE x SIDE Float32 GeoTIFF, MODE=GLOBAL
# (SOLVER=AUTO: ITERATIVE beyond 5,000 points), the model kept in its file:
#   bench/iterative_e2e.sh N SIDE WORK_DIR [open options ...]
# e.g. here:           bench/iterative_e2e.sh 100000 200 /tmp/e2e -oo DEVICE=CPU
#      on a GPU host:  bench/iterative_e2e.sh 1000000 4096 /tmp/e2e -oo DEVICE=GPU
# Prints the wall-clock seconds of the gdal_translate (points read, solve,
# evaluation, model file and GeoTIFF writes) and the model's TPS metadata
# (gdalinfo, from the model file the solve wrote). Needs python3 with
# numpy (or PYTHON=... one that has it), gdal_translate and gdalinfo on
# PATH, GDAL_DRIVER_PATH set.
set -euo pipefail
n=${1:?usage: iterative_e2e.sh N SIDE WORK_DIR [open options]}
side=${2:?}
work=${3:?}
shift 3
mkdir -p "$work"
"${PYTHON:-python3}" - "$work" "$n" "$side" <<'PY'
import sys
import numpy as np
d, n, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(11)
p = rng.random((n, 2)) * 10000.0
z = 100.0 * np.sin(p[:, 0] / 500.0) * np.cos(p[:, 1] / 700.0) + 0.01 * p[:, 0]
np.savetxt("%s/pts.csv" % d, np.c_[p + [500000.0, 4000000.0], z], delimiter=",",
           header="x,y,z", comments="", fmt="%.17g")
with open("%s/global.tps" % d, "w") as f:
    f.write("""<TPSDataset><Points><Source>pts.csv</Source><XField>x</XField><YField>y</YField>
</Points><GeoTransform>500000, %r, 0, 4010000, 0, %r</GeoTransform><Size>%d %d</Size>
<DataType>Float32</DataType><Mode>GLOBAL</Mode><Band><Field>z</Field></Band></TPSDataset>
""" % (10000.0 / side, -10000.0 / side, side, side))
PY
rm -f "$work"/global.tps.model*
t0=$EPOCHREALTIME
gdal_translate -q "$@" "$work/global.tps" "$work/global.tif"
t1=$EPOCHREALTIME
awk -v a="$t0" -v b="$t1" -v n="$n" -v s="$side" \
  'BEGIN { printf "gdal_translate, %d points -> %d^2, MODE=GLOBAL: %.1f s end to end\n", n, s, b - a }'
# The metadata of that solve, from the model file it wrote.
gdalinfo -mdd TPS "$@" "$work/global.tps" |
  grep -E "SOLVER|ITERATIONS|RELATIVE_RESIDUAL|MAX_ABS_RESIDUAL|SOLVE_SECONDS|SOLVE_DEVICE|POINT_COUNT|MODEL_SOURCE" |
  sed 's/^ *//' | sort -u | sed 's/^/   /'
