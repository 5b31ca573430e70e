"""The vllm_router Python module: config, routing decisions, leases, policies, streamed forward."""

import json
import threading
import time
import urllib.request

import pytest

import vllm_router

MODEL = "facebook/opt-125m"


def config_for(*urls, **extra):
    model = {"name": MODEL, "aliases": ["opt"], "endpoints": list(urls)}
    model.update(extra)
    return {"models": [model]}


def sim_stats(sim):
    with urllib.request.urlopen(sim.url + "/sim/stats", timeout=5) as r:
        return json.load(r)


def chat(stream=True, max_tokens=5, model="opt"):
    return {"model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Hello"}]}


# ------------------------------------------------------------------ module, config, errors

def test_version_and_error_hierarchy():
    assert vllm_router.__version__ == vllm_router.version()
    assert vllm_router.__version__.count(".") == 2
    for name in ("BadRequestError", "UnknownModelError", "NoEndpointError", "UpstreamError",
                 "ConfigError", "CancelledError"):
        assert issubclass(getattr(vllm_router, name), vllm_router.RouterError)
    assert issubclass(vllm_router.UpstreamTimeoutError, vllm_router.UpstreamError)


def test_from_config_accepts_dict_and_json_text():
    cfg = config_for("http://127.0.0.1:9001")
    a = vllm_router.Router.from_config(cfg)
    b = vllm_router.Router.from_config(json.dumps(cfg))
    c = vllm_router.Router(cfg)
    for r in (a, b, c):
        names = {(m["name"], m["kind"]) for m in r.models()}
        assert names == {(MODEL, "model"), ("opt", "alias")}
    assert "round_robin" in a.policy_names and "least_requests" in a.policy_names


def test_config_error_names_the_field():
    with pytest.raises(vllm_router.ConfigError) as info:
        vllm_router.Router.from_config({"models": [{"name": "m", "endpoints": ["ftp://x"]}]})
    assert info.value.param == "models[0].endpoints[0].url"
    assert info.value.code == "config"
    with pytest.raises(vllm_router.ConfigError):
        vllm_router.Router.from_config(config_for("http://127.0.0.1:9001", policy="no_such_policy"))


# ------------------------------------------------------------------ routing decisions

def test_route_resolves_alias_and_rewrites_body():
    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001"))
    with r.route({"model": "opt", "prompt": "hi"}) as route:
        assert route.endpoint_url == "http://127.0.0.1:9001"
        assert route.model == MODEL
        assert json.loads(route.body)["model"] == MODEL
        assert route.active
        assert r.endpoints()[0]["in_flight"] == 1
    assert not route.active
    state = r.endpoints()[0]
    assert state["in_flight"] == 0 and state["requests"] == 1
    # served name: body unchanged (bytes in, bytes out)
    body = b'{"model": "facebook/opt-125m", "prompt": "x"}'
    with r.route(body) as route:
        assert route.body == body


def test_route_errors_are_router_error_subclasses():
    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001"))
    with pytest.raises(vllm_router.UnknownModelError) as info:
        r.route({"model": "nope"})
    assert info.value.status == 404 and info.value.param == "model" and "nope" in str(info.value)
    with pytest.raises(vllm_router.BadRequestError) as info:
        r.route(b"{not json")
    assert info.value.code == "invalid_json" and info.value.status == 400
    with pytest.raises(vllm_router.BadRequestError) as info:
        r.route({"prompt": "no model"})
    assert info.value.code == "missing_model"
    with pytest.raises(vllm_router.NoEndpointError):
        r.route({"model": "opt"}, exclude=["http://127.0.0.1:9001"])


def test_lease_outcomes_reach_the_observer():
    seen = []
    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001"),
                                       observer=lambda model, ep, o: seen.append((model, ep, o)))
    route = r.route({"model": "opt"})
    route.complete(status=503, bytes=10, ttfb=0.25)
    route.complete(status=200)  # ignored: once only
    r.route({"model": "opt"}).cancel()
    with pytest.raises(RuntimeError):
        with r.route({"model": "opt"}):
            raise RuntimeError("boom")
    assert [o["kind"] for _, _, o in seen] == ["success", "cancelled", "error"]
    model, endpoint, first = seen[0]
    assert (model, endpoint) == (MODEL, "http://127.0.0.1:9001")
    assert first["status"] == 503 and first["bytes"] == 10 and first["ttfb"] == pytest.approx(0.25)
    assert r.endpoints()[0]["failures"] == 1  # the 503
    with pytest.raises(ValueError):
        r.route({"model": "opt"}).complete(kind="nonsense")


