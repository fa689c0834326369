# Thin front for CMake. `make run` and `make test` are the README's quick start.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE_DIR := build/release
DEBUG_DIR := build/debug
FUZZ_DIR := build/fuzz
CMAKE ?= cmake
# libFuzzer targets, built with clang in their own tree; ctest runs each briefly.
FUZZ_TARGETS := wal_record_fuzz snapshot_chunk_fuzz conf_change_fuzz mvcc_keys_fuzz keys_fuzz \
  proposal_fuzz

.PHONY: all deps build debug fuzz-build test test-web run bench bench-compare ab-compare sim soak groups-check \
  python-client fmt lint clean

all: build

deps:
	@./scripts/install-deps.sh

$(RELEASE_DIR)/CMakeCache.txt:
	$(CMAKE) -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DCONCLAVE_TESTS=OFF -DCONCLAVE_BENCH=ON

$(DEBUG_DIR)/CMakeCache.txt:
	$(CMAKE) -S . -B $(DEBUG_DIR) -DCMAKE_BUILD_TYPE=Debug -DCONCLAVE_SANITIZE=ON -DCONCLAVE_TESTS=ON -DCONCLAVE_BENCH=OFF

# Every object in the fuzz tree carries coverage instrumentation; only the
# fuzz targets link libFuzzer itself.
$(FUZZ_DIR)/CMakeCache.txt:
	CXX=clang++ $(CMAKE) -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=Debug -DCONCLAVE_SANITIZE=ON \
	  -DCONCLAVE_FUZZ=ON -DCONCLAVE_TESTS=OFF -DCONCLAVE_BENCH=OFF \
	  -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link

# Release build; the server/CLI binary is build/release/conclave.
build: deps $(RELEASE_DIR)/CMakeCache.txt
	$(CMAKE) --build $(RELEASE_DIR) -j $(JOBS)

# Debug build with AddressSanitizer and UndefinedBehaviorSanitizer.
debug: deps $(DEBUG_DIR)/CMakeCache.txt
	$(CMAKE) --build $(DEBUG_DIR) -j $(JOBS)

# The fuzz targets (clang++, libFuzzer, ASan, UBSan) and only what they link.
fuzz-build: deps $(FUZZ_DIR)/CMakeCache.txt
	$(CMAKE) --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)

# Every suite through ctest, the fuzz targets' short runs included; the last
# line is ctest's summary.
test: debug fuzz-build
	cd $(DEBUG_DIR) && ctest -j $(JOBS) --output-on-failure --timeout 900

# The ranges web page on the metrics port in a real browser: headless
# Chromium (installed on first use) loads it from a cluster and the test reads
# what it shows (tests/web).
test-web: debug
	@./scripts/install-deps.sh --web
	@# Debian's python3 has grpc and etcd3; another python3 first on PATH may not.
	cd tests/web && py=python3 && { $$py -c 'import etcd3, grpc' 2>/dev/null || py=/usr/bin/python3; } && \
	  CONCLAVE_BIN=$(CURDIR)/$(DEBUG_DIR)/conclave $$py -m unittest -v test_ranges_page

run: build
	@./scripts/run.sh

bench: build
	@./scripts/bench.sh

# etcd 3.4 and Conclave side by side, 3 members each, with `conclave bench`
# (docs/PERFORMANCE.md). BENCH_KEYS=20000 shortens the memory run.
bench-compare: build
	@./scripts/bench-compare.sh

# Regenerates the Python client's wire code (clients/python/conclave/kvpb)
# from proto/conclave/kvpb/kv.proto; make test checks it is up to date.
python-client:
	cd proto && protoc --python_out=../clients/python conclave/kvpb/kv.proto

# Two Conclave builds side by side, interleaved rounds, medians, server CPU
# per operation (scripts/ab-compare.sh): make ab-compare A_BIN=/path/to/old/conclave
ab-compare: build
	./scripts/ab-compare.sh

# The simulator over a seed range, in the release build: make sim SEEDS=20000 SEED=0
SEEDS ?= 20000
SEED ?= 0
sim: build
	./build/release/conclave sim --seed $(SEED) --seeds $(SEEDS)

# The fault-injection harness for DURATION seconds on NODES members (four:
# replica moves and drains need a member outside a range's three), every
# fault overlapping (tests/faults, docs/FAULTS.md): make soak DURATION=3600
DURATION ?= 3600
NODES ?= 4
soak: build
	./scripts/soak.sh $(DURATION) $(NODES)

# Many groups per process (scripts/groups-check.sh): 1,000 idle ranges on 3
# members (CPU, memory), then write load on 100 (groups per WAL sync).
groups-check: build
	./scripts/groups-check.sh

fmt:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

lint: $(DEBUG_DIR)/CMakeCache.txt
	@git ls-files '*.h' '*.cc' | xargs clang-format --dry-run -Werror
	@git ls-files 'src/*.cc' | xargs clang-tidy -p $(DEBUG_DIR) --quiet
	@echo "lint: clean"

clean:
	rm -rf build
