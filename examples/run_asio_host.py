"""Runs examples/asio_host.cpp in front of simulated engines and checks what it serves (stdlib
only; every process is started and stopped by PID).

Usage: run_asio_host.py ASIO_HOST VLLM_SIM
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ASIO_HOST, SIM = sys.argv[1:3]
os.environ["VLLM_SIM"] = SIM
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from simproc import ManagedProcess, read_announcement, start_sim  # noqa: E402

MODEL = "facebook/opt-125m"


def start_host(*urls, extra=()):
    cmd = [ASIO_HOST, "--port", "0", *extra, "--model", "%s=%s" % (MODEL, ",".join(urls))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    got = read_announcement(proc, "asio_host listening on http://", 5)
    assert not isinstance(got, str), "asio_host did not start: %r" % (got,)
    return ManagedProcess(proc, *got)


def dead_port():
    """A port nothing listens on: bound, then closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def chat(stream=False, max_tokens=3, model=MODEL):
    return json.dumps({"model": model, "stream": stream, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "Hi"}]})


def post(conn, body, headers=None):
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    return resp, resp.read()


def read_response(sock, buf=b""):
    """One HTTP/1.1 response off a raw socket, its framing checked strictly. Returns
    (status, headers, body, leftover bytes)."""
    def fill(need):
        nonlocal buf
        while need(buf):
            data = sock.recv(65536)
            assert data, "connection closed mid-response: %r" % buf[-200:]
            buf += data

    fill(lambda b: b"\r\n\r\n" not in b)
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        assert "content-length" not in headers
        while True:
            fill(lambda b: b"\r\n" not in b)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            fill(lambda b: len(b) < size + 2)
            assert buf[size:size + 2] == b"\r\n", "bad chunk framing"
            body, buf = body + buf[:size], buf[size + 2:]
            if size == 0:
                break
    else:
        length = int(headers["content-length"])
        fill(lambda b: len(b) < length)
        body, buf = buf[:length], buf[length:]
    return status, headers, body, buf


def raw_request(body, headers=""):
    return ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            "Content-Length: %d\r\n\r\n%s" % (headers, len(body), body)).encode()


def sim_stats(sim):
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=5)
    conn.request("GET", "/sim/stats")
    return json.loads(conn.getresponse().read())


