"""Endpoint names are resolved off the event loop: a DNS server that answers after 2 s stalls
only the requests that need that name, while requests to an already-resolved endpoint on the
same loop keep completing in milliseconds; answers are cached for their TTL."""

import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from fakedns import FakeDns  # noqa: E402
from routerproc import chat_body as chat, post_json, start_router  # noqa: E402
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


def write_config(doc):
    path = os.path.join(tempfile.mkdtemp(), "config.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def test_a_slow_lookup_does_not_stall_the_loop():
    with FakeDns(ttl=60) as dns, start_sim("--served-model-name", "fast", "--served-model-name", "slow") as sim:
        dns.set("fast.test", ["127.0.0.1"])
        dns.set("slow.test", ["127.0.0.1"], delay_ms=2000)
        path = write_config({
            "dns_servers": [dns.server],
            "models": [{"name": "fast", "endpoints": ["http://fast.test:%d" % sim.port]},
                       {"name": "slow", "endpoints": ["http://slow.test:%d" % sim.port]}],
            "health_check": {"enabled": False},
            "timeouts": {"connect_ms": 5000},
        })
        # One event loop: every request below shares it.
        with start_router("--config", path, "--threads", "1") as router:
            status, _, _ = post_json(router, CHAT, chat("fast"))
            assert status == 200
            assert dns.queries("fast.test") == 1

            slow_result = {}

            def slow_request():
                t0 = time.monotonic()
                slow_result["status"] = post_json(router, CHAT, chat("slow"), timeout=10)[0]
                slow_result["seconds"] = time.monotonic() - t0

            t = threading.Thread(target=slow_request)
            t.start()
            deadline = time.monotonic() + 5
            while dns.queries("slow.test") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert dns.queries("slow.test") >= 1, "the slow lookup never started"

            # While the slow name is being resolved, the loop keeps serving the fast model.
            latencies = []
            for _ in range(20):
                t0 = time.monotonic()
                status, _, _ = post_json(router, CHAT, chat("fast"))
                latencies.append(time.monotonic() - t0)
                assert status == 200
            assert max(latencies) < 0.5, latencies
            assert sorted(latencies)[len(latencies) // 2] < 0.05, latencies
            assert "status" not in slow_result, "the slow lookup was not slow: the test proves nothing"

            t.join(10)
            assert slow_result["status"] == 200
            assert slow_result["seconds"] >= 1.5
            # Both names are cached for their TTL: no new queries for further requests. (The
            # resolver may have asked for slow.test twice: its 2 s per-try timeout retries.)
            asked = dns.queries("slow.test")
            for model in ("fast", "slow", "fast", "slow"):
                assert post_json(router, CHAT, chat(model))[0] == 200
            assert dns.queries("fast.test") == 1
            assert dns.queries("slow.test") == asked


def test_a_name_that_does_not_resolve_is_a_502_naming_it():
    with FakeDns() as dns:
        path = write_config({
            "dns_servers": [dns.server],
            "models": [{"name": "m", "endpoints": ["http://nowhere.test:8000"]}],
            "health_check": {"enabled": False},
        })
        with start_router("--config", path, "--threads", "1") as router:
            status, _, body = post_json(router, CHAT, chat("m"))
            assert status == 502, body
            assert "nowhere.test" in body["error"]["message"]
