# Thin wrapper around CMake. Every target first runs `deps`, so a fresh
# Debian 12 machine needs nothing by hand.
#   make          release build: build/kubemq-kinesis
#   make test     ASan+UBSan build, all unit and end-to-end tests via ctest
#   make demo     local stand-ins + daemon + a short story of real requests
#   make bench    benchmarks, figures into BENCHMARKS.md
#   make install  PREFIX=/usr/local
#   make fuzz     the fuzz tests over more seeds (FUZZ_SEEDS="1 200")
#   make fuzz-long  libFuzzer (clang), FUZZ_SECONDS per harness (tests/fuzz/)
# KK_DEPS=build limits `deps` to what building needs (no node, no test
# peers): the Dockerfile's builder stage uses it.

PREFIX ?= /usr/local
MAKEFLAGS += --no-print-directory
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
DEB_PACKAGES := gcc make cmake pkg-config libnghttp2-dev libc-ares-dev libprotobuf-c-dev \
	protobuf-c-compiler libcurl4-openssl-dev libssl-dev libjansson-dev libyaml-dev \
	libmicrohttpd-dev libcmocka-dev curl openssl
# Test-only: promtool (Prometheus's own exposition parser) checks /metrics.
# Only the one binary is taken out of Debian's prometheus package, into
# build-tools/, so no Prometheus server is ever installed or started.
PROMTOOL := build-tools/promtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

FUZZ_SEEDS ?= 1 50

FUZZ_SECONDS ?= 60

.PHONY: all deps build test demo bench fuzz fuzz-long install format clean

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@if [ "$(KK_DEPS)" != build ] && ! { command -v node && command -v npm; } >/dev/null; then \
		echo "deps: installing nodejs and npm"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; \
	fi
	@if [ "$(KK_DEPS)" != build ] && [ ! -x $(PROMTOOL) ]; then \
		echo "deps: promtool from Debian's prometheus package (binary only)"; \
		rm -rf build-tools/deb && mkdir -p build-tools/deb && cd build-tools/deb && \
		{ apt-get download prometheus >/dev/null 2>&1 || \
		  { $(SUDO) apt-get update -qq && apt-get download prometheus >/dev/null; }; } && \
		dpkg-deb -x prometheus_*.deb x && cp x/usr/bin/promtool ../promtool && \
		cd .. && rm -rf deb; \
	fi
	@if [ "$(KK_DEPS)" != build ] && { [ ! -f tests/rig/node_modules/.package-lock.json ] || \
	    [ tests/rig/package-lock.json -nt tests/rig/node_modules/.package-lock.json ]; }; then \
		echo "deps: npm ci in tests/rig"; \
		cd tests/rig && npm ci --no-audit --no-fund --loglevel=error; \
	fi

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKK_TESTS=OFF >/dev/null
	@cmake --build build -j$(JOBS)

test: deps
	@cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DKK_SANITIZE=ON >/dev/null
	@cmake --build build-test -j$(JOBS)
	@cd build-test && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

demo: build
	@NODE_NO_WARNINGS=1 KK_BIN=$(CURDIR)/build/kubemq-kinesis node tests/rig/demo.js

bench: build
	@bash bench/run.sh

# Each tests/unit/test_fuzz_* program once per seed in FUZZ_SEEDS ("first
# last"), under the sanitizers; a failure keeps its log and names the seed
# that reproduces it (FUZZ_SEED=n build-test/test_fuzz_x).
fuzz: deps
	@cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DKK_SANITIZE=ON >/dev/null
	@cmake --build build-test -j$(JOBS) --target $$(cd tests/unit && ls test_fuzz_*.c | sed 's/\.c$$//')
	@set -- $(FUZZ_SEEDS); failed=0; \
	for s in $$(seq $$1 $${2:-$$1}); do \
		for t in $$(cd tests/unit && ls test_fuzz_*.c | sed 's/\.c$$//'); do \
			if ! FUZZ_SEED=$$s UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
			    build-test/$$t >build-test/fuzz-$$t-$$s.log 2>&1; then \
				echo "fuzz: $$t FAILED with FUZZ_SEED=$$s (build-test/fuzz-$$t-$$s.log)"; failed=1; \
			else rm -f build-test/fuzz-$$t-$$s.log; fi; \
		done; \
	done; \
	[ $$failed = 0 ] && echo "fuzz: seeds $(FUZZ_SEEDS): all passed"; exit $$failed

fuzz-long: deps
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

install: build
	@cmake --install build --prefix $(PREFIX)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	@rm -rf build build-test build-bench build-fuzz
