#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang (ASan + UBSan) into build-fuzz/ and runs each
# for a bounded time over its seed corpus in tests/fuzz/corpus/<target>/ (new inputs found go to
# build-fuzz/corpus/<target>/, not into the tree).
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 10 s, every target)
#
# The test suite runs it with 10 s per target (ctest `fuzz_quick`); the release check with 600
# (README.md). Exit status: 0 when no target found a crash, 1 otherwise (the crashing
# input is left in build-fuzz/ and printed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-10}
shift || true
all=(request_head response_head chunked json_request multipart config metrics kube_watch head_diff)
targets=("${@:-${all[@]}}")
[[ ${#targets[@]} -gt 0 && -n ${targets[0]} ]] || targets=("${all[@]}")
out=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
mkdir -p "$out"
CXX=${FUZZ_CXX:-clang++}
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$ROOT/include" -I"$ROOT/lib" -DVLLM_ROUTER_STATIC)
codec=("$ROOT/lib/http1.cpp")
reader=("$ROOT/lib/request.cpp" "$ROOT/lib/error.cpp" "$ROOT/lib/config.cpp" "$ROOT/lib/config_validate.cpp"
        "$ROOT/lib/endpoint.cpp")
metrics=("$ROOT/lib/vllm_metrics.cpp")
kube=("$ROOT/lib/discovery/kubernetes_parse.cpp" "$ROOT/lib/error.cpp")
# True when a header under lib/ or include/ is newer than $1 (any may be included).
headers_newer() { [[ -n $(find "$ROOT/lib" "$ROOT/include" -newer "$1" -name '*.h*' -print -quit) ]]; }
# Each library source is compiled once into $out/obj/ and shared by the targets that link it.
object() {  # source -> prints the object file
  local o="$out/obj/${1#"$ROOT"/}"
  o="${o%.cpp}.o"
  if [[ ! -f $o || $1 -nt $o ]] || headers_newer "$o"; then
    mkdir -p "$(dirname "$o")"
    "$CXX" "${flags[@]}" -c "$1" -o "$o"
  fi
  echo "$o"
}
build() {  # name source define sources...
  local name=$1 src=$2 def=$3 objs=() o s stale=0
  shift 3
  local bin="$out/fuzz_$name"
  for s in "$@"; do
    o=$(object "$s")
    objs+=("$o")
    [[ -x $bin && ! $o -nt $bin ]] || stale=1
  done
  if ((stale)) || [[ $src -nt $bin ]] || headers_newer "$bin"; then
    echo "fuzz: building $name" >&2
    "$CXX" "${flags[@]}" "-D$def" "$src" "${objs[@]}" -lsimdjson -o "$bin"
  fi
}
failed=0
for t in "${targets[@]}"; do
  case $t in
    request_head) build "$t" "$ROOT/tests/fuzz/fuzz_http1.cpp" FUZZ_REQUEST_HEAD "${codec[@]}" ;;
    response_head) build "$t" "$ROOT/tests/fuzz/fuzz_http1.cpp" FUZZ_RESPONSE_HEAD "${codec[@]}" ;;
    chunked) build "$t" "$ROOT/tests/fuzz/fuzz_http1.cpp" FUZZ_CHUNKED "${codec[@]}" ;;
    json_request) build "$t" "$ROOT/tests/fuzz/fuzz_request.cpp" FUZZ_JSON_REQUEST "${reader[@]}" ;;
    multipart) build "$t" "$ROOT/tests/fuzz/fuzz_request.cpp" FUZZ_MULTIPART "${reader[@]}" ;;
    config) build "$t" "$ROOT/tests/fuzz/fuzz_request.cpp" FUZZ_CONFIG "${reader[@]}" ;;
    metrics) build "$t" "$ROOT/tests/fuzz/fuzz_control.cpp" FUZZ_METRICS "${metrics[@]}" ;;
    kube_watch) build "$t" "$ROOT/tests/fuzz/fuzz_control.cpp" FUZZ_KUBE_WATCH "${kube[@]}" ;;
    # against Boost.Beast's request parser (header-only, libboost1.74-dev)
    head_diff) build "$t" "$ROOT/tests/fuzz/fuzz_head_diff.cpp" FUZZ_HEAD_DIFF "${codec[@]}" ;;
    *) echo "fuzz: unknown target $t (known: ${all[*]})" >&2; exit 2 ;;
  esac
  mkdir -p "$out/corpus/$t"
  log="$out/fuzz_$t.log"
  if (cd "$out" && "./fuzz_$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "corpus/$t" "$ROOT/tests/fuzz/corpus/$t" > "$log" 2>&1); then
    echo "fuzz: $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds} s, no finding"
  else
    failed=1
    echo "fuzz: $t: FINDING (log: $log)" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5 >&2
  fi
done
exit $failed
