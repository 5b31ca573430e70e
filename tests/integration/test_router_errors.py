"""vllm-router error answers: every status in OpenAI's nested shape, retries past dead
replicas, upstream timeouts, and upstream errors passed through untouched."""

import json
import os
import re
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (chat_body as chat, assert_openai_error, call, dead_port, metric_samples,  # noqa: E402
                        post_json, router_metrics, sim_reset, sim_stats, start_router, wait_for)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def live():
    sim = start_sim("--model", "live", "--id", "live-1", "--output-tokens", "1")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def router(live):
    """One live model, one model whose replicas are all dead, a limit on body size, and an alias
    pointing at a name the engine does not serve."""
    dead = ["http://127.0.0.1:%d" % dead_port() for _ in range(2)]
    r = start_router("--model", "live=" + live.url, "--model", "dead=" + ",".join(dead),
                     "--model", "ghost=" + live.url, "--alias", "ghost-alias=ghost",
                     "--max-body-bytes", "4096", "--log-level", "error")
    yield r
    assert r.stop() == 0


def test_unknown_model_404(router, live):
    sim_reset(live)
    status, hdrs, body = post_json(router, CHAT, chat("no-such/model"))
    assert status == 404 and hdrs["content-type"].startswith("application/json")
    err = assert_openai_error(body, 404, "NotFoundError")
    assert "no-such/model" in err["message"] and err["param"] == "model"
    assert sim_stats(live)["requests"] == 0


@pytest.mark.parametrize("raw", [
    b'{"messages": [{"role": "user", "content": "hi"}]}',  # no model, no default model
    b'{"model": 42, "prompt": "x"}',                        # model is not a string
])
def test_missing_model_400(router, raw):
    status, _, body = call(router, "POST", CHAT, raw)
    assert status == 400
    err = assert_openai_error(body, 400, "BadRequestError")
    assert err["param"] == "model"


@pytest.mark.parametrize("raw", [b'{"model": "live", "prompt": ', b"not json", b"[1, 2]", b"",
                                 b'{"model": "live"} trailing'])
def test_invalid_json_400(router, raw):
    status, _, body = call(router, "POST", CHAT, raw)
    assert status == 400, body
    assert_openai_error(body, 400, "BadRequestError")


def test_body_over_limit_413(router, live):
    sim_reset(live)
    status, _, body = post_json(router, CHAT, chat("live", padding="x" * 5000))
    assert status == 413
    assert_openai_error(body, 413)
    assert sim_stats(live)["requests"] == 0
    # Just under the limit still goes through.
    small = chat("live")
    small["padding"] = "x" * (4000 - len(json.dumps(small)))
    assert post_json(router, CHAT, small)[0] == 200


def test_all_replicas_refused_502(router):
    t0 = time.monotonic()
    status, _, body = post_json(router, CHAT, chat("dead"))
    assert status == 502
    err = assert_openai_error(body, 502)
    assert err["type"] == "BadGatewayError"
    assert time.monotonic() - t0 < 2.0  # refused connections fail fast, no waiting
    ups = metric_samples(router_metrics(router), "vllm_router_upstream_requests_total")
    assert sum(v for l, v in ups if l["model"] == "dead" and l["outcome"] == "connect_failure") >= 2


def test_retry_past_dead_replica(live):
    dead = "http://127.0.0.1:%d" % dead_port()
    with start_router("--model", "live=%s,%s" % (dead, live.url), "--policy", "round_robin",
                      "--log-level", "error") as r:
        for _ in range(10):
            status, hdrs, body = post_json(r, CHAT, chat("live"))
            assert status == 200, body
            assert hdrs["x-sim-id"] == "live-1"
        ups = metric_samples(router_metrics(r), "vllm_router_upstream_requests_total")
        refused = sum(v for l, v in ups if l["endpoint"] == dead and l["outcome"] == "connect_failure")
        assert refused >= 1, ups  # the dead replica really was picked, and skipped


def test_unknown_get_path_404_json(router):
    for method, path in (("GET", "/no/such/path"), ("GET", "/v2/models"), ("PUT", "/v1/models")):
        status, hdrs, body = call(router, method, path)
        assert status == 404, (method, path)
        assert hdrs["content-type"].startswith("application/json")
        err = assert_openai_error(body, 404, "NotFoundError")
        assert path in err["message"]


