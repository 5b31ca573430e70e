# bench/fleet/common.sh: what run.sh, pd.sh and lora.sh share (sourced, not run).
# Before sourcing: ROOT (the checkout), FLEET_NAME (log prefix and temp-dir name), FLEET_SCRIPT
# (for error messages). Defines log and die, makes $TMP with a private copy of vllm-sim
# ($VLLM_SIM, default build/tools/vllm-sim), and the helpers below. The caller owns PIDS (the
# engines it started) and its cleanup trap.

VLLM_SIM=${VLLM_SIM:-$ROOT/build/tools/vllm-sim}
log() { printf '[%s %s] %s\n' "$FLEET_NAME" "$(date +%T)" "$*" >&2; }
die() { printf 'bench/fleet/%s: %s\n' "$FLEET_SCRIPT" "$*" >&2; exit 1; }

[[ -x "$VLLM_SIM" ]] || die "vllm-sim not found at $VLLM_SIM (build the project: cmake -S . -B build && cmake --build build -j2)"
TMP=$(mktemp -d "/tmp/vllm-$FLEET_NAME.XXXXXX")
# Private copies (the sim, the library, the driver built against it): a rebuild of the tree
# during the run (another developer, CI) cannot swap them under the running benchmark.
cp "$VLLM_SIM" "$TMP/vllm-sim" && VLLM_SIM="$TMP/vllm-sim"

# build/lib's libvllm_router into $TMP/lib (once).
copy_library() {
  [[ -e "$TMP/lib/libvllm_router.so" ]] && return
  [[ -e "$ROOT/build/lib/libvllm_router.so" ]] || die "no built library in build/lib (build the project first)"
  mkdir -p "$TMP/lib"
  cp -a "$ROOT"/build/lib/libvllm_router.so* "$TMP/lib/"
}

# FLEET_BENCH: the driver named by the environment, else compiled here against $TMP/lib (~7 s).
build_fleet_bench() {
  if [[ -z "${FLEET_BENCH:-}" ]]; then
    copy_library
    FLEET_BENCH="$TMP/fleet_bench"
    log "building fleet_bench against a copy of build/lib"
    g++ -std=c++20 -O2 -I"$ROOT/include" "$ROOT/bench/fleet/fleet_bench.cpp" -o "$FLEET_BENCH" \
      -L"$TMP/lib" -lvllm_router -Wl,-rpath,"$TMP/lib" -pthread || die "could not build fleet_bench"
  fi
  [[ -x "$FLEET_BENCH" ]] || die "fleet_bench not found at $FLEET_BENCH"
}

# wait_listening OUT [TRIES]: the URL a process announced ("listening on http://...") in OUT,
# into LISTEN_URL; 1 when it did not within TRIES x 25 ms (default 200: 5 s).
wait_listening() {
  local line="" _
  for _ in $(seq "${2:-200}"); do
    line=$(grep -m1 'listening on http://' "$1" 2>/dev/null || true)
    [[ -n "$line" ]] && break
    sleep 0.025
  done
  [[ -n "$line" ]] || return 1
  LISTEN_URL="${line##*listening on }"
}

# start_sim ID ARGS...: vllm-sim --port 0 --id ID ARGS... in the background (PID into PIDS);
# its URL into URL.
start_sim() {
  local id=$1
  shift
  "$VLLM_SIM" --port 0 --id "$id" "$@" >"$TMP/$id.out" 2>"$TMP/$id.err" &
  PIDS+=($!)
  wait_listening "$TMP/$id.out" || die "vllm-sim $id did not start: $(tail -2 "$TMP/$id.err")"
  URL=$LISTEN_URL
}
