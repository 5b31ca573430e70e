"""LoRA-aware placement (issue 14): vllm-router against vllm-sims serving vLLM's runtime LoRA API.
Requests for an adapter go to the replicas that have it; concurrent first requests cause one
load; a replica at max_lora unloads its least recently used adapter first; a failed load and an
adapter that is not configured get OpenAI-shaped errors."""

import concurrent.futures
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (assert_openai_error, call, chat_body, metric_samples, open_stream,  # noqa: E402
                        post_json, router_metrics, start_router, wait_for)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"
BASE = "base-model"


def write_config(doc):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(doc, f)
    f.close()
    return f.name


def sim_lora(sim):
    return json.loads(call(sim, "GET", "/sim/lora")[2])


def lora_counter(router, name, **labels):
    for got, value in metric_samples(router_metrics(router), name):
        if got == labels:
            return value
    return None


def start_fleet(n, max_lora, load_ms, paths=None):
    sims = [start_sim("--model", BASE, "--enable-runtime-lora", "--max-lora", str(max_lora),
                      "--lora-load-ms", str(load_ms), "--output-tokens", "1", "--id", "sim-%d" % i)
            for i in range(n)]
    cfg = write_config({
        "policy": "round_robin",
        "policy_options": {"scrape_interval_ms": 50},
        "models": [{
            "name": BASE, "loras": ["a", "b", "c"], "endpoints": [s.url for s in sims],
            "lora": {"dynamic_loading": True, "path_template": "/adapters/{name}",
                     "paths": paths or {}, "load_timeout_ms": 5000},
        }],
    })
    router = start_router("--config", cfg)
    return router, sims, cfg


@pytest.fixture
def fleet3():
    router, sims, cfg = start_fleet(3, 2, 300, {"bad": "missing/bad"})
    yield router, sims
    assert router.stop() == 0
    for s in sims:
        s.stop()
    os.unlink(cfg)


@pytest.fixture
def single():
    router, sims, cfg = start_fleet(1, 2, 20)
    yield router, sims[0]
    assert router.stop() == 0
    sims[0].stop()
    os.unlink(cfg)


def test_concurrent_first_requests_share_one_load_and_stay_on_its_replica(fleet3):
    router, sims = fleet3
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post_json(router, CHAT, chat_body("a")), range(8)))
    assert all(status == 200 and body["model"] == "a" for status, _, body in answers), answers
    served_by = {hdrs["x-sim-id"] for _, hdrs, _ in answers}
    loads = [sim_lora(s)["loads"] for s in sims]
    assert sum(loads) == 1, loads  # one load for eight concurrent first requests
    assert served_by == {"sim-%d" % loads.index(1)}
    # Later requests keep going to the replica that has it (round robin alone would spread them).
    for _ in range(6):
        status, hdrs, _ = post_json(router, CHAT, chat_body("a"))
        assert status == 200 and hdrs["x-sim-id"] in served_by
    # The base model is not an adapter: round robin over all three replicas.
    seen = {post_json(router, CHAT, chat_body(BASE))[1]["x-sim-id"] for _ in range(6)}
    assert len(seen) == 3
    assert lora_counter(router, "vllm_router_lora_loads_total") == 1
    assert lora_counter(router, "vllm_router_lora_placement_total", result="loaded") >= 14


def test_failed_load_is_a_clear_error_and_unknown_adapter_is_404(fleet3):
    router, sims = fleet3
    status, _, body = post_json(router, CHAT, chat_body("bad"), timeout=10)
    err = assert_openai_error(body, 404, "NotFoundError")
    assert "bad" in err["message"] and "No adapter found" in err["message"], err
    assert sum(sim_lora(s)["rejected_loads"] for s in sims) == 1
    assert lora_counter(router, "vllm_router_lora_load_failures_total") == 1
    status, _, body = post_json(router, CHAT, chat_body("not-configured"))
    assert status == 404
    assert assert_openai_error(body, 404, "NotFoundError")["message"] == \
        "The model `not-configured` does not exist."


def test_replica_at_max_lora_unloads_its_least_recently_used_adapter(single):
    router, sim = single
    for name in ("a", "b", "a"):  # b is now the least recently used
        status, _, body = post_json(router, CHAT, chat_body(name))
        assert status == 200, body
    status, _, body = post_json(router, CHAT, chat_body("c"))
    assert status == 200, body
    st = sim_lora(sim)
    assert st["loads"] == 3 and st["unloads"] == 1 and st["rejected_loads"] == 0, st
    assert sorted(st["loaded"]) == ["a", "c"]
    assert lora_counter(router, "vllm_router_lora_unloads_total") == 1


