"""The status page's data (GET /status.json) and page (GET /status) against real processes:
the document's shape, recent figures after traffic, an engine killed by PID turning unhealthy,
HEAD, and the admin-key rule (401 without a key, 403 for a non-admin key)."""

import hashlib
import json
import os
import signal
import tempfile

from routerproc import call, chat_body, post_json, start_router, wait_for
from simproc import start_sim

MODEL = "org/status-model"


def write_config(path, sims, **extra):
    doc = {
        "models": [{"name": MODEL, "aliases": ["status-alias"], "loras": ["status-lora"],
                    "endpoints": [s.url for s in sims]},
                   {"name": "other", "endpoints": [sims[0].url]}],
        "health_check": {"interval_ms": 200, "timeout_ms": 500, "unhealthy_threshold": 1},
        "policy_options": {"scrape_interval_ms": 200},
    }
    doc.update(extra)
    with open(path, "w") as f:
        json.dump(doc, f)


def status_json(router, headers=None):
    status, hdrs, raw = call(router, "GET", "/status.json", headers=headers)
    assert status == 200, raw
    assert hdrs["content-type"] == "application/json"
    return json.loads(raw)


def model_of(doc, name):
    found = [m for m in doc["models"] if m["name"] == name]
    assert len(found) == 1, doc
    return found[0]


def endpoint_of(model, url):
    found = [e for e in model["endpoints"] if e["id"] == url + "/" or e["id"] == url]
    assert len(found) == 1, (url, model)
    return found[0]


def check_window(w):
    assert set(w) == {"requests", "errors", "error_rate", "rps", "latency_ms"}, w
    assert 0 <= w["errors"] <= w["requests"]
    assert 0 <= w["error_rate"] <= 1
    if w["requests"]:
        assert set(w["latency_ms"]) == {"avg", "p50", "p95"}, w
        assert 0 <= w["latency_ms"]["p50"] <= w["latency_ms"]["p95"]
    else:
        assert w["latency_ms"] is None


def check_shape(doc):
    assert set(doc) == {"version", "uptime_ms", "time_unix_ms", "draining", "keys", "config_version",
                        "window_seconds", "models"}, doc
    assert isinstance(doc["version"], str) and doc["version"]
    assert doc["uptime_ms"] >= 0 and doc["window_seconds"] == 60
    for m in doc["models"]:
        assert set(m) == {"name", "policy", "aliases", "adapters", "health_checks", "endpoints_total",
                          "endpoints_healthy", "panic", "in_flight", "recent", "endpoints"}, m
        check_window(m["recent"])
        assert m["endpoints_total"] == len(m["endpoints"])
        for e in m["endpoints"]:
            assert set(e) == {"id", "weight", "state", "active_healthy", "ejected_ms_left", "ejections",
                              "in_flight", "requests_total", "failures_total", "consecutive_failures",
                              "load", "recent"}, e
            assert e["state"] in ("healthy", "unhealthy", "ejected")
            check_window(e["recent"])
            if e["load"] is not None:
                assert set(e["load"]) == {"running", "waiting", "kv_cache_usage", "age_ms", "fresh"}, e


