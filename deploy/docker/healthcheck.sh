#!/bin/bash
# Container HEALTHCHECK: GET /health on the router, exit 0 on HTTP 200. Needs only bash
# (/dev/tcp) and coreutils' timeout, both in debian:bookworm-slim, so the image carries no curl.
# With TLS on the listener (VLLM_ROUTER_TLS_CERT_FILE set) it speaks HTTPS through
# `openssl s_client` (the openssl package comes with ca-certificates), without verifying: it
# asks the router on loopback whether it is alive, not who it is.
# Port: the argument; else the port the router (PID 1, the entrypoint; VLLM_ROUTER_HEALTHCHECK_PID
# for another) listens on, read from /proc (so --port, VLLM_ROUTER_PORT and a config file's port
# are all honoured); else $VLLM_ROUTER_PORT, else 8080 (the router's default).

# The TCP port a process listens on: its socket inodes matched against /proc/net/tcp{,6} LISTEN rows.
listening_port() {
  local pid="$1" fd link inodes=" " sl local rem st rest
  [ "$(cat /proc/"$pid"/comm 2> /dev/null)" = vllm-router ] || return 1
  for fd in /proc/"$pid"/fd/*; do
    link=$(readlink "$fd" 2> /dev/null) || continue
    case "$link" in socket:\[*\]) inodes+="${link:8:-1} " ;; esac
  done
  for table in /proc/"$pid"/net/tcp6 /proc/"$pid"/net/tcp; do
    [ -r "$table" ] || continue
    while read -r sl local rem st _ _ _ _ _ inode rest; do
      if [ "$st" = 0A ] && [[ "$inodes" == *" $inode "* ]]; then
        echo $((16#${local##*:}))
        return 0
      fi
    done < "$table"
  done
  return 1
}

port="${1:-}"
[ -n "$port" ] || port=$(listening_port "${VLLM_ROUTER_HEALTHCHECK_PID:-1}") || port=""
[ -n "$port" ] || port="${VLLM_ROUTER_PORT:-8080}"
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
