"""DNS and static discovery with /v1/models polling against simulated engines; discovery composed
with configured models across a reload; --check-config of a discovery config."""

import json
import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import chat_body as chat, call, post_json, run_router, start_router, wait_for  # noqa: E402
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


def write_config(doc, path=None):
    path = path or os.path.join(tempfile.mkdtemp(), "config.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def served(router):
    status, _, raw = call(router, "GET", "/v1/models")
    assert status == 200, raw
    return {m["id"]: m for m in json.loads(raw)["data"]}


def answered_by(router, model):
    status, hdrs, _ = post_json(router, CHAT, chat(model))
    return hdrs.get("x-sim-id") if status == 200 else status


def test_dns_source_resolves_localhost():
    with start_sim("--model", "dns-model", "--id", "D", "--output-tokens", "1") as sim:
        path = write_config({"discovery": [{"type": "dns", "name": "localhost", "port": sim.port,
                                            "model": "dns-model", "interval_ms": 200}]})
        with start_router("--config", path) as router:
            assert wait_for(lambda: "dns-model" in served(router), timeout=5)
            # localhost may also give ::1, where nothing listens: health checks keep it out.
            assert wait_for(lambda: answered_by(router, "dns-model") == "D", timeout=5)
            assert all(answered_by(router, "dns-model") == "D" for _ in range(6))


def test_static_source_with_model_discovery_and_api_key():
    a = start_sim("--served-model-name", "alpha", "--served-model-name", "alpha-2", "--lora",
                  "ad1", "--id", "S1", "--output-tokens", "1", "--api-key", "k1")
    b = start_sim("--served-model-name", "beta", "--id", "S2", "--output-tokens", "1")
    try:
        path = write_config({"discovery": [
            {"type": "static", "endpoints": [a.url], "api_key": "k1",
             "discover_models": {"interval_ms": 200}},
            {"type": "static", "endpoints": [b.url], "discover_models": True}]})
        with start_router("--config", path) as router:
            assert wait_for(lambda: {"alpha", "alpha-2", "ad1", "beta"} <= set(served(router)),
                            timeout=5)
            assert served(router)["ad1"]["parent"] == "alpha"
            for name, sim_id in (("alpha", "S1"), ("alpha-2", "S1"), ("ad1", "S1"),
                                 ("beta", "S2")):
                assert wait_for(lambda: answered_by(router, name) == sim_id, timeout=5), name
            # The served name is sent upstream unchanged (alpha-2 is not rewritten to alpha).
            stats = json.loads(call(a, "GET", "/sim/stats")[2])
            assert stats["last_path"] == CHAT
    finally:
        a.stop()
        b.stop()


def test_reload_keeps_discovered_models():
    s1 = start_sim("--model", "static-m", "--id", "T1", "--output-tokens", "1")
    s2 = start_sim("--model", "found-m", "--id", "T2", "--output-tokens", "1")
    try:
        discovery = [{"type": "static", "endpoints": [s2.url], "discover_models": True}]
        path = write_config({"models": [{"name": "static-m", "endpoints": [s1.url]}],
                             "discovery": discovery})
        with start_router("--config", path) as router:
            assert wait_for(lambda: {"static-m", "found-m"} <= set(served(router)), timeout=5)
            # Reload with a changed static part: the discovered model stays.
            write_config({"models": [{"name": "static-m", "aliases": ["sm"], "endpoints": [s1.url]},
                                     # a configured model with no endpoints is filled by discovery
                                     {"name": "found-m", "endpoints": [], "aliases": ["fm"]}],
                          "discovery": discovery}, path)
            os.kill(router.pid, signal.SIGHUP)
            assert wait_for(lambda: set(served(router)) == {"static-m", "sm", "found-m", "fm"},
                            timeout=5), served(router)
            assert wait_for(lambda: answered_by(router, "fm") == "T2", timeout=5)
            assert answered_by(router, "sm") == "T1"
    finally:
        s1.stop()
        s2.stop()


def test_check_config_with_discovery():
    path = write_config({"models": [{"name": "m", "endpoints": []}],
                         "discovery": [{"type": "kubernetes", "namespace": "llm",
                                        "label_selector": "app.kubernetes.io/component=model",
                                        "resource": "pods", "port": "http"}]})
    proc = run_router("--check-config", "--config", path)
    assert proc.returncode == 0, proc.stderr
    assert "discovery[0]: kubernetes source" in proc.stdout
    bad = write_config({"discovery": [{"type": "dns", "name": "x", "port": "http"}]})
    proc = run_router("--check-config", "--config", bad)
    assert proc.returncode == 2
    assert "discovery[0].port" in proc.stderr
    # Outside a cluster, without api_url, the router refuses to start with a clear message.
    proc = run_router("--config", path, "--port", "0", timeout=10)
    assert proc.returncode == 2
    assert "KUBERNETES_SERVICE_HOST" in proc.stderr
