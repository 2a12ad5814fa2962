#!/usr/bin/env bash
# scripts/demo.sh: moat's main job on an embedded default. Installs what is missing, builds,
# starts a real plain-HTTP app (Python's http.server on a demo folder, 127.0.0.1:8080) and moat
# in front of it on https://localhost:8443 with the development certificate, and prints the curl
# command to try. Ctrl-C stops both. Ports: MOAT_DEMO_PORT (8443), MOAT_DEMO_BACKEND_PORT (8080).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

port=${MOAT_DEMO_PORT:-8443}
backend_port=${MOAT_DEMO_BACKEND_PORT:-8080}
state=${MOAT_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/moat}
site=$(mktemp -d /tmp/moat-demo.XXXXXX)
cat >"$site/index.html" <<HTML
<!doctype html><title>moat demo</title>
<h1>Hello over HTTPS</h1><p>This page comes from Python's http.server, served through moat.</p>
HTML

backend_pid=""
moat_pid=""
cleanup() {
    [ -n "$moat_pid" ] && kill "$moat_pid" 2>/dev/null || true
    [ -n "$backend_pid" ] && kill "$backend_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$site"
}
trap cleanup EXIT INT TERM

python3 -m http.server --bind 127.0.0.1 --directory "$site" "$backend_port" >/dev/null 2>&1 &
backend_pid=$!
for _ in $(seq 1 100); do # up to 10 s for the app to listen, so moat's first request finds it
    curl -s -o /dev/null "http://127.0.0.1:$backend_port/" && break
    sleep 0.1
done

v6=(); [ -s /proc/net/if_inet6 ] && v6=(--listen "[::1]:$port") # localhost may resolve to ::1
MOAT_STATE_DIR=$state build/moat --listen "127.0.0.1:$port" "${v6[@]}" \
    --backend "127.0.0.1:$backend_port" &
moat_pid=$!

for _ in $(seq 1 100); do # up to 10 s for moat to listen
    if [ -f "$state/ca.pem" ] &&
        curl -s -o /dev/null --cacert "$state/ca.pem" "https://localhost:$port/"; then
        break
    fi
    sleep 0.1
done
cat <<MSG

moat is serving https://localhost:$port/ in front of http://127.0.0.1:$backend_port/.
Try:

    curl --cacert $state/ca.pem https://localhost:$port/

Press Ctrl-C to stop.
MSG
wait "$moat_pid"
