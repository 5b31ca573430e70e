#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install, build, and run the gateway in front of two
# simulated vLLM engines (prints curl lines to try it). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh
exec ./build/server/vllm-router --demo --host 127.0.0.1 --port "${PORT:-8000}"
