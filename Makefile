# gdal-tps: the two commands of the README.
#   make demo   installs what it needs, builds, renders data/meuse_zinc.tps
#   make test   installs what it needs, builds, runs ctest and pytest
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
JOBS    ?= $(shell nproc)
OUT     ?= out
export GDAL_DRIVER_PATH := $(CURDIR)/$(BUILD)

.PHONY: all deps build demo test install bench clean

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

install: build
	cmake --install $(BUILD)

bench: build
	$(PYTHON) bench/bench_cpu.py

clean:
	rm -rf $(BUILD) $(OUT)
