#!/usr/bin/env bash
# The global spline at 10^6 points on the GPU host (issue 17), one call of
# a few minutes. Staging on the development machine, as for gpu_host.sh:
#   cmake -S . -B build-gpu && cmake --build build-gpu -j
#   mkdir -p .device/bin .device/lib && cp build-gpu/gdal_TPS.so \
#     build-gpu/autotest/c/test_iterative build-gpu/bench/tps_bench_iterative .device/bin/ &&
#     strip .device/bin/*
#   cp -L /usr/lib/x86_64-linux-gnu/liblapacke.so.3 /usr/lib/x86_64-linux-gnu/libtmglib.so.3 .device/lib/
#   ../shared/tools/gdal-runtime-bundle .device/rt
# then on the GPU host, from the repository root: bench/gpu_iterative.sh OUT_DIR
# Steps (each's output in OUT_DIR/STEP.log, its exit status kept):
#   test_iterative gpu   GPU products and patch solves against the CPU's (must
#                        pass: a skip, exit 77, counts as a failure here);
#   bench_1e6            tps_bench_iterative: 10^6 points, solve with DEVICE=GPU
#                        (each part where it runs fastest: iterative.c),
#                        a 4096^2 evaluation (DOUBLE), today's LOCAL model of
#                        the same points and their difference, written to
#                        OUT_DIR/global_minus_local_4096.f32 (4096^2 Float32,
#                        row 0 north) for bench/iterative_map.py;
#   bench_1e6_mixed      the same solve, the 4096^2 evaluation in MIXED;
#   e2e_double, e2e_mixed  gdal_translate from a CSV of 10^6 points to a 4096^2
#                        GeoTIFF, MODE=GLOBAL, DEVICE=GPU, PRECISION=DOUBLE and
#                        MIXED (bench/iterative_e2e.sh).
# Ends with a table of the figures and "N passed, M failed".
set -uo pipefail
out=${1:?usage: gpu_iterative.sh OUT_DIR}
mkdir -p "$out" /opt/gdalrt
tar xJf .device/rt/gdal-runtime.txz -C /opt/gdalrt
export PATH=/opt/gdalrt/bin:$PATH LD_LIBRARY_PATH=/opt/gdalrt/lib:$PWD/.device/lib
export GDAL_DATA=/opt/gdalrt/share/gdal PROJ_DATA=/opt/gdalrt/share/proj
export GDAL_DRIVER_PATH=$PWD/.device/bin
B=.device/bin
threads=$(nproc)
passed=() failed=()
run() { # NAME SECONDS CMD...: output to OUT/NAME.log, a time limit, the status kept
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$out/$name.log" | sed 's/^/   /'
  if [ "$rc" -eq 0 ]; then passed+=("$name"); else failed+=("$name"); echo "   FAILED: exit $rc"; fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
run test_iterative_gpu 120 $B/test_iterative gpu
run bench_1e6 300 env TPS_DEBUG=1 $B/tps_bench_iterative 1e6 "$threads" gpu uniform 0 4096 1 \
  "$out/global_minus_local_4096.f32"
run bench_1e6_mixed 200 env TPS_DEBUG=1 TPS_BENCH_PRECISION=mixed $B/tps_bench_iterative 1e6 \
  "$threads" gpu uniform 0 4096
work=$(mktemp -d)
run e2e_double 240 bench/iterative_e2e.sh 1000000 4096 "$work" -oo DEVICE=GPU
run e2e_mixed 240 bench/iterative_e2e.sh 1000000 4096 "$work" -oo DEVICE=GPU -oo PRECISION=MIXED
rm -rf "$work"

echo
echo "== figures (10^6 points, 4096^2; targets: solve <= 30 s, evaluation <= 10 s, end to end <= 60 s)"
grep -hE "^\[debug\].*(preconditioner|GMRES)|iterative solve|evaluation|local model" "$out/bench_1e6.log"
grep -hE "evaluation" "$out/bench_1e6_mixed.log"
grep -h "end to end" "$out/e2e_double.log" "$out/e2e_mixed.log"
grep -hE "ITERATIONS|RELATIVE_RESIDUAL|SOLVE_SECONDS" "$out/e2e_double.log"
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