def test_static_adapters_found_in_v1_models_without_dynamic_loading():
    """An adapter loaded at start (--lora) on one replica only: the load scraper's /v1/models
    listing tells the router, and its requests go there; nothing is loaded."""
    with_a = start_sim("--model", BASE, "--lora", "a=/static/a", "--id", "with-a", "--output-tokens", "1")
    without = start_sim("--model", BASE, "--max-lora", "2", "--id", "without", "--output-tokens", "1")
    cfg = write_config({
        "policy": "round_robin", "policy_options": {"scrape_interval_ms": 50},
        "models": [{"name": BASE, "loras": ["a"], "endpoints": [with_a.url, without.url],
                    "lora": {"dynamic_loading": False}}],
    })
    router = start_router("--config", cfg)
    try:
        # Known once a decision found it loaded (the scraper's first rounds run at start).
        assert wait_for(lambda: post_json(router, CHAT, chat_body("a"))[0] == 200 and
                        (lora_counter(router, "vllm_router_lora_placement_total", result="loaded") or 0) >= 1)
        for _ in range(8):
            status, hdrs, _ = post_json(router, CHAT, chat_body("a"))
            assert status == 200 and hdrs["x-sim-id"] == "with-a"
        assert lora_counter(router, "vllm_router_lora_loads_total") == 0
    finally:
        assert router.stop() == 0
        with_a.stop()
        without.stop()
        os.unlink(cfg)


def test_a_load_longer_than_the_queue_timeout_answers_503_naming_it():
    sim = start_sim("--model", BASE, "--enable-runtime-lora", "--max-lora", "2", "--lora-load-ms", "1500",
                    "--output-tokens", "1")
    cfg = write_config({
        "queue_timeout_ms": 200, "policy_options": {"scrape_interval_ms": 50},
        "models": [{"name": BASE, "loras": ["a"], "endpoints": [sim.url],
                    "lora": {"dynamic_loading": True, "path_template": "/adapters/{name}"}}],
    })
    router = start_router("--config", cfg)
    try:
        status, _, body = post_json(router, CHAT, chat_body("a"))
        err = assert_openai_error(body, 503)
        assert err["message"].startswith("waiting for LoRA adapter `a` to load"), err
        # The load went on: once it is done the adapter is served.
        assert wait_for(lambda: post_json(router, CHAT, chat_body("a"))[0] == 200, timeout=5)
        assert sim_lora(sim)["loads"] == 1
    finally:
        assert router.stop() == 0
        sim.stop()
        os.unlink(cfg)


def test_lora_loading_flag_turns_dynamic_loading_on():
    sim = start_sim("--model", BASE, "--enable-runtime-lora", "--max-lora", "2", "--output-tokens", "1")
    router = start_router("--model", "%s=%s" % (BASE, sim.url), "--lora", "a=" + BASE,
                          "--lora-loading", BASE + "=/adapters/{name}")
    try:
        status, _, body = post_json(router, CHAT, chat_body("a"))
        assert status == 200, body
        st = sim_lora(sim)
        assert st["loads"] == 1 and st["loaded"] == ["a"]
        assert json.loads(call(sim, "GET", "/v1/models")[2])["data"][1]["root"] == "/adapters/a"
    finally:
        assert router.stop() == 0
        sim.stop()


def test_an_adapter_a_request_runs_on_is_not_unloaded_to_make_room(single):
    router, sim = single
    status, _, body = post_json(router, CHAT, chat_body("a"))
    assert status == 200, body
    # A long stream on a (x-sim-itl-ms paces it), then b twice: a is the least recently used
    # but in use, so loading c must unload b.
    sock, head, _ = open_stream(router, CHAT, chat_body("a", stream=True, max_tokens=40),
                                headers={"x-sim-itl-ms": "50"})
    try:
        assert " 200 " in head.split("\r\n")[0], head
        for name in ("b", "b"):
            status, _, body = post_json(router, CHAT, chat_body(name))
            assert status == 200, body
        status, _, body = post_json(router, CHAT, chat_body("c"))
        assert status == 200, body
        st = sim_lora(sim)
        assert sorted(st["loaded"]) == ["a", "c"] and st["unloads"] == 1, (st, router_metrics(router))
        rest = b""
        while b"data: [DONE]" not in rest:  # the stream on a ran to its end
            chunk = sock.recv(65536)
            assert chunk, rest[-300:]
            rest += chunk
        assert b'"error"' not in rest
    finally:
        sock.close()
