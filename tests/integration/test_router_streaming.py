"""vllm-router streaming: byte fidelity against the engine itself, incremental delivery,
event-stream framing, and cancellation of the upstream when the client leaves."""

import http.client
import json
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (call, metric_samples, open_stream, router_metrics, sim_reset,  # noqa: E402
                        sim_stats, start_router, wait_for)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"
MODEL = "stream-model"


@pytest.fixture(scope="module")
def pair():
    sim = start_sim("--model", MODEL, "--id", "s1", "--output-tokens", "8")
    router = start_router("--model", "%s=%s" % (MODEL, sim.url))
    yield router, sim
    assert router.stop() == 0
    sim.stop()


def created_free(raw):
    """`created` is a clock reading (seconds): the one field two identical requests may differ in."""
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def events_of(raw):
    text = raw.decode()
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    out = []
    for ev in text.split("\n\n")[:-1]:
        assert ev.startswith("data: ") and "\n" not in ev, repr(ev)
        payload = ev[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


@pytest.mark.parametrize("path,body", [
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story"}],
            "stream": True, "max_tokens": 7, "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "stream": True,
                         "n": 2, "stop": ["tok5"]}),
])
def test_stream_bytes_equal_direct_engine_bytes(pair, path, body):
    router, sim = pair
    # The same X-Request-Id gives the same response id from the engine on both paths.
    hdrs_in = {"X-Request-Id": "fidelity-%d" % len(path)}
    s_direct, h_direct, direct = call(sim, "POST", path, body, hdrs_in)
    s_routed, h_routed, routed = call(router, "POST", path, body, hdrs_in)
    assert s_direct == s_routed == 200
    assert b"fidelity-" in direct  # ids really are the request id: nothing else varies
    assert created_free(routed) == created_free(direct)
    assert h_routed["content-type"] == h_direct["content-type"]
    assert h_routed["content-type"].startswith("text/event-stream")
    assert h_routed["x-request-id"] == hdrs_in["X-Request-Id"]
    assert "content-length" not in h_routed  # streamed, not buffered
    events_of(routed)


def test_usage_chunk_and_done(pair):
    router, _ = pair
    status, hdrs, raw = call(router, "POST", CHAT, {
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "max_tokens": 3, "stream_options": {"include_usage": True}})
    assert status == 200 and hdrs["content-type"].startswith("text/event-stream")
    role, *content, usage = events_of(raw)[:-1]
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == "tok0 tok1 tok2 "
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert raw.endswith(b"data: [DONE]\n\n") and raw.count(b"[DONE]") == 1


def test_events_arrive_incrementally(pair):
    router, _ = pair
    itl_ms, tokens = 100, 6
    conn = http.client.HTTPConnection(router.host, router.port, timeout=5)
    body = json.dumps({"model": MODEL, "prompt": "x", "stream": True, "max_tokens": tokens})
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", body=body,
                 headers={"Content-Type": "application/json", "x-sim-ttft-ms": "0",
                          "x-sim-itl-ms": str(itl_ms)})
    resp = conn.getresponse()
    assert resp.status == 200
    arrivals = []  # (time, complete events so far)
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        arrivals.append((time.monotonic() - t0, buf.count(b"\n\n")))
    conn.close()
    assert len(events_of(buf)) == tokens + 1
    first = next(t for t, n in arrivals if n >= 1)
    last = arrivals[-1][0]
    pacing = (tokens - 1) * itl_ms / 1000.0
    # Buffering anywhere would deliver everything at once at the end.
    assert last - first >= 0.6 * pacing, arrivals
    assert first < 0.5 * pacing, arrivals
    assert len({n for _, n in arrivals}) >= tokens // 2, arrivals


def in_flight(router):
    return [v for _, v in metric_samples(router_metrics(router), "vllm_router_endpoint_in_flight")]


