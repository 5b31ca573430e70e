"""Process helpers for integration tests: start and stop `vllm-router` (stdlib only).

Mirrors simproc.py. Stable API (shared by several test files; extend, do not change):

    start_router(*args, env=None, timeout=5.0) -> RouterProcess
        Starts the vllm-router binary with `--host 127.0.0.1 --port 0` plus `args` (strings),
        waits for its "vllm-router listening on http://HOST:PORT" line (https:// with TLS on the
        listener: then .url starts with https://) and returns a RouterProcess. `env=None` inherits the environment minus every VLLM_ROUTER_* variable
        (so a developer's shell cannot change what a test configures); pass a dict to set it
        exactly.
    RouterProcess: .port (int), .host (str), .url ("http://HOST:PORT"),
        .proc (subprocess.Popen), .stop(timeout=5.0) -> exit code (SIGTERM by PID, SIGKILL by
        PID if it does not exit). Also a context manager that stops on exit.
    router_binary() -> absolute path: $VLLM_ROUTER, else <repo>/build/server/vllm-router.
    run_router(*args, env=None, timeout=10.0) -> subprocess.CompletedProcess (text mode)
        for one-shot invocations (--help, --version, --check-config).
    clean_env(**extra) -> os.environ minus VLLM_ROUTER_* plus `extra`.

$ROUTERPROC_EXTRA_ARGS (whitespace separated) in the test environment is appended to every
start_router command line.

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

from simproc import ManagedProcess, read_announcement, repo_root

__all__ = ["RouterProcess", "start_router", "run_router", "router_binary", "clean_env",
           "call", "post_json", "chat_body", "sim_stats", "sim_reset", "wait_for", "assert_openai_error",
           "dead_port", "fnv1a64", "metric_samples", "router_metrics", "open_stream"]

_LISTEN_PREFIX = "vllm-router listening on http://"
_TLS_LISTEN_PREFIX = "vllm-router listening on https://"
_live = set()


def router_binary():
    path = os.environ.get("VLLM_ROUTER") or os.path.join("build", "server", "vllm-router")
    if not os.path.isabs(path):
        path = os.path.join(repo_root(), path)
    return path


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_ROUTER_", "OTEL_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class RouterProcess(ManagedProcess):
    _registry = _live

    def __init__(self, proc, host, port, stderr_file):
        super().__init__(proc, host, port)
        self._stderr = stderr_file

    def stderr_text(self):
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            return f.read().decode(errors="replace")


def start_router(*args, env=None, timeout=5.0):
    """Starts vllm-router on a free loopback port and waits until it listens."""
    binary = router_binary()
    if not os.path.exists(binary):
        raise FileNotFoundError("vllm-router binary not found at %s (set VLLM_ROUTER)" % binary)
    cmd = [binary, "--host", "127.0.0.1", "--port", "0"] + [str(a) for a in args]
    cmd += os.environ.get("ROUTERPROC_EXTRA_ARGS", "").split()
    stderr_file = tempfile.NamedTemporaryFile(prefix="vllm-router-", suffix=".log")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=stderr_file, env=clean_env() if env is None else env)
    got = read_announcement(proc, (_LISTEN_PREFIX, _TLS_LISTEN_PREFIX), timeout, with_prefix=True)
    if isinstance(got, str):
        stderr_file.flush()
        with open(stderr_file.name, "rb") as f:
            err = f.read().decode(errors="replace")
        raise RuntimeError("vllm-router did not announce its port (got %r, rc=%r, cmd=%r, "
                           "stderr=%r)" % (got, proc.returncode, cmd, err[-2000:]))
    prefix, host, port = got
    router = RouterProcess(proc, host, port, stderr_file)
    if prefix == _TLS_LISTEN_PREFIX:
        router.url = "https://%s:%d" % (host, port)
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


# ---------------------------------------------------------------- HTTP helpers for the tests

import http.client  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402


def call(target, method, path, body=None, headers=None, timeout=5.0):
    """One request on a fresh connection to `target` (anything with .host/.port);
    returns (status, {lower-name: value}, body bytes)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(target, path, body, headers=None, timeout=5.0):
    """POST; returns (status, headers, parsed JSON body or None)."""
    status, hdrs, raw = call(target, "POST", path, body, headers, timeout)
    return status, hdrs, json.loads(raw) if raw else None


