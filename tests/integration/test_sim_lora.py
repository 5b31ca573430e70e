"""vllm-sim's LoRA adapters against vLLM's runtime LoRA API (serving_models.py): load/unload
answers and errors, /v1/models entries, the vllm:lora_requests_info gauge, max_lora, the
simulated costs and auto-load."""

import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import simproc  # noqa: E402
from routerproc import assert_openai_error, call, chat_body, metric_samples, post_json  # noqa: E402

MODEL = "base-model"


def load(sim, name, path=None):
    return call(sim, "POST", "/v1/load_lora_adapter",
                {"lora_name": name, "lora_path": path or "/adapters/" + name})


def unload(sim, name):
    return call(sim, "POST", "/v1/unload_lora_adapter", {"lora_name": name})


def models(sim):
    status, _, doc = call(sim, "GET", "/v1/models")
    assert status == 200
    return {m["id"]: m for m in json.loads(doc)["data"]}


def lora_gauge(sim):
    status, _, raw = call(sim, "GET", "/metrics")
    assert status == 200
    samples = metric_samples(raw.decode(), "vllm:lora_requests_info")
    assert len(samples) == 1, samples
    return samples[0][0]


def sim_lora(sim):
    return json.loads(call(sim, "GET", "/sim/lora")[2])


@pytest.fixture
def sim():
    with simproc.start_sim("--model", MODEL, "--enable-runtime-lora", "--max-lora", "2",
                           "--lora-load-ms", "50", "--output-tokens", "2") as s:
        yield s


def test_load_lists_and_serves_the_adapter(sim):
    assert "sql" not in models(sim)
    status, _, body = post_json(sim, "/v1/chat/completions", chat_body("sql"))
    assert status == 404 and body["error"]["message"] == "The model `sql` does not exist."
    t0 = time.monotonic()
    status, hdrs, raw = load(sim, "sql")
    assert time.monotonic() - t0 >= 0.045  # --lora-load-ms
    assert status == 200 and raw == b"Success: LoRA adapter 'sql' added successfully."
    entry = models(sim)["sql"]
    assert entry["parent"] == MODEL and entry["root"] == "/adapters/sql" and entry["object"] == "model"
    status, _, body = post_json(sim, "/v1/chat/completions", chat_body("sql"))
    assert status == 200 and body["model"] == "sql"
    assert lora_gauge(sim)["max_lora"] == "2"


def test_load_errors_as_vllm(sim):
    status, _, raw = call(sim, "POST", "/v1/load_lora_adapter", {"lora_name": "x"})
    err = assert_openai_error(raw, 400, "InvalidUserInput")
    assert err["message"] == "Both 'lora_name' and 'lora_path' must be provided."
    assert load(sim, "a")[0] == 200
    status, _, raw = load(sim, "a")
    assert assert_openai_error(raw, 400, "InvalidUserInput")["message"] == \
        "The lora adapter 'a' has already been loaded."
    status, _, raw = load(sim, "b", "missing/b")
    assert "No adapter found" in assert_openai_error(raw, 404, "NotFoundError")["message"]
    status, _, raw = unload(sim, "nope")
    assert assert_openai_error(raw, 404, "NotFoundError")["message"] == "The lora adapter 'nope' cannot be found."


def test_unload_answers_and_removes(sim):
    assert load(sim, "a")[0] == 200
    status, _, raw = unload(sim, "a")
    assert status == 200 and raw == b"Success: LoRA adapter 'a' removed successfully."
    assert "a" not in models(sim)
    assert unload(sim, "a")[0] == 404


def test_max_lora_refuses_a_third_adapter(sim):
    assert load(sim, "a")[0] == 200 and load(sim, "b")[0] == 200
    status, _, raw = load(sim, "c")
    assert "max_loras 2" in assert_openai_error(raw, 400)["message"]
    assert unload(sim, "a")[0] == 200
    assert load(sim, "c")[0] == 200
    st = sim_lora(sim)
    assert st["loads"] == 3 and st["unloads"] == 1 and st["rejected_loads"] == 1
    assert st["loaded"] == ["b", "c"]


def test_runtime_api_absent_without_the_flag():
    with simproc.start_sim("--model", MODEL) as s:
        assert call(s, "POST", "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": "p"})[0] == 404


def test_gauge_lists_running_adapters_and_lru_order(sim):
    assert load(sim, "a")[0] == 200 and load(sim, "b")[0] == 200
    assert lora_gauge(sim)["running_lora_adapters"] == ""
    done = threading.Event()

    def slow():
        post_json(sim, "/v1/chat/completions", chat_body("a"), headers={"x-sim-ttft-ms": "400"})
        done.set()
    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 3
    seen = ""
    while time.monotonic() < deadline and not done.is_set():
        seen = lora_gauge(sim)["running_lora_adapters"]
        if seen == "a":
            break
        time.sleep(0.02)
    t.join()
    assert seen == "a"
    assert sim_lora(sim)["loaded"] == ["b", "a"]  # a used last


def test_adapter_request_pays_the_extra_prefill():
    with simproc.start_sim("--model", MODEL, "--lora", "a", "--lora-prefill-ms", "150",
                           "--output-tokens", "1") as s:
        t0 = time.monotonic()
        assert post_json(s, "/v1/chat/completions", chat_body(MODEL))[0] == 200
        base = time.monotonic() - t0
        t0 = time.monotonic()
        assert post_json(s, "/v1/chat/completions", chat_body("a"))[0] == 200
        assert time.monotonic() - t0 >= 0.14 > base


def test_auto_load_evicts_the_least_recently_used():
    with simproc.start_sim("--model", MODEL, "--lora-auto-load", "--max-lora", "2",
                           "--lora-load-ms", "100", "--output-tokens", "1") as s:
        for name in ("a", "b"):
            assert post_json(s, "/v1/chat/completions", chat_body(name))[0] == 200
        assert post_json(s, "/v1/chat/completions", chat_body("a"))[0] == 200  # b is now LRU
        t0 = time.monotonic()
        assert post_json(s, "/v1/chat/completions", chat_body("c"))[0] == 200
        assert time.monotonic() - t0 >= 0.095  # the load was paid by the request
        st = sim_lora(s)
        assert st["loaded"] == ["a", "c"] and st["auto_loads"] == 3 and st["unloads"] == 1
        assert set(models(s)) == {MODEL, "a", "c"}
