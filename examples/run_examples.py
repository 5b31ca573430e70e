"""Runs the network examples against simulated engines (stdlib only; started and stopped by PID).

Usage: run_examples.py HOST_SERVICE ROUTE_ONLY VLLM_SIM
"""

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time

HOST_SERVICE, ROUTE_ONLY, SIM = sys.argv[1:4]
os.environ["VLLM_SIM"] = SIM
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from simproc import start_sim  # noqa: E402


def start_host(*args):
    proc = subprocess.Popen([HOST_SERVICE, "--port", "0", *args], stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 5)
    line = proc.stdout.readline().decode() if ready else ""
    assert line.startswith("host_service listening on http://"), line
    host, _, port = line.strip().rsplit("/", 1)[1].rpartition(":")
    return proc, host, int(port)


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def sim_requests(sim):
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=5)
    conn.request("GET", "/sim/stats")
    return json.loads(conn.getresponse().read())["requests"]


def check_host_service(a, b):
    proc, host, port = start_host("--model", "facebook/opt-125m=%s,%s" % (a.url, b.url))
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        body = {"model": "facebook/opt-125m", "stream": True, "max_tokens": 4,
                "messages": [{"role": "user", "content": "Hi"}]}
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json", "x-sim-itl-ms": "10"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        served_by = resp.getheader("X-Served-By")
        assert served_by in (a.url, b.url), served_by
        pieces = []
        while True:
            piece = resp.read1(65536)
            if not piece:
                break
            pieces.append(piece)
        text = b"".join(pieces).decode()
        assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        assert "tok3" in text
        print("host_service: streamed %d bytes in %d reads from %s" % (len(text), len(pieces), served_by))

        for _ in range(4):
            conn.request("POST", "/v1/completions",
                         json.dumps({"model": "facebook/opt-125m", "prompt": "x", "max_tokens": 2}))
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["choices"][0]["text"] == "tok0 tok1 "

        conn.request("POST", "/v1/completions", json.dumps({"model": "nope"}))
        resp = conn.getresponse()
        error = json.loads(resp.read())["error"]
        assert resp.status == 404 and error["type"] == "NotFoundError", (resp.status, error)

        conn.request("GET", "/stats")
        stats = json.loads(conn.getresponse().read())
        assert sum(s["successes"] for s in stats.values()) == 5, stats
        assert all(s["model"] == "facebook/opt-125m" for s in stats.values())
        print("host_service: observer saw", stats)
    finally:
        stop(proc)


def check_route_only(a, b):
    before = sim_requests(a) + sim_requests(b)
    out = subprocess.run([ROUTE_ONLY, "--requests", "20", "http://127.0.0.1:9", a.url, b.url],
                         capture_output=True, text=True, timeout=30)
    print(out.stdout, end="")
    assert out.returncode == 0, out.stderr
    assert sim_requests(a) + sim_requests(b) - before == 20
    assert "served by %s" % a.url in out.stdout and "served by %s" % b.url in out.stdout


def main():
    a = start_sim("--id", "sim-a")
    b = start_sim("--id", "sim-b")
    try:
        check_host_service(a, b)
        check_route_only(a, b)
    finally:
        a.stop()
        b.stop()
    print("examples OK")


if __name__ == "__main__":
    main()
