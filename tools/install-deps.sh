#!/usr/bin/env bash
# Installs the Debian 12 packages vllm-router needs to build, test and run (idempotent).
# --build: only what building vllm-router and vllm-sim needs (the container image's build stage).
set -euo pipefail

if [ "${1:-}" = "--build" ]; then
  pkgs=(g++ make cmake pkg-config binutils libcpp-httplib-dev libsimdjson-dev libfmt-dev libc-ares-dev libssl-dev)
else
pkgs=(g++ make cmake pkg-config libcpp-httplib-dev libsimdjson-dev libfmt-dev doctest-dev libc-ares-dev
      libssl-dev python3 python3-dev python3-pytest pybind11-dev curl ca-certificates
      # tests/integration/test_router_tenants.py: rate limits shared by routers through Redis
      redis-server
      # examples/asio_host.cpp: standalone Asio (header-only)
      libasio-dev
      # tests/fuzz: libFuzzer with ASan/UBSan (clang and its runtime libraries); Boost.Beast's
      # request parser (header-only) for the differential target head_diff
      clang libclang-rt-14-dev libboost1.74-dev
      # the Helm chart's test: helm-render (Go, built offline against Debian's Go libraries)
      golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev python3-yaml
      # ... and its values.schema.json checked by a real JSON Schema implementation
      python3-jsonschema
      # tests/browser: the status page in headless Chromium, with a font for its screenshot
      chromium fonts-dejavu-core
      # tests/observability: promtool checks /metrics; a real Prometheus scrapes the router and
      # evaluates every query of the Grafana dashboard (deploy/grafana)
      prometheus
      # tests/integration: the IPv6 discovery test's network namespace (unshare, ip)
      util-linux iproute2)
# Node.js runs the end-to-end test with the official openai client; keep an existing install
# (a newer Node from elsewhere conflicts with Debian's npm package).
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  pkgs+=(nodejs npm)
fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "${1:-}" != "--build" ] || $sudo rm -rf /var/lib/apt/lists/*
fi
