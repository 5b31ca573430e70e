"""vllm-router against simulated engines: which replica serves what (models, aliases, LoRA,
default model, round robin, weights, least requests), /v1/models, health, readiness, metrics."""

import collections
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (assert_openai_error, call, chat_body, fnv1a64, metric_samples,  # noqa: E402
                        open_stream, post_json, router_metrics, sim_reset, sim_stats,
                        start_router, wait_for)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


def chat(model=None, **kw):
    fields = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 2}
    return chat_body(model, **{**fields, **kw})


def write_config(doc):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(doc, f)
    f.close()
    return f.name


# ---------------------------------------------------------------- two models, alias, LoRA, default

@pytest.fixture(scope="module")
def two_models():
    a = start_sim("--model", "model-a", "--lora", "sql-lora", "--id", "sim-a", "--output-tokens", "3")
    b = start_sim("--model", "model-b", "--id", "sim-b", "--output-tokens", "3")
    cfg = write_config({
        "default_model": "model-b",
        "models": [
            {"name": "model-a", "aliases": ["alias-a"], "loras": ["sql-lora"], "endpoints": [a.url]},
            {"name": "model-b", "endpoints": [b.url]},
        ],
    })
    r = start_router("--config", cfg)
    yield r, a, b
    assert r.stop() == 0
    a.stop()
    b.stop()
    os.unlink(cfg)


def test_each_model_goes_to_its_own_replica(two_models):
    r, a, b = two_models
    sim_reset(a)
    sim_reset(b)
    for _ in range(3):
        for model, sim_id in (("model-a", "sim-a"), ("model-b", "sim-b")):
            status, hdrs, body = post_json(r, CHAT, chat(model))
            assert status == 200, body
            assert hdrs["x-sim-id"] == sim_id
            assert body["model"] == model and body["object"] == "chat.completion"
    assert sim_stats(a)["requests"] == 3 and sim_stats(b)["requests"] == 3


def test_alias_is_rewritten_to_the_served_name(two_models):
    r, a, _ = two_models
    raw = json.dumps(chat("alias-a"), separators=(",", ":")).encode()
    status, hdrs, body = call(r, "POST", CHAT, raw)
    assert status == 200 and hdrs["x-sim-id"] == "sim-a"
    assert json.loads(body)["model"] == "model-a"  # the sim answers with the name it was sent
    st = sim_stats(a)
    # Upstream got exactly the client's bytes with the alias replaced by the real name.
    expected = raw.replace(b'"model":"alias-a"', b'"model":"model-a"')
    assert expected != raw
    assert st["last_body_bytes"] == len(expected)
    assert st["last_body_fnv1a64"] == fnv1a64(expected)


TRANSCRIBE = "/v1/audio/transcriptions"


def audio_form(model, boundary="vr-test-7f3a"):
    """A multipart/form-data transcription request, as the openai SDKs send it."""
    parts = [
        (b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n',
         b"RIFF\x00\x01--fake\r\naudio"),
        (b'Content-Disposition: form-data; name="model"\r\n\r\n', model.encode()),
        (b'Content-Disposition: form-data; name="response_format"\r\n\r\n', b"json"),
    ]
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\n" + head + value + b"\r\n" for head, value in parts) + delimiter + b"--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary}


def test_audio_transcription_form_is_routed_by_its_model_field(two_models):
    r, a, b = two_models
    body, headers = audio_form("alias-a")
    status, hdrs, out = call(r, "POST", TRANSCRIBE, body, headers)
    assert status == 200, out
    assert hdrs["x-sim-id"] == "sim-a"
    assert "text" in json.loads(out)
    assert sim_stats(a)["last_path"] == TRANSCRIBE
    # The engine itself refuses the alias: the router rewrote it inside the form (the unit tests
    # check that no other byte changes; the engine's HTTP library keeps no raw form body to hash).
    status, _, out = call(a, "POST", TRANSCRIBE, body, headers)
    assert status == 404 and b"alias-a" in out
    body, headers = audio_form("model-b", boundary="other")
    status, hdrs, out = call(r, "POST", TRANSCRIBE, body, headers)
    assert status == 200 and hdrs["x-sim-id"] == "sim-b", out


def test_audio_transcription_form_errors(two_models):
    r, _, _ = two_models
    body, headers = audio_form("no-such-model")
    status, _, out = call(r, "POST", TRANSCRIBE, body, headers)
    assert_openai_error(out, 404, "NotFoundError")
    assert status == 404
    status, _, out = call(r, "POST", TRANSCRIBE, body, {"Content-Type": "multipart/form-data"})
    err = assert_openai_error(out, 400)
    assert status == 400 and "boundary" in err["message"]


def test_lora_routes_to_its_base_models_replicas(two_models):
    r, a, _ = two_models
    raw = json.dumps(chat("sql-lora")).encode()
    status, hdrs, body = call(r, "POST", CHAT, raw)
    assert status == 200, body
    assert hdrs["x-sim-id"] == "sim-a"
    assert json.loads(body)["model"] == "sql-lora"  # adapters are forwarded as requested
    assert sim_stats(a)["last_body_fnv1a64"] == fnv1a64(raw)


def test_default_model_when_body_has_none(two_models):
    r, _, b = two_models
    status, hdrs, body = post_json(r, CHAT, chat())
    assert status == 200, body
    assert hdrs["x-sim-id"] == "sim-b" and body["model"] == "model-b"


