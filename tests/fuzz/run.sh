#!/bin/bash
# run.sh - coverage-guided fuzzing with libFuzzer, beyond the seeded fuzz
# tests that `make test` runs (tests/unit/test_fuzz_*.c).
#
# Builds the daemon's code (kk_core) with clang, ASan and UBSan into
# build-fuzz/, links each tests/fuzz/fuzz_*.c against it and runs each for
# SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/<name>/; the
# config harness also starts from examples/). What it learns is kept in
# build-fuzz/corpus-<name>/ for the next run; a failing input is saved as
# build-fuzz/<name>-crash-* (or -leak-, -timeout-) and the run exits 1.
# Reproduce one: build-fuzz/fuzz_<name> build-fuzz/<name>-crash-...
#   make fuzz-long [FUZZ_SECONDS=60]      or      bash tests/fuzz/run.sh 60
# Needs clang and libclang-rt-14-dev (installed here when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_EACH=${1:-60}
OUT=$ROOT/build-fuzz
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

if ! command -v clang >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q 'ok installed'; then
    echo "fuzz: installing clang and libclang-rt-14-dev" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CC=clang cmake -S "$ROOT" -B "$OUT" -DCMAKE_BUILD_TYPE=Debug -DKK_TESTS=OFF \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $SAN" >/dev/null
cmake --build "$OUT" --target kk_core -j"$(nproc)" >/dev/null
# One static library per layer: the top first, each before what it uses.
LIBS="$OUT/libkk_core.a $OUT/libkk_binding.a $OUT/libkk_source.a $OUT/libkk_kinesis.a
      $OUT/libkk_kubemq.a $OUT/libkk_aws.a $OUT/libkk_message.a $OUT/libkk_base.a $OUT/libkk_proto.a
      $OUT/libkk_kpl_proto.a -lgrpc -lgpr -lprotobuf-c -lcurl -ljansson -lyaml -lmicrohttpd
      -lnghttp2 -lcares -lssl -lcrypto -lpthread -lm"

failed=0
for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    # shellcheck disable=SC2086
    clang -g -O1 -fsanitize=fuzzer $SAN -I"$ROOT/src" -I"$OUT" "$src" $LIBS -o "$OUT/fuzz_$name"
    mkdir -p "$OUT/corpus-$name"
    seeds=("$ROOT/tests/fuzz/corpus/$name")
    [ "$name" = config ] && seeds=("$ROOT/examples")
    echo "fuzz: $name for ${SECONDS_EACH}s" >&2
    if ! (cd "$OUT" && ASAN_OPTIONS=detect_leaks=1 \
        LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp \
        "./fuzz_$name" -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=30 \
        -artifact_prefix="$OUT/$name-" "$OUT/corpus-$name" "${seeds[@]}" \
        >"$OUT/fuzz_$name.log" 2>&1); then
        echo "fuzz: $name FAILED: see $OUT/fuzz_$name.log and $OUT/$name-*" >&2
        grep -m1 -E 'ERROR|SUMMARY|deadly' "$OUT/fuzz_$name.log" >&2 || true
        failed=1
    else
        echo "fuzz: $name: $(grep -m1 -o 'Done [0-9]* runs' "$OUT/fuzz_$name.log" || echo done)" >&2
    fi
done
exit $failed
