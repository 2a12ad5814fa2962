#!/usr/bin/env bash
# scripts/deps.sh: installs, idempotently, every Debian package moat's build, tests and demo need.
# On Debian 12, libmbedtls-dev (>= 3.6) and libllhttp-dev (>= 9) come from Debian 13 through an
# apt source pinned at priority 100, so apt never takes anything else from it on its own.
# Usage: scripts/deps.sh [--bench]   (--bench adds nginx, haproxy, wrk and python3-cryptography
#                                     for bench/)
set -euo pipefail

want_bench=0
[ "${1:-}" = "--bench" ] && want_bench=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: run as root or install sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# Packages from the running release: build, tests, demo. clang + libclang-rt-dev: libFuzzer
# and the sanitizer runtimes for the fuzzing harnesses. The TLS engine (scripts/engine.sh):
# dpkg-dev (apt-get source unpacks with dpkg-source; dpkg-buildflags), libssl-dev (the
# accelerator's libcrypto), python3-jinja2 + python3-jsonschema (mbedTLS's driver-wrapper
# generator), patch. python3-yaml: the test of deploy/ parses its Compose and Kubernetes files.
# libc-ares-dev: backend names are resolved (and re-resolved at their TTL) with c-ares.
base_pkgs=(build-essential cmake pkg-config libuv1-dev libyaml-dev libc-ares-dev libcmocka-dev clang libclang-rt-dev
           curl openssl python3 ca-certificates dpkg-dev libssl-dev python3-jinja2
           python3-jsonschema python3-yaml patch)
bench_pkgs=(nginx-light haproxy wrk python3-cryptography)
newer_pkgs=(libmbedtls-dev libllhttp-dev)

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# pkg-config --atleast-version for what the build requires; the .pc names are mbedtls/llhttp.
mbedtls_ok() { pkg-config --atleast-version=3.6 mbedtls 2>/dev/null; }
llhttp_ok() { pkg-config --atleast-version=9 libllhttp 2>/dev/null; }

missing=()
for p in "${base_pkgs[@]}"; do have_pkg "$p" || missing+=("$p"); done
if [ "$want_bench" = 1 ]; then
    for p in "${bench_pkgs[@]}"; do have_pkg "$p" || missing+=("$p"); done
fi

need_newer=0
if ! have_pkg pkg-config || ! mbedtls_ok || ! llhttp_ok; then need_newer=1; fi

updated=0
apt_update() { [ "$updated" = 1 ] || { $SUDO apt-get update -qq; updated=1; }; }

# Reuse the mirror this machine already uses for Debian, so no host is named here.
debian_mirror() {
    cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -oE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' |
        grep -oE '[a-z]+://[^ ]+' | sed -n 1p || true
}

# The TLS engine is built from Debian's own mbedtls source package, the version of the
# installed libmbedtls-dev: apt needs a deb-src entry for the release that carries it. On
# Debian 12 that is the pinned trixie entry below (deb and deb-src, same pin); on a release
# that carries mbedTLS 3.6 itself, an entry for that release.
engine_source() {
    local src=/etc/apt/sources.list.d/moat-trixie.sources
    if [ -f "$src" ]; then
        if ! grep -q '^Types: deb deb-src$' "$src"; then
            $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' "$src"
            updated=0
        fi
    else
        . /etc/os-release
        src=/etc/apt/sources.list.d/moat-source.sources
        if [ ! -f "$src" ]; then
            local mirror
            mirror=$(debian_mirror)
            [ -n "$mirror" ] || { echo "deps: no Debian mirror found in apt sources" >&2; exit 1; }
            printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$mirror" "${VERSION_CODENAME:?}" | $SUDO tee "$src" >/dev/null
            updated=0
        fi
    fi
    # Idempotent: nothing is fetched when the cache holds that version.
    if ! scripts/engine.sh fetch 2>/dev/null; then
        apt_update
        scripts/engine.sh fetch
    fi
}

if [ ${#missing[@]} -eq 0 ] && [ "$need_newer" = 0 ]; then
    engine_source
    echo "deps: everything is installed"
    exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mbedtls_ok || ! llhttp_ok; then
    # Does the running release carry new enough versions? (Debian 13 and later do.)
    apt_update
    cand_ok=1
    mb=$(apt-cache policy libmbedtls-dev | awk '/Candidate:/ {print $2}')
    lh=$(apt-cache policy libllhttp-dev | awk '/Candidate:/ {print $2}')
    dpkg --compare-versions "${mb:-0}" ge 3.6 || cand_ok=0
    dpkg --compare-versions "${lh:-0}" ge 9 || cand_ok=0
    if [ "$cand_ok" = 1 ]; then
        $SUDO apt-get install -y -qq --no-install-recommends "${newer_pkgs[@]}" >/dev/null
    else
        . /etc/os-release
        if [ "${VERSION_CODENAME:-}" != bookworm ]; then
            echo "deps: need libmbedtls-dev >= 3.6 and libllhttp-dev >= 9; this system ($PRETTY_NAME) has none" >&2
            exit 1
        fi
        mirror=$(debian_mirror)
        [ -n "$mirror" ] || { echo "deps: no Debian mirror found in apt sources" >&2; exit 1; }
        src=/etc/apt/sources.list.d/moat-trixie.sources
        pin=/etc/apt/preferences.d/moat-trixie
        if [ ! -f "$src" ]; then
            printf 'Types: deb deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$mirror" | $SUDO tee "$src" >/dev/null
        fi
        # Priority 100: below the running release's 500, so trixie never wins on its own; only
        # the packages named explicitly below (and what they strictly need) come from it. The
        # pin covers binaries only; the source is asked for by exact version (engine.sh).
        printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | $SUDO tee "$pin" >/dev/null
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends \
            libmbedtls-dev/trixie libllhttp-dev/trixie >/dev/null
    fi
fi

mbedtls_ok || { echo "deps: mbedTLS >= 3.6 still missing" >&2; exit 1; }
engine_source
llhttp_ok || { echo "deps: llhttp >= 9 still missing" >&2; exit 1; }
echo "deps: ready (mbedtls $(pkg-config --modversion mbedtls), llhttp $(pkg-config --modversion libllhttp))"
