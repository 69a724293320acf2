#!/bin/sh
# cuda_emu: runs the standard error's GPU code (gpu/se.cu, gpu/se_blas.cu, gpu/se_tiles.cu)
# on the CPU, for checking it on a machine without a GPU (issue 13). Not a
# test of the GPU: the kernels run one thread after another (a block's
# reduction by its thread 0), cuBLAS's DGEMM is OpenBLAS's, CUDA's memory
# is malloc's, all under AddressSanitizer; it finds wrong indices, strides,
# leading dimensions and formulas, not races or cuBLAS's own behaviour.
#   scripts/cuda_emu/run.sh BUILD [ARGS]
# BUILD: a CPU-only build (TPS_CUDA=OFF) of this tree; runs
# `test_se_lowrank gpu ARGS` with the emulated GPU (TPS_TEST_QUICK=1 in the
# environment: its short run).
#   transform.py: a kernel launch k<<<g, b, 0, s>>>(args) becomes
#     emu_launch(dim3(g), dim3(b), [&]() { k(args); }), the device's
#     block_sum_squares the host's (emu.cpp);
#   shim/: cuda_runtime.h and cublas_v2.h on the host, gpu_probe.h that
#     finds a GPU;
#   emu.cpp: the launch's indices, cuBLAS's functions (checking their
#     leading dimensions) and the GPU probe.
set -eu
build=$(cd "${1:?usage: run.sh BUILD [ARGS]}" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
san="-fsanitize=address -fno-omit-frame-pointer"
inc="-I$here/shim -I$root/gpu -I$root/core -I$root/include"
python3 "$here/transform.py" "$root/gpu/se.cu" "$work/se.cpp"
python3 "$here/transform.py" "$root/gpu/se_blas.cu" "$work/se_blas.cpp"
python3 "$here/transform.py" "$root/gpu/se_tiles.cu" "$work/se_tiles.cpp"
for f in "$work/se.cpp" "$work/se_blas.cpp" "$work/se_tiles.cpp" "$here/emu.cpp"; do
  g++ -std=c++17 -g -O1 $san $inc -c "$f" -o "$work/$(basename "$f" .cpp).o"
done
cp "$root/autotest/c/test_se_lowrank.c" "$here/shim/gpu_probe.h" "$work/"
gcc -std=gnu11 -g -O1 $san -DTPS_TEST_GPU_BACKEND=1 -I"$work" -I"$root/autotest/c" \
  -I"$root/core" -I"$root/include" -c "$work/test_se_lowrank.c" -o "$work/test.o"
# the emulated GPU functions first: they replace core/gpu_none.c's
g++ $san -o "$work/test_se_lowrank" "$work/test.o" "$work/se.o" "$work/se_blas.o" "$work/se_tiles.o" \
  "$work/emu.o" -Wl,--allow-multiple-definition "$build/core/libtps_engine.a" -ldl -llapacke \
  -lopenblas -lm -lpthread
"$work/test_se_lowrank" gpu "$@"
