#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build with warnings as errors, run every
# test (unit, integration against real processes, openai npm end-to-end, packaging).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh -DVLLM_ROUTER_WERROR=ON
ctest --test-dir build --output-on-failure --timeout 600 "$@"
