#!/usr/bin/env bash
# scripts/engine.sh: moat's TLS engine, mbedTLS 3.6 built from Debian's own source package with
# moat's configuration and accelerator driver (tls/engine/). Three commands:
#
#   scripts/engine.sh fetch
#       Downloads and unpacks Debian's mbedtls source package, the exact version of the
#       installed libmbedtls-dev (so both engines are the same upstream release), into the
#       cache (${MOAT_ENGINE_CACHE:-<checkout>/.cache/engine}). Needs apt's deb-src entry, which
#       scripts/deps.sh writes. Idempotent: nothing happens when that version is there.
#   scripts/engine.sh build PREFIX [--sanitize]
#       Builds the cached source with moat's configuration and driver into PREFIX (static
#       libraries, headers, pkg-config files; CMake calls this at configure time with a prefix
#       inside its build tree). --sanitize adds ASan and UBSan, so the driver is checked with the
#       rest of moat. Idempotent: PREFIX/.stamp names everything the build depends on, and an
#       equal stamp means nothing to do. The build tree stays in PREFIX.build for `suites`.
#   scripts/engine.sh suites PREFIX
#       Builds and runs mbedTLS's own test suites for what the driver replaces, against the
#       engine in PREFIX (ctest registers this as engine.mbedtls_suites).
#
# Every step says what it does; a failing step names itself and shows its log's end.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MOAT_ENGINE_CACHE:-$HERE/.cache/engine}
ENGINE=$HERE/tls/engine
PY=/usr/bin/python3 # Debian's python3, with python3-jinja2 and python3-jsonschema
JOBS=${JOBS:-$(nproc)}

say() { printf 'engine: %s\n' "$*" >&2; }
die() { printf 'engine: error: %s\n' "$*" >&2; exit 1; }