def raw_call(router, head):
    """Sends `head` (bytes: a request without a body) on a raw socket, as http.client cannot
    (it refuses bytes outside ASCII in a target); returns (status, body bytes)."""
    with socket.create_connection((router.host, router.port), timeout=5) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head_bytes).group(1))
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk, body
            body += chunk
        return int(head_bytes.split(b" ")[1]), body


def test_error_body_is_valid_utf8_whatever_the_target_holds(router, live):
    """A target's bytes that are not UTF-8 come back in the message as their code points
    (json.loads of bytes rejects invalid UTF-8): the body stays valid JSON."""
    sim_reset(live)
    for method, target, shown in ((b"GET", b"/v1/\xff\xfe", "/v1/\u00ff\u00fe"),
                                  (b"POST", b"/v1/\xc3(x", "/v1/\u00c3(x"),
                                  (b"GET", b"/caf\xc3\xa9", "/caf\u00e9")):
        status, body = raw_call(router, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert status == 404, target
        err = assert_openai_error(body, 404, "NotFoundError")
        assert shown in err["message"], (target, err)
    assert sim_stats(live)["last_path"] is None


def test_admin_and_odd_targets_never_reach_an_engine(router, live):
    """Only vLLM's inference routes are forwarded (the replica's own key would go with them):
    its administrative routes are 404 in OpenAI's shape, targets that could be read differently
    downstream are 400, and the engine sees none of them."""
    sim_reset(live)
    body = chat("live")
    for path in ("/sleep", "/wake_up", "/reset_prefix_cache", "/v1/load_lora_adapter",
                 "/v1/unload_lora_adapter", "/start_profile", "/collective_rpc"):
        status, _, raw = call(router, "POST", path, body)
        assert status == 404, path
        err = assert_openai_error(raw, 404, "NotFoundError")
        assert path in err["message"]
    for path in ("/v1/../sleep", "/v1/%2e%2e/sleep", "/v1%2fchat/completions", "/v1/./chat/completions"):
        status, _, raw = call(router, "POST", path, body)
        assert status == 400, path
        assert_openai_error(raw, 400)
    assert sim_stats(live)["last_path"] is None
    assert call(router, "POST", CHAT, body)[0] == 200  # and the real route still works


def test_overlong_uri_status_matches_body(router):
    status, _, body = call(router, "GET", "/" + "a" * 10000)
    assert 400 <= status < 500
    assert_openai_error(body, status)


def test_upstream_error_passthrough_500():
    with start_sim("--model", "broken", "--fail", "error500", "--id", "b1") as sim:
        _, _, direct = call(sim, "POST", CHAT, chat("broken"))
        with start_router("--model", "broken=" + sim.url, "--log-level", "error") as r:
            status, hdrs, body = call(r, "POST", CHAT, chat("broken"))
            assert status == 500 and hdrs["x-sim-id"] == "b1"
            assert body == direct  # the engine's own error body, untouched
            assert_openai_error(body, 500)
            # An engine error is an answer, not a connect failure: not retried elsewhere.
            assert sim_stats(sim)["requests"] == 2


def test_upstream_unknown_model_404_passthrough(router, live):
    status, hdrs, body = post_json(router, CHAT, chat("ghost-alias"))
    assert status == 404
    assert hdrs["x-sim-id"] == "live-1"  # answered by the engine, not by the router
    err = assert_openai_error(body, 404, "NotFoundError")
    assert err["message"] == "The model `ghost` does not exist."  # alias was rewritten


def test_upstream_timeout_504():
    with start_sim("--model", "slow", "--fail", "hang") as sim:
        with start_router("--model", "slow=" + sim.url, "--read-timeout-ms", "300",
                          "--log-level", "error") as r:
            t0 = time.monotonic()
            status, _, body = post_json(r, CHAT, chat("slow"))
            elapsed = time.monotonic() - t0
            assert status == 504
            assert_openai_error(body, 504, "GatewayTimeoutError")
            assert 0.25 <= elapsed < 2.0, elapsed
            # The router hung up on the engine: its request is cancelled, not left hanging.
            st = wait_for(lambda: (lambda s: s if s["in_flight"] == 0 else None)(sim_stats(sim)))
            assert st and st["cancelled"] == 1, sim_stats(sim)
            assert call(r, "GET", "/health")[0] == 200
