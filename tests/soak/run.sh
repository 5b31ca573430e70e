#!/usr/bin/env bash
# Builds vllm-router and vllm-sim with AddressSanitizer/LeakSanitizer/UBSan into build-asan and
# runs the bounded soak (tests/soak/soak.py). Usage: run.sh [DURATION_SECONDS] (default 180).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-180}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVLLM_ROUTER_SANITIZE=address,undefined \
  -DVLLM_ROUTER_BUILD_BINDINGS=OFF -DVLLM_ROUTER_BUILD_EXAMPLES=OFF -DVLLM_ROUTER_BUILD_TESTS=OFF > /dev/null
cmake --build build-asan -j"$(nproc)" --target vllm-router vllm-sim
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
exec /usr/bin/python3 tests/soak/soak.py --router build-asan/server/vllm-router --sim build-asan/tools/vllm-sim \
  --duration "$duration"