# step NAME LOG COMMAND...: runs COMMAND with its output in LOG; on failure names the step.
step() {
    local name=$1 log=$2
    shift 2
    if ! "$@" >"$log" 2>&1; then
        printf 'engine: error: %s failed; the end of %s:\n' "$name" "$log" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

# The Debian version the source must have: the installed libmbedtls-dev's.
wanted_version() {
    dpkg-query -W -f='${Version}' libmbedtls-dev 2>/dev/null ||
        die "libmbedtls-dev is not installed: run scripts/deps.sh"
}

# The unpacked source of version $1 in the cache, or nothing.
source_dir() {
    local v=$1
    [ -f "$CACHE/src/$v/VERSION" ] && [ "$(cat "$CACHE/src/$v/VERSION")" = "$v" ] || return 0
    ls -d "$CACHE/src/$v"/mbedtls-*/ 2>/dev/null | head -n 1
}

cmd_fetch() {
    local v dir
    v=$(wanted_version)
    dir=$(source_dir "$v")
    if [ -n "$dir" ]; then
        say "source of mbedtls $v is in the cache ($dir)"
        return
    fi
    command -v dpkg-source >/dev/null || die "dpkg-source is missing (package dpkg-dev): run scripts/deps.sh"
    local tmp="$CACHE/src/$v.partial"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    say "fetching Debian's mbedtls source package, version $v"
    # apt-get source needs a deb-src entry for the release carrying $v (scripts/deps.sh).
    if ! (cd "$tmp" && apt-get source -qq "mbedtls=$v") >"$tmp/fetch.log" 2>&1; then
        tail -n 20 "$tmp/fetch.log" >&2
        die "apt-get source mbedtls=$v failed: is there a deb-src entry for the release that carries it? (scripts/deps.sh writes one)"
    fi
    echo "$v" >"$tmp/VERSION"
    rm -rf "$CACHE/src/$v"
    mv "$tmp" "$CACHE/src/$v"
    say "source in $(source_dir "$v")"
}

# What a build depends on: the source version, moat's engine files, this script, the flags.
build_key() {
    local v=$1 flags=$2
    {
        echo "$v $flags"
        cat "$ENGINE"/* "${BASH_SOURCE[0]}"
    } | sha256sum | cut -d' ' -f1
}

cmd_build() {
    local prefix=${1:?usage: engine.sh build PREFIX [--sanitize]} sanitize=0
    [ "${2:-}" = "--sanitize" ] && sanitize=1
    local v src key
    v=$(wanted_version)
    src=$(source_dir "$v")
    [ -n "$src" ] || die "no source of mbedtls $v in $CACHE: run scripts/deps.sh (it fetches it), or configure with -DMOAT_TLS_ENGINE=debian"
    local flags="sanitize=$sanitize cc=${MOAT_ENGINE_CC:-cc}"
    key=$(build_key "$v" "$flags")
    if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$key" ]; then
        say "engine in $prefix is up to date (mbedtls $v, $flags)"
        return
    fi
    local t0=$SECONDS work=$prefix.build
    rm -rf "$prefix" "$work"
    mkdir -p "$work"
    say "building mbedtls $v with moat's configuration and driver into $prefix"
    cp -a "$src" "$work/src"
    cd "$work/src"

    # Configuration: moat's, plus the switch that compiles the driver into the wrappers.
    cp "$ENGINE/mbedtls_config.h" include/mbedtls/mbedtls_config.h
    printf '\n/* The accelerator driver (tls/engine/moat_accel.c), compiled in by scripts/engine.sh */\n#define PSA_MOAT_ACCEL_DRIVER_ENABLED\n' \
        >>include/mbedtls/mbedtls_config.h
    # The driver, its description, and the dispatch mbedTLS 3.6 only has a template for.
    mkdir -p 3rdparty/moat-accel
    cp "$ENGINE/moat_accel.c" "$ENGINE/moat_accel.h" 3rdparty/moat-accel/
    cp "$ENGINE/moat_accel.json" scripts/data_files/driver_jsons/
    printf '%s\n' '["mbedtls_test_opaque_driver.json","mbedtls_test_transparent_driver.json","moat_accel.json","p256_transparent_driver.json"]' \
        >scripts/data_files/driver_jsons/driverlist.json
    step "applying driver-wrappers.patch (mbedTLS's wrapper template changed?)" "$work/patch.log" \
        patch -p1 --forward -i "$ENGINE/driver-wrappers.patch"
    step "applying cmake.patch (mbedTLS's library/CMakeLists.txt changed?)" "$work/patch2.log" \
        patch -p1 --forward -i "$ENGINE/cmake.patch"
    # Signatures get a buffer of a signature's size, not the rest of the record buffer: PSA
    # fills what a signature leaves of its buffer, which would make all of it resident.
    step "applying signature-size.patch (mbedTLS's signing calls changed?)" "$work/patch3.log" \
        patch -p1 --forward -i "$ENGINE/signature-size.patch"
    step "generating the PSA driver wrappers (needs python3-jinja2, python3-jsonschema)" \
        "$work/wrappers.log" "$PY" scripts/generate_driver_wrappers.py library

    # Debian's compiler flags for the package (debian/rules: hardening=+all), plus sanitizers.
    local cflags ldflags
    cflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS) $(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)"
    ldflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
    if [ "$sanitize" = 1 ]; then
        cflags="$cflags -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
        ldflags="$ldflags -fsanitize=address,undefined"
    fi
    step "configuring mbedtls" "$work/configure.log" \
        env CC="${MOAT_ENGINE_CC:-cc}" CFLAGS="$cflags" LDFLAGS="$ldflags" cmake -S . -B "$work/build" \
        -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX="$prefix" \
        -DUSE_STATIC_MBEDTLS_LIBRARY=ON -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
        -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DENABLE_PROGRAMS=OFF -DENABLE_TESTING=ON \
        -DMBEDTLS_PYTHON_EXECUTABLE="$PY" -DMBEDTLS_FATAL_WARNINGS=ON -DMOAT_ACCEL_DRIVER=ON
    step "building mbedtls" "$work/build.log" \
        cmake --build "$work/build" -j"$JOBS" --target mbedtls mbedx509 mbedcrypto
    step "installing mbedtls into $prefix" "$work/install.log" \
        cmake --install "$work/build"
    # A static libmbedcrypto.a needs libcrypto (the driver) and pthreads: say so to pkg-config.
    sed -i 's|^Libs: \(.*\)-lmbedcrypto$|Libs: \1-lmbedcrypto -lcrypto -pthread|' \
        "$prefix/lib/pkgconfig/mbedcrypto.pc"
    grep -q -- '-lcrypto' "$prefix/lib/pkgconfig/mbedcrypto.pc" ||
        die "mbedcrypto.pc has no Libs line to extend: mbedTLS's pkg-config file changed"
    echo "$v" >"$prefix/VERSION"
    echo "$key" >"$prefix/.stamp"
    say "engine built in $((SECONDS - t0)) s: $prefix"
}

# mbedTLS's own suites that exercise what the driver replaces: the PSA API (AEAD, key
# agreement, export, signatures with known-answer vectors), TLS itself (records and
# handshakes through the driver), keys and certificates, and the legacy modules that stay as
# the driver's fallback.
SUITES=(test_suite_psa_crypto test_suite_psa_crypto_op_fail.generated test_suite_ssl
        test_suite_pk test_suite_pkparse test_suite_pkwrite
        test_suite_gcm.aes128_de test_suite_gcm.aes128_en
        test_suite_gcm.aes256_de test_suite_gcm.aes256_en test_suite_chachapoly
        test_suite_ecdh test_suite_ecdsa test_suite_ecp test_suite_rsa test_suite_pkcs1_v21
        test_suite_hkdf test_suite_md)

cmd_suites() {
    local prefix=${1:?usage: engine.sh suites PREFIX} work
    work=$prefix.build
    [ -d "$work/build" ] || die "no engine build tree in $work: build the engine first"
    local t0=$SECONDS
    # Two ssl cases need ECDSA-SHA512 among the client's default signature algorithms, which
    # mbedTLS lists only with P-521 (library/ssl_tls.c); their depends_on forgets that, so
    # they fail on a build without P-521, as moat's is. Say what they need, once.
    local data="$work/src/tests/suites/test_suite_ssl.data"
    grep -q 'ECDSA_CLIENT_TEST_KEY:MBEDTLS_MD_CAN_SHA512:PSA_WANT_ECC_SECP_R1_521$' "$data" ||
        sed -i '/^\(Baseline for\|Negative Test\): Server using sig_alg not offered by the client - ECDSA with SHA512$/{n;s/$/:PSA_WANT_ECC_SECP_R1_521/}' "$data"
    say "building ${#SUITES[@]} of mbedTLS's test suites"
    step "building mbedTLS's test suites" "$work/suites-build.log" \
        cmake --build "$work/build" -j"$JOBS" --target "${SUITES[@]}"
    local regex
    regex="^($(IFS='|'; echo "${SUITES[*]#test_suite_}" | sed 's/\./\\./g'))-suite\$"
    say "running them"
    (cd "$work/build" && ctest --output-on-failure -j"$JOBS" -R "$regex") ||
        die "mbedTLS's own test suites failed against the engine (above)"
    say "suites passed in $((SECONDS - t0)) s"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    build) shift; cmd_build "$@" ;;
    suites) shift; cmd_suites "$@" ;;
    *) echo "usage: scripts/engine.sh fetch | build PREFIX [--sanitize] | suites PREFIX" >&2; exit 2 ;;
esac
