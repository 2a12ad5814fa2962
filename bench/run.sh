#!/usr/bin/env bash
# bench/run.sh: moat beside nginx (and HAProxy when installed) in one run, on loopback only.
#
# Each proxy gets one worker pinned to CPU 0, the same plain-HTTP backend, the same certificates
# (ECDSA P-256 on one port, RSA-2048 on a second) and the same TLS choices; load generators and
# the backend share CPU 1. moat runs twice: on the project's TLS engine ("moat") and on
# Debian's libmbedtls ("moat-stock"), so the engine's gain is measured, not claimed. Measured
# per proxy: keep-alive small-response req/s, full handshakes/s (never resumed) with each
# certificate, 1 MiB response and 1 MiB upload throughput, RSS per idle TLS connection (and
# moat's malloc heap per idle connection, through bench/heap-probe.so); every rate also per
# CPU-second the proxy used (from /proc). Then bench/tls-ceiling gives each engine's own
# per-core ceiling, and bench/summarize.py prints the table. See bench/README.md.
#
# Usage: bench/run.sh [--quick] [--out FILE] [--moat BIN] [--moat-stock BIN] [--proxies LIST]
#   --quick    1 round of 3 s per figure instead of 3 rounds of 8 s (~2 minutes instead of ~9)
#   --out      also write the table and every sample to FILE
#   --moat     use this moat binary (the project's engine; its build tree's engine/ prefix gives
#              tls-ceiling) instead of building one (Release) in the scratch directory
#   --moat-stock  likewise for moat on Debian's libmbedtls (-DMOAT_TLS_ENGINE=debian)
#   --proxies  which to run; default: moat, moat-stock, nginx, and haproxy when installed
#   --idle N   idle TLS connections for the memory figure (default 5000; --quick: 300)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

quick=0
out=""
moat_bin=""
moat_stock_bin=""
proxies=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --moat) moat_bin=${2:?--moat needs a binary}; shift ;;
    --moat-stock) moat_stock_bin=${2:?--moat-stock needs a binary}; shift ;;
    --proxies) proxies=${2:?--proxies needs a list}; shift ;;
    --idle) idle_arg=${2:?--idle needs a count}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$quick" = 1 ]; then
    rounds=1 dur_s=3 idle_n=300 ceiling_args=(--quick)
else
    rounds=3 dur_s=8 idle_n=5000 ceiling_args=()
fi
idle_n=${idle_arg:-$idle_n}
transfer_conns=200 # connections in full transfer for the memory-under-load figure
ka_conns=50     # keep-alive test: enough connections to keep a one-worker proxy busy
bulk_conns=16   # 1 MiB tests: throughput is bound by crypto, not by concurrency
hs_clients=4    # parallel `openssl s_time`: each waits on every handshake it makes
load_slack_s=30 # every load tool is killed this long after its nominal duration