def check_gateway(a, b):
    dead = "http://127.0.0.1:%d" % dead_port()
    host = start_host(a.url, b.url, dead)
    try:
        conn = http.client.HTTPConnection(host.host, host.port, timeout=10)

        # Non-streamed: the sim's JSON, our X-Request-Id echoed (the library sends it upstream).
        resp, data = post(conn, chat(), {"X-Request-Id": "req-asio-1"})
        assert resp.status == 200, (resp.status, data)
        assert json.loads(data)["choices"][0]["message"]["content"] == "tok0 tok1 tok2 ", data
        assert resp.getheader("X-Request-Id") == "req-asio-1"
        assert resp.getheader("Content-Length") == str(len(data))
        print("non-streamed: 200 from", resp.getheader("X-Served-By"))

        # Keep-alive: more requests on the same socket (http.client would silently reconnect).
        local = conn.sock.getsockname()
        resp, data = post(conn, chat())
        assert resp.status == 200 and resp.getheader("X-Request-Id"), resp.getheaders()
        assert conn.sock is not None and conn.sock.getsockname() == local, "connection not kept alive"

        # Unknown model: the library's OpenAI error, on the same connection.
        resp, data = post(conn, chat(model="nope"))
        error = json.loads(data)["error"]
        assert resp.status == 404 and error["type"] == "NotFoundError" and error["code"] == 404, (resp.status, error)
        assert conn.sock.getsockname() == local

        # The dead replica: every request still succeeds; some needed a second attempt.
        before = sim_stats(a)["requests"] + sim_stats(b)["requests"]
        attempts = 0
        for _ in range(9):
            resp, data = post(conn, chat())
            assert resp.status == 200, (resp.status, data)
            assert resp.getheader("X-Served-By") != dead
            attempts += int(resp.getheader("X-Attempts"))
        assert attempts > 9, "the dead replica was never tried"
        assert sim_stats(a)["requests"] + sim_stats(b)["requests"] - before == 9
        print("dead replica skipped: 9 requests, %d attempts" % attempts)

        # Streamed: chunked framing checked byte by byte, SSE ends with [DONE]; then a pipelined
        # pair on the same raw connection, the second with Connection: close.
        with socket.create_connection((host.host, host.port), timeout=10) as s:
            s.sendall(raw_request(chat(stream=True, max_tokens=4), "x-sim-itl-ms: 10\r\n"))
            status, headers, body, rest = read_response(s)
            assert status == 200 and headers["transfer-encoding"] == "chunked", (status, headers)
            assert headers["content-type"].startswith("text/event-stream")
            events = [e for e in body.decode().split("\n\n") if e]
            assert events[-1] == "data: [DONE]" and "tok3" in body.decode(), events[-2:]
            print("streamed: %d SSE events, chunked" % len(events))

            s.sendall(raw_request(chat()) + raw_request(chat(), "Connection: close\r\n"))
            status1, _, body1, rest = read_response(s, rest)
            status2, headers2, body2, rest = read_response(s, rest)
            assert status1 == status2 == 200 and json.loads(body1) and json.loads(body2)
            assert headers2.get("connection") == "close", headers2
            assert rest == b"" and s.recv(1) == b"", "Connection: close not honoured"
            print("pipelined pair served; Connection: close honoured")

        # Only Content-Length request bodies: anything else is a 400 and the connection closes.
        with socket.create_connection((host.host, host.port), timeout=10) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            status, headers, body, _ = read_response(s)
            assert status == 400 and json.loads(body)["error"]["code"] == 400, (status, body)
    finally:
        assert host.stop() == 0, "asio_host did not exit cleanly on SIGTERM"


def check_wait_and_cancel(a):
    # One request in flight per replica: concurrent requests wait (on_wait, retry()) and all end.
    host = start_host(a.url, extra=("--max-in-flight", "1"))
    try:
        results = []

        def one():
            conn = http.client.HTTPConnection(host.host, host.port, timeout=10)
            resp, data = post(conn, chat(stream=True, max_tokens=4), {"x-sim-itl-ms": "60"})
            results.append((resp.status, data.decode().rstrip().endswith("data: [DONE]")))

        threads = [threading.Thread(target=one) for _ in range(3)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert results == [(200, True)] * 3, results
        assert elapsed >= 0.45, "requests were not serialised (%.2f s)" % elapsed
        print("3 requests through 1 slot: all served in %.2f s" % elapsed)

        # A client that leaves mid-stream: the exchange is cancelled and the upstream closed.
        cancelled = sim_stats(a)["cancelled"]
        with socket.create_connection((host.host, host.port), timeout=10) as s:
            s.sendall(raw_request(chat(stream=True, max_tokens=100), "x-sim-itl-ms: 50\r\n"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5
        while sim_stats(a)["cancelled"] == cancelled:
            assert time.monotonic() < deadline, "the upstream request was not cancelled"
            time.sleep(0.05)
        conn = http.client.HTTPConnection(host.host, host.port, timeout=10)
        resp, _ = post(conn, chat())
        assert resp.status == 200  # the slot was given back
        print("client gone mid-stream: upstream cancelled, slot freed")
    finally:
        assert host.stop() == 0, "asio_host did not exit cleanly on SIGTERM"


def main():
    a = start_sim("--id", "sim-a")
    b = start_sim("--id", "sim-b")
    try:
        check_gateway(a, b)
        check_wait_and_cancel(a)
    finally:
        a.stop()
        b.stop()
    print("asio_host OK")


if __name__ == "__main__":
    main()
