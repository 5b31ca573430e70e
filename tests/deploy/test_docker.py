"""The container image (./Dockerfile), checked without a container engine (tools/image.sh builds
and runs it with podman: a release check).

- no BuildKit frontend line (`# syntax=` fetches a frontend from a registry); bases from build
  arguments (pinned by digest for a release);
- its build stage runs the same scripts as the README's setup (tools/install-deps.sh, then
  tools/build.sh, as tools/test.sh and tools/demo.sh do), the packages in a layer of their own
  before the sources are copied, and builds no tests, benchmarks, bindings or examples;
- the runtime stage installs a Debian package for every shared library the installed binaries
  need (found with readelf/dpkg on the binaries this build produced), and the install step
  copies both binaries;
- the binaries it ships are stripped (the debug info stays in the build stage);
- non-root USER, EXPOSE 8080, ENTRYPOINT vllm-router, no ENV that would override a mounted
  config file, HEALTHCHECK with the healthcheck script, which is run here against a real router
  (exit 0, finding its port in /proc with no hint) and a dead port (exit != 0);
- the chart's appVersion (the default image tag) is the binary's version.

Environment: VLLM_ROUTER, VLLM_SIM (binaries), VLLM_ROUTER_BUILD_DIR (the cmake build tree).
"""

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
HEALTHCHECK = os.path.join(ROOT, "deploy", "docker", "healthcheck.sh")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from routerproc import dead_port, router_binary, run_router, start_router  # noqa: E402
from simproc import start_sim  # noqa: E402

# In debian:bookworm-slim already (essential or required by apt).
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}


def parse_dockerfile():
    """[(stage_from_line, [(INSTRUCTION, args), ...]), ...] with continuation lines joined and
    the global ARG defaults substituted into FROM lines."""
    text = open(DOCKERFILE).read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    args_before = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append((re.sub(r"\$\{(\w+)\}", lambda m: args_before[m.group(1)], args.strip()), []))
        elif not stages:
            assert instr == "ARG", "instruction before FROM: " + line
            name, _, default = args.partition("=")
            args_before[name.strip()] = default.strip()
        else:
            stages[-1][1].append((instr, " ".join(args.split())))
    return stages


def test_no_frontend_line_and_bases_from_build_args():
    first = open(DOCKERFILE).readline()
    assert not first.lower().startswith("# syntax="), first
    text = open(DOCKERFILE).read()
    assert "syntax=" not in text.split("ARG", 1)[0].lower()
    assert "FROM ${BUILD_BASE} AS build" in text and "FROM ${RUNTIME_BASE}" in text


def commands(run_args):
    """The shell commands of a RUN (split on &&)."""
    return [c.strip() for c in run_args.split("&&")]


def script_steps(path):
    """The `bash tools/...sh` lines of a setup script."""
    return [line.strip() for line in open(os.path.join(ROOT, path))
            if re.match(r"^\s*bash tools/[\w-]+\.sh", line)]


def test_build_stage_runs_the_readme_setup():
    stages = parse_dockerfile()
    assert len(stages) == 2
    build_from, build = stages[0]
    assert build_from == "debian:bookworm AS build"
    runs = [c for instr, args in build if instr == "RUN" for c in commands(args)]
    steps = [c.split()[:2] for c in runs if c.startswith("bash tools/")]
    assert steps == [["bash", "tools/install-deps.sh"], ["bash", "tools/build.sh"]], runs
    # The dependency layer comes before the sources: only install-deps.sh is copied for it.
    order = [(i, a) for i, a in build if i in ("COPY", "RUN")]
    assert order[0] == ("COPY", "tools/install-deps.sh tools/install-deps.sh")
    assert order[1] == ("RUN", "bash tools/install-deps.sh --build")
    assert order[2] == ("COPY", ". .")
    # Runtime targets only.
    build_cmd = [c for c in runs if c.startswith("bash tools/build.sh")][0]
    for off in ("TESTS", "BINDINGS", "EXAMPLES", "BENCH"):
        assert f"-DVLLM_ROUTER_BUILD_{off}=OFF" in build_cmd, build_cmd
    # The README's setup is tools/test.sh and tools/demo.sh: both start with the same two steps
    # (test.sh adds warnings-as-errors to the build).
    readme = open(os.path.join(ROOT, "README.md")).read()
    for script in ("tools/test.sh", "tools/demo.sh"):
        assert f"bash {script}" in readme
        got = [s.split()[:2] for s in script_steps(script)]
        assert got[:2] == [["bash", "tools/install-deps.sh"], ["bash", "tools/build.sh"]], (script, got)


