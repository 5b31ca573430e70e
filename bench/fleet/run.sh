#!/usr/bin/env bash
# Fleet benchmark: the routing policies on a simulated vLLM fleet, one command.
#
#   bench/fleet/run.sh [--quick] [--out FILE] [--policies "a b c"] [--workloads "w x"] [--routers "N ..."] [--draw D]
#                      [--repeat K]
#
# Starts N vllm-sim engines with the engine model (KV cache of B blocks with LRU prefix reuse,
# --max-num-seqs batch with a FIFO waiting queue, serialized prefill priced per uncached token,
# decode pacing), then for each workload x policy runs build/bench/fleet/fleet_bench: an
# in-process vllm_router::Router with that policy and a LoadScraper, replaying the workload over
# HTTP to the engines. Prints a Markdown table (and the target checks), writes a PNG chart.
# Policy "session@1" is session with session_load_factor 1: the load bound off (pure hashing);
# "prefix_aware@B" is prefix_aware with prefix_home_load_bound B; a "+replicas" suffix
# ("prefix_aware+replicas", "prefix_aware@2+replicas") sets prefix_replica_affinity; a "+sync"
# suffix (also combined: "prefix_aware+replicas+sync") gives the router processes replica sync
# (docs/configuration.md, "replica_sync": each listens on its own 127.0.0.1 UDP port, all N
# ports are its peers; no effect in-process, where there is one router).
# --routers N (N >= 1): N real vllm-router processes (build/server/vllm-router, copied) in front
# of the same engines, started per run with that policy; the driver sends round robin across
# them over HTTP. 0 or absent: the in-process Router. A list ("1 3") runs each count in turn.
# --draw D (1..99): the engines listen on fixed ports 20000 + 100 x D + i instead of free ones
# (and +sync routers on UDP ports 21000 + 100 x D + i).
# Endpoint ids carry the port and every home is a rendezvous hash of them, so each draw is one
# placement of the prefixes and sessions on the engines, the same in every run of that draw
# (compare configurations on the same draws; several draws for a mean). Default: free ports.
# --repeat K (1..20): each run K times (fresh routers, engines reset; the router counts of
# --routers take turns, 1 3 1 3 ...), pooled by bench/fleet/pool.py into one row: TTFT
# percentiles over all K runs' requests (a p99 of 1,024 requests is their 10th slowest and moves
# by +-10 % from run to run), with each run's p99 and hit rate kept in the row.
# Full: 8 engines, about 13 minutes. --quick: 4 engines, small workloads, about 1.5 minutes.
# Environment: VLLM_SIM, VLLM_ROUTER, FLEET_BENCH (binaries), FLEET_KEEP=1 keeps the temp directory,
# FLEET_POLICY_OPTIONS='"key": value, ...' adds policy options to the router processes' config.
# Exit: 0 when every run completed, 1 when one could not run, 2 on bad usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUICK=0
OUT=""
POLICIES="round_robin power_of_two load_aware session session@1 prefix_aware"
WORKLOADS="shared multiturn random skewed agentic"
ROUTERS=0
DRAW=0
REPEAT=1
usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    --policies) POLICIES="${2:?}"; shift ;;
    --workloads) WORKLOADS="${2:?}"; shift ;;
    --routers) ROUTERS="${2:?}"; shift; [[ "$ROUTERS" =~ ^[0-9]+( [0-9]+)*$ ]] || { echo "run.sh: --routers needs numbers" >&2; exit 2; } ;;
    --draw) DRAW="${2:?}"; shift; [[ "$DRAW" =~ ^[0-9]+$ ]] && (( DRAW <= 99 )) || { echo "run.sh: --draw needs 0..99" >&2; exit 2; } ;;
    --repeat) REPEAT="${2:?}"; shift; [[ "$REPEAT" =~ ^[0-9]+$ ]] && (( REPEAT >= 1 && REPEAT <= 20 )) || { echo "run.sh: --repeat needs 1..20" >&2; exit 2; } ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

FLEET_NAME=fleet
FLEET_SCRIPT=run.sh
# shellcheck source=bench/fleet/common.sh
source "$ROOT/bench/fleet/common.sh"
MAX_ROUTERS=0
for r in $ROUTERS; do (( r > MAX_ROUTERS )) && MAX_ROUTERS=$r; done
if (( MAX_ROUTERS > 0 )); then
  VLLM_ROUTER_BIN=${VLLM_ROUTER:-$ROOT/build/server/vllm-router}
  [[ -x "$VLLM_ROUTER_BIN" ]] || die "vllm-router not found at $VLLM_ROUTER_BIN (build the project first)"
  copy_library
  cp "$VLLM_ROUTER_BIN" "$TMP/vllm-router" && VLLM_ROUTER_BIN="$TMP/vllm-router"
