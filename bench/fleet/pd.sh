#!/usr/bin/env bash
# Prefill/decode disaggregation on a simulated fleet: colocated vs disaggregated, same engines.
#
#   bench/fleet/pd.sh [--quick] [--engines N] [--configs "4C 1P3D 2P2D"] [--rate R]
#
# For each configuration starts N vllm-sim engines with the engine model (FIFO batch of
# --max-num-seqs, one prefill at a time priced per uncached prompt token, decode one token per
# --itl-ms, and --prefill-stalls-decode: a streamed token due while the engine runs a prefill waits
# for its end, as vLLM's steps run a prefill and the batch's decodes together), then replays the
# `mixed` workload (long prompts interleaved with long generations) through an in-process Router
# (build/bench/fleet/fleet_bench). "4C": 4 colocated engines (--kv-role both, no prefill pool);
# "1P3D": 1 prefill + 3 decode engines (--kv-role prefill / decode, the model's prefill pool);
# "2P2D": 2 + 2. Prints a Markdown table of TTFT and inter-token latency p50/p99 per config.
# Full: 480 requests at 12/s per config (about 45 s each); --quick: 48 (about 8 s each).
# Every run is bounded (fleet_bench --max-seconds, timeout) and stops its engines by PID.
# Environment: VLLM_SIM, FLEET_BENCH (binaries), FLEET_KEEP=1 keeps the temp directory.
# Exit: 0 when every run completed, 1 when one could not run, 2 on bad usage.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUICK=0
CONFIGS="4C 1P3D 2P2D"
RATE=""
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --configs) CONFIGS="${2:?}"; shift ;;
    --rate) RATE="${2:?}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pd.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

FLEET_NAME=pd
FLEET_SCRIPT=pd.sh
# shellcheck source=bench/fleet/common.sh
source "$ROOT/bench/fleet/common.sh"
build_fleet_bench

if (( QUICK )); then QUICK_ARG=--quick; RUN_LIMIT=40; else QUICK_ARG=""; RUN_LIMIT=150; fi
MAX_NUM_SEQS=16
PREFILL_US=50   # per uncached prompt token: a 2,000-token prompt costs 100 ms
ITL_MS=10
SIM_ARGS=(--batch-queue --max-num-seqs "$MAX_NUM_SEQS" --prefill-us-per-token "$PREFILL_US" --itl-ms "$ITL_MS"
          --prefill-stalls-decode --max-model-len 65536 --threads 256)

PIDS=()
stop_engines() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
cleanup() {
  stop_engines
  if [[ -n "${FLEET_KEEP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_engine NAME ROLE: its URL into URL.
start_engine() { start_sim "$1" --kv-role "$2" "${SIM_ARGS[@]}"; }

RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
FAILED=0
for c in $CONFIGS; do
  case "$c" in
    4C|[0-9]C) P=0; D=${c%C} ;;
    [0-9]P[0-9]D) P=${c%%P*}; D=${c#*P}; D=${D%D} ;;
    *) die "unknown configuration $c (e.g. 4C, 1P3D)" ;;
  esac
  DECODE=(); PREFILL=()
  for i in $(seq 1 "$D"); do
    start_engine "$c-d$i" "$([[ $P -eq 0 ]] && echo both || echo decode)"; DECODE+=("$URL")
  done
  for i in $(seq 1 "$P"); do start_engine "$c-p$i" prefill; PREFILL+=("$URL"); done
  ARGS=(--sims "$(IFS=,; echo "${DECODE[*]}")" --policy load_aware --workload mixed --max-seconds "$RUN_LIMIT")
  (( P > 0 )) && ARGS+=(--prefill-sims "$(IFS=,; echo "${PREFILL[*]}")" --prefill-policy load_aware)
  [[ -n "$RATE" ]] && ARGS+=(--rate "$RATE")
  log "config $c: $P prefill + $D decode engines"
  # shellcheck disable=SC2086
  if ! timeout $((RUN_LIMIT + 30)) "$FLEET_BENCH" "${ARGS[@]}" $QUICK_ARG >"$TMP/$c.json" 2>"$TMP/bench.err"; then
    log "run $c did not complete cleanly: $(tail -2 "$TMP/bench.err")"
    FAILED=1
  fi
  sed "s/^{/{\"config\":\"$c\",/" "$TMP/$c.json" >>"$RESULTS"
  stop_engines
done

/usr/bin/python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| config | requests ok | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| %s | %d/%d | %.1f | %.1f | %.1f | %.1f |" % (r["config"], r["ok"], r["requests"], r["ttft_p50_ms"],
                                                    r["ttft_p99_ms"], r["itl_p50_ms"], r["itl_p99_ms"]))
EOF
exit $FAILED