log() { printf '%s run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites ---------------------------------------------------------------------------
for tool in openssl wrk nginx python3 curl cc pkg-config taskset timeout; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/deps.sh --bench"
done
if [ -z "$proxies" ]; then
    proxies="moat moat-stock nginx"
    command -v haproxy >/dev/null && proxies="$proxies haproxy"
fi
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: the proxy on CPU 0, clients and backend on CPU 1"
proxy_cpu=0
client_cpu=1
clk_tck=$(getconf CLK_TCK)
# 1000 idle connections and their upstream side need more than the usual 1024 descriptors.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
    ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

# ---- scratch directory and cleanup -------------------------------------------------------------
work=$(mktemp -d /tmp/moat-bench.XXXXXX)
chmod 755 "$work" # nginx workers may run as another user and must reach their temp paths
started_pids=()   # every process this script started and has not reaped; the only ones it stops

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do # 5 s to exit cleanly, then SIGKILL
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Forgets a PID once it has exited and been waited for: its number may be reused by then.
untrack() {
    local i
    for i in "${!started_pids[@]}"; do
        [ "${started_pids[i]}" = "$1" ] && unset 'started_pids[i]'
    done
    started_pids=("${started_pids[@]}")
}

# Stops a process this script started, and reaps it.
finish() {
    stop_pid "$1"
    wait "$1" 2>/dev/null || true
    untrack "$1"
}

cleanup() {
    local rc=$?
    local i
    for ((i = ${#started_pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${started_pids[i]}"
    done
    wait 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        log "failed; logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers -----------------------------------------------------------------------------------
# A port free right now on loopback (nginx and HAProxy need one in their configuration).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Waits until PORT accepts TCP connections while PID is alive; gives up after SECONDS.
wait_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# CPU time of a process, all its threads, in clock ticks: utime + stime from /proc/PID/stat.
cpu_ticks() {
    local stat fields
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) } # the command name may hold spaces; fields restart after it at "state"
    read -r -a fields <<<"$stat"
    echo $((fields[11] + fields[12]))
}

# Busy and total ticks of the client CPU from /proc/stat.
client_cpu_ticks() {
    awk -v cpu="cpu$client_cpu" '$1 == cpu {
        busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

now_s() { date +%s.%N; }

# Runs a load command while metering the proxy PID. Sets M_WALL_S, M_CPU_S (the proxy's
# CPU-seconds) and M_CLIENT_BUSY (fraction of the client CPU in use). The command's exit code is
# not judged here: each caller checks the tool's own report.
metered() {
    local pid=$1
    shift
    local c0 c1 b0 t0 b1 t1 w0 w1
    c0=$(cpu_ticks "$pid") || c0=0
    read -r b0 t0 < <(client_cpu_ticks)
    w0=$(now_s)
    "$@" || true
    w1=$(now_s)
    read -r b1 t1 < <(client_cpu_ticks)
    c1=$(cpu_ticks "$pid") || c1=$c0 # the proxy died: its figure is flagged by the caller
    M_WALL_S=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')
    M_CPU_S=$(awk -v a="$c0" -v b="$c1" -v hz="$clk_tck" 'BEGIN { printf "%.3f", (b - a) / hz }')
    M_CLIENT_BUSY=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" \
        'BEGIN { printf "%.3f", (t > 0) ? b / t : 0 }')
}

# For foreground commands only: a shell function sent to the background runs in a subshell, so
# $! would name the subshell, and stopping it would orphan the real process. Background
# processes are started with taskset directly (taskset execs them: $! is theirs).
on_client_cpu() { taskset -c "$client_cpu" "$@"; }

# ---- build the helpers and moat ----------------------------------------------------------------
cflags=(-std=c11 -O2 -Wall -Wextra -Werror)
log "building backend, tls-ceiling and heap-probe in $work"
cc "${cflags[@]}" -o "$work/backend" "$here/backend.c"
cc "${cflags[@]}" -shared -fPIC -pthread -o "$work/heap-probe.so" "$here/heap-probe.c"

build_moat() { # DIR ENGINE: a Release moat on that TLS engine
    log "building moat (Release, $2 TLS engine) in $1"
    if ! { cmake -S "$repo" -B "$1" -DMOAT_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
        -DMOAT_TLS_ENGINE="$2" && cmake --build "$1" --target moat -j "$(nproc)"; } \
        >"$1.log" 2>&1; then
        tail -30 "$1.log" >&2
        die "moat did not build (log above)"
    fi
}
if [[ " $proxies " == *" moat "* ]] && [ -z "$moat_bin" ]; then
    build_moat "$work/build-moat" project
    moat_bin="$work/build-moat/moat"
fi
if [[ " $proxies " == *" moat-stock "* ]] && [ -z "$moat_stock_bin" ]; then
    build_moat "$work/build-moat-stock" debian
    moat_stock_bin="$work/build-moat-stock/moat"
fi
# tls-ceiling on each engine: Debian's library, and the project's from moat's build tree.
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc "${cflags[@]}" -pthread -o "$work/tls-ceiling-stock" "$here/tls-ceiling.c" \
    $(pkg-config --cflags --libs mbedtls mbedx509 mbedcrypto)
engine_pc=""
[ -n "$moat_bin" ] && engine_pc="$(dirname "$moat_bin")/engine/lib/pkgconfig"
if [ -n "$engine_pc" ] && [ -d "$engine_pc" ]; then
    # shellcheck disable=SC2046
    cc "${cflags[@]}" -pthread -o "$work/tls-ceiling" "$here/tls-ceiling.c" \
        $(PKG_CONFIG_PATH=$engine_pc pkg-config --cflags --libs mbedtls mbedx509 mbedcrypto)
else
    log "no project engine next to ${moat_bin:-moat}: its tls-ceiling is skipped"
fi

# ---- certificate, backend, configurations ------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/rsa-key.pem" -out "$work/rsa-cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem" # HAProxy wants both in one file
cat "$work/rsa-cert.pem" "$work/rsa-key.pem" >"$work/haproxy-rsa.pem"

taskset -c "$client_cpu" "$work/backend" >"$work/backend.out" 2>&1 &
backend_pid=$!
started_pids+=("$backend_pid")
for _ in $(seq 50); do
    grep -q '^listening ' "$work/backend.out" && break
    sleep 0.1
done
backend_port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/backend.out")
[ -n "$backend_port" ] || die "backend did not start: $(cat "$work/backend.out")"
log "backend on 127.0.0.1:$backend_port"

# Four more backends for the load-balancing figure (keepalive_lb): weights 1 to 4, reached by
# Host: lb.test; moat also checks them (GET /small every second).
lb_ports=()
for k in 1 2 3 4; do
    taskset -c "$client_cpu" "$work/backend" >"$work/backend-lb$k.out" 2>&1 &
    started_pids+=($!)
    for _ in $(seq 50); do
        grep -q '^listening ' "$work/backend-lb$k.out" && break
        sleep 0.1
    done
    lb_port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/backend-lb$k.out")
    [ -n "$lb_port" ] || die "backend lb$k did not start"
    lb_ports+=("$lb_port")
done
log "load-balancing backends on ${lb_ports[*]}"

# The same TLS choices everywhere, moat's: TLS 1.2 and 1.3; TLS 1.3 suites AES-128-GCM,
# AES-256-GCM, ChaCha20-Poly1305, picked in the client's order (every client here is OpenSSL,
# which lists AES-256-GCM first); ECDHE-ECDSA AEAD suites for TLS 1.2; groups X25519, P-256,
# P-384; ALPN http/1.1; one TLS 1.3 session ticket per connection (mbedTLS's default count).
tls13_suites=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
tls12_suites=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384
tls12_suites=$tls12_suites:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256
tls12_suites=$tls12_suites:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305
groups=X25519:P-256:P-384

# One nginx server block: listen port, certificate and key, upstream, and a server_name when
# it shares its port with the default one.
nginx_server() {
    local port=$1 cert=$2 key=$3 upstream=$4 name=${5:-}
    cat <<EOF
    server {
        listen 127.0.0.1:$port ssl;${name:+
        server_name $name;}
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $tls12_suites;
        ssl_conf_command Ciphersuites $tls13_suites;
        ssl_conf_command NumTickets 1;
        ssl_prefer_server_ciphers off;
        ssl_ecdh_curve $groups;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
        client_max_body_size 0;
        client_body_buffer_size 128k;
        location / {
            proxy_pass http://$upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header Via "1.1 nginx";
            proxy_request_buffering off;
            proxy_buffering on;
            proxy_buffer_size 16k;
            proxy_buffers 16 16k;
            proxy_max_temp_file_size 0;
        }
    }
EOF
}

write_nginx_conf() {
    local port=$1 rsa_port=$2
    mkdir -p "$work/nginx"
    # Equivalent proxying: keep-alive upstream pool of 64 (moat's), the forwarding headers moat
    # sets, bodies streamed both ways in bounded memory (no request buffering, no temp files).
    cat >"$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx-error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    upstream lb {
        server 127.0.0.1:${lb_ports[0]} weight=1;
        server 127.0.0.1:${lb_ports[1]} weight=2;
        server 127.0.0.1:${lb_ports[2]} weight=3;
        server 127.0.0.1:${lb_ports[3]} weight=4;
        keepalive 64;
        keepalive_requests 1000000;
    }
$(nginx_server "$port" "$work/cert.pem" "$work/key.pem" backend)
$(nginx_server "$port" "$work/cert.pem" "$work/key.pem" lb lb.test)
$(nginx_server "$rsa_port" "$work/rsa-cert.pem" "$work/rsa-key.pem" backend)
}
EOF
}

write_haproxy_conf() {
    local port=$1 rsa_port=$2
    # HAProxy reserves two descriptors per connection and refuses to start beyond the limit.
    local fds maxconn=20000
    fds=$(ulimit -n)
    if [ "$fds" != unlimited ] && [ $(((fds - 100) / 2)) -lt $maxconn ]; then
        maxconn=$(((fds - 100) / 2))
    fi
    cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn
    ssl-default-bind-ciphers $tls12_suites
    ssl-default-bind-ciphersuites $tls13_suites
    ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 prefer-client-ciphers
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 60s
    option forwardfor
frontend tls
    bind 127.0.0.1:$port ssl crt $work/haproxy.pem alpn http/1.1 curves $groups
    bind 127.0.0.1:$rsa_port ssl crt $work/haproxy-rsa.pem alpn http/1.1 curves $groups
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request add-header Via "1.1 haproxy"
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:$backend_port
EOF
}

# ---- start the proxies ------------------------------------------------------------------------
# proxy -> its TLS port (ECDSA) and RSA port; the PID that does the work (nginx: the worker);
# the PID to stop
declare -A port_of rsa_port_of pid_of main_pid_of
versions="OpenSSL clients $(openssl version | awk '{print $2}')"

# moat's configuration file: the two listeners (each with its certificate), the backend.
write_moat_conf() {
    local name=$1 port=$2 rsa_port=$3
    cat >"$work/$name.yaml" <<END
workers: 1
listeners:
  - listen: 127.0.0.1:$port
    tls: {certificates: [{cert: $work/cert.pem, key: $work/key.pem}]}
  - listen: 127.0.0.1:$rsa_port
    tls: {certificates: [{cert: $work/rsa-cert.pem, key: $work/rsa-key.pem}]}
pools:
  default: {backends: [127.0.0.1:$backend_port]}
  lb:
    backends:
      - {address: 127.0.0.1:${lb_ports[0]}, weight: 1}
      - {address: 127.0.0.1:${lb_ports[1]}, weight: 2}
      - {address: 127.0.0.1:${lb_ports[2]}, weight: 3}
      - {address: 127.0.0.1:${lb_ports[3]}, weight: 4}
    health_check: {path: /small, interval: 1s}
routes:
  - {host: lb.test, pool: lb}
default_pool: default
timeouts: {head: 60s, drain: 1s}
logging: {level: warn, access_log: false}
END
}

start_proxy() {
    local name=$1 port rsa_port pid bin
    port=$(free_port)
    rsa_port=$(free_port)
    case "$name" in
    moat | moat-stock)
        bin=$moat_bin
        [ "$name" = moat-stock ] && bin=$moat_stock_bin
        [ -x "$bin" ] || die "no $name binary at $bin"
        write_moat_conf "$name" "$port" "$rsa_port"
        taskset -c "$proxy_cpu" "$bin" -c "$work/$name.yaml" >"$work/$name.log" 2>&1 &
        pid=$!
        versions="$versions, $name: $("$bin" --version 2>&1 | paste -sd ' ')"
        ;;
    nginx)
        write_nginx_conf "$port" "$rsa_port"
        taskset -c "$proxy_cpu" nginx -p "$work/nginx" -e "$work/nginx-error.log" \
            -c "$work/nginx.conf" >"$work/nginx.log" 2>&1 &
        pid=$!
        versions="$versions, $(nginx -v 2>&1 | sed 's/.*: //')"
        ;;
    haproxy)
        write_haproxy_conf "$port" "$rsa_port"
        taskset -c "$proxy_cpu" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
        pid=$!
        versions="$versions, HAProxy $(haproxy -v | awk 'NR == 1 {print $3}')"
        ;;
    *) die "unknown proxy $name (moat, moat-stock, nginx, haproxy)" ;;
    esac
    started_pids+=("$pid")
    main_pid_of[$name]=$pid
    if ! wait_port "$port" "$pid" 15 || ! wait_port "$rsa_port" "$pid" 15; then
        cat "$work/$name"*.log >&2 2>/dev/null || true
        die "$name did not start on 127.0.0.1:$port and :$rsa_port (log above)"
    fi
    if [ "$name" = nginx ]; then
        # The master only supervises; its one worker, a child, terminates TLS.
        pid=$(tr ' ' '\n' <"/proc/$pid/task/$pid/children" | grep -m1 .) ||
            die "nginx has no worker"
    fi
    port_of[$name]=$port
    rsa_port_of[$name]=$rsa_port
    pid_of[$name]=$pid
    log "$name on 127.0.0.1:$port, RSA :$rsa_port (pid $pid, CPU $proxy_cpu)"
}