fi
build_fleet_bench

# ---- the fleet -------------------------------------------------------------------------------
if (( QUICK )); then
  N=4; KV_BLOCKS=1000; QUICK_ARG=--quick; RUN_LIMIT=40
else
  N=8; KV_BLOCKS=1500; QUICK_ARG=""; RUN_LIMIT=150
fi
MAX_NUM_SEQS=8
PREFILL_US=50      # per uncached prompt token: a 2,100-token prompt costs 105 ms, 100 tokens 5 ms
ITL_MS=10          # decode: one token every 10 ms
SIM_ARGS=(--batch-queue --max-num-seqs "$MAX_NUM_SEQS" --prefill-us-per-token "$PREFILL_US"
          --itl-ms "$ITL_MS" --kv-cache-blocks "$KV_BLOCKS" --max-model-len 65536 --threads 512)

# $1 distinct UDP ports free on 127.0.0.1 now, space separated (bound at once, then released).
free_udp_ports() {
  /usr/bin/python3 -c '
import socket, sys
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

PIDS=()
ROUTER_PIDS=()
stop_routers() {
  local p
  for p in "${ROUTER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${ROUTER_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ROUTER_PIDS=()
}
cleanup() {
  local p
  stop_routers
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ -n "${FLEET_KEEP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URLS=()
for i in $(seq 1 "$N"); do
  PORT_ARG=()
  (( DRAW > 0 )) && PORT_ARG=(--port $((20000 + 100 * DRAW + i)))
  start_sim "engine-$i" "${SIM_ARGS[@]}" "${PORT_ARG[@]}"
  URLS+=("$URL")
done
SIMS=$(IFS=,; echo "${URLS[*]}")
log "$N engines: ${SIM_ARGS[*]}"

# $2 vllm-router processes with policy $1 (NAME or NAME@VALUE, then +replicas and/or +sync) in
# front of the engines; sets ROUTER_URLS. Each must announce its port and answer /ready within 10 s.
start_routers() {
  local name=$1 value="" extra="" i out ok count=$2 replicas=0 sync=0
  while :; do
    case "$name" in
      *+replicas) name=${name%+replicas}; replicas=1 ;;
      *+sync) name=${name%+sync}; sync=1 ;;
      *) break ;;
    esac
  done
  local policy=${name%@*}
  [[ "$name" == *@* ]] && value=${name#*@}
  (( replicas )) && extra=", \"prefix_replica_affinity\": true"
  [[ -n "${FLEET_POLICY_OPTIONS:-}" ]] && extra+=", $FLEET_POLICY_OPTIONS"
  if [[ -n "$value" ]]; then
    case "$policy" in
      prefix_aware) extra+=", \"prefix_home_load_bound\": $value" ;;
      *) extra+=", \"session_load_factor\": $value" ;;
    esac
  fi
  local eps
  eps=$(printf '"%s",' "${URLS[@]}")
  # +sync: router i listens on sync_ports[i-1]; every router lists all of them as peers (its
  # own address too: a router ignores its own datagrams), so each needs its own config file.
  local -a sync_ports=()
  if (( sync )); then
    if (( DRAW > 0 )); then
      for i in $(seq 1 "$count"); do sync_ports+=($((21000 + 100 * DRAW + i))); done
    else
      read -r -a sync_ports <<<"$(free_udp_ports "$count")" || return 1
      (( ${#sync_ports[@]} == count )) || { log "no $count free UDP ports for +sync"; return 1; }
    fi
  fi
  local peers="" sync_json=""
  (( sync )) && peers=$(printf '"127.0.0.1:%s",' "${sync_ports[@]}")
  for i in $(seq 1 "$count"); do
    (( sync )) && sync_json="
 \"replica_sync\": {\"listen\": \"127.0.0.1:${sync_ports[i-1]}\", \"peers\": [${peers%,}]},"
    cat >"$TMP/router$i.json" <<JSON
{"policy": "$policy", "log_level": "warn", "threads": 1, "max_attempts": 1, "max_idle_connections": 512,
 "timeouts": {"read_ms": 120000},
 "policy_options": {"scrape_interval_ms": 200, "scrape_timeout_ms": 500, "scrape_stale_ms": 2000$extra},$sync_json
 "models": [{"name": "facebook/opt-125m", "endpoints": [${eps%,}]}]}
JSON
  done
  ROUTER_URLS=()
  for i in $(seq 1 "$count"); do
    out="$TMP/router$i.out"
    LD_LIBRARY_PATH="$TMP/lib" "$VLLM_ROUTER_BIN" --config "$TMP/router$i.json" --host 127.0.0.1 --port 0 \
      >"$out" 2>"$TMP/router$i.err" </dev/null &
    ROUTER_PIDS+=($!)
    wait_listening "$out" 400 || { log "vllm-router $i did not start: $(tail -2 "$TMP/router$i.err")"; return 1; }
    ROUTER_URLS+=("$LISTEN_URL")
  done
  for url in "${ROUTER_URLS[@]}"; do
    ok=0
    for _ in $(seq 200); do
      if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url/ready") == 200 ]]; then ok=1; break; fi
      sleep 0.05
    done
    (( ok )) || { log "vllm-router at $url not ready within 10 s"; return 1; }
  done
}

RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
FAILED=0
T0=$SECONDS
for w in $WORKLOADS; do
  for p in $POLICIES; do
   for nr in $ROUTERS; do
    [[ "$p" == *+sync* ]] && (( nr == 0 )) && log "$p: +sync has no effect in-process (one router)"
    : >"$TMP/runs-$nr.jsonl"
    : >"$TMP/trace-$nr"
   done
   # With --repeat, the router counts take turns (1, 3, 1, 3, ...): a machine that slows down
   # or speeds up during the runs moves every count alike, not only the ones run last.
   for rep in $(seq 1 "$REPEAT"); do
    for nr in $ROUTERS; do
      log "workload $w, policy $p, routers $nr (0: in-process)$( (( REPEAT > 1 )) && echo ", run $rep of $REPEAT")"
      ROUTER_ARG=()
      if (( nr > 0 )); then
        if ! start_routers "$p" "$nr"; then stop_routers; FAILED=1; continue; fi
        ROUTER_ARG=(--routers "$(IFS=,; echo "${ROUTER_URLS[*]}")")
      fi
      # shellcheck disable=SC2086
      if ! FLEET_TRACE="$TMP/trace-$nr" timeout $((RUN_LIMIT + 30)) "$FLEET_BENCH" --sims "$SIMS" --policy "$p" \
           --workload "$w" --max-seconds "$RUN_LIMIT" $QUICK_ARG "${ROUTER_ARG[@]}" >>"$TMP/runs-$nr.jsonl" 2>"$TMP/bench.err"; then
        log "run $w/$p did not complete cleanly: $(tail -2 "$TMP/bench.err")"
        FAILED=1
      fi
      stop_routers
    done
   done
   for nr in $ROUTERS; do
    [[ -n "${FLEET_TRACE:-}" ]] && cat "$TMP/trace-$nr" >>"$FLEET_TRACE"
    if (( REPEAT == 1 )); then
      cat "$TMP/runs-$nr.jsonl" >>"$RESULTS"
    elif [[ -s "$TMP/runs-$nr.jsonl" ]]; then
      /usr/bin/python3 "$ROOT/bench/fleet/pool.py" "$TMP/runs-$nr.jsonl" "$TMP/trace-$nr" >>"$RESULTS" || FAILED=1
    fi
   done
  done
done
log "runs took $((SECONDS - T0)) s"

PNG=${OUT:+${OUT%.*}.png}
PNG=${PNG:-$TMP/fleet.png}
[[ -n "$OUT" ]] || PNG="$ROOT/build/bench/fleet/fleet.png"
mkdir -p "$(dirname "$PNG")"
/usr/bin/python3 "$ROOT/bench/fleet/report.py" "$RESULTS" --png "$PNG" \
  --setup "engines=$N kv_blocks=$KV_BLOCKS max_num_seqs=$MAX_NUM_SEQS prefill_us_per_token=$PREFILL_US itl_ms=$ITL_MS quick=$QUICK routers=$ROUTERS draw=$DRAW repeat=$REPEAT" \
  ${OUT:+--out "$OUT"} || FAILED=1
[[ -n "$OUT" ]] && cp "$RESULTS" "${OUT%.*}.jsonl"
exit $FAILED
