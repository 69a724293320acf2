#!/usr/bin/env bash
# Runs the GPU tests and benchmarks on the GPU host (see docs/benchmarks.md),
# from binaries built on the development machine:
#   cmake -S . -B build-gpu && cmake --build build-gpu -j
#   mkdir -p .device/bin .device/lib && cp build-gpu/gdal_TPS.so build-gpu/autotest/c/test_* \
#     build-gpu/bench/tps_bench_gpu build-gpu/bench/tps_mixed_error build-gpu/bench/tps_bench_local \
#     .device/bin/ && strip .device/bin/*
#   cp -L /usr/lib/x86_64-linux-gnu/liblapacke.so.3 /usr/lib/x86_64-linux-gnu/libtmglib.so.3 .device/lib/
#   ../shared/tools/gdal-runtime-bundle .device/rt
# then, on the GPU host, from the repository root: bench/gpu_host.sh OUT_DIR [quick]
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
set -u
out=${1:?usage: gpu_host.sh OUT_DIR [quick]}
mode=${2:-full}
mkdir -p "$out" /opt/gdalrt
tar xJf .device/rt/gdal-runtime.txz -C /opt/gdalrt
export PATH=/opt/gdalrt/bin:$PATH LD_LIBRARY_PATH=/opt/gdalrt/lib:$PWD/.device/lib
export GDAL_DATA=/opt/gdalrt/share/gdal PROJ_DATA=/opt/gdalrt/share/proj
export GDAL_DRIVER_PATH=$PWD/.device/bin
B=.device/bin
step() { echo; echo "== $*"; }

step machine
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
gdalinfo --version && gdalinfo --formats | grep TPS

step tests
[ -x $B/test_engine ] && { $B/test_engine | tail -1; echo "test_engine rc=$?"; }
$B/test_gpu parity;                            echo "test_gpu parity rc=$?"
CUDA_VISIBLE_DEVICES= $B/test_gpu fallback;    echo "test_gpu fallback rc=$?"
for kind in upload launch trap; do $B/test_gpu fault_$kind | tail -4; echo "test_gpu fault_$kind rc=$?"; done
$B/test_gdal_gpu share;                        echo "test_gdal_gpu share rc=$?"
CUDA_VISIBLE_DEVICES= $B/test_gdal_gpu fallback; echo "test_gdal_gpu fallback rc=$?"
[ -x $B/test_model_io ] && { $B/test_model_io | tail -1; echo "test_model_io rc=$?"; }
[ -x $B/test_local ] && { $B/test_local | tail -1; echo "test_local rc=$?"; }
if [ -x $B/test_curvature ]; then
  $B/test_curvature gpu > "$out/curvature_gpu.txt" 2>&1; echo "test_curvature gpu rc=$?"
  cat "$out/curvature_gpu.txt"
fi
if [ -x $B/fuzz_tps ]; then
  step "fuzz: the open path with DEVICE=GPU/AUTO/CPU, ASan + UBSan (make fuzz-gpu)"
  fuzz_env=(ASAN_OPTIONS=protect_shadow_gap=0 LSAN_OPTIONS=suppressions=fuzz/lsan_cuda.supp)
  # which device each GPU seed reaches (DEVICE=GPU expected where a GPU is usable)
  env "${fuzz_env[@]}" TPS_FUZZ_VERBOSE=1 $B/fuzz_tps fuzz/corpus/gpu_*.tps 2>&1 | grep "fuzz_tps:"
  mkdir -p "$out/fuzz_corpus"
  env "${fuzz_env[@]}" $B/fuzz_tps -max_total_time="${FUZZ_SECONDS:-300}" -timeout=20 \
    -rss_limit_mb=8192 -dict=fuzz/tps.dict -print_final_stats=1 -artifact_prefix="$out/" \
    "$out/fuzz_corpus" fuzz/corpus > "$out/fuzz.txt" 2>&1
  echo "fuzz rc=$? (0: no crash, leak or timeout; else $out/crash-* etc. reproduce it)"
  tail -25 "$out/fuzz.txt"