def installed_tree(tmp_path):
    """Runs the build stage's install RUN (after the README steps) on this build tree, with
    /stage and /runtime moved under tmp_path; returns what the runtime stage copies."""
    build_dir = os.environ.get("VLLM_ROUTER_BUILD_DIR") or os.path.join(ROOT, "build")
    _, build = parse_dockerfile()[0]
    runs = [args for instr, args in build if instr == "RUN"]
    install = [r for r in runs if "cmake --install" in r]
    assert len(install) == 1 and install[0].startswith("DESTDIR=/stage cmake --install build "), runs
    script = install[0].replace("cmake --install build ", f"cmake --install {shlex.quote(build_dir)} ")
    script = script.replace("/stage", str(tmp_path / "stage")).replace("/runtime", str(tmp_path / "runtime"))
    script = script.replace("/debug", str(tmp_path / "debug"))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (script, proc.stderr[-2000:])
    return tmp_path / "runtime" / "usr" / "local"


def needed(path):
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def debian_package_of(soname):
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths = re.findall(r"^\s*" + re.escape(soname) + r" \(libc6,x86-64[^)]*\) => (\S+)$", ldconfig, re.M)
    assert paths, f"{soname}: not found by ldconfig -p"
    for p in paths:
        for candidate in (p, os.path.realpath(p)):
            proc = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if proc.returncode == 0:
                return proc.stdout.split(":")[0].strip()
    pytest.fail(f"{soname}: no Debian package owns {paths}")