def test_custom_policy_by_name():
    calls = []

    def last(candidates, request):
        calls.append((request.model, [c.endpoint_id for c in candidates]))
        return len(candidates) - 1

    urls = ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"]
    r = vllm_router.Router.from_config(config_for(*urls, policy="last"), policies={"last": last})
    assert "last" in r.policy_names
    for _ in range(3):
        with r.route({"model": "opt", "user": "u1"}) as route:
            assert route.endpoint_url == urls[-1]
    assert calls[0] == ("opt", urls)


def test_policy_errors_propagate():
    def broken(candidates, request):
        raise KeyError("policy bug")

    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001", policy="broken"),
                                       policies={"broken": broken, "wild": lambda c, r: 7})
    with pytest.raises(KeyError):
        r.route({"model": "opt"})
    r.update(config_for("http://127.0.0.1:9001", policy="wild"))
    with pytest.raises(IndexError):
        r.route({"model": "opt"})
    assert r.endpoints()[0]["in_flight"] == 0  # a failed pick leaves no lease behind


def test_endpoints_name_the_prefill_and_decode_pools():
    cfg = config_for("http://127.0.0.1:9001", prefill={"endpoints": ["http://127.0.0.1:9002"]})
    r = vllm_router.Router.from_config(cfg)
    assert sorted((e["id"], e["role"]) for e in r.endpoints()) == [
        ("http://127.0.0.1:9001", "decode"), ("http://127.0.0.1:9002", "prefill")]
    plain = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001"))
    assert [e["role"] for e in plain.endpoints()] == [None]


def test_update_swaps_the_table_and_keeps_it_on_error():
    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9001"))
    v1 = r.version
    r.update(config_for("http://127.0.0.1:9002"))
    assert r.version > v1
    assert r.route({"model": "opt"}).endpoint_url == "http://127.0.0.1:9002"
    with pytest.raises(vllm_router.ConfigError):
        r.update({"models": [{"name": "x", "endpoints": ["bogus"]}]})
    assert r.route({"model": "opt"}).endpoint_url == "http://127.0.0.1:9002"


def test_two_routers_do_not_interfere():
    urls = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    seen_a, seen_b = [], []
    a = vllm_router.Router.from_config(config_for(*urls), observer=lambda *e: seen_a.append(e))
    b = vllm_router.Router.from_config(config_for(*urls, policy="first"),
                                       policies={"first": lambda c, r: 0},
                                       observer=lambda *e: seen_b.append(e))
    held = [a.route({"model": "opt"}) for _ in range(4)]  # round robin: 2 + 2 in flight on a
    assert [e["in_flight"] for e in a.endpoints()] == [2, 2]
    assert [e["in_flight"] for e in b.endpoints()] == [0, 0]  # same URLs, separate state
    assert "first" not in a.policy_names
    with b.route({"model": "opt"}) as route:
        assert route.endpoint_url == urls[0]
    for h in held:
        h.complete()
    assert len(seen_a) == 4 and len(seen_b) == 1
    b.update(config_for("http://127.0.0.1:9003"))
    assert [e["id"] for e in a.endpoints()] == urls


# ------------------------------------------------------------------ forwarding through vllm-sim

def test_forward_streams_a_chat_completion(sim):
    r = vllm_router.Router.from_config(config_for(sim.url))
    with r.forward("/v1/chat/completions", chat(),
                   headers={"X-Request-Id": "py-1", "x-sim-itl-ms": "10"}) as resp:
        assert resp.status == 200
        headers = {k.lower(): v for k, v in resp.headers}
        assert headers["content-type"].startswith("text/event-stream")
        assert resp.endpoint_id == sim.url and resp.model == MODEL and resp.attempts == 1
        chunks = list(resp)
    assert len(chunks) >= 3 and all(isinstance(c, bytes) for c in chunks)
    text = b"".join(chunks).decode()
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    tokens = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") or ""
                     for e in events[:-1] if json.loads(e)["choices"])
    assert tokens == "tok0 tok1 tok2 tok3 tok4 "
    assert json.loads(events[0])["id"] == "chatcmpl-py-1"
    stats = sim_stats(sim)
    assert stats["last_headers"]["x-request-id"] == "py-1"
    assert stats["completed"] == 1
    assert r.endpoints()[0]["in_flight"] == 0 and r.endpoints()[0]["requests"] == 1