fi
[ "$mode" = quick ] && exit 0

step "kernels, 8192^2 grid; solves"
$B/tps_bench_gpu 8192 1000 10000 | tee "$out/bench_gpu.txt"

step "MIXED: where its error comes from (bench/mixed_error.cu)"
[ -x $B/tps_mixed_error ] && $B/tps_mixed_error 2000

step "gdal_translate end to end: 16384^2 Float32 from N = 10000"
work=$(mktemp -d)
python3 - "$work" <<'PY'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(5)
p = rng.random((10000, 2))
z = np.sin(6 * p[:, 0]) * np.cos(4 * p[:, 1]) + 0.3 * p[:, 0]
np.savetxt(d + "/pts.csv", np.c_[p * 10000 + [500000, 5000000], z], delimiter=",",
           header="x,y,z", comments="", fmt="%.17g")
open(d + "/big.tps", "w").write("""<TPSDataset><Points><Source>pts.csv</Source>
<XField>x</XField><YField>y</YField></Points>
<GeoTransform>500000, 0.6103515625, 0, 5010000, 0, -0.6103515625</GeoTransform>
<Size>16384 16384</Size><Band><Field>z</Field></Band></TPSDataset>""")
PY
for prec in DOUBLE MIXED; do
  TIMEFORMAT="gdal_translate DEVICE=GPU PRECISION=$prec: %R s"
  time gdal_translate -q -oo DEVICE=GPU -oo PRECISION=$prec "$work/big.tps" "$work/big_$prec.tif"
done
TIMEFORMAT="gdalinfo DEVICE=GPU (open: points + cuSOLVER solve, no evaluation): %R s"
time gdalinfo -oo DEVICE=GPU -mdd TPS "$work/big.tps" | grep -E "SOLVE_"
TIMEFORMAT="gdalinfo DEVICE=CPU (open: points + CPU solve, no evaluation): %R s"
time gdalinfo -oo DEVICE=CPU -mdd TPS "$work/big.tps" | grep -E "SOLVE_"
TIMEFORMAT="GeoTIFF copy (read + write of the same raster): %R s"
time gdal_translate -q "$work/big_DOUBLE.tif" "$work/copy.tif"
rm -rf "$work"

step "local mode at scale: 10^6 points -> 4096^2 (engine): solve on the CPU threads or batched on the GPU"
for solve in cpu gpu; do for dev in cpu gpu; do
  $B/tps_bench_local 1e6 4096 "$(nproc)" 500 1.5 $dev $solve
done; done

step "local mode end to end: gdal_translate of 10^6 points (CSV) -> 4096^2 Float32"
work=$(mktemp -d)
python3 - "$work" <<'PY'
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
  TIMEFORMAT="gdal_translate MODE=LOCAL DEVICE=$dev NUM_THREADS=ALL_CPUS, 10^6 points -> 4096^2: %R s"
  time gdal_translate -q -oo DEVICE=$dev -oo NUM_THREADS=ALL_CPUS -oo MODEL_CACHE=NO \
    "$work/big.tps" "$work/local_$dev.tif"
done
TIMEFORMAT="gdalinfo (open: 10^6 points read + local solve): %R s"
time gdalinfo -oo NUM_THREADS=ALL_CPUS -oo MODEL_CACHE=NO -mdd TPS "$work/big.tps" | grep -E "MODE|PATCH|SOLVE_"
gdal_translate -q -of ENVI "$work/local_GPU.tif" "$work/g.raw" && gdal_translate -q -of ENVI "$work/local_CPU.tif" "$work/c.raw" && python3 -c "
import numpy as np, sys
g = np.fromfile('$work/g.raw', np.float32); c = np.fromfile('$work/c.raw', np.float32)
print('local GPU vs CPU (Float32 outputs): max |diff| %.3g, value range %.3g' % (np.abs(g - c).max(), c.max() - c.min()))"
rm -rf "$work"