for p in $proxies; do
    start_proxy "$p"
done

# What each proxy negotiates with an OpenSSL client, and one request end to end.
: >"$work/meta.tsv"
for p in $proxies; do
    tls=$(timeout 10 openssl s_client -connect "127.0.0.1:${port_of[$p]}" -brief </dev/null 2>&1 |
        awk -F': ' '/^Protocol version/ {v = $2} /^Ciphersuite/ {c = $2}
                    /^Server Temp Key/ {split($2, k, ","); g = k[1]} /^Signature type/ {s = $2}
                    END {print v, c, g, s}')
    status=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 10 \
        "https://127.0.0.1:${port_of[$p]}/small" || true)
    [ "$status" = 200 ] || die "$p answered GET /small with '$status' instead of 200"
    printf 'negotiated\t%s\t%s\n' "$p" "$tls" >>"$work/meta.tsv"
done

# ---- idle connections: first, while each proxy's heap is fresh ----------------------------------
# Memory freed by earlier load would be reused by these connections and hide their cost.
# Opening 5000 connections takes longer than moat's and HAProxy's 10 s default wait for a first
# request, so every proxy is given nginx's 60 s (client_header_timeout) for it.
: >"$work/idle.tsv"
idle_memory() {
    local p=$1 pid=${pid_of[$1]} port=${port_of[$1]} line r0 r1 r2 err=""
    r0=$(rss_kib "$pid")
    coproc IDLE { exec taskset -c "$client_cpu" timeout 180 python3 "$here/idle-conns.py" \
        127.0.0.1 "$port" "$idle_n" 2>"$work/idle-$p.err"; }
    # shellcheck disable=SC2153 # IDLE_PID is set by coproc
    local idle_pid=$IDLE_PID in_fd=${IDLE[0]} out_fd=${IDLE[1]}
    started_pids+=("$idle_pid")
    if read -r -t 120 line <&"$in_fd" && [ "$line" = "handshaken $idle_n" ]; then
        sleep 1 # let the proxy finish what follows the last handshake (tickets)
        r1=$(rss_kib "$pid")
        { echo request >&"$out_fd"; } 2>/dev/null || true
        if read -r -t 120 line <&"$in_fd" && [ "$line" = "requested $idle_n" ]; then
            sleep 1
            r2=$(rss_kib "$pid")
        else
            err="requests: ${line:-no answer} $(tail -1 "$work/idle-$p.err")"
        fi
        { echo quit >&"$out_fd"; } 2>/dev/null || true
    else
        err="handshakes: ${line:-no answer} $(tail -1 "$work/idle-$p.err")"
    fi
    wait "$idle_pid" 2>/dev/null || true
    untrack "$idle_pid"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$idle_n" "$r0" "${r1:-}" "${r2:-}" "${err// /_}" \
        >>"$work/idle.tsv"
    log "$p idle: RSS ${r0} -> ${r1:-?} (handshaken) -> ${r2:-?} KiB (requested) for $idle_n ${err}"
}
for p in $proxies; do
    idle_memory "$p"
done


# moat's heap per idle connection, read inside a second moat through bench/heap-probe.so: RSS
# cannot split moat's own bytes from mbedTLS's, the heap count can (tls-ceiling gives mbedTLS's).
heap_probe() { # prints the probed process's heap bytes, or nothing after 5 s
    local before
    before=$(wc -l <"$work/heap.out")
    # shellcheck disable=SC2016 # $1 is the inner shell's
    timeout 5 bash -c 'echo probe >"$1"' _ "$work/heap.fifo" || return 0
    for _ in $(seq 50); do
        if [ "$(wc -l <"$work/heap.out")" -gt "$before" ]; then
            awk 'END {print $2}' "$work/heap.out"
            return 0
        fi
        sleep 0.1
    done
}
moat_heap() {
    local port pid line h0 h1="" h2="" err=""
    port=$(free_port)
    mkfifo "$work/heap.fifo"
    : >"$work/heap.out"
    HEAP_PROBE_FIFO="$work/heap.fifo" HEAP_PROBE_OUT="$work/heap.out" \
        LD_PRELOAD="$work/heap-probe.so" taskset -c "$proxy_cpu" "$moat_bin" \
        --listen "127.0.0.1:$port" --cert "$work/cert.pem" --key "$work/key.pem" \
        --backend "127.0.0.1:$backend_port" --workers 1 --no-access-log --log-level warn \
        --drain-timeout 1 --head-timeout 60s >"$work/moat-heap.log" 2>&1 &
    pid=$!
    started_pids+=("$pid")
    wait_port "$port" "$pid" 15 ||
        die "moat with heap-probe did not start: $(cat "$work/moat-heap.log")"
    curl -sk -o /dev/null --max-time 10 "https://127.0.0.1:$port/small" || true
    h0=$(heap_probe)
    coproc HEAP_IDLE { exec taskset -c "$client_cpu" timeout 180 python3 "$here/idle-conns.py" \
        127.0.0.1 "$port" "$idle_n" 2>"$work/idle-moat-heap.err"; }
    # shellcheck disable=SC2153 # HEAP_IDLE_PID is set by coproc
    local idle_pid=$HEAP_IDLE_PID in_fd=${HEAP_IDLE[0]} out_fd=${HEAP_IDLE[1]}
    started_pids+=("$idle_pid")
    if read -r -t 120 line <&"$in_fd" && [ "$line" = "handshaken $idle_n" ]; then
        sleep 1
        h1=$(heap_probe)
        { echo request >&"$out_fd"; } 2>/dev/null || true
        if read -r -t 120 line <&"$in_fd" && [ "$line" = "requested $idle_n" ]; then
            sleep 1
            h2=$(heap_probe)
        else
            err="requests: ${line:-no answer}"
        fi
        { echo quit >&"$out_fd"; } 2>/dev/null || true
    else
        err="handshakes: ${line:-no answer}"
    fi
    wait "$idle_pid" 2>/dev/null || true
    untrack "$idle_pid"
    finish "$pid"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' moat "$idle_n" "${h0:-}" "$h1" "$h2" "${err// /_}" \
        >"$work/heap.tsv"
    log "moat heap: ${h0:-?} -> ${h1:-?} (handshaken) -> ${h2:-?} bytes (requested)" \
        "for $idle_n ${err}"
}
: >"$work/heap.tsv"
if [[ " $proxies " == *" moat "* ]]; then
    moat_heap
fi

# ---- load tests --------------------------------------------------------------------------------
cat >"$work/upload.lua" <<'EOF'
-- 1 MiB POST bodies; wrk adds Content-Length.
wrk.method = "POST"
wrk.body = string.rep("u", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

printf 'round\tproxy\ttest\tunits\twall_s\tcpu_s\tclient_busy\terrors\n' >"$work/samples.tsv"
record() { # ROUND PROXY TEST UNITS ERRORS: one sample, with the last metered() figures
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$M_WALL_S" "$M_CPU_S" \
        "$M_CLIENT_BUSY" "${5:-}" >>"$work/samples.tsv"
}

# wrk against PATH with CONNS connections; units are completed requests.
run_wrk() {
    local round=$1 p=$2 test=$3 conns=$4 path=$5 dur=$6
    shift 6
    local f="$work/wrk-$p-$test-$round.txt" requests errors
    metered "${pid_of[$p]}" on_client_cpu timeout $((dur + load_slack_s)) \
        wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s "$@" "https://127.0.0.1:${port_of[$p]}$path" \
        >"$f" 2>&1
    requests=$(awk '/ requests in / {print $1}' "$f")
    errors=$(grep -E 'Non-2xx|Socket errors' "$f" | sed 's/^ *//' | tr -s ' ' '_' |
        paste -sd ';' || true)
    [ -n "$requests" ] || errors="wrk_failed:$(tail -1 "$f" | tr ' ' '_')"
    record "$round" "$p" "$test" "${requests:-0}" "$errors"
}

# hs_clients parallel `openssl s_time -new`: a fresh session every time, so every handshake is
# full (wrk and h2load would resume). With other arguments (-reuse -www /small: each client
# resumes the session of its first connection, reading a response so that TLS 1.3's ticket
# arrives) the handshakes are resumed ones. Units are completed handshakes.
handshake_clients() {
    local port=$1 prefix=$2 k pids=()
    shift 2
    local mode=("$@")
    [ ${#mode[@]} -gt 0 ] || mode=(-new)
    for ((k = 1; k <= hs_clients; k++)); do
        taskset -c "$client_cpu" timeout $((dur_s + load_slack_s)) openssl s_time \
            -connect "127.0.0.1:$port" "${mode[@]}" -time "$dur_s" >"$prefix.$k" 2>&1 &
        pids+=($!)
        started_pids+=($!)
    done
    for k in "${pids[@]}"; do
        wait "$k" || true
        untrack "$k"
    done
}

run_handshakes() { # ROUND PROXY TEST PORT [S_TIME ARGUMENTS]
    local round=$1 p=$2 test=$3 port=$4 total errors=""
    shift 4
    local prefix="$work/stime-$p-$test-$round"
    metered "${pid_of[$p]}" handshake_clients "$port" "$prefix" "$@"
    total=$(cat "$prefix".* | awk '/connections in .* real seconds/ {n += $1} END {print n + 0}')
    [ "$total" -gt 0 ] || errors="s_time_failed:$(tail -1 "$prefix.1" | tr ' ' '_')"
    record "$round" "$p" "$test" "$total" "$errors"
}

alive_or_flag() { # a proxy that died is reported once, with its log, and measured no further
    local p=$1
    kill -0 "${pid_of[$p]}" 2>/dev/null && return 0
    log "$p (pid ${pid_of[$p]}) is gone; its log:"
    tail -20 "$work/$p"*.log >&2 2>/dev/null || true
    printf 'died\t%s\n' "$p" >>"$work/meta.tsv"
    finish "${main_pid_of[$p]}"
    proxies=$(echo " $proxies " | sed "s/ $p / /" | xargs)
    return 1
}

log "warm-up: 1 s of keep-alive load per proxy"
for p in $proxies; do
    on_client_cpu timeout $((1 + load_slack_s)) wrk -t1 -c"$ka_conns" -d1s \
        "https://127.0.0.1:${port_of[$p]}/small" >/dev/null 2>&1 || true
done

# Other work on this shared machine shows here; the table prints both load averages.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_s=$SECONDS
for ((round = 1; round <= rounds; round++)); do
    # Tests interleave the proxies, and the order rotates each round, so that a noisy neighbour
    # on this shared machine hurts all of them alike.
    read -r -a order <<<"$proxies"
    shift_by=$(((round - 1) % ${#order[@]}))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for test in keepalive keepalive_lb handshakes handshakes_rsa resumed resumed12 download \
        upload; do
        for p in "${order[@]}"; do
            [[ " $proxies " == *" $p "* ]] || continue
            # Load balancing: moat against nginx with the equivalent upstream block only.
            [[ $test != keepalive_lb || $p == moat || $p == nginx ]] || continue
            log "round $round/$rounds: $test on $p (${dur_s} s)"
            case "$test" in
            keepalive) run_wrk "$round" "$p" keepalive "$ka_conns" /small "$dur_s" ;;
            keepalive_lb)
                run_wrk "$round" "$p" keepalive_lb "$ka_conns" /small "$dur_s" -H "Host: lb.test" ;;
            handshakes) run_handshakes "$round" "$p" handshakes "${port_of[$p]}" ;;
            handshakes_rsa) run_handshakes "$round" "$p" handshakes_rsa "${rsa_port_of[$p]}" ;;
            resumed) run_handshakes "$round" "$p" resumed "${port_of[$p]}" -reuse -www /small ;;
            resumed12)
                run_handshakes "$round" "$p" resumed12 "${port_of[$p]}" -reuse -www /small \
                    -tls1_2 ;;
            download) run_wrk "$round" "$p" download "$bulk_conns" /1m "$dur_s" ;;
            upload)
                run_wrk "$round" "$p" upload "$bulk_conns" /upload "$dur_s" -s "$work/upload.lua" ;;
            esac
            alive_or_flag "$p" || true
        done
    done
