#!/usr/bin/env bash
# Builds the container image (./Dockerfile) with podman from a Debian base made here by
# debootstrap (no registry needed), runs it, and checks it: /health, /v1/models and a streamed
# completion through the router to the image's own vllm-sim, the HEALTHCHECK, uid 10001, a
# read-only root filesystem; prints size, layers and timings. A release check (about 10 minutes
# on 2 cores): `bash tools/image.sh`; its last result is in deploy/docker/README.md.
# Needs root, debootstrap, podman (apt-get install debootstrap podman). Builds with
# `--isolation chroot` (no OCI runtime: works where crun cannot make containers, e.g. hybrid
# cgroups); runs the image with `podman run` when that works, else its root filesystem in
# namespaces of its own (unshare: the router is PID 1, the root read-only, uid 10001), which is
# what a container is minus cgroups.
# Environment: IMAGE (default localhost/vllm-router:test), CACHE (default build-image/: the
# debootstrapped base, reused), MIRROR (default http://deb.debian.org/debian), KEEP=1 keeps the
# image, SKIP_BUILD=1 checks an image already built.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-localhost/vllm-router:test}"
CACHE="${CACHE:-build-image}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE=localhost/debian-debootstrap:bookworm
for tool in debootstrap podman; do
  command -v "$tool" > /dev/null || { echo "image.sh: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$CACHE"

# 1. The base: debootstrap's minbase bookworm, imported as an image (both stages start from it:
# the build stage installs its compilers, the runtime stage only the runtime libraries).
if ! podman image exists "$BASE"; then
  if [ ! -f "$CACHE/base.tar" ]; then
    rm -rf "$CACHE/rootfs"
    started=$(date +%s)
    debootstrap --variant=minbase bookworm "$CACHE/rootfs" "$MIRROR" > "$CACHE/debootstrap.log"
    rm -rf "$CACHE"/rootfs/var/cache/apt/archives/*.deb "$CACHE"/rootfs/var/lib/apt/lists/*
    tar -C "$CACHE/rootfs" -cf "$CACHE/base.tar" .
    rm -rf "$CACHE/rootfs"
    echo "base: debootstrap in $(( $(date +%s) - started )) s"
  fi
  podman import --change 'CMD ["/bin/bash"]' "$CACHE/base.tar" "$BASE" > /dev/null
fi
base_digest=$(podman image inspect --format '{{.Digest}}' "$BASE")
echo "base: $BASE ($base_digest)"

# 2. The image, from the repository root as `docker build .` would.
started=$(date +%s)
[ "${SKIP_BUILD:-0}" = 1 ] || podman build --isolation "${ISOLATION:-chroot}" --network host --build-arg BUILD_BASE="$BASE" --build-arg RUNTIME_BASE="$BASE" \
  -t "$IMAGE" . > "$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log"; exit 1; }
build_s=$(( $(date +%s) - started ))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
layers=$(podman image inspect --format '{{len .RootFS.Layers}}' "$IMAGE")
echo "image: $IMAGE built in ${build_s} s, $((size / 1000000)) MB, $layers layers"

# 3. Run it: the demo (router + two vllm-sim engines in the container), read-only root, on a
# free port of the host network (whatever --port says, the HEALTHCHECK must find it).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="vllm-router-image-check-$$"
pid=""
cleanup() {
  podman rm -f "$name" > /dev/null 2>&1 || true
  [ -z "$pid" ] || kill "$pid" 2> /dev/null || true
  [ -z "$pid" ] || wait "$pid" 2> /dev/null || true
  podman image unmount "$IMAGE" > /dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || podman rmi -f "$IMAGE" > /dev/null 2>&1 || true
}
trap cleanup EXIT
started=$(date +%s%N)
if podman run -d --name "$name" --network host --read-only "$IMAGE" --demo --port "$port" > /dev/null 2> "$CACHE/podman-run.log"; then
  health() { podman healthcheck run "$name"; }
  in_image() { podman exec "$name" "$@"; }
  how="podman run"
else
  # No OCI runtime here (see above): the image's root filesystem, read-only, in new mount and
  # PID namespaces, as uid 10001, sharing the host's network like --network host.
  root=$(podman image mount "$IMAGE")
  unshare --mount --pid --fork --propagation private bash -c '
    mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"       && mount -t proc proc "$1/proc" && mount --bind /dev "$1/dev"       && mount -t tmpfs -o size=16m tmpfs "$1/tmp"       && exec chroot --userspec=10001:10001 "$1" /usr/local/bin/vllm-router --demo --port "$2"'     image "$root" "$port" > "$CACHE/run.log" 2>&1 &
  pid=$!
  inner() { local p; p=$(pgrep -P "$pid" -x vllm-router || pgrep -P "$(pgrep -P "$pid" | head -1)" -x vllm-router); echo "$p"; }
  health() { local p; p=$(inner) && [ -n "$p" ] && nsenter -t "$p" -m -p chroot --userspec=10001:10001 "$root" /usr/local/bin/vllm-router-healthcheck; }
  in_image() { local p; p=$(inner); nsenter -t "$p" -m -p chroot --userspec=10001:10001 "$root" "$@"; }
  how="unshare + chroot (podman run: $(tail -1 "$CACHE/podman-run.log"))"
fi
healthy=""
for _ in $(seq 1 200); do
  if health > /dev/null 2>&1; then healthy=yes; break; fi
  sleep 0.05
done
[ -n "$healthy" ] || { tail -20 "$CACHE/run.log"; echo "image.sh: never healthy" >&2; exit 1; }
echo "run: $how"
echo "healthy in $(( ($(date +%s%N) - started) / 1000000 )) ms (HEALTHCHECK on port $port, found in /proc)"
uid=$(in_image id -u)
[ "$uid" = 10001 ] || { echo "image.sh: runs as uid $uid" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$port/health" > /dev/null
models=$(curl -fsS "http://127.0.0.1:$port/v1/models")
grep -q '"TheBloke/Llama-2-13B-chat-GPTQ"' <<< "$models" && grep -q '"meta-llama/Llama-2-7B-chat-hf"' <<< "$models" \
  || { echo "image.sh: /v1/models: $models" >&2; exit 1; }
stream=$(curl -fsS -N "http://[::1]:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"meta-llama/Llama-2-7B-chat-hf","messages":[{"role":"user","content":"Hello"}],"stream":true}')
grep -q '^data: \[DONE\]' <<< "$stream" || { echo "image.sh: stream: $stream" >&2; exit 1; }
in_image bash -c 'touch /usr/local/probe' 2> /dev/null && { echo "image.sh: the root is writable" >&2; exit 1; }
echo "checks: /health, /v1/models (both demo models), a streamed completion over IPv6 ([::1]), uid 10001, read-only root: ok"
# Stripped: no debug sections shipped.
if in_image bash -c 'grep -c debug_info /usr/local/bin/vllm-router' > /dev/null 2>&1; then
  echo "image.sh: vllm-router still carries .debug_info" >&2; exit 1
fi
echo "ok"