def test_models_list_openai_shape(two_models):
    r, _, _ = two_models
    status, hdrs, raw = call(r, "GET", "/v1/models")
    assert status == 200 and hdrs["content-type"].startswith("application/json")
    doc = json.loads(raw)
    assert doc["object"] == "list"
    by_id = {m["id"]: m for m in doc["data"]}
    assert sorted(by_id) == ["alias-a", "model-a", "model-b", "sql-lora"]
    for m in doc["data"]:
        assert m["object"] == "model"
        assert isinstance(m["created"], int) and m["created"] > 0
        assert isinstance(m["owned_by"], str) and m["owned_by"]
    assert by_id["model-a"]["parent"] is None and by_id["model-b"]["parent"] is None
    assert by_id["alias-a"]["root"] == "model-a"
    assert by_id["sql-lora"]["parent"] == "model-a"


def test_health_ready_and_request_metrics(two_models):
    r, _, _ = two_models
    status, _, body = call(r, "GET", "/health")
    assert status == 200
    status, _, body = call(r, "GET", "/ready")
    assert status == 200 and json.loads(body)["status"] == "ready"
    for _ in range(2):
        assert post_json(r, CHAT, chat("model-b"))[0] == 200
    text = router_metrics(r)
    assert "# TYPE vllm_router_requests_total counter" in text
    samples = metric_samples(text, "vllm_router_requests_total")
    ok_b = [v for labels, v in samples if labels == {"model": "model-b", "status": "200"}]
    assert ok_b and ok_b[0] >= 2, samples
    # An unknown model is counted without its name: clients cannot grow the label set.
    assert post_json(r, CHAT, chat("no-such-model"))[0] == 404
    samples = metric_samples(router_metrics(r), "vllm_router_requests_total")
    assert not any(labels.get("model") == "no-such-model" for labels, _ in samples)
    assert any(labels.get("status") == "404" for labels, _ in samples)


# ---------------------------------------------------------------- load balancing

@pytest.fixture(scope="module")
def three_replicas():
    sims = [start_sim("--served-model-name", "pool", "--served-model-name", "solo",
                      "--id", "r%d" % i, "--output-tokens", "1") for i in range(3)]
    yield sims
    for s in sims:
        s.stop()


def served_by(router, n, model="pool"):
    counts = collections.Counter()
    for _ in range(n):
        status, hdrs, body = post_json(router, CHAT, chat(model, max_tokens=1))
        assert status == 200, body
        counts[hdrs["x-sim-id"]] += 1
    return counts


def test_round_robin_spreads_evenly(three_replicas):
    sims = three_replicas
    for s in sims:
        sim_reset(s)
    with start_router("--model", "pool=" + ",".join(s.url for s in sims),
                      "--policy", "round_robin") as r:
        counts = served_by(r, 30)
    assert counts == {"r0": 10, "r1": 10, "r2": 10}, counts
    assert [sim_stats(s)["requests"] for s in sims] == [10, 10, 10]


def test_weights_split_three_to_one(three_replicas):
    heavy, light, _ = three_replicas
    cfg = write_config({"policy": "round_robin", "models": [{"name": "pool", "endpoints": [
        {"url": heavy.url, "weight": 3}, {"url": light.url, "weight": 1}]}]})
    try:
        with start_router("--config", cfg) as r:
            counts = served_by(r, 40)
    finally:
        os.unlink(cfg)
    assert counts == {"r0": 30, "r1": 10}, counts


def test_least_requests_avoids_replica_with_open_streams(three_replicas):
    busy, idle, _ = three_replicas
    # `solo` is served by the busy replica only; load is per replica, whatever model used it.
    with start_router("--model", "pool=%s,%s" % (busy.url, idle.url), "--model", "solo=" + busy.url,
                      "--policy", "least_requests") as r:
        # Three slow streams (one token every 200 ms, 100 tokens) stay open on the busy replica.
        # Several, so that it stays the more loaded one even while the lease of a just-answered
        # request on the idle replica is still being released (the client can send its next
        # request a moment before the router's relay thread accounts the last one as done).
        socks = []
        try:
            for _ in range(3):
                sock, head, _ = open_stream(r, CHAT, chat("solo", stream=True, max_tokens=100),
                                            headers={"x-sim-ttft-ms": "0", "x-sim-itl-ms": "200"})
                socks.append(sock)
                assert "x-sim-id: r0" in head.lower(), head
            counts = served_by(r, 12)
            assert counts == {"r1": 12}, counts
            def gauges():
                return {l["endpoint"]: v for l, v in metric_samples(
                    router_metrics(r), "vllm_router_endpoint_in_flight") if l["model"] == "pool"}
            assert wait_for(lambda: gauges() == {busy.url: 3.0, idle.url: 0.0}), gauges()
        finally:
            for sock in socks:
                sock.close()
        # With the streams gone, both replicas are equal again: new requests use both.
        assert wait_for(lambda: all(v == 0 for _, v in metric_samples(
            router_metrics(r), "vllm_router_endpoint_in_flight")))
        assert set(served_by(r, 40)) == {"r0", "r1"}


def test_unknown_model_is_404_naming_it(two_models):
    r, _, _ = two_models
    status, hdrs, body = post_json(r, CHAT, chat("gpt-17"))
    assert status == 404 and "x-sim-id" not in hdrs
    err = assert_openai_error(body, 404, "NotFoundError")
    assert "gpt-17" in err["message"]