def test_status_json_follows_traffic_and_a_killed_engine():
    with tempfile.TemporaryDirectory(prefix="vr-status-") as d, \
            start_sim("--io", "epoll", "--model", MODEL, "--id", "s0") as s0, \
            start_sim("--io", "epoll", "--model", MODEL, "--id", "s1") as s1:
        victim = start_sim("--io", "epoll", "--model", MODEL, "--id", "s2")
        try:
            config = os.path.join(d, "router.json")
            write_config(config, [s0, s1, victim])
            with start_router("--config", config) as router:
                # The page: HTML, and HEAD with the same length and no body.
                status, hdrs, page = call(router, "GET", "/status")
                assert status == 200 and hdrs["content-type"].startswith("text/html"), page[:200]
                assert page.startswith(b"<!DOCTYPE html>") and b"status.json" in page
                status, head_hdrs, body = call(router, "HEAD", "/status")
                assert status == 200 and body == b"" and head_hdrs["content-length"] == str(len(page))

                # Every endpoint healthy and scraped once the control plane ran.
                def all_scraped():
                    doc = status_json(router)
                    m = model_of(doc, MODEL)
                    ok = all(e["state"] == "healthy" and e["load"] is not None for e in m["endpoints"])
                    return doc if ok else None
                doc = wait_for(all_scraped, timeout=10)
                assert doc, status_json(router)
                check_shape(doc)
                assert doc["draining"] is False and doc["keys"] is False
                m = model_of(doc, MODEL)
                assert m["aliases"] == ["status-alias"] and m["adapters"] == ["status-lora"]
                assert m["policy"] == "round_robin" and m["health_checks"] is True
                assert m["endpoints_total"] == 3 and m["endpoints_healthy"] == 3 and m["panic"] is False
                assert model_of(doc, "other")["endpoints_total"] == 1
                for e in m["endpoints"]:
                    assert e["load"]["running"] == 0 and e["load"]["waiting"] == 0 and e["load"]["fresh"]

                # Traffic: 12 requests through the alias, round robin puts 4 on each.
                for _ in range(12):
                    status, _, answer = post_json(router, "/v1/chat/completions", chat_body("status-alias"))
                    assert status == 200, answer
                doc = status_json(router)
                check_shape(doc)
                m = model_of(doc, MODEL)
                assert m["recent"]["requests"] == 12 and m["recent"]["errors"] == 0, m["recent"]
                assert m["recent"]["rps"] > 0
                assert sorted(e["recent"]["requests"] for e in m["endpoints"]) == [4, 4, 4], m
                assert sum(e["requests_total"] for e in m["endpoints"]) == 12
                assert model_of(doc, "other")["recent"]["requests"] == 0

                # Kill one engine by PID: the health checker marks it unhealthy.
                os.kill(victim.pid, signal.SIGKILL)
                victim.proc.wait(timeout=5)

                def victim_down():
                    doc = status_json(router)
                    e = endpoint_of(model_of(doc, MODEL), victim.url)
                    return doc if e["state"] == "unhealthy" else None
                doc = wait_for(victim_down, timeout=10)
                assert doc, status_json(router)
                check_shape(doc)
                m = model_of(doc, MODEL)
                dead = endpoint_of(m, victim.url)
                assert dead["active_healthy"] is False
                assert m["endpoints_healthy"] == 2 and m["panic"] is False
                for sim in (s0, s1):
                    assert endpoint_of(m, sim.url)["state"] == "healthy"
                # Requests still succeed on the survivors; the page's figures say where they went.
                for _ in range(6):
                    status, _, answer = post_json(router, "/v1/chat/completions", chat_body(MODEL))
                    assert status == 200, answer
                m = model_of(status_json(router), MODEL)
                assert m["recent"]["requests"] == 18 and m["recent"]["errors"] == 0
                assert endpoint_of(m, victim.url)["recent"]["requests"] == 4
        finally:
            victim.stop()


def test_status_behind_the_admin_key():
    with tempfile.TemporaryDirectory(prefix="vr-status-keys-") as d, \
            start_sim("--io", "epoll", "--model", MODEL) as sim:
        keys = os.path.join(d, "keys.json")
        with open(keys, "w") as f:
            json.dump({"keys": [
                {"sha256": hashlib.sha256(b"sk-user").hexdigest(), "id": "user"},
                {"sha256": hashlib.sha256(b"sk-admin").hexdigest(), "id": "ops", "admin": True},
            ]}, f)
        with start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", keys) as router:
            for path in ("/status", "/status.json"):
                for method in ("GET", "HEAD"):
                    assert call(router, method, path)[0] == 401, (method, path)
                    assert call(router, method, path, headers={"Authorization": "Bearer sk-wrong"})[0] == 401
                    assert call(router, method, path, headers={"Authorization": "Bearer sk-user"})[0] == 403
                    assert call(router, method, path, headers={"Authorization": "Bearer sk-admin"})[0] == 200
            status, _, raw = call(router, "GET", "/status.json", headers={"Authorization": "Bearer sk-user"})
            assert json.loads(raw)["error"]["code"] == 403 and b"admin" in raw
            doc = status_json(router, {"Authorization": "Bearer sk-admin"})
            check_shape(doc)
            assert doc["keys"] is True
            # No key id or key in the document.
            assert b"sk-admin" not in json.dumps(doc).encode() and "ops" not in json.dumps(doc)
