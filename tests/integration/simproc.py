"""Process helpers for integration tests: start and stop `vllm-sim` (stdlib only).

Stable API (shared by several test files; extend, do not change):

    start_sim(*args, env=None, timeout=5.0) -> SimProcess
        Starts the vllm-sim binary with `--port 0` plus `args` (strings), waits for its
        "vllm-sim listening on http://HOST:PORT" line (https:// with --tls-cert: then .url
        starts with https://) and returns a SimProcess.
    SimProcess: .port (int), .host (str), .url ("http://HOST:PORT"), .proc (subprocess.Popen),
        .stop(timeout=5.0) -> exit code (SIGTERM by PID, SIGKILL by PID if it does not exit).
        Also a context manager (`with start_sim(...) as sim:`) that stops on exit.
    sim_binary() -> absolute path of the binary: $VLLM_SIM, else <repo>/build/tools/vllm-sim.
    repo_root() -> absolute path of the repository root.

A started sim is also stopped at interpreter exit if a test forgot to.
"""

import atexit
import os
import select
import signal
import subprocess
import time

__all__ = ["SimProcess", "ManagedProcess", "read_announcement", "start_sim", "sim_binary", "repo_root"]

_LISTEN_PREFIX = "vllm-sim listening on http://"
_TLS_LISTEN_PREFIX = "vllm-sim listening on https://"
_live = set()


def repo_root():
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sim_binary():
    path = os.environ.get("VLLM_SIM") or os.path.join("build", "tools", "vllm-sim")
    if not os.path.isabs(path):
        path = os.path.join(repo_root(), path)
    return path


class ManagedProcess:
    """A started server process: .proc, .host, .port, .url, .pid, .stop(); a context manager.
    Shared by SimProcess and routerproc.RouterProcess."""

    _registry = None  # the set of live processes of the subclass's module

    def __init__(self, proc, host, port):
        self.proc = proc
        self.host = host
        self.port = port
        self.url = "http://%s:%d" % (host, port)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=5.0):
        """Stops the process (SIGTERM, then SIGKILL after `timeout`); returns its exit code."""
        if self._registry is not None:
            self._registry.discard(self)
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "%s(pid=%d, url=%s)" % (type(self).__name__, self.proc.pid, self.url)


def read_announcement(proc, prefix, timeout, with_prefix=False):
    """Reads the first stdout line of `proc` (within `timeout` s). Returns (host, port) when it
    is `prefix` + "HOST:PORT" (`prefix` may be a tuple of prefixes; `with_prefix`: returns
    (matched prefix, host, port)); otherwise kills the process and returns the line it got."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            break
        line += chunk
    text = line.decode(errors="replace").strip()
    if not text.startswith(prefix):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return text
    matched = next(p for p in ((prefix,) if isinstance(prefix, str) else prefix) if text.startswith(p))
    host, _, port = text[len(matched):].rpartition(":")
    return (matched, host, int(port)) if with_prefix else (host, int(port))


class SimProcess(ManagedProcess):
    _registry = _live


def start_sim(*args, env=None, timeout=5.0):
    """Starts vllm-sim on a free port and waits until it listens."""
    binary = sim_binary()
    if not os.path.exists(binary):
        raise FileNotFoundError("vllm-sim binary not found at %s (set VLLM_SIM)" % binary)
    cmd = [binary, "--port", "0"] + [str(a) for a in args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    got = read_announcement(proc, (_LISTEN_PREFIX, _TLS_LISTEN_PREFIX), timeout, with_prefix=True)
    if isinstance(got, str):
        raise RuntimeError("vllm-sim did not announce its port (got %r, rc=%r, cmd=%r)"
                           % (got, proc.returncode, cmd))
    prefix, host, port = got
    sim = SimProcess(proc, host, port)
    if prefix == _TLS_LISTEN_PREFIX:
        sim.url = "https://%s:%d" % (host, port)
    _live.add(sim)
    return sim


@atexit.register
def _stop_all():
    for sim in list(_live):
        try:
            sim.stop(timeout=2.0)
        except Exception:
            pass