def test_forward_non_streamed_and_upstream_errors(sim):
    r = vllm_router.Router.from_config(config_for(sim.url))
    resp = r.forward("/v1/completions", {"model": "opt", "prompt": "hi", "max_tokens": 3})
    assert resp.status == 200 and resp.content_length is not None
    body = json.loads(resp.read())
    assert body["choices"][0]["text"] == "tok0 tok1 tok2 "
    assert body["model"] == MODEL  # the alias was rewritten upstream
    # vLLM's own 400 is relayed, not raised
    resp = r.forward("/v1/completions", {"model": "opt", "prompt": "x", "max_tokens": 100000})
    assert resp.status == 400 and "error" in json.loads(resp.read())
    with pytest.raises(vllm_router.UnknownModelError):
        r.forward("/v1/completions", {"model": "nope"})
    with pytest.raises(vllm_router.BadRequestError):
        r.forward("/v1/completions", b"")


def test_forward_retries_refused_endpoints_then_raises(sim):
    seen = []
    r = vllm_router.Router.from_config(config_for("http://127.0.0.1:9", sim.url, policy="first"),
                                       policies={"first": lambda c, req: 0},
                                       observer=lambda m, ep, o: seen.append((ep, o["kind"])))
    resp = r.forward("/v1/completions", {"model": "opt", "prompt": "hi", "max_tokens": 2})
    assert resp.status == 200 and resp.attempts == 2 and resp.endpoint_id == sim.url
    resp.read()
    assert seen == [("http://127.0.0.1:9", "connect_failure"), (sim.url, "success")]
    r.update(config_for("http://127.0.0.1:9"))
    with pytest.raises(vllm_router.UpstreamError) as info:
        r.forward("/v1/completions", {"model": "opt", "prompt": "hi"})
    assert info.value.code == "connect_failed" and info.value.status == 502
    info = r = None  # the traceback keeps this frame (and the router's keep-alive socket) alive


def test_closing_a_stream_early_cancels_upstream(sim):
    seen = []
    r = vllm_router.Router.from_config(config_for(sim.url), observer=lambda m, ep, o: seen.append(o))
    resp = r.forward("/v1/chat/completions", chat(max_tokens=200), headers={"x-sim-itl-ms": "20"})
    first = next(resp)
    assert first.startswith(b"data: ")
    resp.close()
    assert [o["kind"] for o in seen] == ["cancelled"]
    deadline = time.monotonic() + 5
    while sim_stats(sim)["cancelled"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim_stats(sim)["cancelled"] == 1


def test_mid_stream_failure_raises_upstream_error():
    from simproc import start_sim
    with start_sim("--fail", "drop") as sim:
        r = vllm_router.Router.from_config(config_for(sim.url))
        resp = r.forward("/v1/chat/completions", chat(max_tokens=50))
        assert resp.status == 200
        with pytest.raises(vllm_router.UpstreamError) as info:
            for _ in resp:
                pass
        assert info.value.code == "upstream_closed"


def test_forward_timeout_bounds_the_exchange(sim):
    r = vllm_router.Router.from_config(config_for(sim.url))
    body = chat()
    body.pop("stream", None)
    t0 = time.monotonic()
    with pytest.raises(vllm_router.UpstreamTimeoutError) as info:
        r.forward("/v1/chat/completions", body, headers={"x-sim-ttft-ms": "3000"}, timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    assert info.value.status == 504
    with pytest.raises(ValueError):
        r.forward("/v1/chat/completions", body, timeout=0)


def test_forward_releases_the_gil(sim):
    r = vllm_router.Router.from_config(config_for(sim.url))
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        started = time.monotonic()
        resp = r.forward("/v1/completions", {"model": "opt", "prompt": "hi", "max_tokens": 2},
                         headers={"x-sim-ttft-ms": "300"})
        waited = time.monotonic() - started
        resp.read()
    finally:
        stop.set()
        t.join()
    assert waited >= 0.25
    assert len(ticks) >= 20  # the other thread kept running while forward() waited

    # and concurrent forwards overlap instead of queueing behind the GIL
    results = []

    def one():
        with r.forward("/v1/completions", {"model": "opt", "prompt": "x", "max_tokens": 1},
                       headers={"x-sim-ttft-ms": "300"}) as resp:
            results.append(resp.read())

    threads = [threading.Thread(target=one) for _ in range(4)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 4
    assert time.monotonic() - started < 1.0  # 4 x 300 ms would be 1.2 s serially


def test_round_robin_over_two_sims(sims):
    a, b = sims
    r = vllm_router.Router.from_config(config_for(a.url, b.url))
    ids = []
    for _ in range(4):
        resp = r.forward("/v1/completions", {"model": "opt", "prompt": "hi", "max_tokens": 1})
        ids.append({k.lower(): v for k, v in resp.headers}["x-sim-id"])
        resp.read()
    assert sorted(ids) == ["sim-a", "sim-a", "sim-b", "sim-b"]
