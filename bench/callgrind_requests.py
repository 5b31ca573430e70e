#!/usr/bin/env python3
"""Instructions per proxied request on the router's event loop, under callgrind.

Runs `vllm-router --threads 1` under valgrind's callgrind (one output per thread; the main
thread is the only loop) in front of one vllm-sim, sends N sequential non-streamed chat
completions on one keep-alive connection, stops the router with SIGTERM and reads the loop
thread's total. Two runs (N = 500 and 1,500) cancel start-up and shutdown:
(total(1500) - total(500)) / 1000 is the cost of one request.

    bench/callgrind_requests.py ROUTER_BINARY [SIM_BINARY] [--rounds 2] [-- extra router args]
"""

import argparse
import glob
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from simproc import start_sim  # noqa: E402

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 100}],
                   "max_tokens": 8}).encode()


def run_once(router, sim_url, n, extra):
    out_dir = tempfile.mkdtemp(prefix="vr-callgrind-")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
           "--callgrind-out-file=" + os.path.join(out_dir, "cg.out"),
           router, "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--log-level", "error",
           "--model", "m=" + sim_url] + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None:
            line = proc.stdout.readline().decode()
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                port = int(m.group(1))
            if not line or time.monotonic() > deadline:
                raise RuntimeError("router did not start: %r" % line)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body=BODY, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # The main thread's file ends in -01 (the loop: --threads 1 runs it on the calling thread).
    files = sorted(glob.glob(os.path.join(out_dir, "cg.out*-01")))
    assert files, os.listdir(out_dir)
    with open(files[0]) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + files[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("router")
    ap.add_argument("sim", nargs="?", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    if args.sim:
        os.environ["VLLM_SIM"] = args.sim
    with start_sim("--io", "epoll", "--model", "m") as sim:
        for r in range(args.rounds):
            small = run_once(args.router, sim.url, 500, args.extra)
            large = run_once(args.router, sim.url, 1500, args.extra)
            print("round %d: %d - %d -> %.0f instructions per request" % (r + 1, large, small, (large - small) / 1000.0))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
