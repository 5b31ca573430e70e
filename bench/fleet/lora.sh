#!/usr/bin/env bash
# LoRA-aware placement (issue 14) on a simulated fleet, one command.
#
#   bench/fleet/lora.sh [--quick] [--out FILE.jsonl]
#
# 16 adapters (lora-0..lora-15, Zipf popularity: adapter k with weight 1/(k+1)) over 4 vllm-sim
# engines with max_lora 4, runtime LoRA loading and auto-load (an adapter a request names that
# is not loaded is loaded first, its TTFT paying the load: vLLM's LoRA resolver). Two runs, each
# on fresh engines: "aware" = the router's LoRA-aware placement (round robin among the replicas
# that have the adapter, single-flight loads, LRU unload at max_lora); "round_robin" = adapter-blind
# round robin (the engines load on demand). Prints adapter loads per 1,000 requests, the share of
# requests whose adapter was already loaded, TTFT p50/p99. Full: 2,000 requests at 40/s per run
# (~2 min in all); --quick: 600 (~40 s). Environment: VLLM_SIM, FLEET_BENCH, LORA_LOAD_MS (300),
# LORA_RATE (40 requests/s), LORA_REPLICATE_MARGIN (0: the aware run's lora.replicate_margin).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUICK_ARG=""
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK_ARG=--quick ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lora.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
FLEET_NAME=lora
FLEET_SCRIPT=lora.sh
# shellcheck source=bench/fleet/common.sh
source "$ROOT/bench/fleet/common.sh"
build_fleet_bench

N=4
LOAD_MS=${LORA_LOAD_MS:-300}
SIM_ARGS=(--batch-queue --max-num-seqs 8 --prefill-us-per-token 50 --itl-ms 10 --max-model-len 65536
          --threads 256 --enable-runtime-lora --lora-auto-load --max-lora 4 --lora-load-ms "$LOAD_MS"
          --lora-prefill-ms 2)
PIDS=()
stop_sims() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
trap 'stop_sims; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

start_sims() {
  local i urls=()
  for i in $(seq 1 "$N"); do
    start_sim "engine-$i" "${SIM_ARGS[@]}"
    urls+=("$URL")
  done
  SIMS=$(IFS=,; echo "${urls[*]}")
}

RESULTS="$TMP/lora.jsonl"
: >"$RESULTS"
FAILED=0
log "$N engines: ${SIM_ARGS[*]}"
for mode in aware round_robin; do
  start_sims
  extra=()
  [[ $mode == aware ]] && extra=(--lora-aware --replicate-margin "${LORA_REPLICATE_MARGIN:-0}")
  log "run: $mode"
  # shellcheck disable=SC2086
  if ! timeout 200 "$FLEET_BENCH" --sims "$SIMS" --policy round_robin --workload lora --max-seconds 150 \
       ${LORA_RATE:+--rate "$LORA_RATE"} \
       $QUICK_ARG "${extra[@]}" >>"$RESULTS" 2>"$TMP/bench.err"; then
    log "run $mode did not complete cleanly: $(tail -2 "$TMP/bench.err")"
    FAILED=1
  fi
  stop_sims
done
/usr/bin/python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| placement | requests | ok | adapter loads / 1,000 req | already loaded | TTFT p50 ms | TTFT p99 ms | TTFT p99 after 5 s | per engine |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    name = "LoRA-aware" if r["aware"] else "round robin (adapter-blind)"
    print("| %s | %d | %d | %.1f | %.1f %% | %.1f | %.1f | %.1f | %s |" % (
        name, r["requests"], r["ok"], r["loads_per_1000"], 100 * r["already_loaded"],
        r["ttft_p50_ms"], r["ttft_p99_ms"], r["ttft_p99_warm_ms"], r["per_engine"]))
PY
[[ -n "$OUT" ]] && cp "$RESULTS" "$OUT"
exit $FAILED
