#!/usr/bin/env bash
# End-to-end test of vllm-router with the official openai npm client.
# Env: VLLM_ROUTER, VLLM_SIM (binaries; default ../../build/server/vllm-router and
# ../../build/tools/vllm-sim relative to this folder). Relative paths are taken from the
# caller's directory. Exit code = test result.
set -euo pipefail

for var in VLLM_ROUTER VLLM_SIM; do
  if [[ -n "${!var:-}" && "${!var}" != /* ]]; then
    export "$var=$PWD/${!var}"
  fi
done

cd "$(dirname "${BASH_SOURCE[0]}")"

# Install the pinned client. npm ci deletes node_modules and reinstalls from package-lock.json
# (from the npm cache when possible), so skip it when node_modules already matches the lock
# file: then no network is needed at all.
lock_matches() {
  node -e '
    const fs = require("node:fs"), util = require("node:util");
    const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages;
    const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages;
    delete want[""];
    process.exit(util.isDeepStrictEqual(want, have) ? 0 : 1);
  ' 2>/dev/null
}
if ! lock_matches; then
  npm ci --no-audit --no-fund --prefer-offline
fi

exec node --test
