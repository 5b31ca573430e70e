#!/usr/bin/env bash
# End-to-end test of vllm-router with the official openai npm client (plain HTTP and HTTPS).
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

# Certificates for the HTTPS case (openai_tls.test.mjs): a CA and a server certificate for
# localhost and 127.0.0.1, made here because Node reads NODE_EXTRA_CA_CERTS at start only.
tls_dir=$(mktemp -d)
trap 'rm -rf "$tls_dir"' EXIT
(
  cd "$tls_dir"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=e2e-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout server.key -out server.csr 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
    -out server.pem 2>/dev/null
)
export E2E_TLS_DIR=$tls_dir NODE_EXTRA_CA_CERTS=$tls_dir/ca.pem

node --test