done
log "load tests took $((SECONDS - start_s)) s"
printf 'load\t1/5/15-minute load average %s before the load tests, %s after %s\n' \
    "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "(this run adds up to 2)" >>"$work/meta.tsv"

# ---- memory in full transfer, on freshly restarted proxies ----------------------------------------
# transfer_conns connections each receiving 1 MiB responses back to back: the peak RSS over the
# fresh process's, per connection, sampled while wrk runs. A restart first, because allocators
# keep what earlier tests freed and would hide the growth.
: >"$work/transfer.tsv"
transfer_memory() {
    local p=$1 pid=${pid_of[$1]} port=${port_of[$1]} r0 r peak
    r0=$(rss_kib "$pid")
    peak=$r0
    taskset -c "$client_cpu" timeout $((6 + load_slack_s)) wrk -t1 -c"$transfer_conns" -d6s \
        --timeout 10s "https://127.0.0.1:$port/1m" >"$work/transfer-$p.txt" 2>&1 &
    local wrk_pid=$!
    started_pids+=("$wrk_pid")
    sleep 2 # every connection handshaken and streaming
    for _ in $(seq 12); do
        r=$(rss_kib "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.25
    done
    wait "$wrk_pid" 2>/dev/null || true
    untrack "$wrk_pid"
    printf '%s\t%s\t%s\t%s\n' "$p" "$transfer_conns" "$r0" "$peak" >>"$work/transfer.tsv"
    log "$p in transfer: RSS ${r0} -> ${peak} KiB peak with $transfer_conns connections"
}
versions_kept=$versions # start_proxy appends to it
for p in $proxies; do
    finish "${main_pid_of[$p]}"
    start_proxy "$p"
    transfer_memory "$p"
done
versions=$versions_kept


# ---- mbedTLS's ceiling, on the proxies' CPU once they are stopped ------------------------------
for p in $proxies; do
    finish "${main_pid_of[$p]}"
done
finish "$backend_pid"
: >"$work/ceiling.txt"
: >"$work/ceiling-stock.txt"
for engine in "" -stock; do
    [ -x "$work/tls-ceiling$engine" ] || continue
    log "tls-ceiling$engine ${ceiling_args[*]:-}"
    taskset -c "$proxy_cpu" "$work/tls-ceiling$engine" "${ceiling_args[@]}" \
        --rsa-key "$work/rsa-key.pem" >"$work/ceiling$engine.txt"
done

printf 'versions\t%s\n' "$versions" >>"$work/meta.tsv"
{
    printf 'setup\t%s round(s) x %s s; %s keep-alive conns, %s bulk conns, ' "$rounds" "$dur_s" \
        "$ka_conns" "$bulk_conns"
    printf '%s s_time clients, %s idle conns; proxy on CPU %s, clients+backend on CPU %s; %s\n' \
        "$hs_clients" "$idle_n" "$proxy_cpu" "$client_cpu" "$(date -u +%Y-%m-%dT%H:%MZ)"
} >>"$work/meta.tsv"

if [ -n "$out" ]; then
    python3 "$here/summarize.py" "$work" | tee "$out"
    for part in samples.tsv idle.tsv heap.tsv ceiling.txt ceiling-stock.txt; do
        printf '\n## %s\n' "${part%.*}"
        cat "$work/$part"
    done >>"$out"
else
    python3 "$here/summarize.py" "$work"
fi
