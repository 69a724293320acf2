#!/usr/bin/env bash
# The standard error's GPU checks and its target (issue 13), in one call on
# the GPU host (a few minutes; bench/gpu_host.sh has the staging). Build
# here with CUDA, then stage:
#   cmake -S . -B build-cuda && cmake --build build-cuda -j
#   mkdir -p .device/bin .device/lib && cp build-cuda/autotest/c/test_covse \
#     build-cuda/autotest/c/test_curvature build-cuda/bench/tps_bench_se .device/bin/ && \
#     strip .device/bin/*
#   cp -L /usr/lib/x86_64-linux-gnu/liblapacke.so.3 /usr/lib/x86_64-linux-gnu/libtmglib.so.3 .device/lib/
# then on the GPU host, from the repository root: bench/gpu_se_host.sh OUT_DIR
# Prints each step's last lines and a summary; exit 1 if a step failed.
# (test_covse reads its R references from autotest/r/fields_covse/.)
set -uo pipefail
out=${1:?usage: gpu_se_host.sh OUT_DIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=.device/bin
failed=()
run() {
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL_LINES:-4}" "$out/$name.log" | sed 's/^/   /'
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" -v rc=$rc \
    'BEGIN { printf "   %s: exit %d, %.1f s\n", n, rc, b - a }'
  [ $rc -eq 0 ] || failed+=("$name")
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
nproc
echo "== GPU against CPU: covariates and standard errors; every quantity"
TAIL_LINES=4 run covse_gpu $B/test_covse autotest/r/fields_covse gpu
TAIL_LINES=12 run curvature_gpu $B/test_curvature gpu
echo "== the target: N = 10,000, 4096^2 standard-error band on the GPU (and cuBLAS DGEMM rates)"
TAIL_LINES=2 run se_10000_4096 $B/tps_bench_se 10000 4096 "$(nproc)" gpu dgemm
echo "== N = 2,000, 1024^2 on the GPU, and on this host's CPU threads"
TAIL_LINES=2 run se_2000_1024_gpu $B/tps_bench_se 2000 1024 "$(nproc)" gpu
TAIL_LINES=2 run se_2000_1024_cpu $B/tps_bench_se 2000 512 "$(nproc)" cpu dgemm
echo "== summary"
if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]}"; exit 1; fi
echo "all passed"
