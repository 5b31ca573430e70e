"""Bounded soak: many short and streamed requests through vllm-router (built with
AddressSanitizer/LeakSanitizer) while replicas are killed, restarted and switched into failure
modes. Every request must be accounted for (completed, or failed with an error the client can
see); the router must exit 0 on SIGTERM with no sanitizer report.

Usage: soak.py --router PATH --sim PATH [--duration SECONDS] [--clients N]
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import simproc  # noqa: E402
from routerproc import start_router  # noqa: E402

MODEL = "soak-model"
CHAT = "/v1/chat/completions"


def classify_stream(body):
    text = body.decode(errors="replace")
    if not text.endswith("data: [DONE]\n\n"):
        return "lost", "stream without [DONE]: %r" % text[-120:]
    return ("error", "in-band stream error") if '{"error"' in text else ("ok", None)


def one_request(router, rng):
    kind = rng.random()
    stream = 0.6 <= kind < 0.9
    model = MODEL if kind < 0.9 else "no-such-model"
    body = {"model": model, "messages": [{"role": "user", "content": "soak %d" % rng.randrange(10**6)}],
            "max_tokens": rng.randrange(1, 24), "stream": stream}
    conn = http.client.HTTPConnection(router.host, router.port, timeout=20)
    try:
        conn.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        try:
            raw = resp.read()
        except http.client.IncompleteRead:
            # The upstream died mid-answer and the router cut the connection: a visible failure.
            return "error", "cut mid-body"
        if resp.status != 200:
            doc = json.loads(raw)
            if set(doc) != {"error"} or doc["error"]["code"] != resp.status:
                return "lost", "bad error body %r" % raw[:200]
            return "error", "status %d" % resp.status
        if stream:
            return classify_stream(raw)
        doc = json.loads(raw)
        return ("ok", None) if doc.get("choices") else ("lost", "no choices: %r" % raw[:200])
    except Exception as e:  # noqa: BLE001 - any exception without an answer is a lost request
        return "lost", repr(e)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--duration", type=float, default=180)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.environ["VLLM_ROUTER"] = args.router
    os.environ["VLLM_SIM"] = args.sim
    rng = random.Random(args.seed)

    sim_args = ["--model", MODEL, "--itl-ms", "5", "--output-tokens", "16"]
    sims = [simproc.start_sim(*sim_args, "--id", "s%d" % i) for i in range(3)]
    ports = [s.port for s in sims]
    cfg = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"models": [{"name": MODEL, "endpoints": [s.url for s in sims]}],
               "health_check": {"interval_ms": 300, "timeout_ms": 300},
               "outlier_detection": {"consecutive_failures": 3, "base_ejection_ms": 500, "max_ejection_ms": 2000},
               "timeouts": {"first_byte_ms": 3000, "idle_ms": 3000}}, cfg)
    cfg.close()
    router = start_router("--config", cfg.name, "--log-level", "error", timeout=30.0)

    counts = {"ok": 0, "error": 0, "lost": 0}
    errors = {}
    lost_examples = []
    injected = {"kill": 0, "restart": 0, "error500": 0, "drop": 0, "slow": 0, "none": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + args.duration

    def client(n):
        local_rng = random.Random(args.seed * 1000 + n)
        while time.monotonic() < deadline:
            outcome, why = one_request(router, local_rng)
            with lock:
                counts[outcome] += 1
                if outcome == "error":
                    errors[why] = errors.get(why, 0) + 1
                elif why and len(lost_examples) < 10:
                    lost_examples.append(why)

    def chaos():
        while time.monotonic() < deadline - 1:
            time.sleep(rng.uniform(0.3, 1.2))  # pacing of the fault injection, not a wait for a timer
            i = rng.randrange(3)
            action = rng.choice(["kill", "mode", "mode"])
            if action == "kill" and sims[i] is not None:
                os.kill(sims[i].pid, signal.SIGKILL)
                sims[i].proc.wait()
                sims[i] = None
                injected["kill"] += 1
            elif sims[i] is None:
                try:
                    sims[i] = simproc.start_sim(*sim_args, "--id", "s%d" % i, "--port", str(ports[i]))
                    injected["restart"] += 1
                except Exception:  # noqa: BLE001 - port still in TIME_WAIT: try later
                    pass
            else:
                mode = rng.choice(["error500", "drop", "slow", "none", "none"])
                req = urllib.request.Request(sims[i].url + "/sim/fail", data=json.dumps({"mode": mode}).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
                try:
                    urllib.request.urlopen(req, timeout=2).read()
                    injected[mode] += 1
                except Exception:  # noqa: BLE001
                    pass

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    threads.append(threading.Thread(target=chaos))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.duration + 60)
    hung = sum(t.is_alive() for t in threads)

    os.kill(router.proc.pid, signal.SIGTERM)
    try:
        code = router.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = "timeout"
    stderr = router.stderr_text()
    for s in sims:
        if s is not None:
            s.stop()
    os.unlink(cfg.name)

    sanitizer = [l for l in stderr.splitlines() if "Sanitizer" in l or "runtime error:" in l]
    total = sum(counts.values())
    print("soak: %.0f s, %d clients, %d requests: %d completed, %d failed with an error, %d lost" %
          (args.duration, args.clients, total, counts["ok"], counts["error"], counts["lost"]))
    print("soak: errors %s" % ", ".join("%s: %d" % kv for kv in sorted(errors.items())))
    print("soak: injected %s" % ", ".join("%s=%d" % kv for kv in injected.items()))
    print("soak: router exit code %s, sanitizer reports %d, hung threads %d" % (code, len(sanitizer), hung))
    for why in lost_examples:
        print("soak: lost: %s" % why)
    for line in sanitizer[:20]:
        print("soak: %s" % line)
    ok = counts["lost"] == 0 and code == 0 and not sanitizer and hung == 0 and counts["ok"] > 0
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