def test_runtime_stage_has_binaries_and_their_libraries(tmp_path):
    runtime_from, runtime = parse_dockerfile()[1]
    assert runtime_from == "debian:bookworm-slim"
    apt = [c for instr, args in runtime if instr == "RUN" for c in commands(args) if "apt-get install" in c]
    assert len(apt) == 1
    packages = {w for w in apt[0].split() if not w.startswith("-") and w not in
                ("DEBIAN_FRONTEND=noninteractive", "apt-get", "install")}
    assert ("COPY", "--from=build /runtime/usr/local/ /usr/local/") in runtime

    tree = installed_tree(tmp_path)
    binaries = [tree / "bin" / "vllm-router", tree / "bin" / "vllm-sim"]
    for b in binaries:
        assert b.exists() and os.access(b, os.X_OK), b
    ours = sorted((tree / "lib").glob("libvllm_router.so*"))
    assert ours, list((tree / "lib").iterdir())
    assert sorted(p.name for p in tree.iterdir()) == ["bin", "lib"]
    assert sorted(p.name for p in (tree / "bin").iterdir()) == ["vllm-router", "vllm-sim"]
    sonames = set()
    for f in binaries + [p for p in ours if not p.is_symlink()]:
        sonames.update(needed(f))
    missing = {}
    for so in sorted(sonames):
        if so.startswith("libvllm_router.so") or so.startswith("ld-linux"):
            continue
        pkg = debian_package_of(so)
        if pkg not in packages and pkg not in BASE_PACKAGES:
            missing[so] = pkg
    assert not missing, f"runtime stage lacks packages for {missing} (has {sorted(packages)})"
    # The copied tree is complete: with its lib/ on the library path nothing is missing, and
    # both programs start.
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "lib"))
    for b in binaries:
        ldd = subprocess.run(["ldd", str(b)], env=env, capture_output=True, text=True, check=True).stdout
        assert "not found" not in ldd, ldd
    version = subprocess.run([str(binaries[0]), "--version"], env=env, capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and version.stdout.startswith("vllm-router "), version
    sim = subprocess.run([str(binaries[1]), "--help"], env=env, capture_output=True, text=True, timeout=10)
    assert sim.returncode == 0, sim
    # Stripped: no debug sections in what ships; each has its debug file (kept in the stage).
    for f in binaries + [p for p in ours if not p.is_symlink()]:
        sections = subprocess.run(["readelf", "-S", "-W", str(f)], capture_output=True, text=True, check=True).stdout
        assert ".debug_info" not in sections and ".gnu_debuglink" in sections, f
        assert (tmp_path / "debug" / (f.name + ".debug")).exists(), f
    # The runtime stage runs ldconfig (our library lives in /usr/local/lib) and smoke-tests both.
    runs = [c for instr, args in runtime if instr == "RUN" for c in commands(args)]
    assert "ldconfig" in runs
    assert any(c.startswith("vllm-router --version") for c in runs)


def test_runtime_stage_metadata():
    _, runtime = parse_dockerfile()[1]
    instr = {}
    for i, args in runtime:
        instr.setdefault(i, []).append(args)
    user = instr["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert instr["EXPOSE"] == ["8080"]
    # No ENV VLLM_ROUTER_*: variables win over a mounted config file's port and host.
    assert not any("VLLM_ROUTER_" in e for e in instr.get("ENV", [])), instr.get("ENV")
    assert json.loads(instr["ENTRYPOINT"][-1]) == ["vllm-router"]
    hc = instr["HEALTHCHECK"][-1]
    assert "CMD" in hc and "/usr/local/bin/vllm-router-healthcheck" in hc
    assert "deploy/docker/healthcheck.sh /usr/local/bin/vllm-router-healthcheck" in instr["COPY"]
    # The chart's pods run as the image's user.
    values = yaml.safe_load(open(os.path.join(ROOT, "deploy", "helm", "vllm-router", "values.yaml")))
    assert str(values["router"]["podSecurityContext"]["runAsUser"]) == user
    # .dockerignore keeps the host's build tree and git metadata out of the context.
    ignore = open(os.path.join(ROOT, ".dockerignore")).read().split()
    assert "build" in ignore and ".git" in ignore


def test_chart_app_version_is_the_binary_version():
    chart = yaml.safe_load(open(os.path.join(ROOT, "deploy", "helm", "vllm-router", "Chart.yaml")))
    out = run_router("--version").stdout.split()
    assert out[0] == "vllm-router" and out[1] == chart["appVersion"], (out, chart["appVersion"])


def test_healthcheck_script_against_a_real_router():
    with start_sim("--model", "m") as sim, start_router("--model", f"m={sim.url}") as router:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ROUTER_")}
        ok = subprocess.run(["bash", HEALTHCHECK], env=dict(env, VLLM_ROUTER_PORT=str(router.port)),
                            capture_output=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
        ok = subprocess.run(["bash", HEALTHCHECK, str(router.port)], env=env, capture_output=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
        # No argument, no variable: the port the router process listens on, read from /proc.
        found = subprocess.run(["bash", HEALTHCHECK], env=dict(env, VLLM_ROUTER_HEALTHCHECK_PID=str(router.pid)),
                               capture_output=True, timeout=10)
        assert found.returncode == 0, found.stderr
        # A wrong variable is not believed when the listener is found (a config file's port).
        found = subprocess.run(["bash", HEALTHCHECK], env=dict(env, VLLM_ROUTER_HEALTHCHECK_PID=str(router.pid),
                                                               VLLM_ROUTER_PORT=str(dead_port())),
                               capture_output=True, timeout=10)
        assert found.returncode == 0, found.stderr
        # Nothing listens: unhealthy.
        bad = subprocess.run(["bash", HEALTHCHECK, str(dead_port())], env=env, capture_output=True, timeout=10)
        assert bad.returncode != 0


def test_healthcheck_script_over_tls(tmp_path):
    """With VLLM_ROUTER_TLS_CERT_FILE set (as in the chart with router.tls), the check speaks HTTPS."""
    from tlscerts import make_certs  # noqa: E402 (tests/integration)
    certs = make_certs(str(tmp_path))
    with start_sim("--model", "m") as sim, start_router("--model", f"m={sim.url}", "--tls-cert", certs.cert,
                                                        "--tls-key", certs.key) as router:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ROUTER_")}
        tls_env = dict(env, VLLM_ROUTER_PORT=str(router.port), VLLM_ROUTER_TLS_CERT_FILE=certs.cert)
        ok = subprocess.run(["bash", HEALTHCHECK], env=tls_env, capture_output=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
        # Plain HTTP to the TLS port is not an answer.
        plain = subprocess.run(["bash", HEALTHCHECK, str(router.port)], env=env, capture_output=True, timeout=10)
        assert plain.returncode != 0
        bad = subprocess.run(["bash", HEALTHCHECK, str(dead_port())], env=tls_env, capture_output=True, timeout=10)
        assert bad.returncode != 0


def test_healthcheck_script_wants_200():
    """A server that answers /health with 503 is unhealthy."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503 if self.path == "/health" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        bad = subprocess.run(["bash", HEALTHCHECK, str(server.server_address[1])],
                             capture_output=True, timeout=10)
        assert bad.returncode != 0
    finally:
        server.shutdown()
        server.server_close()
