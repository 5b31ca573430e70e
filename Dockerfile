# vllm-router container image: the gateway (`vllm-router`, the entrypoint) and the simulated
# engine (`vllm-sim`). Build from the repository root:
#   docker build -t vllm-router .            (or: podman build -t vllm-router .)
# No BuildKit frontend line: any builder (docker, podman, buildah) builds it offline from its
# bases. Pin the bases by digest for a release (deploy/docker/README.md says how, and how
# tools/image.sh makes them with debootstrap when no registry is at hand):
#   --build-arg BUILD_BASE=debian:bookworm@sha256:... --build-arg RUNTIME_BASE=debian:bookworm-slim@sha256:...
ARG BUILD_BASE=debian:bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

# ---- build: the README's setup (tools/install-deps.sh, then tools/build.sh), runtime targets only ----
FROM ${BUILD_BASE} AS build
WORKDIR /src
# The packages first, in their own layer: a source edit does not reinstall them.
COPY tools/install-deps.sh tools/install-deps.sh
RUN bash tools/install-deps.sh --build
COPY . .
# Only the library, vllm-router and vllm-sim (no tests, benchmarks, bindings or examples).
RUN bash tools/build.sh -DVLLM_ROUTER_BUILD_TESTS=OFF -DVLLM_ROUTER_BUILD_BINDINGS=OFF -DVLLM_ROUTER_BUILD_EXAMPLES=OFF -DVLLM_ROUTER_BUILD_BENCH=OFF
# Install, keep what runs (the two executables and the shared library they link), stripped; the
# debug info stays in this stage (/debug, by build id) for whoever needs to read a core dump.
RUN DESTDIR=/stage cmake --install build --prefix /usr/local \
 && mkdir -p /runtime/usr/local/lib /debug \
 && cp -a /stage/usr/local/bin /runtime/usr/local/ \
 && cp -a /stage/usr/local/lib/libvllm_router.so.0* /runtime/usr/local/lib/ \
 && for f in /runtime/usr/local/bin/vllm-router /runtime/usr/local/bin/vllm-sim /runtime/usr/local/lib/libvllm_router.so.0.*; do objcopy --only-keep-debug "$f" "/debug/$(basename "$f").debug" && objcopy --strip-unneeded --add-gnu-debuglink="/debug/$(basename "$f").debug" "$f"; done

# ---- runtime: the binaries and their shared libraries only ----
FROM ${RUNTIME_BASE}
# Runtime libraries of vllm-router and vllm-sim (libc6, libstdc++6, libgcc-s1 come with the base).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcpp-httplib0.11 libsimdjson14 libfmt9 libssl3 libc-ares2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=build /runtime/usr/local/ /usr/local/
COPY deploy/docker/healthcheck.sh /usr/local/bin/vllm-router-healthcheck
RUN ldconfig \
 && groupadd --system --gid 10001 vllm-router \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vllm-router \
 && vllm-router --version && vllm-sim --help > /dev/null
USER 10001:10001
# The router's defaults: port 8080 on "::" (IPv4 and IPv6). No ENV for them: a variable would
# override the port or address of a mounted config file (variables win over the file).
EXPOSE 8080
# Asks the port the router bound (its /proc/net/tcp{,6} listener), so --port and config files
# are honoured.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/vllm-router-healthcheck"]
ENTRYPOINT ["vllm-router"]
