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
cflags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags vllm_router)
case " $cflags " in
  *" -D"*) if [ "$cflags" != "${cflags/-DVLLM_ROUTER_STATIC/}" ] && [ "$(grep -o -- ' -D' <<< " $cflags" | wc -l)" -eq 1 ]; then :; else
             echo "pkg-config --cflags leaks private compile flags: $cflags" >&2; exit 1; fi ;;
esac
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs vllm_router)
# shellcheck disable=SC2086
c++ "$src/tests/packaging/consumer/main.cpp" -o "$work/pc-consumer" $flags
# No LD_LIBRARY_PATH: the .pc file's run path finds the library in the relocated prefix.
"$work/pc-consumer"

echo "== installed headers include no third-party header"
if grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](httplib|simdjson)' "$work/prefix/include"; then
  echo "installed headers include cpp-httplib or simdjson" >&2
  exit 1
fi

echo "== a consumer with no cpp-httplib or simdjson headers anywhere on its include path"
# Mirror the compiler's own search path with symlinks, minus httplib.h and simdjson*, and compile
# with -nostdinc against that mirror plus the installed include/ tree only.
sysinc="$work/sysinc"
isystem=()
i=0
while read -r dir; do
  [ -d "$dir" ] || continue
  mirror="$sysinc/$i"
  mkdir -p "$mirror"
  for entry in "$dir"/* "$dir"/.[!.]*; do
    [ -e "$entry" ] || continue
    case "$(basename "$entry")" in httplib.h | simdjson* | vllm_router*) continue ;; esac
    ln -s "$entry" "$mirror/"
  done
  isystem+=(-isystem "$mirror")
  i=$((i + 1))
done < <(c++ -xc++ -E -v /dev/null 2>&1 | sed -n '/#include <...> search starts here/,/End of search list/p' | sed -n 's/^ //p')
cat > "$work/probe.cpp" <<'PROBE'
#if __has_include(<httplib.h>) || __has_include(<simdjson.h>)
#error "third-party headers are visible: the check would prove nothing"
#endif
#include <vllm_router/vllm_router.h>
PROBE
c++ -std=c++20 -nostdinc "${isystem[@]}" -I "$work/prefix/include" -fsyntax-only "$work/probe.cpp"
c++ -std=c++20 -nostdinc "${isystem[@]}" -I "$work/prefix/include" -c "$src/tests/packaging/consumer/main.cpp" -o "$work/bare.o"
c++ "$work/bare.o" -o "$work/bare-consumer" -L"$(ls -d "$work/prefix"/lib*)" -lvllm_router -pthread
LD_LIBRARY_PATH="$(ls -d "$work/prefix"/lib*)" "$work/bare-consumer"

if [ -f "$work/prefix/include/vllm_router_c.h" ]; then
  echo "== the C API from the install prefix (compiled as C)"
  cat > "$work/c_consumer.c" <<'CSRC'
#include <vllm_router_c.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  const char* json = "{\"models\":[{\"name\":\"m\",\"endpoints\":[\"http://127.0.0.1:9001\"]}]}";
  vr_router* router = NULL;
  vr_lease* lease = NULL;
  if (vr_router_create_from_json(json, strlen(json), NULL, &router) != VR_OK) return 1;
  const char* body = "{\"model\":\"m\"}";
  if (vr_route(router, body, strlen(body), NULL, &lease) != VR_OK) return 1;
  printf("C consumer: vllm_router %s -> %s\n", vr_version(), vr_lease_endpoint_url(lease));
  vr_lease_cancel(lease);
  vr_router_destroy(router);
  return 0;
}
CSRC
  cc -std=c11 -Wall -Werror "$work/c_consumer.c" -o "$work/c-consumer" -I "$work/prefix/include" \
    -L"$(ls -d "$work/prefix"/lib*)" -Wl,-rpath-link,"$(ls -d "$work/prefix"/lib*)" -lvllm_router_c
  LD_LIBRARY_PATH="$(ls -d "$work/prefix"/lib*)" "$work/c-consumer"
fi

py_module=$(ls "$work/prefix"/lib*/python3*/dist-packages/vllm_router*.so 2>/dev/null | head -n1 || true)
if [ -n "$py_module" ]; then
  echo "== the installed Python module (found through its RUNPATH, no LD_LIBRARY_PATH)"
  (cd "$work" && PYTHONPATH="$(dirname "$py_module")" /usr/bin/python3 -c \
    'import vllm_router; r = vllm_router.Router.from_config({"models": [{"name": "m", "endpoints": ["http://127.0.0.1:9001"]}]}); print("python:", vllm_router.__version__, r.route({"model": "m"}).endpoint_url)')
fi

echo "== add_subdirectory(vllm_router)"
# The library alone needs neither fmt nor the test tools: a find_package(fmt) would fail here.
cmake -S "$src/tests/packaging/consumer" -B "$work/as" -DVLLM_ROUTER_SOURCE_DIR="$src" \
  -DCMAKE_DISABLE_FIND_PACKAGE_fmt=ON -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON > "$work/as.log"
cmake --build "$work/as" -j2 > "$work/as-build.log"
"$work/as/consumer"
echo "packaging OK"
