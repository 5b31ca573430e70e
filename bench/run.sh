#!/usr/bin/env bash
# vllm-router benchmark: direct (client -> vllm-sim), nginx (plain reverse proxy) and vllm-router,
# measured interleaved in one run; prints one Markdown table of absolute figures and ratios.
#
#   bench/run.sh [--quick] [--out FILE]
#
# Builds nothing and installs nothing. Binaries (override with the environment):
#   VLLM_ROUTER  (default build/server/vllm-router)
#   VLLM_SIM     (default build/tools/vllm-sim)
#   SSE_LOAD     (default build/bench/sse_load)
#   NGINX, WRK   (default: found on PATH; apt-get install nginx-light wrk)
# Router arguments per case (the string {THREADS} is replaced by connections + 64):
#   ROUTER_ARGS        (default "": epoll front end)       rows a, b, c
#   ROUTER_FAIR_ARGS   (default "")                        row d (more connections than threads)
# To measure the thread-per-connection front end instead:
#   ROUTER_ARGS="--threads 1" (one event loop) ROUTER_FAIR_ARGS="--threads 2"
#   ROUTER_IDLE_ARGS   (default "": the router's defaults) row e
# Rows to run: ROWS (default "a b c d e f"; e.g. ROWS=f for the TLS row alone).
# See bench/README.md.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
OUT=""
usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

VLLM_ROUTER=${VLLM_ROUTER:-$ROOT/build/server/vllm-router}
VLLM_SIM=${VLLM_SIM:-$ROOT/build/tools/vllm-sim}
SSE_LOAD=${SSE_LOAD:-$ROOT/build/bench/sse_load}
NGINX=${NGINX:-$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)}
WRK=${WRK:-$(command -v wrk || true)}
ROUTER_ARGS=${ROUTER_ARGS-}
SIM_NICE=${SIM_NICE:-10}
SIM_CPU_SHARES=${SIM_CPU_SHARES:-0}
SIM_STREAM_IO=${SIM_STREAM_IO:-epoll}
SIM_STREAM_NICE=${SIM_STREAM_NICE:-$([[ $SIM_STREAM_IO == epoll ]] && echo 0 || echo "$SIM_NICE")}
ROUTER_FAIR_ARGS=${ROUTER_FAIR_ARGS-}
ROUTER_IDLE_ARGS=${ROUTER_IDLE_ARGS:-}
ROWS=${ROWS:-a b c d e f}
has_row() { [[ " $ROWS " == *" $1 "* ]]; }
MODEL=facebook/opt-125m

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

# ---- prerequisites -------------------------------------------------------------------------
[[ -x "$VLLM_ROUTER" ]] || die "vllm-router not found at $VLLM_ROUTER (build: cmake -S . -B build && cmake --build build -j2, or set VLLM_ROUTER)"
[[ -x "$VLLM_SIM" ]] || die "vllm-sim not found at $VLLM_SIM (build the project, or set VLLM_SIM)"
[[ -x "$SSE_LOAD" ]] || die "sse_load not found at $SSE_LOAD (build target sse_load, or: mkdir -p build/bench && g++ -std=c++20 -O2 -o build/bench/sse_load bench/sse_load.cpp; or set SSE_LOAD)"
HAVE_NGINX=1; HAVE_WRK=1
[[ -n "$NGINX" && -x "$NGINX" ]] || HAVE_NGINX=0
[[ -n "$WRK" && -x "$WRK" ]] || HAVE_WRK=0
SKIPPED=()
if (( !HAVE_NGINX || !HAVE_WRK )); then
  missing=""; (( HAVE_NGINX )) || missing+=" nginx"; (( HAVE_WRK )) || missing+=" wrk"
  if (( QUICK )); then
    log "missing:$missing -- quick mode skips the rows that need it (apt-get install nginx-light wrk)"
    (( HAVE_NGINX )) || SKIPPED+=("nginx columns (nginx not installed)")
    (( HAVE_WRK )) || SKIPPED+=("row a (wrk not installed)")
    (( HAVE_WRK && HAVE_NGINX )) || SKIPPED+=("row f (needs nginx and wrk)")
  else
    die "missing:$missing. Install with: apt-get install nginx-light wrk (or run --quick to skip those rows)"
  fi
fi

# ---- parameters ----------------------------------------------------------------------------
if (( QUICK )); then
  WRK_S=2; LAT_MS=1000; FAIR_MS=1500; A_ROUNDS=${A_ROUNDS:-1}; F_ROUNDS=${F_ROUNDS:-1}; F_WRK_S=1
  K1=100; K2=200; K2_RAMP=2000
else
  WRK_S=${WRK_S:-8}; LAT_MS=3000; FAIR_MS=3000; A_ROUNDS=${A_ROUNDS:-3}; F_ROUNDS=${F_ROUNDS:-3}; F_WRK_S=${F_WRK_S:-$WRK_S}
  K1=1000; K2=4000; K2_RAMP=2000
fi
TOKENS=50; ITL=20
STREAM_LIMIT_MS=60000
FAIR_CONNS=64

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if (( NOFILE < 2 * K2 + 200 )); then
  log "warning: ulimit -n is $NOFILE; K=$K2 streams need about $((2 * K2 + 200)) descriptors per proxy"
fi