def test_client_disconnect_cancels_upstream(pair):
    router, sim = pair
    assert wait_for(lambda: sim_stats(sim)["in_flight"] == 0)  # earlier requests fully done
    sim_reset(sim)
    sock, head, _ = open_stream(router, CHAT, {
        "model": MODEL, "messages": [{"role": "user", "content": "long"}], "stream": True,
        "max_tokens": 1000}, headers={"x-sim-ttft-ms": "0", "x-sim-itl-ms": "50"})
    assert head.startswith("HTTP/1.1 200")
    assert wait_for(lambda: sim_stats(sim)["in_flight"] == 1), sim_stats(sim)
    assert sim_stats(sim)["cancelled"] == 0
    # (A previous test's lease may still be in release for a moment: poll.)
    assert wait_for(lambda: in_flight(router) == [1.0]), in_flight(router)
    sock.close()
    st = wait_for(lambda: (lambda s: s if s["cancelled"] == 1 and s["in_flight"] == 0 else None)(
        sim_stats(sim)), timeout=3.0)
    assert st, sim_stats(sim)
    assert st["completed"] == 0
    assert wait_for(lambda: in_flight(router) == [0.0], timeout=3.0), in_flight(router)
    # The cancelled exchange is accounted as such, and the router still serves.
    ups = metric_samples(router_metrics(router), "vllm_router_upstream_requests_total")
    assert any(l["outcome"] == "cancelled" for l, _ in ups), ups
    status, _, _ = call(router, "POST", CHAT, {"model": MODEL, "messages": [], "max_tokens": 1})
    assert status == 200


def test_upstream_dropping_mid_stream_gives_in_band_error():
    with start_sim("--model", MODEL, "--fail", "drop", "--id", "dropper") as sim:
        with start_router("--model", "%s=%s" % (MODEL, sim.url), "--log-level", "error") as r:
            status, hdrs, raw = call(r, "POST", CHAT, {
                "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "max_tokens": 10})
            assert status == 200 and hdrs["content-type"].startswith("text/event-stream")
            events = events_of(raw)  # still ends with exactly one [DONE]
            assert raw.count(b"[DONE]") == 1
            *relayed, error, done = events
            assert done == "[DONE]"
            # What the engine sent before it dropped (role chunk + 2 tokens) is relayed as is.
            assert [e["choices"][0]["delta"].get("content") for e in relayed] == ["", "tok0 ", "tok1 "]
            assert set(error) == {"error"} and error["error"]["code"] >= 500, error
            assert error["error"]["message"]
            # Not retried after bytes reached the client, and accounted as a failed exchange.
            assert sim_stats(sim)["requests"] == 1
            def outcomes():
                return [l["outcome"] for l, _ in metric_samples(
                    router_metrics(r), "vllm_router_upstream_requests_total")]
            assert wait_for(lambda: outcomes() == ["upstream_closed"]), outcomes()


def test_client_leaving_before_the_first_byte_cancels_upstream(pair):
    """A non-streamed request still being computed upstream is cancelled when its client leaves,
    not when the answer is finally written."""
    router, sim = pair
    assert wait_for(lambda: sim_stats(sim)["in_flight"] == 0)
    sim_reset(sim)
    sock, _ = _send_raw(router, CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                       "max_tokens": 1}, {"x-sim-ttft-ms": "30000"})
    assert wait_for(lambda: sim_stats(sim)["in_flight"] == 1), sim_stats(sim)
    assert wait_for(lambda: in_flight(router) == [1.0]), in_flight(router)
    sock.close()
    # The engine would answer after 30 s; the router lets go within the poll deadline. (vllm-sim
    # notices a closed connection only when it writes, so the router's own accounting is read.)
    assert wait_for(lambda: in_flight(router) == [0.0], timeout=3.0), in_flight(router)
    ups = metric_samples(router_metrics(router), "vllm_router_upstream_requests_total")
    assert any(l["outcome"] == "cancelled" for l, _ in ups), ups
    reqs = metric_samples(router_metrics(router), "vllm_router_requests_total")
    assert any(l["status"] == "499" for l, _ in reqs), reqs


def _send_raw(target, path, body, headers):
    import socket
    data = json.dumps(body).encode()
    head = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        path, len(data))
    head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=5)
    sock.sendall(head.encode() + data)
    return sock, data
