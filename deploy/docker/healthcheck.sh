#!/bin/bash
# Container HEALTHCHECK: GET /health on the router, exit 0 on HTTP 200. Needs only bash
# (/dev/tcp) and coreutils' timeout, both in debian:bookworm-slim, so the image carries no curl.
# Port: $VLLM_ROUTER_PORT, else 8080 (the router's default).
port="${1:-${VLLM_ROUTER_PORT:-8080}}"
exec timeout 3 bash -c '
  exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
  printf "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
  IFS=" " read -r _ status _ <&3
  [ "$status" = 200 ]' healthcheck "$port"
