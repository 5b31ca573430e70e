#!/usr/bin/env bash
# Tracing on against off: the router's instructions per request under callgrind (stable on a
# noisy machine). The router runs with --threads 1 under valgrind; a python http.client sends N
# sequential ~1 KB non-streamed chat completions over one keep-alive connection; the figure is
# (Ir at N=1500 - Ir at N=500) / 1000, so start-up and shutdown cancel. Every thread of the router
# counts (the exporter's encoding and sending included).
#
#   bench/tracing_cost.sh [CASE...]      (default: off on)
#
# Cases: off (no --otlp-endpoint), on (--otlp-endpoint to a local receiver that answers 200,
# sampling 1.0, every request traced: no client traceparent), tenth (sampling 0.1), unsampled
# (sampling 0: trace context and propagation only), base (BASE_ROUTER=path: another build
# without the flag, e.g. the commit before tracing), access (the access log to a file, no
# tracing), observe (access log and tracing at 1.0). Needs valgrind, python3,
# build/server/vllm-router and build/tools/vllm-sim. CG_ARGS adds valgrind options (e.g.
# CG_ARGS=--cache-sim=yes: first-level misses per function; KEEP=1 keeps the profiles).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUTER=${VLLM_ROUTER:-$ROOT/build/server/vllm-router}
SIM=${VLLM_SIM:-$ROOT/build/tools/vllm-sim}
MODEL=facebook/opt-125m
TMP=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

wait_line() {  # wait_line FILE PREFIX -> the port announced
  for _ in $(seq 600); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -m1 -o "$2[0-9.]*:[0-9]*" "$1" | grep -o '[0-9]*$'; return; fi
    sleep 0.05
  done
  echo "no announcement in $1" >&2
  exit 1
}

"$SIM" --port 0 --io epoll --model "$MODEL" >"$TMP/sim.log" 2>&1 &
pids+=($!)
sim_port=$(wait_line "$TMP/sim.log" "listening on http://")
# The collector: accepts every POST /v1/traces with 200 and counts the spans it got.
cat >"$TMP/receiver.py" <<EOF
import http.server, sys
sys.path.insert(0, "$ROOT/tests/integration")
from otlp_proto import decode
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n = sum(len(ss.get("spans", [])) for rs in decode(body)["resourceSpans"] for ss in rs["scopeSpans"])
        with open(sys.argv[1], "a") as f:
            f.write("%d\\n" % n)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("listening on http://127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 "$TMP/receiver.py" "$TMP/spans.txt" >"$TMP/receiver.log" 2>&1 &
pids+=($!)
receiver_port=$(wait_line "$TMP/receiver.log" "listening on http://")
cat >"$TMP/client.py" <<EOF
import http.client, json, sys
content = ("hello world bench router stream " * 30)[:900]
body = json.dumps({"model": "$MODEL", "messages": [{"role": "user", "content": content}], "max_tokens": 16})
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
for _ in range(int(sys.argv[2])):
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
EOF

instructions() {  # instructions CASE N -> total Ir of the router
  local router=$ROUTER args=()
  case $1 in
    off) ;;
    on) args=(--otlp-endpoint "http://127.0.0.1:$receiver_port") ;;
    unsampled) args=(--otlp-endpoint "http://127.0.0.1:$receiver_port" --otlp-sampling 0) ;;
    tenth) args=(--otlp-endpoint "http://127.0.0.1:$receiver_port" --otlp-sampling 0.1) ;;
    access) args=(--access-log "$TMP/access.log") ;;
    observe) args=(--access-log "$TMP/access.log" --otlp-endpoint "http://127.0.0.1:$receiver_port") ;;
    base) router=${BASE_ROUTER:?set BASE_ROUTER to the other build}; ;;
  esac
  local out="$TMP/cg.$1.$2"
  valgrind --tool=callgrind ${CG_ARGS:-} --callgrind-out-file="$out" "$router" --host 127.0.0.1 --port 0 --threads 1 \
    --model "$MODEL=http://127.0.0.1:$sim_port" --log-level warn "${args[@]}" >"$TMP/router.log" 2>"$TMP/router.err" &
  local rpid=$!
  local port
  port=$(wait_line "$TMP/router.log" "listening on http://")
  python3 "$TMP/client.py" "$port" "$2"
  kill -TERM "$rpid"
  wait "$rpid" 2>/dev/null || true
  awk '/^totals:|^summary:/ {print $2; exit}' "$out"
}

cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(off on)
for c in "${cases[@]}"; do
  : >"$TMP/spans.txt"
  small=$(instructions "$c" 500)
  large=$(instructions "$c" 1500)
  spans=$(awk '{s += $1} END {print s + 0}' "$TMP/spans.txt")
  echo "$c: $(((large - small) / 1000)) instructions per request (N=500: $small, N=1500: $large; spans received: $spans)"
done