def chat_body(model=None, **kw):
    """A minimal chat completion body (one user message, max_tokens 1); `model` omitted when
    None; keyword arguments add or replace fields."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    if model is not None:
        body["model"] = model
    body.update(kw)
    return body


def sim_stats(sim):
    status, _, raw = call(sim, "GET", "/sim/stats")
    assert status == 200, raw
    return json.loads(raw)


def sim_reset(sim):
    assert call(sim, "POST", "/sim/reset", b"{}")[0] == 200


def wait_for(pred, timeout=3.0, interval=0.02):
    """Polls `pred` until it returns a truthy value or `timeout` seconds passed; returns the
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def assert_openai_error(raw_or_doc, status, etype=None):
    """Checks the nested OpenAI error shape {"error":{"message","type","param","code"}} with
    `code` the HTTP status; returns the inner error object."""
    doc = json.loads(raw_or_doc) if isinstance(raw_or_doc, (bytes, str)) else raw_or_doc
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] == status and isinstance(err["code"], int), err
    if etype is not None:
        assert err["type"] == etype, err
    return err


def dead_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fnv1a64(data):
    """FNV-1a 64 of `data` as 16 hex digits (vllm-sim's last_body_fnv1a64)."""
    h = 0xcbf29ce484222325
    prime = 0x100000001b3
    mask = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        h = ((h ^ byte) * prime) & mask
    return "%016x" % h


def metric_samples(text, name):
    """[(labels dict, value)] of every sample of `name` in Prometheus text."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(name + "{"):
            labels_text, _, value = line[len(name) + 1:].rpartition("} ")
            labels = {}
            for part in labels_text.split('",'):
                if not part:
                    continue
                key, _, val = part.partition('="')
                labels[key] = val.rstrip('"')
            out.append((labels, float(value)))
        elif line.startswith(name + " "):
            out.append(({}, float(line.rsplit(" ", 1)[1])))
    return out


def router_metrics(router):
    status, _, raw = call(router, "GET", "/metrics")
    assert status == 200
    return raw.decode()


def open_stream(target, path, body, headers=None, timeout=5.0):
    """Sends a POST on a raw socket and reads until the first SSE event arrived.
    Returns (socket, status line + headers text, bytes received so far)."""
    data = json.dumps(body).encode()
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    s = socket.create_connection((target.host, target.port), timeout=timeout)
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n%s\r\n" % (path, len(data), extra)).encode() + data)
    buf = b""
    while b"data: " not in buf:
        chunk = s.recv(65536)
        if not chunk:
            s.close()
            raise AssertionError("connection closed before the first event: %r" % buf[:500])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return s, head.decode(errors="replace"), rest


# Access-log lines (--access-log PATH), read back.
def read_lines(path):
    """The lines of an access log written so far."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [line for line in f.read().decode().split("\n") if line]


def wait_lines(path, n, timeout=5.0):
    lines = wait_for(lambda: len(read_lines(path)) >= n and read_lines(path), timeout=timeout)
    assert lines and len(lines) >= n, "expected %d access lines in %s, got %r" % (n, path, read_lines(path))
    return lines


def logfmt(line):
    """Parses one logfmt line (bare values, or quoted with JSON escapes)."""
    out, i = {}, 0
    while i < len(line):
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if line[i] == '"':
            value, end = json.JSONDecoder().raw_decode(line, i)
            i = end
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            value, i = line[i:end], end
        out[key] = value
        i += 1  # the space
    return out
