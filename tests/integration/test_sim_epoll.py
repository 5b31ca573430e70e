"""vllm-sim `--io epoll`: byte-identical answers to `--io threads`, and many streams on few threads.
(The conformance tests of test_sim.py run against both modes.)"""

import json
import os
import re
import selectors
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from simproc import start_sim  # noqa: E402
from routerproc import call  # noqa: E402

MODEL = "facebook/opt-125m"
SIM_ARGS = ("--id", "same-id", "--output-tokens", "6", "--lora", "sql-lora")


def raw_exchange(sim, body, headers=None, path="/v1/chat/completions", timeout=5.0):
    """One request on a fresh connection (Connection: close); returns every byte of the answer."""
    data = json.dumps(body).encode()
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    s = socket.create_connection((sim.host, sim.port), timeout=timeout)
    try:
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n%s\r\n" % (path, len(data), extra)).encode()
                  + data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
        raise AssertionError("no EOF within %.1f s: %r" % (timeout, out[-200:]))
    finally:
        s.close()


def normalise(raw):
    # `created` is the second the request arrived; it is the only field allowed to differ.
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def dechunk(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        n = int(size_line, 16)
        if n == 0:
            assert body == b"\r\n", body
            return head, chunks
        chunks.append(body[:n])
        assert body[n:n + 2] == b"\r\n"
        body = body[n + 2:]


@pytest.fixture(scope="module")
def pair():
    a = start_sim(*SIM_ARGS)
    b = start_sim(*SIM_ARGS, "--io", "epoll")
    yield a, b
    assert a.stop() == 0 and b.stop() == 0


CASES = [
    ("chat-stream-usage", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5,
      "stream": True, "stream_options": {"include_usage": True}}),
    ("chat-stream-n2-continuous", "/v1/chat/completions",
     {"model": "sql-lora", "messages": [{"role": "user", "content": "x" * 100}], "n": 2, "stream": True,
      "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("completion-stream-stop", "/v1/completions",
     {"model": MODEL, "prompt": "hi", "stream": True, "stop": ["tok3"]}),
    ("chat-non-stream", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}),
    ("unknown-model", "/v1/chat/completions", {"model": "nope", "messages": []}),
    ("bad-json", "/v1/completions", {"model": MODEL}),
    ("unknown-route", "/v1/nothing", {"model": MODEL}),
]


@pytest.mark.parametrize("name,path,body", CASES, ids=[c[0] for c in CASES])
def test_same_bytes_in_both_modes(pair, name, path, body):
    threads, epoll = pair
    hdrs = {"X-Request-Id": "fixed-" + name, "Accept-Encoding": "gzip"}
    a = raw_exchange(threads, body, hdrs, path=path)
    b = raw_exchange(epoll, body, hdrs, path=path)
    # The whole answer (status line, headers, chunk framing, body), `created` aside.
    assert normalise(a) == normalise(b), (a, b)
    if body.get("stream") and name != "unknown-model":
        (head_a, chunks_a), (head_b, chunks_b) = dechunk(a), dechunk(b)
        assert b"Transfer-Encoding: chunked" in head_b and head_a == head_b
        assert [normalise(c) for c in chunks_a] == [normalise(c) for c in chunks_b]
        assert chunks_b[-1] == b"data: [DONE]\n\n"
        assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in chunks_b)


def thread_count(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def test_300_concurrent_streams_few_threads():
    n, tokens = 300, 10
    with start_sim("--io", "epoll", "--itl-ms", "20") as s:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": tokens, "stream": True}).encode()
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
        sel = selectors.DefaultSelector()
        bufs = {}
        for _ in range(n):
            sock = socket.create_connection((s.host, s.port), timeout=5)
            sock.sendall(req)
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
            bufs[sock] = b""
        open_socks = set(bufs)
        max_threads = thread_count(s.pid)
        mid_run = False
        deadline = time.monotonic() + 20
        try:
            while open_socks and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    sock = key.fileobj
                    chunk = sock.recv(65536)
                    if chunk:
                        bufs[sock] += chunk
                    if not chunk or bufs[sock].endswith(b"0\r\n\r\n"):
                        sel.unregister(sock)
                        open_socks.discard(sock)
                if 0 < len(open_socks) < n:
                    mid_run = True
                max_threads = max(max_threads, thread_count(s.pid))
        finally:
            for sock in bufs:
                sock.close()
        assert not open_socks, "%d streams did not finish" % len(open_socks)
        assert mid_run
        done = sum(1 for b in bufs.values() if b"data: [DONE]\n\n" in b and b.endswith(b"0\r\n\r\n"))
        assert done == n
        assert all(b.count(b'"content":"tok') == tokens for b in bufs.values())
        assert max_threads < 80, max_threads
        st = json.loads(call(s, "GET", "/sim/stats")[2])
        assert st["completed"] == n and st["in_flight"] == 0 and st["cancelled"] == 0
