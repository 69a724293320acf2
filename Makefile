# gdal-tps: the two commands of the README.
#   make demo   installs what it needs, builds, renders data/meuse_zinc.tps
#   make test   installs what it needs, builds, runs ctest and pytest
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
JOBS    ?= $(shell nproc)
OUT     ?= out
export GDAL_DRIVER_PATH := $(CURDIR)/$(BUILD)

.PHONY: all deps build demo test install package bench fuzz fuzz-gpu sanitize valgrind check-layers clean

all: build

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	./scripts/demo.sh $(OUT)

test: build
	cd $(BUILD) && ctest --output-on-failure --verbose
	$(PYTHON) -m pytest autotest -q -rs -p no:cacheprovider

# libFuzzer over the driver's open path, bounded in time (FUZZ_SECONDS).
FUZZ_SECONDS ?= 120
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DTPS_CUDA=OFF -DTPS_FUZZ=ON -DTPS_SANITIZE=address,undefined
	cmake --build build-fuzz -j$(JOBS) --target fuzz_tps
	mkdir -p build-fuzz/corpus
	build-fuzz/fuzz/fuzz_tps -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -dict=fuzz/tps.dict -print_final_stats=1 $(FUZZ_FLAGS) build-fuzz/corpus fuzz/corpus

# The same target with the GPU backend (build only: run it on a GPU host,
# see bench/gpu_host.sh). nvcc compiles gpu/*.cu with g++ as host compiler,
# uninstrumented; clang compiles and links the rest with libFuzzer + ASan +
# UBSan. CUDA's driver maps the address range ASan keeps as a shadow gap:
# run it with ASAN_OPTIONS=protect_shadow_gap=0.
fuzz-gpu: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DTPS_CUDA=ON -DCMAKE_CUDA_HOST_COMPILER=g++ -DTPS_FUZZ=ON -DTPS_SANITIZE=address,undefined
	cmake --build build-fuzz-gpu -j$(JOBS) --target fuzz_tps

# Every C test (ctest's list) under valgrind memcheck: invalid accesses,
# uninitialised values and definite leaks fail (scripts/valgrind_tests.py,
# one test per core at a time).
valgrind: build
	$(PYTHON) scripts/valgrind_tests.py $(BUILD)

# The C and Python suites against an ASan + UBSan build (python3 itself is
# not instrumented: the runtime is preloaded; leaks are checked on the C tests).
sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTPS_CUDA=OFF -DTPS_SANITIZE=address,undefined
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ctest --output-on-failure
	GDAL_DRIVER_PATH=$(CURDIR)/build-asan \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	    ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(PYTHON) -m pytest autotest -q -rs -p no:cacheprovider -x

# No call cycles between the engine's files, from the objects' symbols
# (scripts/check_layers.py; also the ctest test "layers").
check-layers: build
	$(PYTHON) scripts/check_layers.py $(BUILD)

install: build
	cmake --install $(BUILD)

# The Debian package (cmake/package.cmake): $(BUILD)/gdal-tps_<version>_<arch>.deb
# with the GDAL plugin, the QGIS plugin and the docs. scripts/package_check.sh
# installs it, checks it and removes it.
package: build
	cd $(BUILD) && cpack -G DEB

bench: build
	$(PYTHON) bench/bench_cpu.py

clean:
	rm -rf $(BUILD) $(OUT) build-fuzz build-fuzz-gpu build-asan
