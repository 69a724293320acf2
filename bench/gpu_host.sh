#!/usr/bin/env bash
# Runs the GPU tests and benchmarks on the GPU host (see docs/benchmarks.md),
# from binaries built on the development machine:
#   cmake -S . -B build-gpu && cmake --build build-gpu -j
#   mkdir -p .device/bin .device/lib && cp build-gpu/gdal_TPS.so build-gpu/autotest/c/test_* \
#     build-gpu/bench/tps_bench_gpu build-gpu/bench/tps_mixed_error build-gpu/bench/tps_bench_local \
#     build-gpu/bench/tps_bench_se build-gpu/bench/tps_mixed_suite .device/bin/ && \
#     strip .device/bin/*
#   cp -L /usr/lib/x86_64-linux-gnu/liblapacke.so.3 /usr/lib/x86_64-linux-gnu/libtmglib.so.3 .device/lib/
#   ../shared/tools/gdal-runtime-bundle .device/rt
# then, on the GPU host, from the repository root: bench/gpu_host.sh OUT_DIR [quick|mixed]
# (quick: the tests only; full, the default: the tests and the benchmarks;
# mixed: PRECISION=MIXED alone, issue 16, in ~4 minutes: its tests, the
# suite of fields on the GPU (bench/mixed_suite.c) and the kernels'
# throughput (tps_bench_gpu, CUDA events)).
# Every step's exit status is kept (each step's output: OUT_DIR/STEP.log,
# its last lines shown); the script ends with "N passed, M failed" naming
# the failed steps, and exits 1 if any failed. On the GPU host every GPU
# test must run: a GPU test that skips (exit 77: its probe found no GPU)
# counts as failed; only the AVX2/AVX-512 kernel checks may skip (a CPU
# without them). To see it fail: TPS_TEST_BREAK_GPU=1 bench/gpu_host.sh
# OUT quick (test_gpu parity and test_gdal_gpu share, and only they, then
# expect one wrong value on purpose: exit 1, those two named as failed).
# Optional: the fuzzer over the GPU path (docs/reliability.md): build it here,
# after the strip above (keep its symbols for the reports):
#   make fuzz-gpu && cp build-fuzz-gpu/fuzz/fuzz_tps .device/bin/
# and the step "fuzz" runs it on the GPU host, FUZZ_SECONDS (default 300) long:
#   ASAN_OPTIONS=protect_shadow_gap=0 LSAN_OPTIONS=suppressions=fuzz/lsan_cuda.supp \
#     .device/bin/fuzz_tps -max_total_time=300 -timeout=20 -rss_limit_mb=8192 \
#     -dict=fuzz/tps.dict -print_final_stats=1 -artifact_prefix=OUT_DIR/ \
#     OUT_DIR/fuzz_corpus fuzz/corpus
# (protect_shadow_gap=0: the CUDA driver maps the range ASan keeps unmapped;
# the suppressions: the CUDA driver's own allocations). A crash leaves
# OUT_DIR/crash-*: the input that reproduces it (.device/bin/fuzz_tps FILE;
# TPS_FUZZ_VERBOSE=1 prints the errors and the device each input reached).
set -uo pipefail
out=${1:?usage: gpu_host.sh OUT_DIR [quick|mixed]}
mode=${2:-full}
mkdir -p "$out" /opt/gdalrt
tar xJf .device/rt/gdal-runtime.txz -C /opt/gdalrt
export PATH=/opt/gdalrt/bin:$PATH LD_LIBRARY_PATH=/opt/gdalrt/lib:$PWD/.device/lib
export GDAL_DATA=/opt/gdalrt/share/gdal PROJ_DATA=/opt/gdalrt/share/proj
export GDAL_DRIVER_PATH=$PWD/.device/bin
B=.device/bin
step() { echo; echo "== $*"; }

