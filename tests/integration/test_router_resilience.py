"""vllm-router resilience against real processes: a replica killed under load, a replica that
accepts but never answers, overload (queue, 429/503 with Retry-After), SIGTERM during open
streams, and SIGHUP/watched-file reloads under load."""

import http.client
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (assert_openai_error, call, metric_samples, open_stream,  # noqa: E402
                        post_json, router_metrics, start_router, wait_for)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


def chat(model, stream=False, max_tokens=8):
    return {"model": model, "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": max_tokens, "stream": stream}


def write_config(path, models, **extra):
    doc = {"models": [{"name": name, "endpoints": urls} for name, urls in models]}
    doc.update(extra)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)  # atomic: a watcher never reads half a file


def write_limited_config(path, sim, **extra):
    """One model on `sim` with one request in flight per endpoint, health checks off."""
    write_config(path, [("m", [sim.url])], health_check={"enabled": False}, **extra)
    with open(path) as f:
        doc = json.load(f)
    doc["models"][0]["max_in_flight_per_endpoint"] = 1
    with open(path, "w") as f:
        json.dump(doc, f)


def request(router, body, headers=None, timeout=10.0):
    """One request on its own connection; returns (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection(router.host, router.port, timeout=timeout)
    try:
        data = json.dumps(body).encode()
        conn.request("POST", CHAT, body=data, headers=dict({"Content-Type": "application/json"},
                                                           **(headers or {})))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_replica_killed_under_load():
    """Requests not yet streaming never fail; streams cut by the kill end with an in-band error
    event and [DONE]; nothing hangs."""
    sims = [start_sim("--model", "m", "--id", "r%d" % i, "--itl-ms", "15", "--output-tokens", "12")
            for i in range(3)]
    victim = sims[1]
    urls = ",".join(s.url for s in sims)
    results = []
    lock = threading.Lock()
    try:
        with start_router("--model", "m=" + urls, "--log-level", "error") as router:
            stop_at = time.monotonic() + 2.5

            def client(n):
                i = 0
                while time.monotonic() < stop_at:
                    stream = (i + n) % 2 == 0
                    try:
                        status, hdrs, body = request(router, chat("m", stream=stream, max_tokens=12))
                        outcome = (stream, status, hdrs.get("x-sim-id"), body)
                    except Exception as e:  # a hang shows up as a timeout here
                        outcome = (stream, "exception", None, repr(e).encode())
                    with lock:
                        results.append(outcome)
                    i += 1

            threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            # Kill the replica once the load is running (some answers are in).
            assert wait_for(lambda: len(results) >= 12, timeout=5.0), results
            os.kill(victim.pid, signal.SIGKILL)
            with lock:
                killed_at = len(results)
            for t in threads:
                t.join(timeout=20)
            assert not any(t.is_alive() for t in threads), "a client hung"
            assert call(router, "GET", "/health")[0] == 200
    finally:
        for s in sims:
            s.stop()
    assert len(results) > 40, len(results)
    failures = [r for r in results if r[1] != 200]
    assert not failures, failures[:3]
    cut = 0
    for stream, status, sim_id, body in results:
        if not stream:
            assert json.loads(body)["choices"], body[:200]
            continue
        text = body.decode()
        assert text.endswith("data: [DONE]\n\n"), text[-300:]
        if '{"error"' in text:
            assert sim_id == "r1", (sim_id, text[-300:])  # only the killed replica's streams
            cut += 1
    # After the kill every answer came from the survivors (retried or picked elsewhere).
    late = results[killed_at + 8:]
    assert late and all(r[2] in ("r0", "r2") for r in late), [r[2] for r in late]


def test_replica_that_never_answers_times_out_then_succeeds_elsewhere(tmp_path):
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)  # accepts connections in the kernel, never reads or answers
    hole = "http://127.0.0.1:%d" % blackhole.getsockname()[1]
    cfg = str(tmp_path / "router.json")
    with start_sim("--model", "m", "--id", "good") as sim:
        write_config(cfg, [("m", [hole, sim.url])], timeouts={"first_byte_ms": 300},
                     health_check={"enabled": False},
                     outlier_detection={"consecutive_failures": 2, "base_ejection_ms": 60000})
        with start_router("--config", cfg, "--log-level", "error") as router:
            timings = []
            for _ in range(6):
                t0 = time.monotonic()
                status, hdrs, body = request(router, chat("m"))
                timings.append(time.monotonic() - t0)
                assert status == 200, body
                assert hdrs["x-sim-id"] == "good"
            # The black hole was tried (and timed out) before being ejected.
            assert max(timings) >= 0.3, timings
            ups = metric_samples(router_metrics(router), "vllm_router_upstream_requests_total")
            timeouts = [v for l, v in ups if l["endpoint"] == hole and l["outcome"] == "timeout"]
            assert timeouts and sum(timeouts) >= 1, ups
            # Ejected after two timeouts: the last requests go straight to the good replica.
            assert sum(timeouts) <= 2 and timings[-1] < 0.3, (ups, timings)
    blackhole.close()


def test_overload_queues_then_refuses_with_retry_after(tmp_path):
    cfg = str(tmp_path / "router.json")
    with start_sim("--model", "m", "--ttft-ms", "1500") as sim:
        write_limited_config(cfg, sim, queue_max=2, queue_timeout_ms=300)
        with start_router("--config", cfg, "--log-level", "error") as router:
            out = [None] * 6

            def one(i):
                out[i] = request(router, chat("m"))

            first = threading.Thread(target=one, args=(0,))
            first.start()
            assert wait_for(lambda: metric_in_flight(router) == 1.0), router_metrics(router)
            rest = [threading.Thread(target=one, args=(i,)) for i in range(1, 6)]
            for t in rest:
                t.start()
            for t in rest + [first]:
                t.join(timeout=20)
            statuses = sorted(o[0] for o in out)
            assert statuses.count(200) == 1, statuses
            assert 429 in statuses and 503 in statuses, statuses
            for status, hdrs, body in out:
                if status == 200:
                    continue
                assert hdrs.get("retry-after") == "1", hdrs
                err = assert_openai_error(body, status)
                assert "m" in err["message"]
            # Nothing stays queued or leased: the next request is served.
            assert request(router, chat("m"))[0] == 200


def test_queued_requests_are_served_when_room_frees(tmp_path):
    cfg = str(tmp_path / "router.json")
    with start_sim("--model", "m", "--ttft-ms", "200") as sim:
        write_limited_config(cfg, sim, queue_max=8, queue_timeout_ms=5000)
        with start_router("--config", cfg, "--log-level", "error") as router:
            out = []
            threads = [threading.Thread(target=lambda: out.append(request(router, chat("m"))))
                       for _ in range(4)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            assert [o[0] for o in out] == [200] * 4
            # One at a time: the last one waited for the three before it.
            assert time.monotonic() - t0 >= 0.75


def metric_in_flight(router):
    samples = metric_samples(router_metrics(router), "vllm_router_endpoint_in_flight")
    return sum(v for _, v in samples)


def test_sigterm_during_200_open_streams():
    with start_sim("--model", "m", "--itl-ms", "20", "--output-tokens", "40", "--threads", "400") as sim:
        router = start_router("--model", "m=" + sim.url, "--log-level", "error")
        streams = []
        try:
            for _ in range(200):
                sock, head, rest = open_stream(router, CHAT, chat("m", stream=True, max_tokens=40))
                assert head.startswith("HTTP/1.1 200"), head
                streams.append((sock, rest))
            os.kill(router.proc.pid, signal.SIGTERM)
            # New connections are refused while the open streams finish.
            assert wait_for(lambda: refused(router), timeout=3.0), "new connections still accepted"
            bodies = []
            for sock, rest in streams:
                sock.settimeout(10)
                buf = rest
                while b"0\r\n\r\n" not in buf[-16:]:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                sock.close()
                bodies.append(buf)
            complete = [b for b in bodies if b"data: [DONE]" in b and b.rstrip().endswith(b"0")]
            assert len(complete) == 200, (len(complete), bodies[0][-200:])
            assert router.proc.wait(timeout=15) == 0
        finally:
            for sock, _ in streams:
                sock.close()
            router.stop()


def refused(router):
    try:
        s = socket.create_connection((router.host, router.port), timeout=0.5)
    except OSError:
        return True
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(100) == b""
    except OSError:
        return True
    finally:
        s.close()


def test_sighup_adds_and_removes_a_model_under_load(tmp_path):
    cfg = str(tmp_path / "router.json")
    with start_sim("--model", "a", "--id", "sim-a") as sim_a, \
            start_sim("--model", "b", "--id", "sim-b") as sim_b:
        write_config(cfg, [("a", [sim_a.url])])
        with start_router("--config", cfg, "--log-level", "error") as router:
            results = []
            stop = threading.Event()

            def load():
                conn = http.client.HTTPConnection(router.host, router.port, timeout=10)
                while not stop.is_set():
                    try:
                        conn.request("POST", CHAT, body=json.dumps(chat("a", max_tokens=2)),
                                     headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        resp.read()
                        results.append(resp.status)
                    except Exception as e:
                        results.append(repr(e))
                        conn = http.client.HTTPConnection(router.host, router.port, timeout=10)

            threads = [threading.Thread(target=load) for _ in range(3)]
            for t in threads:
                t.start()
            def load_runs_past(n):
                # The reload happened under load: requests were answered after it.
                assert wait_for(lambda: len(results) > n + 2, timeout=10.0), len(results)

            try:
                assert post_json(router, CHAT, chat("b"))[0] == 404
                load_runs_past(0)
                write_config(cfg, [("a", [sim_a.url]), ("b", [sim_b.url])])
                os.kill(router.proc.pid, signal.SIGHUP)
                assert wait_for(lambda: post_json(router, CHAT, chat("b"))[0] == 200, timeout=10.0)
                load_runs_past(len(results))
                # A broken file is rejected and the table in force stays.
                with open(cfg, "w") as f:
                    f.write('{"models": [')
                os.kill(router.proc.pid, signal.SIGHUP)
                assert wait_for(lambda: b"reload rejected" in router_stderr(router), timeout=10.0)
                assert post_json(router, CHAT, chat("b"))[0] == 200
                load_runs_past(len(results))
                write_config(cfg, [("a", [sim_a.url])])
                os.kill(router.proc.pid, signal.SIGHUP)
                assert wait_for(lambda: post_json(router, CHAT, chat("b"))[0] == 404, timeout=10.0)
                load_runs_past(len(results))
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=10)
            assert set(results) == {200}, [r for r in results if r != 200][:5]


def router_stderr(router):
    return router.stderr_text().encode()


def test_watched_config_file_reloads_without_a_signal(tmp_path):
    cfg = str(tmp_path / "router.json")
    with start_sim("--model", "a") as sim_a, start_sim("--model", "b") as sim_b:
        write_config(cfg, [("a", [sim_a.url])], watch_config=True)
        with start_router("--config", cfg, "--log-level", "error") as router:
            assert post_json(router, CHAT, chat("b"))[0] == 404
            write_config(cfg, [("a", [sim_a.url]), ("b", [sim_b.url])], watch_config=True)
            assert wait_for(lambda: post_json(router, CHAT, chat("b"))[0] == 200, timeout=10.0)
