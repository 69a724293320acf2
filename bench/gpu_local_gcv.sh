#!/usr/bin/env bash
# GCV on LOCAL models on the GPU host (issue 14; docs/benchmarks.md, "GCV on
# local models"): one call of a few minutes, a short table at the end.
# Build here with CUDA and stage the binaries as for bench/gpu_host.sh:
#   cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release && cmake --build build-cuda -j2
#   mkdir -p .device/bin .device/lib && cp build-cuda/autotest/c/test_gpu \
#     build-cuda/autotest/c/test_local_gcv build-cuda/bench/tps_bench_gcv .device/bin/ &&
#     strip .device/bin/*
#   cp -L /usr/lib/x86_64-linux-gnu/liblapacke.so.3 /usr/lib/x86_64-linux-gnu/libtmglib.so.3 .device/lib/
# then, on the GPU host, from the repository root: bench/gpu_local_gcv.sh OUT_DIR
# Steps (each one's output in OUT_DIR/STEP.log):
#  1. test_gpu local_gcv: a local GCV with its eigendecompositions batched on
#     the GPU against the CPU's (same lambda, score, df, LOO within 1e-9;
#     every patch on the GPU), weighted and not, 30,000 points;
#  2. test_local_gcv: the GPU-independent checks, on this host's CPU and
#     OpenBLAS (a GPU host's local solves factorise on the GPU);
#  3. 10^6 points, one thread per core: the fixed-lambda local solve and the
#     GCV local solve (WHICH = fixed, gcv: separate processes, so that each
#     peak RSS is its own), eigendecompositions on the GPU (DEVICE=gpu) and,
#     for comparison, on the CPU threads (DEVICE=cpu, GCV only: the slow one);
#  4. 10^5 points, the same (GPU), for the scale.
# Exit 1 if a step failed. Device time: about 2-5 minutes (step 3's CPU run
# is the longest; TIMEOUT_CPU, default 240 s, bounds it).
set -uo pipefail
out=${1:?usage: gpu_local_gcv.sh OUT_DIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=.device/bin
T=$(nproc)
failed=()
run() { # NAME CMD...
  local name=$1; shift
  echo "== $name: $*"
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$out/$name.log" | sed 's/^/   /'
  [ $rc -eq 0 ] || { echo "   FAILED: exit $rc"; failed+=("$name"); }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"; lscpu | grep -E "Model name|^CPU\(s\)"

run parity $B/test_gpu local_gcv
run exact $B/test_local_gcv
for which in fixed gcv; do
  run "speed_1e6_gpu_$which" env TPS_BENCH_DEBUG=1 $B/tps_bench_gcv speed 1000000 "$T" gpu 0 $which
done
run speed_1e6_cpu_gcv timeout "${TIMEOUT_CPU:-240}" env TPS_BENCH_DEBUG=1 \
  $B/tps_bench_gcv speed 1000000 "$T" cpu 0 gcv
run speed_1e5_gpu env TPS_BENCH_DEBUG=1 $B/tps_bench_gcv speed 100000 "$T" gpu 0 both

echo
echo "== table (seconds; peak RSS of the process)"
printf "%-28s %s\n" step result
for f in parity exact speed_1e6_gpu_fixed speed_1e6_gpu_gcv speed_1e6_cpu_gcv speed_1e5_gpu; do
  line=$(grep -E "^speed N=|checks, |failed$|local GCV.*on the" "$out/$f.log" | tail -n 1)
  printf "%-28s %s\n" "$f" "${line:-(no result: $out/$f.log)}"
done
grep -h "GCV chose" "$out"/speed_*.log | sed 's/^ *\[engine\] /   /'
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
echo "all steps passed"
