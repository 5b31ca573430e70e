#!/bin/bash
# Container HEALTHCHECK: GET /health on the router, exit 0 on HTTP 200. Needs only bash
# (/dev/tcp) and coreutils' timeout, both in debian:bookworm-slim, so the image carries no curl.
# With TLS on the listener (VLLM_ROUTER_TLS_CERT_FILE set) it speaks HTTPS through
# `openssl s_client` (the openssl package comes with ca-certificates), without verifying: it
# asks the router on loopback whether it is alive, not who it is.
# Port: $VLLM_ROUTER_PORT, else 8080 (the router's default).
port="${1:-${VLLM_ROUTER_PORT:-8080}}"
if [ -n "${VLLM_ROUTER_TLS_CERT_FILE:-}" ]; then
  exec timeout 3 bash -c '
    printf "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" |
      openssl s_client -quiet -connect "127.0.0.1:$1" -servername localhost 2>/dev/null | {
        IFS=" " read -r _ status _
        [ "$status" = 200 ]
      }' healthcheck "$port"
fi
exec timeout 3 bash -c '
  exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
  printf "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
  IFS=" " read -r _ status _ <&3
  [ "$status" = 200 ]' healthcheck "$port"
