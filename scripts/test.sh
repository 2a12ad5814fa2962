#!/usr/bin/env bash
# scripts/test.sh: installs what is missing, builds moat, and runs the whole suite three times:
# in a normal build on the project's TLS engine (unit, integration, mbedTLS's own suites against
# the engine), again on Debian's libmbedtls, and in an AddressSanitizer + UndefinedBehaviorSanitizer
# build (the same tests), then runs each libFuzzer harness briefly (clang build). Exits non-zero
# if anything fails. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

jobs=$(nproc)
run_suite() { # build-dir label cmake-args...
    local dir=$1 label=$2
    shift 2
    echo "== $label: configure and build ($dir)"
    cmake -S . -B "$dir" "$@" >/dev/null
    # Quiet when it works, the whole compiler output when it does not.
    if ! cmake --build "$dir" -j"$jobs" >"$dir/build.log" 2>&1; then
        cat "$dir/build.log"
        exit 1
    fi
    echo "== $label: ctest"
    (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$jobs")
}

run_suite build "release build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
# The same suite on Debian's own libmbedtls: the stock engine stays a working build (the
# benchmark compares both), and the tls/ unit tests run against both engines.
run_suite build-stock "release build, Debian's libmbedtls" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOAT_TLS_ENGINE=debian
# halt_on_error: a sanitizer report must fail the test that caused it, not scroll by.
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export MOAT_SANITIZED=1
run_suite build-asan "ASan+UBSan build" -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON
unset MOAT_SANITIZED
# Each harness runs ${MOAT_FUZZ_SECONDS:-15} s on a scratch corpus seeded from tests/fuzz/corpus.
CC=clang run_suite build-fuzz "libFuzzer harnesses" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOAT_FUZZ=ON \
    -DMOAT_FUZZ_SECONDS="${MOAT_FUZZ_SECONDS:-15}"
echo "== all suites passed"
