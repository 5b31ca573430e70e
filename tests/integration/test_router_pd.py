"""Prefill/decode disaggregation (docs/disaggregation.md) against real processes: the router
splits a completion into a prefill leg (vllm-sim --kv-role prefill) and a decode leg
(vllm-sim --kv-role decode) carrying the prefill's kv_transfer_params; retries per leg, the
colocated fallback, one request id across both legs, and the sim's check of the params."""

import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (assert_openai_error, call, dead_port, logfmt, metric_samples, post_json,  # noqa: E402
                        router_metrics, sim_stats, start_router, wait_lines)
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
PROMPT = "a long prompt that fills several blocks of the simulated KV cache " * 8


def chat(stream=False, max_tokens=5, **kw):
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "stream": stream}
    body.update(kw)
    return body


def start_router_pd(decode, prefill, tmp, fallback=None, prefill_policy="round_robin", extra=None, args=()):
    model = {"name": "m", "endpoints": [s if isinstance(s, str) else s.url for s in decode],
             "policy": "round_robin",
             "prefill": {"endpoints": [s if isinstance(s, str) else s.url for s in prefill],
                         "policy": prefill_policy}}
    if fallback is not None:
        model["prefill"]["colocated_fallback"] = fallback
    doc = {"models": [model], "health_check": {"enabled": False},
           "outlier_detection": {"enabled": False}}
    doc.update(extra or {})
    path = os.path.join(tmp, "router.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return start_router("--config", path, "--log-level", "error", *args)


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory() as d:
        yield d


def prefill_sim(*args):
    return start_sim("--kv-role", "prefill", "--served-model-name", "m", *args)


def decode_sim(*args):
    return start_sim("--kv-role", "decode", "--served-model-name", "m", *args)


def sse_events(raw):
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


def test_non_streamed_runs_both_legs_with_one_request_id(tmp):
    with prefill_sim() as p, decode_sim() as d, start_router_pd([d], [p], tmp) as router:
        status, headers, doc = post_json(router, CHAT, chat(), headers={"X-Request-Id": "pd-req-1"})
        assert status == 200, doc
        assert doc["usage"]["completion_tokens"] == 5
        assert headers["x-request-id"] == "pd-req-1"
        ps, ds = sim_stats(p), sim_stats(d)
        assert ps["kv_prefills"] == 1 and ps["completed"] == 1
        assert ds["kv_transfers"] == 1, ds  # the decode leg carried the prefill's params
        assert ps["last_headers"]["x-request-id"] == "pd-req-1"
        assert ds["last_headers"]["x-request-id"] == "pd-req-1"
        text = router_metrics(router)
        counts = [v for labels, v in metric_samples(text, "vllm_router_pd_prefill_seconds_count")
                  if labels.get("model") == "m"]
        assert counts == [1.0], counts
        assert not metric_samples(text, "vllm_router_pd_fallbacks_total")
        status, _, raw = call(router, "GET", "/status.json")
        assert status == 200
        pools = json.loads(raw)["models"]
        assert [(m["name"], m.get("role")) for m in pools] == [("m", None), ("m", "prefill")]
        assert [e["id"] for e in pools[1]["endpoints"]] == [p.url]


def test_streamed_answer_relayed_from_decode_and_generated_id_shared(tmp):
    with prefill_sim() as p, decode_sim() as d, start_router_pd([d], [p], tmp) as router:
        body = chat(stream=True, max_tokens=4, stream_options={"include_usage": True}, min_tokens=2)
        status, headers, raw = call(router, "POST", CHAT, body)
        assert status == 200, raw
        assert headers["content-type"].startswith("text/event-stream")
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        usage = json.loads(events[-2])["usage"]
        assert usage["completion_tokens"] == 4  # the decode leg kept max_tokens and stream_options
        ps, ds = sim_stats(p), sim_stats(d)
        # The prefill leg was not streamed (a stream would carry no kv_transfer_params).
        assert ps["kv_prefills"] == 1 and ds["kv_transfers"] == 1, (ps, ds)
        rid = headers["x-request-id"]
        assert rid and ps["last_headers"]["x-request-id"] == rid == ds["last_headers"]["x-request-id"]


def test_completions_route_is_split_too(tmp):
    with prefill_sim() as p, decode_sim() as d, start_router_pd([d], [p], tmp) as router:
        status, _, doc = post_json(router, COMPLETIONS, {"model": "m", "prompt": PROMPT, "max_tokens": 3})
        assert status == 200, doc
        assert doc["usage"]["completion_tokens"] == 3
        assert sim_stats(d)["kv_transfers"] == 1


def test_killed_prefill_endpoint_moves_to_another(tmp):
    gone = prefill_sim()
    with prefill_sim() as p, decode_sim() as d:
        with start_router_pd([d], [gone, p], tmp) as router:
            gone.stop()
            for _ in range(4):
                status, _, doc = post_json(router, CHAT, chat())
                assert status == 200, doc
            assert sim_stats(p)["kv_prefills"] == 4
            assert sim_stats(d)["kv_transfers"] == 4
            assert not metric_samples(router_metrics(router), "vllm_router_pd_fallbacks_total")


def test_prefill_500_moves_to_another_prefill_endpoint(tmp):
    with prefill_sim("--fail", "error500") as bad, prefill_sim() as p, decode_sim() as d:
        with start_router_pd([d], [bad, p], tmp) as router:
            for _ in range(2):
                status, _, doc = post_json(router, CHAT, chat())
                assert status == 200, doc
            assert sim_stats(bad)["errors"] >= 1  # it was tried and failed
            assert sim_stats(p)["kv_prefills"] == 2
            assert sim_stats(d)["kv_transfers"] == 2


def test_no_prefill_endpoint_left_runs_colocated(tmp):
    dead = "http://127.0.0.1:%d" % dead_port()
    with decode_sim() as d, start_router_pd([d], [dead], tmp) as router:
        status, _, doc = post_json(router, CHAT, chat(stream=False))
        assert status == 200, doc
        ds = sim_stats(d)
        assert ds["completed"] == 1 and ds["kv_transfers"] == 0  # it computed the prompt itself
        fallbacks = metric_samples(router_metrics(router), "vllm_router_pd_fallbacks_total")
        assert fallbacks == [({"model": "m"}, 1.0)], fallbacks


def test_access_log_names_both_legs_and_a_colocated_fallback(tmp):
    log = os.path.join(tmp, "access.log")
    dead = "http://127.0.0.1:%d" % dead_port()
    with prefill_sim() as p, decode_sim() as d:
        with start_router_pd([d], [p], tmp, args=("--access-log", log)) as router:
            status, _, doc = post_json(router, CHAT, chat())
            assert status == 200, doc
            line = logfmt(wait_lines(log, 1)[0])
        assert line["upstream"] == d.url and line["prefill_upstream"] == p.url, line
        assert float(line["prefill_ms"]) > 0 and "colocated_fallback" not in line
        os.remove(log)
        with start_router_pd([d], [dead], tmp, args=("--access-log", log)) as router:
            status, _, doc = post_json(router, CHAT, chat())
            assert status == 200, doc
            line = logfmt(wait_lines(log, 1)[0])
        assert line["upstream"] == d.url and line["colocated_fallback"] == "true", line
        assert line["prefill_upstream"] == dead, line  # the prefill replica that failed
        assert line["attempts"] == "2"


def test_no_prefill_endpoint_left_without_fallback_is_503(tmp):
    dead = "http://127.0.0.1:%d" % dead_port()
    with decode_sim() as d, start_router_pd([d], [dead], tmp, fallback=False) as router:
        status, _, raw = call(router, "POST", CHAT, chat())
        assert status == 503, raw
        err = assert_openai_error(raw, 503)
        assert "prefill" in err["message"], err
        assert sim_stats(d)["requests"] == 0


def test_decode_failure_before_first_byte_retries_with_the_same_params(tmp):
    with prefill_sim() as p, decode_sim("--fail", "error503") as bad, decode_sim() as d:
        with start_router_pd([bad, d], [p], tmp) as router:
            for stream in (False, True):
                status, _, raw = call(router, "POST", CHAT, chat(stream=stream))
                assert status == 200, raw
            assert sim_stats(bad)["errors"] >= 1
            # One prefill per request: the decode retry reused its params, which d accepted.
            assert sim_stats(p)["kv_prefills"] == 2
            assert sim_stats(d)["kv_transfers"] == 2


def test_prefill_verdict_on_a_bad_request_reaches_the_client(tmp):
    with prefill_sim("--max-model-len", "64") as p, decode_sim() as d, start_router_pd([d], [p], tmp) as router:
        status, _, raw = call(router, "POST", CHAT, chat())
        assert status == 400, raw
        assert "maximum context length" in assert_openai_error(raw, 400, "BadRequestError")["message"]
        assert sim_stats(d)["requests"] == 0


def test_sim_rejects_forged_and_foreign_params():
    with prefill_sim() as p, decode_sim() as d, decode_sim("--kv-secret", "other") as foreign:
        prefill = chat(stream=False, max_tokens=1,
                       kv_transfer_params={"do_remote_decode": True, "do_remote_prefill": False})
        status, _, doc = post_json(p, CHAT, prefill)
        assert status == 200, doc
        params = doc["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["remote_engine_id"]
        assert params["remote_block_ids"] and params["remote_host"] and params["remote_port"] == p.port
        status, _, doc = post_json(d, CHAT, chat(kv_transfer_params=params))
        assert status == 200, doc
        forged = dict(params, remote_block_ids=[b + 1 for b in params["remote_block_ids"]])
        status, _, raw = call(d, "POST", CHAT, chat(kv_transfer_params=forged))
        assert_openai_error(raw, 400, "BadRequestError")
        assert status == 400
        other_prompt = chat(kv_transfer_params=params)
        other_prompt["messages"][0]["content"] = "another prompt"
        assert call(d, "POST", CHAT, other_prompt)[0] == 400
        missing = {k: v for k, v in params.items() if k != "remote_block_ids"}
        status, _, raw = call(d, "POST", CHAT, chat(kv_transfer_params=missing))
        assert status == 400 and "remote_block_ids" in assert_openai_error(raw, 400)["message"]
        assert call(foreign, "POST", CHAT, chat(kv_transfer_params=params))[0] == 400


def _max_gap_while_prefilling(sim, prompt_chars):
    """Streams 40 tokens from `sim`; once it runs, another request's prompt is prefilled there.
    Returns the longest gap between the stream's events, in seconds."""
    import socket
    import threading
    import time
    body = json.dumps(chat(stream=True, max_tokens=40)).encode()
    s = socket.create_connection((sim.host, sim.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    arrivals, buf, started = [], b"", None
    while b"[DONE]" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf[-200:]
        buf += chunk
        if b"data: " in buf:  # gaps between events, not the wait for the stream's own first one
            arrivals.append(time.monotonic())
        if started is None and buf.count(b"data: ") >= 3:
            long_prompt = {"model": "m", "prompt": "x" * prompt_chars, "max_tokens": 1}
            started = threading.Thread(target=post_json, args=(sim, COMPLETIONS, long_prompt), kwargs={"timeout": 10})
            started.start()
    s.close()
    started.join()
    return max(b - a for a, b in zip(arrivals, arrivals[1:]))


def test_sim_prefill_stalls_decode_only_when_asked():
    # 200 tokens x 2 ms of prefill = 400 ms during which the running stream's tokens wait.
    engine = ("--served-model-name", "m", "--prefill-us-per-token", "2000", "--itl-ms", "10")
    with start_sim(*engine, "--prefill-stalls-decode") as stalled:
        assert _max_gap_while_prefilling(stalled, 800) >= 0.35
    with start_sim(*engine) as free:
        assert _max_gap_while_prefilling(free, 800) < 0.2


def test_sim_decode_with_transferred_blocks_skips_the_prefill_cost():
    import time
    engine = ("--prefill-us-per-token", "2000")  # PROMPT: ~130 tokens, 260 ms of prefill
    with prefill_sim(*engine) as p, decode_sim(*engine) as d:
        status, _, doc = post_json(p, CHAT, chat(max_tokens=1, kv_transfer_params={"do_remote_decode": True}))
        assert status == 200
        params = doc["kv_transfer_params"]
        other = "another long prompt with nothing cached " * 13
        t0 = time.monotonic()
        assert post_json(d, CHAT, chat(kv_transfer_params=params))[0] == 200
        transferred = time.monotonic() - t0
        colocated_body = chat()
        colocated_body["messages"][0]["content"] = other
        t0 = time.monotonic()
        assert post_json(d, CHAT, colocated_body)[0] == 200
        colocated = time.monotonic() - t0
        assert transferred < 0.15 and colocated >= 0.24, (transferred, colocated)