TMP=$(mktemp -d /tmp/vllm-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  remove_sim_cgroup
  if [[ -n "${BENCH_KEEP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILED=0
T_START=$EPOCHREALTIME

# ---- a quiet machine ----------------------------------------------------------------------
# Full mode waits (up to QUIET_WAIT_S per section, default 20) until the machine was under
# QUIET_PCT % busy (default 25, all CPUs) for one second, so other work does not skew a section.
QUIET_WAIT_S=${QUIET_WAIT_S:-20}; QUIET_PCT=${QUIET_PCT:-25}
busy_pct() {  # CPU busy % over 1 s, all CPUs
  local a b
  read -r -a a < <(head -1 /proc/stat)
  sleep 1
  read -r -a b < <(head -1 /proc/stat)
  local ta=0 tb=0 i
  for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) tot=$((tb - ta))
  (( tot > 0 )) && echo $(( 100 * (tot - idle) / tot )) || echo 0
}
BUSY_SEEN=()
wait_quiet() {
  (( QUICK )) && return 0
  local t0=$SECONDS b
  while :; do
    b=$(busy_pct)
    (( b <= QUIET_PCT )) && break
    if (( SECONDS - t0 >= QUIET_WAIT_S )); then
      log "machine still ${b}% busy after ${QUIET_WAIT_S} s: measuring anyway (other load skews this section)"
      break
    fi
  done
  BUSY_SEEN+=("$b")
}

# ---- process helpers -----------------------------------------------------------------------
forget_pid() {
  local p=$1 i
  for i in "${!PIDS[@]}"; do [[ "${PIDS[$i]}" == "$p" ]] && unset 'PIDS[i]'; done
}
stop_pid() {
  local p=$1
  [[ -z "$p" ]] && return
  kill "$p" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  forget_pid "$p"
}
# start_listening NAME CMD... : starts CMD, waits for "... listening on http(s)://HOST:PORT";
# sets LPID and LPORT.
start_listening() {
  local name=$1; shift
  local out="$TMP/$name.out" err="$TMP/$name.err"
  : >"$out"
  "$@" >"$out" 2>"$err" &
  LPID=$!
  PIDS+=("$LPID")
  local line=""
  for _ in $(seq 400); do
    line=$(grep -m1 -E 'listening on https?://' "$out" 2>/dev/null || true)
    [[ -n "$line" ]] && break
    kill -0 "$LPID" 2>/dev/null || break
    sleep 0.025
  done
  if [[ -z "$line" ]]; then
    log "$name did not start: $(tail -3 "$err" 2>/dev/null)"
    return 1
  fi
  LPORT=${line##*:}
  LPORT=${LPORT%%[!0-9]*}
}
# The engines stand in for GPU servers on other machines: on this shared box they run at a lower
# priority (SIM_NICE), the same for direct, nginx and router, so that they do not starve the
# proxy under test of CPU. nice is per thread, though, and the thread-per-connection sim spends
# ~30 us of CPU (mostly context switches) per streamed token: at 4,000 streams its threads
# outweigh a 2-thread proxy however nice each one is. So the stream cases run the sim's event
# loop (`--io epoll`, SIM_STREAM_IO; same bytes on the wire), at SIM_STREAM_NICE (default 0 for
# the event loop: it is one busy thread, and at nice 10 it would get ~3 % of a CPU beside a busy
# proxy, which made the engine the bottleneck of the proxied columns). They can also put the sim in a CPU
# cgroup of its own whose threads together weigh SIM_CPU_SHARES (1024: one ordinary thread;
# default 0: off); that keeps the proxy responsive but makes the engine the bottleneck. Needs
# root and a cgroup cpu controller (v1 `cpu.shares` or v2 `cpu.weight`).
SIM_CG=""
SIM_CG_NOTE=""
setup_sim_cgroup() {
  (( SIM_CPU_SHARES > 0 )) || { SIM_CG_NOTE="off (SIM_CPU_SHARES=0)"; return; }
  local d
  if [[ -f /sys/fs/cgroup/cpu/cpu.shares ]]; then
    d=/sys/fs/cgroup/cpu/vllm-bench-$$
    mkdir -p "$d" 2>/dev/null && echo "$SIM_CPU_SHARES" >"$d/cpu.shares" 2>/dev/null && SIM_CG=$d
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    d=/sys/fs/cgroup/vllm-bench-$$
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
    # v2 weight 100 is what v1 shares 1024 is: the default of one ordinary process
    mkdir -p "$d" 2>/dev/null && echo $(( SIM_CPU_SHARES * 100 / 1024 > 0 ? SIM_CPU_SHARES * 100 / 1024 : 1 )) >"$d/cpu.weight" 2>/dev/null && SIM_CG=$d
  fi
  if [[ -n "$SIM_CG" ]]; then
    SIM_CG_NOTE="$SIM_CG (weight $SIM_CPU_SHARES of 1024)"
  else
    SIM_CG_NOTE="not available (no writable cgroup cpu controller): nice only"
    log "stream cases: $SIM_CG_NOTE"
  fi
}
remove_sim_cgroup() { [[ -n "$SIM_CG" ]] && rmdir "$SIM_CG" 2>/dev/null; SIM_CG=""; }
start_sim() {  # start_sim THREADS [streams]
  local -a cmd=(nice -n "$SIM_NICE" "$VLLM_SIM" --port 0 --threads "$1")
  if [[ "${2:-}" == streams ]]; then
    cmd=(nice -n "$SIM_STREAM_NICE" "$VLLM_SIM" --port 0 --threads "$1" --io "$SIM_STREAM_IO")
    # shellcheck disable=SC2016
    [[ -n "$SIM_CG" ]] && cmd=(bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$SIM_CG" "${cmd[@]}")
  fi
  start_listening sim "${cmd[@]}" || die "vllm-sim failed to start"
  SIM_PID=$LPID; SIM_PORT=$LPORT
}
start_router() {  # start_router ARGS-STRING THREADS
  local args=${1//\{THREADS\}/$2}
  # shellcheck disable=SC2086
  start_listening router "$VLLM_ROUTER" --host 127.0.0.1 --port 0 \
    --model "$MODEL=http://127.0.0.1:$SIM_PORT" $args || die "vllm-router failed to start (args: $args)"
  ROUTER_PID=$LPID; ROUTER_PORT=$LPORT
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_nginx() {  # start_nginx [tls]: with tls, HTTPS with row f's certificate
  NGINX_PID=""; NGINX_PORT=""; NGINX_PIDS=""
  (( HAVE_NGINX )) || return 0
  local d="$TMP/nginx" conn=$(( NOFILE > 1024 ? NOFILE - 100 : 1024 )) user="" ssl="" tls=""
  if [[ "${1:-}" == tls ]]; then
    ssl=" ssl"
    tls="ssl_certificate $TLS_CERT; ssl_certificate_key $TLS_KEY; ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  mkdir -p "$d"
  [[ $EUID -eq 0 ]] && user="user root;"
  local try port
  for try in 1 2 3 4 5 6 7 8; do
    port=$(( 20000 + (RANDOM % 10000) ))
    port_open "$port" && continue
    cat >"$d/nginx.conf" <<EOF
$user
worker_processes 2;
worker_rlimit_nofile $NOFILE;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $conn; }
http {
  access_log off;
  client_body_temp_path $d/client_body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  keepalive_requests 100000;
  upstream sim {
    server 127.0.0.1:$SIM_PORT;
    keepalive 256;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:$port$ssl backlog=4096;
    $tls
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
EOF
    "$NGINX" -c "$d/nginx.conf" -p "$d" -e "$d/error.log" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    for _ in $(seq 200); do
      port_open "$port" && break
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.025
    done
    if port_open "$port" && kill -0 "$NGINX_PID" 2>/dev/null; then
      NGINX_PORT=$port
      # master + workers, for CPU and RSS
      local kids=""
      for _ in $(seq 40); do
        kids=$(cat /proc/"$NGINX_PID"/task/*/children 2>/dev/null | tr -s ' \n' ' ')
        [[ $(wc -w <<<"$kids") -ge 2 ]] && break
        sleep 0.025
      done
      NGINX_PIDS=$(echo "$NGINX_PID $kids" | xargs | tr ' ' ',')
      return 0
    fi
    stop_pid "$NGINX_PID"
    NGINX_PID=""
  done
  die "nginx failed to start: $(tail -3 "$d/error.log" "$TMP/nginx.out" 2>/dev/null)"
}
# A fresh stack for one section: sim, nginx in front of it, router in front of it.
start_stack() {  # start_stack SIM_THREADS ROUTER_ARGS ROUTER_THREADS
  start_sim "$1"
  start_nginx
  start_router "$2" "$3"
}
stop_stack() {
  stop_pid "${ROUTER_PID:-}"; ROUTER_PID=""
  stop_pid "${NGINX_PID:-}"; NGINX_PID=""
  stop_pid "${SIM_PID:-}"; SIM_PID=""
}
port_of() { case $1 in direct) echo "$SIM_PORT" ;; nginx) echo "$NGINX_PORT" ;; router) echo "$ROUTER_PORT" ;; esac; }
pids_of() { case $1 in direct) echo "$SIM_PID" ;; nginx) echo "$NGINX_PIDS" ;; router) echo "$ROUTER_PID" ;; esac; }
systems() { if (( HAVE_NGINX )); then echo direct nginx router; else echo direct router; fi; }

cpu_ticks() {  # cpu_ticks PID[,PID...] -> utime+stime in clock ticks
  local total=0 p line rest
  for p in ${1//,/ }; do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${line##*) }
    read -r -a f <<<"$rest"
    # rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# R[key]=value store; parse "RESULT k=v ..." lines into R[prefix.k]
declare -A R
load_result() {  # load_result PREFIX FILE
  local kvs k v
  kvs=$(grep -m1 '^RESULT ' "$2") || { log "no RESULT in $2: $(tail -2 "${2%.out}.err" 2>/dev/null)"; FAILED=1; return 1; }
  for kv in ${kvs#RESULT }; do
    k=${kv%%=*}; v=${kv#*=}
    R["$1.$k"]=$v
  done
}
# run_load PREFIX ARGS... : runs sse_load, stores RESULT under PREFIX
run_load() {
  local prefix=$1; shift
  local f="$TMP/load-${prefix//[^a-zA-Z0-9]/_}"
  "$SSE_LOAD" "$@" >"$f.out" 2>"$f.err"
  load_result "$prefix" "$f.out"
}
g() { echo "${R[$1]:-}"; }  # get

# ---- a. throughput: wrk, 64 keep-alive connections, ~1 KB non-streamed chat completion ------
to_ms() {  # wrk latency "568.00us" / "1.23ms" / "1.02s" -> ms
  awk -v x="$1" 'BEGIN{ if (x ~ /us$/) {sub(/us$/,"",x); printf "%.3f", x/1000}
    else if (x ~ /ms$/) {sub(/ms$/,"",x); printf "%.3f", x}
    else if (x ~ /m$/) {sub(/m$/,"",x); printf "%.3f", x*60000}
    else if (x ~ /s$/) {sub(/s$/,"",x); printf "%.3f", x*1000} else printf "%s", x }'
}
# Each measurement gets a fresh engine with only the system under test in front of it: an engine
# shared across systems still holds the previous system's keep-alive connections (and their
# threads) while the next one is measured, which cost the later systems up to 15 % in trials.
# A_ROUNDS rounds, the order of the systems rotated each round; the table gives each system's
# median round and the ratio of the medians.
start_one() {  # start_one SYSTEM: a fresh engine and, in front of it, only SYSTEM
  start_sim 512
  case $1 in
    nginx) start_nginx ;;
    router) start_router "$ROUTER_ARGS" $((64 + 64)) ;;
  esac
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'; }
# wrk_result FILE PREFIX CPU_TICKS: a wrk run's requests/s, requests, p50/p99 ms, errors
# (non-2xx + socket) and the proxy's CPU µs per request into R[PREFIX.*]; false when it failed.
wrk_result() {
  local f=$1 p=$2 non2xx sockerr
  R[$p.rps]=$(awk '/^Requests\/sec:/{print $2}' "$f")
  R[$p.reqs]=$(awk '/requests in/{print $1}' "$f")
  R[$p.p50]=$(to_ms "$(awk '$1=="50%"{print $2}' "$f")")
  R[$p.p99]=$(to_ms "$(awk '$1=="99%"{print $2}' "$f")")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$f"); non2xx=${non2xx:-0}
  sockerr=$(awk -F'[ ,]+' '/Socket errors/{print $5+$7+$9+$11}' "$f"); sockerr=${sockerr:-0}
  R[$p.errors]=$(( non2xx + sockerr ))
  [[ -n "$(g $p.rps)" && -n "$(g $p.reqs)" && "$(g $p.reqs)" != 0 ]] || return 1
  R[$p.cpu_us]=$(awk -v t="$3" -v hz="$CLK_TCK" -v n="$(g $p.reqs)" 'BEGIN{printf "%.1f", t/hz*1e6/n}')
}
write_post_lua() {  # the ~1 KB non-streamed chat completion of rows a and f, as a wrk script
  local body content
  content=$(printf 'hello world bench router stream %.0s' $(seq 30) | head -c 900)
  body="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"$content\"}],\"max_tokens\":16,\"stream\":false}"
  cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$body]]
EOF
  R[a.body_bytes]=${#body}
}
row_a() {
  wait_quiet
  log "a. throughput: wrk -t1 -c64 -d${WRK_S}s, ~1 KB non-streamed chat completion, $A_ROUNDS round(s)"
  write_post_lua
  local -a order
  read -r -a order <<<"$(systems)"
  local round s port pids c0 c1 s0 s1 f i n=${#order[@]}
  for (( round = 1; round <= A_ROUNDS; round++ )); do
    for (( i = 0; i < n; i++ )); do
      s=${order[$(( (i + round - 1) % n ))]}
      start_one "$s"
      port=$(port_of "$s"); pids=$(pids_of "$s")
      f="$TMP/wrk-$s-$round.txt"
      # warm-up: connections, pools, the engine's threads
      "$WRK" -t1 -c64 -d1s -s "$TMP/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null 2>&1
      c0=$(cpu_ticks "$pids"); s0=$(cpu_ticks "$SIM_PID")
      "$WRK" -t1 -c64 -d"${WRK_S}s" --latency -s "$TMP/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >"$f" 2>&1
      c1=$(cpu_ticks "$pids"); s1=$(cpu_ticks "$SIM_PID")
      stop_stack
      wrk_result "$f" "a.$s.r$round" "$((c1 - c0))" || { log "wrk against $s failed: $(tail -3 "$f")"; FAILED=1; continue; }
      local rps=$(g a.$s.r$round.rps)
      R[a.$s.rounds]="$(g a.$s.rounds) $rps"
      R[a.$s.errors]=$(( ${R[a.$s.errors]:-0} + $(g a.$s.r$round.errors) ))
      R[a.$s.r$round.sim_us]=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$(g a.$s.r$round.reqs)" 'BEGIN{printf "%.1f", t/hz*1e6/n}')
      log "   round $round, $s: $rps req/s, p50 $(g a.$s.r$round.p50) ms, p99 $(g a.$s.r$round.p99) ms, errors $(g a.$s.r$round.errors)"
    done
  done
  # Each system's median round gives its row; the ratio is of the medians.
  local med r
  for s in "${order[@]}"; do
    med=$(g a.$s.rounds | median)
    [[ -z "$med" ]] && continue
    for (( r = 1; r <= A_ROUNDS; r++ )); do
      [[ "$(g a.$s.r$r.rps)" == "$med" ]] || continue
      R[a.$s.rps]=$med; R[a.$s.p50]=$(g a.$s.r$r.p50); R[a.$s.p99]=$(g a.$s.r$r.p99)
      R[a.$s.cpu_us]=$(g a.$s.r$r.cpu_us); R[a.$s.sim_us]=$(g a.$s.r$r.sim_us)
      break
    done
  done
}

# ---- f. TLS termination: the router and nginx with the same certificate ---------------------
# Each round starts a fresh engine per system with only that system in front of it (as row a),
# the order of the two alternated; keep-alive load first, then a new connection per request
# (`Connection: close`: a full handshake each, wrk does not resume sessions).
row_f() {
  wait_quiet
  log "f. TLS termination: wrk -t1 -c64 -d${F_WRK_S}s over https, keep-alive and a connection per request, $F_ROUNDS round(s)"
  [[ -f "$TMP/post.lua" ]] || write_post_lua
  TLS_CERT="$TMP/tls.pem"; TLS_KEY="$TMP/tls.key"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TLS_KEY" -out "$TLS_CERT" 2>"$TMP/openssl.err" ||
    { log "openssl could not make a certificate: $(tail -2 "$TMP/openssl.err")"; FAILED=1; return; }
  local round i s mode f c0 c1 url
  local -a order=(nginx router)
  for (( round = 1; round <= F_ROUNDS; round++ )); do
    for (( i = 0; i < 2; i++ )); do
      s=${order[$(( (i + round - 1) % 2 ))]}
      start_sim 512
      if [[ $s == nginx ]]; then start_nginx tls; else start_router "$ROUTER_ARGS --tls-cert $TLS_CERT --tls-key $TLS_KEY" 128; fi
      url="https://127.0.0.1:$(port_of "$s")/v1/chat/completions"
      "$WRK" -t1 -c64 -d1s -s "$TMP/post.lua" "$url" >/dev/null 2>&1  # warm-up
      for mode in ka new; do
        f="$TMP/wrk-f-$s-$mode-$round.txt"
        c0=$(cpu_ticks "$(pids_of "$s")")
        if [[ $mode == ka ]]; then
          "$WRK" -t1 -c64 -d"${F_WRK_S}s" --latency -s "$TMP/post.lua" "$url" >"$f" 2>&1
        else
          "$WRK" -t1 -c64 -d"${F_WRK_S}s" --latency -H "Connection: close" -s "$TMP/post.lua" "$url" >"$f" 2>&1
        fi
        c1=$(cpu_ticks "$(pids_of "$s")")
        wrk_result "$f" "f.$mode.$s.r$round" "$((c1 - c0))" || { log "wrk over https against $s failed: $(tail -3 "$f")"; FAILED=1; continue; }
        R[f.$mode.$s.rounds]="$(g f.$mode.$s.rounds) $(g f.$mode.$s.r$round.rps)"
        log "   round $round, $s, $mode: $(g f.$mode.$s.r$round.rps) req/s, $(g f.$mode.$s.r$round.cpu_us) µs CPU per request, errors $(g f.$mode.$s.r$round.errors)"
      done
      stop_stack
    done
  done
  local r med
  for mode in ka new; do
    for s in nginx router; do
      med=$(g f.$mode.$s.rounds | median)
      [[ -z "$med" ]] && continue
      for (( r = 1; r <= F_ROUNDS; r++ )); do
        [[ "$(g f.$mode.$s.r$r.rps)" == "$med" ]] || continue
        R[f.$mode.$s.rps]=$med; R[f.$mode.$s.cpu_us]=$(g f.$mode.$s.r$r.cpu_us); R[f.$mode.$s.errors]=$(g f.$mode.$s.r$r.errors)
        R[f.$mode.$s.p50]=$(g f.$mode.$s.r$r.p50); R[f.$mode.$s.p99]=$(g f.$mode.$s.r$r.p99)
        break
      done
    done
  done
}

# ---- b. added latency at one connection --------------------------------------------------
row_b() {
  wait_quiet
  log "b. latency at one connection: sequential keep-alive requests for ${LAT_MS} ms"
  start_stack 512 "$ROUTER_ARGS" $((1 + 64))
  local s
  for s in $(systems); do
    # warm-up (connections, pools), then the measured run
    "$SSE_LOAD" --port "$(port_of "$s")" -k 1 --no-stream --tokens 16 --duration-ms 200 >/dev/null 2>&1
    run_load "b.$s" --port "$(port_of "$s")" -k 1 --no-stream --tokens 16 --duration-ms "$LAT_MS" \
      --time-limit-ms $((LAT_MS + 5000))
    log "   $s: p50 $(g b.$s.lat_p50_us) us, p99 $(g b.$s.lat_p99_us) us ($(g b.$s.ok) requests)"
  done
  stop_stack
}

# ---- c. concurrent streams ---------------------------------------------------------------
run_streams() {  # run_streams TAG K RAMP_MS
  local tag=$1 k=$2 ramp=$3 s port probe_pid cprobe_pid
  log "c. $k streams ($([[ $ramp -gt 0 ]] && echo "arriving over $ramp ms" || echo burst)), $TOKENS tokens $ITL ms apart"
  for s in $(systems); do
    wait_quiet
    start_sim $((k + 200)) streams
    [[ $s == nginx ]] && start_nginx
    [[ $s == router ]] && start_router "$ROUTER_ARGS" $((k + 64))
    port=$(port_of "$s")
    # /health probe: 5 sequential GETs on new connections, 100 ms apart, once the arrivals are in
    "$SSE_LOAD" --port "$port" --get --path /health -k 1 --requests 5 --interval-ms 100 --new-conn \
      --delay-ms $((ramp + 300)) --time-limit-ms 30000 >"$TMP/probe-$tag-$s.out" 2>"$TMP/probe-$tag-$s.err" &
    probe_pid=$!
    PIDS+=("$probe_pid")
    # and a short non-streamed completion, the other kind of request that must not wait behind streams
    "$SSE_LOAD" --port "$port" --no-stream --tokens 1 -k 1 --requests 5 --interval-ms 100 --new-conn \
      --delay-ms $((ramp + 350)) --time-limit-ms 30000 >"$TMP/cprobe-$tag-$s.out" 2>"$TMP/cprobe-$tag-$s.err" &
    cprobe_pid=$!
    PIDS+=("$cprobe_pid")
    run_load "$tag.$s" --port "$port" -k "$k" --ramp-ms "$ramp" --tokens "$TOKENS" --itl-ms "$ITL" --ttft-ms 0 \
      --time-limit-ms "$STREAM_LIMIT_MS" --watch "$(pids_of "$s")"
    wait "$probe_pid"; forget_pid "$probe_pid"
    wait "$cprobe_pid"; forget_pid "$cprobe_pid"
    load_result "$tag.$s.probe" "$TMP/probe-$tag-$s.out"
    load_result "$tag.$s.cprobe" "$TMP/cprobe-$tag-$s.out"
    log "   $s: errors $(g $tag.$s.errors) ($(g $tag.$s.error_kinds)), TTFT p50/p99 $(g $tag.$s.ttft_p50_ms)/$(g $tag.$s.ttft_p99_ms) ms, stream p50/p99 $(g $tag.$s.dur_p50_ms)/$(g $tag.$s.dur_p99_ms) ms, CPU $(g $tag.$s.w_cpu_pct)%, peak RSS $(( $(g $tag.$s.w_rss_peak_kb) / 1024 )) MB, threads $(g $tag.$s.w_threads_peak), /health max $(g $tag.$s.probe.lat_max_us) us"
    stop_stack
    sleep 0.5
  done
}

# ---- d. fairness: more keep-alive connections than router threads ----------------------
row_d() {
  wait_quiet
  log "d. fairness: $FAIR_CONNS keep-alive connections, router ${ROUTER_FAIR_ARGS}, ${FAIR_MS} ms"
  start_stack 512 "$ROUTER_FAIR_ARGS" "$FAIR_CONNS"
  local s
  for s in $(systems); do
    [[ $s == direct ]] && continue
    run_load "d.$s" --port "$(port_of "$s")" -k "$FAIR_CONNS" --no-stream --tokens 16 --body-bytes 256 \
      --duration-ms "$FAIR_MS" --time-limit-ms $((FAIR_MS + 1000))
    log "   $s: per connection min/median/max $(g d.$s.per_conn_min)/$(g d.$s.per_conn_p50)/$(g d.$s.per_conn_max), $(g d.$s.per_conn_zero) starved, Jain index $(g d.$s.jain); counts: $(grep -m1 '^per-connection' "$TMP/load-d_$s.err" | cut -d: -f2-)"
  done
  stop_stack
}

# ---- e. idle RSS and start-up time -------------------------------------------------------
row_e() {
  wait_quiet
  log "e. router start-up (best of 5) and idle RSS, args: '${ROUTER_IDLE_ARGS}'"
  start_sim 64
  local best="" i t0 t1 ms pid line fifo="$TMP/startup.fifo" rss=""
  mkfifo "$fifo"
  for i in 1 2 3 4 5; do
    exec {fd}<>"$fifo"
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086
    "$VLLM_ROUTER" --host 127.0.0.1 --port 0 --model "$MODEL=http://127.0.0.1:$SIM_PORT" $ROUTER_IDLE_ARGS \
      >"$fifo" 2>>"$TMP/startup.err" &
    pid=$!
    PIDS+=("$pid")
    line=""
    IFS= read -r -t 10 -u "$fd" line
    t1=$EPOCHREALTIME
    if [[ "$line" == *"listening on http://"* ]]; then
      ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)*1000}')
      if [[ -z "$best" ]] || awk -v a="$ms" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$ms; fi
      if [[ $i -eq 5 ]]; then
        sleep 1
        rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
        R[e.threads]=$(awk '/^Threads:/{print $2}' "/proc/$pid/status")
      fi
    else
      log "router start $i failed: $(tail -2 "$TMP/startup.err")"; FAILED=1
    fi
    stop_pid "$pid"
    exec {fd}>&-
  done
  R[e.startup_ms]=$best
  R[e.idle_rss_kb]=$rss
  stop_pid "$SIM_PID"; SIM_PID=""
  log "   start-up $best ms (best of 5), idle RSS $((${rss:-0} / 1024)) MB, ${R[e.threads]:-?} threads"
}

# ---- run ---------------------------------------------------------------------------------
log "mode: $([[ $QUICK == 1 ]] && echo quick || echo full); router args: '$ROUTER_ARGS'; tmp: $TMP"
if has_row a && (( HAVE_WRK )); then row_a; fi
if has_row b; then row_b; fi
if has_row c; then
  (( QUICK )) || setup_sim_cgroup
  run_streams c1 "$K1" 0
  run_streams c2 "$K2" "$K2_RAMP"
fi
if has_row d; then row_d; fi
if has_row e; then row_e; fi
if has_row f && (( HAVE_WRK && HAVE_NGINX )); then row_f; fi

# ---- table -------------------------------------------------------------------------------
fmt() { [[ -z "$1" || "$1" == "-1.0" || "$1" == "-1.00" ]] && echo "—" || echo "$1"; }
calc() { awk "BEGIN{ $1 }" 2>/dev/null; }  # calc 'printf ...'
num_ok() { [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
holds() { if [[ -z "$1" ]]; then echo "n/a"; elif [[ "$1" == 1 ]]; then echo "**yes**"; else echo "**NO**"; fi; }
TABLE="$TMP/table.md"
{
  echo "| # | measure | direct | nginx | vllm-router | router vs nginx | target | holds |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  if has_row a && (( HAVE_WRK )); then
    rd=$(g a.direct.rps); rn=$(g a.nginx.rps); rr=$(g a.router.rps)
    ratio=""; ok=""
    if num_ok "$rn" && num_ok "$rr"; then
      ratio=$(calc "printf \"%.2fx\", $rr/$rn"); ok=$(calc "print ($rr >= 0.9*$rn) ? 1 : 0")
    fi
    rel() { num_ok "$2" && num_ok "$1" && calc "printf \" (%.2fx direct)\", $1/$2"; }
    echo "| a | req/s, 64 conns, ${R[a.body_bytes]} B body, ${WRK_S} s (median of $A_ROUNDS) | $(fmt "$rd") | $(fmt "$rn")$(rel "$rn" "$rd") | $(fmt "$rr")$(rel "$rr" "$rd") | $(fmt "$ratio") | ≥ 0.90x nginx | $(holds "$ok") |"
    if (( A_ROUNDS > 1 )); then
      rounds() { local r out=""; for (( r = 1; r <= A_ROUNDS; r++ )); do out+="${out:+ / }$(fmt "$(g a.$1.r$r.rps)")"; done; echo "$out"; }
      rratio() {
        local r out="" x y
        for (( r = 1; r <= A_ROUNDS; r++ )); do
          x=$(g a.router.r$r.rps); y=$(g a.nginx.r$r.rps)
          out+="${out:+ / }$(num_ok "$x" && num_ok "$y" && calc "printf \"%.2fx\", $x/$y")"
        done
        echo "$out"
      }
      echo "| a | req/s by round (fresh engine each; order rotated) | $(rounds direct) | $(rounds nginx) | $(rounds router) | $(rratio) | | |"
    fi
    echo "| a | latency p50 / p99 ms | $(fmt "$(g a.direct.p50)") / $(fmt "$(g a.direct.p99)") | $(fmt "$(g a.nginx.p50)") / $(fmt "$(g a.nginx.p99)") | $(fmt "$(g a.router.p50)") / $(fmt "$(g a.router.p99)") | | | |"
    cn=$(g a.nginx.cpu_us); cr=$(g a.router.cpu_us); cratio=""
    num_ok "$cn" && num_ok "$cr" && [[ "$cn" != 0.0 ]] && cratio=$(calc "printf \"%.2fx\", $cr/$cn")
    echo "| a | CPU µs per request (proxy; direct: the sim) | $(fmt "$(g a.direct.cpu_us)") | $(fmt "$cn") | $(fmt "$cr") | $(fmt "$cratio") | | |"
    echo "| a | errors (non-2xx + socket) | $(fmt "$(g a.direct.errors)") | $(fmt "$(g a.nginx.errors)") | $(fmt "$(g a.router.errors)") | | 0 | |"
  fi
  if has_row b; then
  d50=$(g b.direct.lat_p50_us); d99=$(g b.direct.lat_p99_us)
  add() { num_ok "$1" && num_ok "$2" && calc "printf \"%+.0f\", $1-$2"; }
  n50=$(add "$(g b.nginx.lat_p50_us)" "$d50"); n99=$(add "$(g b.nginx.lat_p99_us)" "$d99")
  r50=$(add "$(g b.router.lat_p50_us)" "$d50"); r99=$(add "$(g b.router.lat_p99_us)" "$d99")
  ok=""; num_ok "${r50#+}" && ok=$(calc "print (${r50#+} <= 60) ? 1 : 0")
  echo "| b | 1 conn, sequential: p50 / p99 µs | $(fmt "$d50") / $(fmt "$d99") | $(fmt "$(g b.nginx.lat_p50_us)") / $(fmt "$(g b.nginx.lat_p99_us)") | $(fmt "$(g b.router.lat_p50_us)") / $(fmt "$(g b.router.lat_p99_us)") | | | |"
  echo "| b | added over direct: p50 / p99 µs | 0 / 0 | $(fmt "$n50") / $(fmt "$n99") | $(fmt "$r50") / $(fmt "$r99") | | router p50 ≤ 60 µs | $(holds "$ok") |"
  fi
  has_row c && for tag in c1 c2; do
    if [[ $tag == c1 ]]; then k=$K1; what="K=$K1 burst"; else k=$K2; what="K=$K2 over ${K2_RAMP} ms"; fi
    cell() {  # cell SYSTEM EXPR-KIND
      local s=$1 p="$tag.$1"
      case $2 in
        err) [[ -n "$(g $p.errors)" ]] && { echo -n "$(g $p.errors)"; [[ "$(g $p.error_kinds)" != "-" ]] && echo -n " ($(g $p.error_kinds))"; } ;;
        ttft) [[ -n "$(g $p.ttft_p50_ms)" ]] && echo -n "$(fmt "$(g $p.ttft_p50_ms)") / $(fmt "$(g $p.ttft_p99_ms)")" ;;
        dur) [[ -n "$(g $p.dur_p50_ms)" ]] && echo -n "$(fmt "$(g $p.dur_p50_ms)") / $(fmt "$(g $p.dur_p99_ms)")" ;;
        span) [[ -n "$(g $p.span_p50_ms)" ]] && echo -n "$(fmt "$(g $p.span_p1_ms)") / $(fmt "$(g $p.span_p50_ms)")" ;;
        ev) [[ -n "$(g $p.events_min)" ]] && echo -n "$(fmt "$(g $p.events_min)") / $(fmt "$(g $p.events_p50)") / $(fmt "$(g $p.events_max)")" ;;
        cpu) num_ok "$(g $p.w_cpu_s)" && num_ok "$(g $p.ok)" && [[ "$(g $p.ok)" != 0 ]] && \
               calc "printf \"%.0f%% / %.1f\", $(g $p.w_cpu_pct), $(g $p.w_cpu_s)*1e6/($(g $p.ok)*$(g $p.events_p50))" ;;
        rss) num_ok "$(g $p.w_rss_peak_kb)" && \
               calc "printf \"%.1f (%.1f) / %.1f\", $(g $p.w_rss_peak_kb)/1024, $(g $p.w_rss_start_kb)/1024, ($(g $p.w_rss_peak_kb)-$(g $p.w_rss_start_kb))/$k" ;;
        thr) [[ -n "$(g $p.w_threads_peak)" ]] && echo -n "$(g $p.w_threads_peak)" ;;
        probe) num_ok "$(g $p.probe.lat_p50_us)" && calc "printf \"%.1f / %.1f\", $(g $p.probe.lat_p50_us)/1000, $(g $p.probe.lat_max_us)/1000" ;;
        cprobe) num_ok "$(g $p.cprobe.lat_p50_us)" && calc "printf \"%.1f / %.1f\", $(g $p.cprobe.lat_p50_us)/1000, $(g $p.cprobe.lat_max_us)/1000" ;;
      esac
    }
    c() { local v; v=$(cell "$@"); [[ -z "$v" ]] && v="—"; echo -n "$v"; }
    re=$(g $tag.router.errors); ok=""; [[ -n "$re" ]] && ok=$([[ "$re" == 0 ]] && echo 1 || echo 0)
    echo "| c | $what: errors | $(c direct err) | $(c nginx err) | $(c router err) | | 0 | $(holds "$ok") |"
    tn=$(g $tag.nginx.ttft_p99_ms); tr=$(g $tag.router.ttft_p99_ms); diff=""; ok=""
    if num_ok "$tn" && num_ok "$tr" && [[ "$tn" != -1.0 && "$tr" != -1.0 ]]; then
      diff=$(calc "printf \"p99 %+.0f ms\", $tr-$tn"); ok=$(calc "print ($tr-$tn <= 100) ? 1 : 0")
    fi
    echo "| c | $what: TTFT p50 / p99 ms | $(c direct ttft) | $(c nginx ttft) | $(c router ttft) | $(fmt "$diff") | router p99 ≤ nginx + 100 ms | $(holds "$ok") |"
    echo "| c | $what: stream duration p50 / p99 ms (ideal $((TOKENS * ITL - ITL))) | $(c direct dur) | $(c nginx dur) | $(c router dur) | | | |"
    echo "| c | $what: first byte → end of stream p1 / p50 ms (relayed as generated: ~$((TOKENS * ITL - ITL))) | $(c direct span) | $(c nginx span) | $(c router span) | | | |"
    echo "| c | $what: SSE events per stream min / p50 / max (expect $((TOKENS + 2))) | $(c direct ev) | $(c nginx ev) | $(c router ev) | | | |"
    echo "| c | $what: CPU % of a core / µs per event (direct: the sim) | $(c direct cpu) | $(c nginx cpu) | $(c router cpu) | | close to nginx | |"
    rk=""; ok=""
    if num_ok "$(g $tag.router.w_rss_peak_kb)"; then
      rk=$(calc "printf \"%.1f\", ($(g $tag.router.w_rss_peak_kb)-$(g $tag.router.w_rss_start_kb))/$k")
      ok=$(calc "print ($rk <= 64) ? 1 : 0")
    fi
    echo "| c | $what: peak RSS MB (at start) / KiB per stream | $(c direct rss) | $(c nginx rss) | $(c router rss) | | ≤ 64 KiB/stream | $(holds "$ok") |"
    echo "| c | $what: threads (peak) | $(c direct thr) | $(c nginx thr) | $(c router thr) | | | |"
    pm=$(g $tag.router.probe.lat_max_us); ok=""
    num_ok "$pm" && [[ "$pm" != -1.0 ]] && ok=$(calc "print ($pm < 20000) ? 1 : 0")
    [[ "$(g $tag.router.probe.ok)" == 5 ]] || { [[ -n "$(g $tag.router.probe.ok)" ]] && ok=0; }
    echo "| c | $what: /health probe during streams, median / max ms (5 GETs) | $(c direct probe) | $(c nginx probe) | $(c router probe) | | router < 20 ms | $(holds "$ok") |"
    pm=$(g $tag.router.cprobe.lat_max_us); ok=""
    num_ok "$pm" && [[ "$pm" != -1.0 ]] && ok=$(calc "print ($pm < 20000) ? 1 : 0")
    [[ "$(g $tag.router.cprobe.ok)" == 5 ]] || { [[ -n "$(g $tag.router.cprobe.ok)" ]] && ok=0; }
    echo "| c | $what: non-streamed completion during streams, median / max ms (5 requests) | $(c direct cprobe) | $(c nginx cprobe) | $(c router cprobe) | | router < 20 ms | $(holds "$ok") |"
  done
  if has_row d; then
  dcell() { local p=d.$1; [[ -n "$(g $p.per_conn_min)" ]] && echo -n "$(g $p.per_conn_min) / $(g $p.per_conn_p50) / $(g $p.per_conn_max) ($(g $p.per_conn_zero) at 0; Jain $(g $p.jain); $(g $p.ok) in all; longest wait $(calc "printf \"%.0f\", $(g $p.lat_max_us)/1000") ms)" || echo -n "—"; }
  ok=""; [[ -n "$(g d.router.per_conn_zero)" ]] && ok=$([[ "$(g d.router.per_conn_zero)" == 0 ]] && echo 1 || echo 0)
  echo "| d | fairness: $FAIR_CONNS conns, router '${ROUTER_FAIR_ARGS}', ${FAIR_MS} ms: requests per conn min / median / max | — | $(dcell nginx) | $(dcell router) | | none at 0 | $(holds "$ok") |"
  fi
  if has_row e; then
  rss=$(g e.idle_rss_kb); ok=""; v=""
  if num_ok "$rss"; then v=$(calc "printf \"%.1f\", $rss/1024"); ok=$(calc "print ($rss < 20*1024) ? 1 : 0"); fi
  echo "| e | idle RSS MB (router args '${ROUTER_IDLE_ARGS:-defaults}', $(g e.threads) threads) | — | — | $(fmt "$v") | | < 20 MB | $(holds "$ok") |"
  st=$(g e.startup_ms); ok=""; num_ok "$st" && ok=$(calc "print ($st < 100) ? 1 : 0")
  echo "| e | start-up ms, exec to listening line, best of 5 | — | — | $(fmt "$st") | | < 100 ms | $(holds "$ok") |"
  fi
  if has_row f && (( HAVE_WRK && HAVE_NGINX )); then
    for mode in ka new; do
      what=$([[ $mode == ka ]] && echo "keep-alive" || echo "a new connection (full handshake) per request")
      rn=$(g f.$mode.nginx.rps); rr=$(g f.$mode.router.rps); ratio=""
      num_ok "$rn" && num_ok "$rr" && ratio=$(calc "printf \"%.2fx\", $rr/$rn")
      echo "| f | TLS termination, $what: req/s, 64 conns, ${F_WRK_S} s (median of $F_ROUNDS) | — | $(fmt "$rn") | $(fmt "$rr") | $(fmt "$ratio") | reported | |"
      if (( F_ROUNDS > 1 )); then
        frounds() { local r out=""; for (( r = 1; r <= F_ROUNDS; r++ )); do out+="${out:+ / }$(fmt "$(g f.$mode.$1.r$r.rps)")"; done; echo "$out"; }
        fratio() {
          local r out="" x y
          for (( r = 1; r <= F_ROUNDS; r++ )); do
            x=$(g f.$mode.router.r$r.rps); y=$(g f.$mode.nginx.r$r.rps)
            out+="${out:+ / }$(num_ok "$x" && num_ok "$y" && calc "printf \"%.2fx\", $x/$y")"
          done
          echo "$out"
        }
        echo "| f | TLS, $what: req/s by round (order alternated) | — | $(frounds nginx) | $(frounds router) | $(fratio) | | |"
      fi
      cn=$(g f.$mode.nginx.cpu_us); cr=$(g f.$mode.router.cpu_us); cratio=""
      num_ok "$cn" && num_ok "$cr" && [[ "$cn" != 0.0 ]] && cratio=$(calc "printf \"%.2fx\", $cr/$cn")
      echo "| f | TLS, $what: latency p50 / p99 ms; CPU µs per request; errors | — | $(fmt "$(g f.$mode.nginx.p50)") / $(fmt "$(g f.$mode.nginx.p99)"); $(fmt "$cn"); $(fmt "$(g f.$mode.nginx.errors)") | $(fmt "$(g f.$mode.router.p50)") / $(fmt "$(g f.$mode.router.p99)"); $(fmt "$cr"); $(fmt "$(g f.$mode.router.errors)") | CPU $(fmt "$cratio") | | |"
    done
  fi
} >"$TABLE"

ELAPSED=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}')
{
  echo
  echo "### vllm-router benchmark ($([[ $QUICK == 1 ]] && echo quick || echo full) mode, $(date -u +%Y-%m-%dT%H:%MZ), ${ELAPSED} s)"
  echo
  echo "Machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), Linux $(uname -r);" \
       "nginx $( ((HAVE_NGINX)) && "$NGINX" -v 2>&1 | sed 's/.*nginx\///' || echo 'not installed');" \
       "wrk $( ((HAVE_WRK)) && { "$WRK" -v 2>&1 || true; } | awk 'NR==1{print $2}' || echo 'not installed'); ulimit -n $NOFILE."
  echo "Router args: rows a-c and f '${ROUTER_ARGS}' ({THREADS} = connections + 64), row d '${ROUTER_FAIR_ARGS}'. Rows run: $ROWS."
  has_row f && echo "Row f: router (--tls-cert/--tls-key) and nginx (listen ssl, TLS 1.2-1.3) with one EC P-256 certificate, each in front of its own engine; the same wrk client for both."
  if (( ${#BUSY_SEEN[@]} )); then
    echo "Machine busy % (all CPUs) just before each section: ${BUSY_SEEN[*]} (waited up to ${QUIET_WAIT_S} s for <= ${QUIET_PCT} %)."
  fi
  has_row c && echo "Streams: $TOKENS tokens, ${ITL} ms apart (x-sim-itl-ms), TTFT 0; TTFT and duration are measured from connect."
  echo "Engines: rows a, b, d, f \`vllm-sim\` (a thread per connection) at nice $SIM_NICE$(has_row c && echo "; row c \`vllm-sim --io $SIM_STREAM_IO\` at nice $SIM_STREAM_NICE, CPU cgroup ${SIM_CG_NOTE:-off (quick mode)}")."
  echo
  cat "$TABLE"
  if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    echo
    echo "Skipped: ${SKIPPED[*]}."
  fi
} | tee "${OUT:-/dev/null}"
[[ -n "$OUT" ]] && log "table written to $OUT"
if (( FAILED )); then log "some measurements failed (see above)"; exit 1; fi
exit 0