passed=() failed=() skipped=()
# record NAME RC [may_skip]: a step's exit status. 77 is a skip only where
# the step may skip; anywhere else (a GPU test on the GPU host) a failure.
record() {
  local name=$1 rc=$2 may_skip=${3:-}
  if [ "$rc" -eq 0 ]; then
    passed+=("$name")
  elif [ "$rc" -eq 77 ] && [ -n "$may_skip" ]; then
    skipped+=("$name"); echo "   ($name skipped: see $out/$name.log)"
  else
    failed+=("$name")
    if [ "$rc" -eq 77 ]; then echo "   FAILED: $name skipped (exit 77) on the GPU host: $out/$name.log"
    else echo "   FAILED: $name exit $rc: $out/$name.log"; fi
  fi
}
# run NAME CMD...: runs CMD (its output to OUT/NAME.log, the last lines
# shown), records its exit status; run_may_skip: exit 77 is a skip.
run_step() {
  local name=$1 may_skip=$2; shift 2
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL_LINES:-3}" "$out/$name.log" | sed 's/^/   /'
  echo "   $name: exit $rc"
  record "$name" "$rc" "$may_skip"
}
run() { run_step "$1" "" "${@:2}"; }
run_may_skip() { run_step "$1" yes "${@:2}"; }
summary() {
  echo
  echo "== summary ($mode)"
  [ ${#skipped[@]} -gt 0 ] && echo "skipped: ${skipped[*]}"
  [ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
  echo "${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
  [ ${#failed[@]} -eq 0 ]
  exit $?
}
# timed NAME CMD...: like run, and prints the command's wall-clock seconds
# (into the variable secs) for the figures below.
secs=0
timed() {
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  record "$name" "$rc"
  return $rc
}

step machine
TAIL_LINES=9 run nvidia_smi nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
run gdal_plugin sh -c 'gdalinfo --version && gdalinfo --formats | grep TPS'

# PRECISION=MIXED's guarantee (issue 16): its emulation and
# guard (test_mixed, CPU), the kernel's guard and bytes (test_gpu parity,
# test_gdal_gpu share), the suite of fields on the GPU (each field's MIXED
# error against DOUBLE, blocks recomputed in DOUBLE, failed self-checks:
# exit 1 if a field is off the tolerance), the kernels' throughput.
mixed_suite_step() {
  step "MIXED (issue 16): the suite of fields on the GPU, each against DOUBLE (bench/mixed_suite.c)"
  TAIL_LINES=30 run mixed_suite $B/tps_mixed_suite gpu
}
if [ "$mode" = mixed ]; then
  step "MIXED (issue 16): tests"
  run mixed $B/test_mixed
  TAIL_LINES=12 run gpu_parity $B/test_gpu parity
  TAIL_LINES=8 run gdal_gpu_share $B/test_gdal_gpu share
  mixed_suite_step
  step "MIXED (issue 16): kernel throughput, 8192^2 grid, N = 1,000 and 10,000 (CUDA events)"
  TAIL_LINES=6 run bench_gpu_mixed env TPS_BENCH_SOLVE= $B/tps_bench_gpu 8192 1000 10000
  summary
fi

step "tests (autotest/c, the list of autotest/c/CMakeLists.txt; fallbacks with CUDA_VISIBLE_DEVICES=)"
run engine $B/test_engine
run_may_skip engine_avx2 $B/test_engine kernel avx2
run_may_skip engine_avx512 $B/test_engine kernel avx512
TAIL_LINES=6 run gpu_parity $B/test_gpu parity
run gpu_fallback env CUDA_VISIBLE_DEVICES= $B/test_gpu fallback
for kind in upload launch trap; do TAIL_LINES=4 run gpu_fault_$kind $B/test_gpu fault_$kind; done
run cuda_libs $B/test_cuda_libs
TAIL_LINES=6 run gdal_gpu_share $B/test_gdal_gpu share
run gdal_gpu_fallback env CUDA_VISIBLE_DEVICES= $B/test_gdal_gpu fallback
run model_io $B/test_model_io
run model_io_gpu $B/test_model_io gpu
run mixed $B/test_mixed
run local $B/test_local
run gcv $B/test_gcv
run local_gcv $B/test_local_gcv
run local_gcv_compare $B/test_local_gcv compare
TAIL_LINES=6 run gpu_local_gcv $B/test_gpu local_gcv
run deriv $B/test_deriv
run progress $B/test_progress
run curvature $B/test_curvature cpu
TAIL_LINES=6 run curvature_gpu $B/test_curvature gpu
run api $B/test_api
run fmm $B/test_fmm
run iterative $B/test_iterative
TAIL_LINES=4 run iterative_gpu $B/test_iterative gpu
run covse $B/test_covse autotest/r/fields_covse
TAIL_LINES=4 run covse_gpu $B/test_covse autotest/r/fields_covse gpu
run covderiv $B/test_covderiv
TAIL_LINES=10 run covderiv_gpu $B/test_covderiv gpu
run se_lowrank $B/test_se_lowrank
TAIL_LINES=6 run se_lowrank_gpu $B/test_se_lowrank gpu
run local_cov $B/test_local_cov
TAIL_LINES=6 run local_cov_gpu $B/test_local_cov gpu
run local_covse $B/test_local_covse
run local_gcv_size env TPS_TEST_QUICK=1 $B/test_local_gcv_size
if [ -x $B/fuzz_tps ]; then
  step "fuzz: the open path with DEVICE=GPU/AUTO/CPU, ASan + UBSan (make fuzz-gpu)"
  fuzz_env=(ASAN_OPTIONS=protect_shadow_gap=0 LSAN_OPTIONS=suppressions=fuzz/lsan_cuda.supp)
  # which device each GPU seed reaches (DEVICE=GPU expected where a GPU is usable)
  run fuzz_seeds env "${fuzz_env[@]}" TPS_FUZZ_VERBOSE=1 $B/fuzz_tps fuzz/corpus/gpu_*.tps
  grep "fuzz_tps:" "$out/fuzz_seeds.log"
  mkdir -p "$out/fuzz_corpus"
  # exit 0: no crash, leak or timeout; else $out/crash-* etc. reproduce it
  TAIL_LINES=25 run fuzz env "${fuzz_env[@]}" $B/fuzz_tps -max_total_time="${FUZZ_SECONDS:-300}" \
    -timeout=20 -rss_limit_mb=8192 -dict=fuzz/tps.dict -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/fuzz_corpus" fuzz/corpus
fi
[ "$mode" = quick ] && summary

step "kernels, 8192^2 grid; solves (kernel figures: CUDA events)"
TAIL_LINES=100 run bench_gpu $B/tps_bench_gpu 8192 1000 10000
cp "$out/bench_gpu.log" "$out/bench_gpu.txt"

step "standard error (issue 13): N = 10,000, 4096^2 in tiles; the exact blocks on 256 rows of it"
TAIL_LINES=3 run bench_se $B/tps_bench_se 10000 4096 16 gpu dgemm
TAIL_LINES=3 run bench_se_exact $B/tps_bench_se 10000 4096 16 gpu exact rows=256

step "MIXED: where the old kernel's error came from (bench/mixed_error.cu)"
TAIL_LINES=40 run mixed_error $B/tps_mixed_error 2000
mixed_suite_step

# points.csv of n random points over a 10 km square, and a .tps of an
# 8192^2 or 16384^2 Float32 grid over them (GPU end-to-end figures).
make_points() { # DIR N SIDE [extra XML]
  python3 - "$1" "$2" "$3" "${4:-}" <<'PY'
import sys, numpy as np
d, n, side, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(5)
p = rng.random((n, 2))
z = np.sin(6 * p[:, 0]) * np.cos(4 * p[:, 1]) + 0.3 * p[:, 0]
np.savetxt("%s/pts%d.csv" % (d, n), np.c_[p * 10000 + [500000, 5000000], z], delimiter=",",
           header="x,y,z", comments="", fmt="%.17g")
open("%s/big%d_%d.tps" % (d, n, side), "w").write("""<TPSDataset><Points><Source>pts%d.csv</Source>
<XField>x</XField><YField>y</YField></Points>
<GeoTransform>500000, %r, 0, 5010000, 0, %r</GeoTransform>
<Size>%d %d</Size><DataType>Float32</DataType>%s<Band><Field>z</Field></Band></TPSDataset>"""
  % (n, 10000 / side, -10000 / side, side, side, extra))
PY
}

step "gdal_translate end to end: 8192^2 Float32 from N = 1,000 and 10,000 points, DEVICE=GPU"
echo "   (end to end: the whole gdal_translate, reading the points, solving on the GPU,"
echo "    evaluating and writing an uncompressed GeoTIFF; pairs/s = N x pixels / seconds."
echo "    Kernel-only figures, with CUDA events: tps_bench_gpu above.)"
work=$(mktemp -d)
for n in 1000 10000; do
  run "data_$n" make_points "$work" $n 8192
  for prec in DOUBLE MIXED; do
    if timed "e2e_${n}_$prec" gdal_translate -q -oo DEVICE=GPU -oo PRECISION=$prec \
         -oo MODEL_CACHE=NO "$work/big${n}_8192.tps" "$work/e2e.tif"; then
      awk -v n=$n -v s="$secs" -v p=$prec 'BEGIN { printf "   N = %5d, %-6s: %7.3f s end to end, %.3g pairs/s end to end\n", n, p, s, n * 8192 * 8192 / s }'
    fi
  done
done
if timed e2e_copy gdal_translate -q "$work/e2e.tif" "$work/copy.tif"; then
  echo "   GeoTIFF copy of the same raster (read + write, no spline): $secs s"
fi
rm -rf "$work"

step "gdal_translate end to end: 16384^2 Float32 from N = 10000"
work=$(mktemp -d)
run data_16384 make_points "$work" 10000 16384
for prec in DOUBLE MIXED; do
  timed "e2e16384_$prec" gdal_translate -q -oo DEVICE=GPU -oo PRECISION=$prec \
    "$work/big10000_16384.tps" "$work/big_$prec.tif" &&
    echo "   gdal_translate DEVICE=GPU PRECISION=$prec: $secs s"
done
timed solve_gpu gdalinfo -oo DEVICE=GPU -mdd TPS "$work/big10000_16384.tps" &&
  echo "   gdalinfo DEVICE=GPU (open: points + cuSOLVER solve, no evaluation): $secs s" &&
  grep -E "SOLVE_" "$out/solve_gpu.log"
timed solve_cpu gdalinfo -oo DEVICE=CPU -mdd TPS "$work/big10000_16384.tps" &&
  echo "   gdalinfo DEVICE=CPU (open: points + CPU solve, no evaluation): $secs s" &&
  grep -E "SOLVE_" "$out/solve_cpu.log"
timed copy16384 gdal_translate -q "$work/big_DOUBLE.tif" "$work/copy.tif" &&
  echo "   GeoTIFF copy (read + write of the same raster): $secs s"
rm -rf "$work"

step "local mode at scale: 10^6 points -> 4096^2 (engine): solve on the CPU threads or batched on the GPU"
for solve in cpu gpu; do for dev in cpu gpu; do
  TAIL_LINES=3 run "bench_local_${dev}_$solve" $B/tps_bench_local 1e6 4096 "$(nproc)" 500 1.5 $dev $solve
done; done

step "local mode end to end: gdal_translate of 10^6 points (CSV) -> 4096^2 Float32"
work=$(mktemp -d)
run data_local python3 - "$work" <<'PY'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
p = rng.random((1000000, 2)) * 10000
z = 100 * np.sin(p[:, 0] / 500) * np.cos(p[:, 1] / 700) + 0.01 * p[:, 0]
np.savetxt(d + "/pts.csv", np.c_[p, z], delimiter=",", header="x,y,z", comments="", fmt="%.10g")
open(d + "/big.tps", "w").write("""<TPSDataset><Points><Source>pts.csv</Source>
<XField>x</XField><YField>y</YField></Points><Mode>LOCAL</Mode>
<GeoTransform>0, 2.44140625, 0, 10000, 0, -2.44140625</GeoTransform>
<Size>4096 4096</Size><Band><Field>z</Field></Band></TPSDataset>""")
PY
for dev in GPU CPU; do
  timed "local_e2e_$dev" gdal_translate -q -oo DEVICE=$dev -oo NUM_THREADS=ALL_CPUS \
    -oo MODEL_CACHE=NO "$work/big.tps" "$work/local_$dev.tif" &&
    echo "   gdal_translate MODE=LOCAL DEVICE=$dev NUM_THREADS=ALL_CPUS, 10^6 points -> 4096^2: $secs s"
done
timed local_solve gdalinfo -oo NUM_THREADS=ALL_CPUS -oo MODEL_CACHE=NO -mdd TPS "$work/big.tps" &&
  echo "   gdalinfo (open: 10^6 points read + local solve): $secs s" &&
  grep -E "MODE|PATCH|SOLVE_" "$out/local_solve.log"
run local_gpu_vs_cpu sh -c "gdal_translate -q -of ENVI '$work/local_GPU.tif' '$work/g.raw' &&
  gdal_translate -q -of ENVI '$work/local_CPU.tif' '$work/c.raw' && python3 -c \"
import numpy as np
g = np.fromfile('$work/g.raw', np.float32); c = np.fromfile('$work/c.raw', np.float32)
print('local GPU vs CPU (Float32 outputs): max |diff| %.3g, value range %.3g' % (np.abs(g - c).max(), c.max() - c.min()))\""
rm -rf "$work"
summary
