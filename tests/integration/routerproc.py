"""Process helpers for integration tests: start and stop `vllm-router` (stdlib only).

Mirrors simproc.py. Stable API (shared by several test files; extend, do not change):

    start_router(*args, env=None, timeout=5.0) -> RouterProcess
        Starts the vllm-router binary with `--host 127.0.0.1 --port 0` plus `args` (strings),
        waits for its "vllm-router listening on http://HOST:PORT" line and returns a
        RouterProcess. `env=None` inherits the environment minus every VLLM_ROUTER_* variable
        (so a developer's shell cannot change what a test configures); pass a dict to set it
        exactly.
    RouterProcess: .port (int), .host (str), .url ("http://HOST:PORT"),
        .proc (subprocess.Popen), .stop(timeout=5.0) -> exit code (SIGTERM by PID, SIGKILL by
        PID if it does not exit). Also a context manager that stops on exit.
    router_binary() -> absolute path: $VLLM_ROUTER, else <repo>/build/server/vllm-router.
    run_router(*args, env=None, timeout=10.0) -> subprocess.CompletedProcess (text mode)
        for one-shot invocations (--help, --version, --check-config).
    clean_env(**extra) -> os.environ minus VLLM_ROUTER_* plus `extra`.

stderr of a started router goes to a temporary file (.stderr_text() reads it), so a chatty
log never blocks the process. A started router is also stopped at interpreter exit.
"""

import atexit
import os
import select
import signal
import subprocess
import tempfile
import time

from simproc import repo_root

__all__ = ["RouterProcess", "start_router", "run_router", "router_binary", "clean_env"]

_LISTEN_PREFIX = "vllm-router listening on http://"
_live = set()


def router_binary():
    path = os.environ.get("VLLM_ROUTER") or os.path.join("build", "server", "vllm-router")
    if not os.path.isabs(path):
        path = os.path.join(repo_root(), path)
    return path


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ROUTER_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class RouterProcess:
    def __init__(self, proc, host, port, stderr_file):
        self.proc = proc
        self.host = host
        self.port = port
        self.url = "http://%s:%d" % (host, port)
        self._stderr = stderr_file

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=5.0):
        """Stops the router (SIGTERM, then SIGKILL after `timeout`); returns its exit code."""
        _live.discard(self)
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
        return "RouterProcess(pid=%d, url=%s)" % (self.proc.pid, self.url)


def start_router(*args, env=None, timeout=5.0):
    """Starts vllm-router on a free loopback port and waits until it listens."""
    binary = router_binary()
    if not os.path.exists(binary):
        raise FileNotFoundError("vllm-router binary not found at %s (set VLLM_ROUTER)" % binary)
    cmd = [binary, "--host", "127.0.0.1", "--port", "0"] + [str(a) for a in args]
    stderr_file = tempfile.NamedTemporaryFile(prefix="vllm-router-", suffix=".log")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=stderr_file, env=clean_env() if env is None else env)
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
    if not text.startswith(_LISTEN_PREFIX):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stderr_file.flush()
        with open(stderr_file.name, "rb") as f:
            err = f.read().decode(errors="replace")
        raise RuntimeError("vllm-router did not announce its port (got %r, rc=%r, cmd=%r, "
                           "stderr=%r)" % (text, proc.returncode, cmd, err[-2000:]))
    hostport = text[len(_LISTEN_PREFIX):]
    host, _, port = hostport.rpartition(":")
    router = RouterProcess(proc, host, int(port), stderr_file)
    _live.add(router)
    return router


def run_router(*args, env=None, timeout=10.0):
    """Runs vllm-router to completion (for --help, --version, --check-config)."""
    cmd = [router_binary()] + [str(a) for a in args]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env=clean_env() if env is None else env)


@atexit.register
def _stop_all():
    for router in list(_live):
        try:
            router.stop(timeout=2.0)
        except Exception:
            pass
