#!/usr/bin/env bash
# Packaging test: install the built project to a scratch prefix, then build and run consumers
# with find_package, with add_subdirectory, and with pkg-config.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/include/vllm_router/vllm_router.h"
ls "$work/prefix"/lib*/cmake/vllm_router/vllm_routerConfigVersion.cmake > /dev/null

echo "== find_package(vllm_router) from the install prefix"
cmake -S "$src/tests/packaging/consumer" -B "$work/fp" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/fp.log"
cmake --build "$work/fp" > "$work/fp-build.log"
LD_LIBRARY_PATH="$(ls -d "$work/prefix"/lib*)" "$work/fp/consumer"

echo "== pkg-config vllm_router"
pc_dir=$(dirname "$(ls "$work/prefix"/lib*/pkgconfig/vllm_router.pc)")
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs vllm_router)
# shellcheck disable=SC2086
c++ "$src/tests/packaging/consumer/main.cpp" -o "$work/pc-consumer" $flags
LD_LIBRARY_PATH="$(ls -d "$work/prefix"/lib*)" "$work/pc-consumer"

echo "== add_subdirectory(vllm_router)"
cmake -S "$src/tests/packaging/consumer" -B "$work/as" -DVLLM_ROUTER_SOURCE_DIR="$src" > "$work/as.log"
cmake --build "$work/as" -j2 > "$work/as-build.log"
"$work/as/consumer"
echo "packaging OK"
