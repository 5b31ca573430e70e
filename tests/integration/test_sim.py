"""Conformance of vllm-sim to /work/shared/VLLM_PROTOCOL.md (the vLLM OpenAI wire format)."""

import base64
import http.client
import json
import os
import signal
import socket
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import simproc  # noqa: E402

MODEL = "facebook/opt-125m"


# ---------------------------------------------------------------- helpers

from routerproc import call, post_json  # noqa: E402  (shared HTTP helpers)


def parse_sse(raw):
    """Strictly splits an SSE body: every event is 'data: <payload>' + blank line."""
    text = raw.decode()
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    events = text.split("\n\n")
    assert events[-1] == ""
    out = []
    for ev in events[:-1]:
        assert ev.startswith("data: ") and "\n" not in ev, repr(ev)
        payload = ev[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    assert out[-1] == "[DONE]" and "[DONE]" not in out[:-1]
    return out[:-1]


def assert_error(body, code, etype):
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code and isinstance(err["code"], int)
    assert err["type"] == etype
    assert "param" in err and isinstance(err["message"], str) and err["message"]


def wait_for(pred, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


def stats(sim):
    status, _, raw = call(sim, "GET", "/sim/stats")
    assert status == 200
    return json.loads(raw)


def metric_value(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def open_stream(sim, body, headers=None):
    """Sends a streaming request on a raw socket; returns the socket after the headers."""
    data = json.dumps(body).encode()
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    s = socket.create_connection((sim.host, sim.port), timeout=5)
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n%s\r\n" % (len(data), extra)).encode() + data)
    buf = b""
    while b"data: " not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 200"), buf[:100]
    return s


def chat_body(**kw):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
    body.update(kw)
    return body


# ---------------------------------------------------------------- fixtures

# Every test runs against both HTTP front ends of the sim (`--io threads`, the default, and
# `--io epoll`): they must answer the same bytes.
IO_MODES = {"threads": [], "epoll": ["--io", "epoll"]}
_io_args = []


@pytest.fixture(scope="module", params=sorted(IO_MODES, reverse=True), autouse=True)
def io_mode(request):
    global _io_args
    _io_args = IO_MODES[request.param]
    yield request.param
    _io_args = []


def start_sim(*args, **kw):
    """simproc.start_sim in the I/O mode of the current parametrization."""
    return simproc.start_sim(*args, *_io_args, **kw)


@pytest.fixture(scope="module")
def sim(io_mode):
    s = start_sim("--served-model-name", "alpha", "--served-model-name", MODEL,
                  "--model", "org/base-model", "--lora", "sql-lora", "--output-tokens", "5",
                  "--id", "replica-a")
    yield s
    assert s.stop() == 0


# ---------------------------------------------------------------- tests

def test_models_list_shape(sim):
    status, hdrs, body = call(sim, "GET", "/v1/models")
    assert status == 200 and hdrs["content-type"].startswith("application/json")
    assert hdrs["x-sim-id"] == "replica-a"
    doc = json.loads(body)
    assert doc["object"] == "list"
    ids = [m["id"] for m in doc["data"]]
    assert ids == ["alpha", MODEL, "sql-lora"]
    for m in doc["data"]:
        assert m["object"] == "model" and m["owned_by"] == "vllm"
        assert isinstance(m["created"], int)
        assert isinstance(m["permission"], list) and m["permission"][0]["object"] == "model_permission"
    base = doc["data"][0]
    assert base["root"] == "org/base-model" and base["parent"] is None and base["max_model_len"] == 4096
    assert doc["data"][2]["parent"] == "alpha"


def test_health_ping_version(sim):
    status, hdrs, body = call(sim, "GET", "/health")
    assert status == 200 and body == b""
    assert call(sim, "GET", "/ping")[0] == 200
    status, _, body = call(sim, "GET", "/version")
    assert status == 200 and json.loads(body) == {"version": "sim"}
    status, _, body = call(sim, "GET", "/no/such/route")
    assert status == 404


def test_chat_non_stream_shape(sim):
    status, hdrs, body = post_json(sim, "/v1/chat/completions", chat_body(max_tokens=3),
                                   headers={"X-Request-Id": "req-42"})
    assert status == 200
    assert hdrs["x-request-id"] == "req-42" and hdrs["x-sim-id"] == "replica-a"
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "tok0 tok1 tok2 "
    assert choice["finish_reason"] == "length" and choice["stop_reason"] is None
    u = body["usage"]
    assert u["completion_tokens"] == 3 and u["prompt_tokens"] >= 1
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_completion_non_stream_shape(sim):
    status, _, body = post_json(sim, "/v1/completions", {"model": "alpha", "prompt": "x" * 40})
    assert status == 200
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "alpha"
    (choice,) = body["choices"]
    assert choice["text"] == "tok0 tok1 tok2 tok3 tok4 "  # --output-tokens 5, EOS -> stop
    assert choice["finish_reason"] == "stop" and "logprobs" in choice
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                             "prompt_tokens_details": None}


def test_lora_model_accepted(sim):
    status, _, body = post_json(sim, "/v1/completions", {"model": "sql-lora", "prompt": "a", "max_tokens": 1})
    assert status == 200 and body["model"] == "sql-lora"


def test_chat_stream_with_usage(sim):
    status, hdrs, raw = call(sim, "POST", "/v1/chat/completions",
                             chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True}),
                             headers={"Accept-Encoding": "gzip, br"})
    assert status == 200
    assert hdrs["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in hdrs
    events = parse_sse(raw)
    role, *content, usage = events
    assert role["object"] == "chat.completion.chunk" and role["id"].startswith("chatcmpl-")
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == 4
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == "tok0 tok1 tok2 tok3 "
    assert all(c["id"] == role["id"] and c["object"] == "chat.completion.chunk" for c in content)
    assert all(c["choices"][0]["finish_reason"] is None for c in content[:-1])
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert "stop_reason" in content[-1]["choices"][0]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
    u = usage["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + 4


def test_completion_stream_stop_string(sim):
    status, hdrs, raw = call(sim, "POST", "/v1/completions",
                             {"model": MODEL, "prompt": "hi", "stream": True, "stop": ["tok2"]})
    assert status == 200
    events = parse_sse(raw)  # no usage chunk without include_usage
    assert [e["choices"][0]["text"] for e in events] == ["tok0 ", "tok1 "]
    assert all(e["object"] == "text_completion" and e["id"].startswith("cmpl-") for e in events)
    last = events[-1]["choices"][0]
    assert last["finish_reason"] == "stop" and last["stop_reason"] == "tok2"


def test_unknown_model_404(sim):
    status, _, body = post_json(sim, "/v1/chat/completions", chat_body(model="nope"))
    assert status == 404
    assert_error(body, 404, "NotFoundError")
    assert body["error"]["message"] == "The model `nope` does not exist."


def test_invalid_json_400(sim):
    status, _, body = post_json(sim, "/v1/completions", b'{"model": "alpha", "prompt": ')
    assert status == 400
    assert_error(body, 400, "BadRequestError")
    status, _, body = post_json(sim, "/v1/chat/completions", {"model": "alpha"})
    assert status == 400
    assert_error(body, 400, "BadRequestError")


def test_context_length_400(sim):
    status, _, body = post_json(sim, "/v1/completions",
                                {"model": "alpha", "prompt": "x", "max_tokens": 5000})
    assert status == 400 and "maximum context length" in body["error"]["message"]


def test_embeddings_base64_encoding_is_the_float32_vector(sim):
    status, _, floats = post_json(sim, "/v1/embeddings", {"model": MODEL, "input": "one"})
    assert status == 200
    status, _, b64 = post_json(sim, "/v1/embeddings", {"model": MODEL, "input": "one",
                                                        "encoding_format": "base64"})
    assert status == 200
    raw = base64.b64decode(b64["data"][0]["embedding"], validate=True)
    got = struct.unpack("<%df" % (len(raw) // 4), raw)
    want = floats["data"][0]["embedding"]
    assert len(raw) == 4 * len(want) == 4 * 32
    assert all(abs(g - w) < 1e-6 for g, w in zip(got, want)), (got, want)
    status, _, err = post_json(sim, "/v1/embeddings", {"model": MODEL, "input": "one",
                                                       "encoding_format": "int8"})
    assert status == 400 and "encoding_format" in err["error"]["message"]


def test_embeddings_tokenize_rerank_score(sim):
    status, _, a = post_json(sim, "/v1/embeddings", {"model": MODEL, "input": ["one", "two"]})
    assert status == 200 and a["object"] == "list" and len(a["data"]) == 2
    assert a["data"][0]["object"] == "embedding" and len(a["data"][0]["embedding"]) == 32
    _, _, b = post_json(sim, "/v1/embeddings", {"model": MODEL, "input": "one"})
    assert b["data"][0]["embedding"] == a["data"][0]["embedding"]  # deterministic
    assert a["data"][1]["embedding"] != a["data"][0]["embedding"]

    status, _, tok = post_json(sim, "/tokenize", {"model": MODEL, "prompt": "hello world!"})
    assert status == 200 and tok["count"] == 3 == len(tok["tokens"]) and tok["max_model_len"] == 4096
    status, _, detok = post_json(sim, "/detokenize", {"model": MODEL, "tokens": tok["tokens"]})
    assert status == 200 and detok == {"prompt": "hello world!"}

    status, _, rr = post_json(sim, "/v1/rerank", {"model": MODEL, "query": "q", "documents": ["a", "b", "c"],
                                                  "top_n": 2})
    assert status == 200 and len(rr["results"]) == 2
    scores = [r["relevance_score"] for r in rr["results"]]
    assert scores == sorted(scores, reverse=True)
    status, _, sc = post_json(sim, "/v1/score", {"model": MODEL, "text_1": "q", "text_2": ["a", "b"]})
    assert status == 200 and [d["index"] for d in sc["data"]] == [0, 1]
    status, _, rs = post_json(sim, "/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 2})
    assert status == 200 and rs["object"] == "response"
    assert rs["output"][0]["content"][0]["text"] == "tok0 tok1 "


def test_stats_record_last_request(sim):
    body = json.dumps(chat_body(max_tokens=1)).encode()
    status, _, _ = call(sim, "POST", "/v1/chat/completions", body, headers={"X-Custom-Thing": "Yes"})
    assert status == 200
    st = stats(sim)
    h = 0xcbf29ce484222325
    for byte in body:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    assert st["id"] == "replica-a" and st["last_path"] == "/v1/chat/completions"
    assert st["last_body_bytes"] == len(body) and st["last_body_fnv1a64"] == "%016x" % h
    assert st["last_headers"]["x-custom-thing"] == "Yes"
    assert st["requests"] >= 1 and st["completed"] >= 1 and st["in_flight"] == 0


def test_metrics_and_running_gauge():
    with start_sim("--itl-ms", "50", "--output-tokens", "200") as s:
        status, hdrs, raw = call(s, "GET", "/metrics")
        assert status == 200 and hdrs["content-type"].startswith("text/plain")
        text = raw.decode()
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
                     "vllm:request_success_total"):
            assert "# HELP %s " % name in text and "# TYPE %s " % name in text, name
            assert name + '{engine="0",' in text
        assert 'model_name="%s"' % MODEL in text
        assert metric_value(text, "vllm:num_requests_running") == 0.0

        sock = open_stream(s, chat_body(stream=True))
        try:
            text = call(s, "GET", "/metrics")[2].decode()
            assert metric_value(text, "vllm:num_requests_running") >= 1.0
            assert metric_value(text, "vllm:kv_cache_usage_perc") > 0.0
        finally:
            sock.close()
        assert wait_for(lambda: metric_value(call(s, "GET", "/metrics")[2].decode(),
                                             "vllm:num_requests_running") == 0.0)


def test_cancelled_stream_counted():
    with start_sim("--itl-ms", "20", "--output-tokens", "500") as s:
        sock = open_stream(s, chat_body(stream=True))
        assert stats(s)["in_flight"] == 1
        sock.close()
        st = wait_for(lambda: (lambda x: x if x["cancelled"] == 1 and x["in_flight"] == 0 else None)(stats(s)))
        assert st, stats(s)
        assert st["completed"] == 0


def test_pacing_ttft_header():
    with start_sim() as s:
        t0 = time.monotonic()
        sock = open_stream(s, chat_body(stream=True, max_tokens=2), headers={"x-sim-ttft-ms": "200"})
        elapsed = time.monotonic() - t0
        sock.close()
        assert 0.18 <= elapsed < 2.0, elapsed


def test_api_key_401():
    with start_sim("--api-key", "sekret") as s:
        status, _, body = post_json(s, "/v1/chat/completions", chat_body())
        assert status == 401
        assert "error" in body
        status, _, _ = call(s, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, body = post_json(s, "/v1/chat/completions", chat_body(max_tokens=1),
                                    headers={"Authorization": "Bearer sekret"})
        assert status == 200 and body["object"] == "chat.completion"
        assert call(s, "GET", "/health")[0] == 200
        assert call(s, "GET", "/metrics")[0] == 200


def test_fail_error500_and_runtime_switch():
    with start_sim("--fail", "error500") as s:
        status, _, body = post_json(s, "/v1/chat/completions", chat_body())
        assert status == 500
        assert_error(body, 500, "InternalServerError")
        assert call(s, "GET", "/health")[0] == 200
        status, _, body = post_json(s, "/sim/fail", {"mode": "error503"})
        assert status == 200 and body == {"mode": "error503"}
        status, _, body = post_json(s, "/v1/completions", {"model": MODEL, "prompt": "x"})
        assert status == 503 and body["error"]["code"] == 503
        post_json(s, "/sim/fail", {"mode": "none"})
        assert post_json(s, "/v1/completions", {"model": MODEL, "prompt": "x"})[0] == 200


def test_fail_drop():
    with start_sim("--fail", "drop") as s:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
        conn.request("POST", "/v1/chat/completions",
                     body=json.dumps(chat_body(stream=True, max_tokens=10)),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        got = b""
        with pytest.raises(http.client.IncompleteRead):
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                got += chunk
        conn.close()
        assert b"[DONE]" not in got
        assert got.count(b'"content":"tok') == 2

        conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body()),
                     headers={"Content-Type": "application/json"})
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.getresponse()
        conn.close()
        assert wait_for(lambda: stats(s)["dropped"] == 2)


def test_fail_hang_until_client_leaves():
    with start_sim("--fail", "hang") as s:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=0.3)
        conn.request("POST", "/v1/completions", body=json.dumps({"model": MODEL, "prompt": "x"}),
                     headers={"Content-Type": "application/json"})
        with pytest.raises(socket.timeout):
            conn.getresponse()
        assert stats(s)["in_flight"] == 1
        assert call(s, "GET", "/health", timeout=1)[0] == 200
        conn.close()
        assert wait_for(lambda: stats(s)["in_flight"] == 0 and stats(s)["cancelled"] == 1)


def test_sigterm_exits_zero_with_open_stream():
    s = start_sim("--itl-ms", "50", "--output-tokens", "1000")
    sock = open_stream(s, chat_body(stream=True))
    t0 = time.monotonic()
    os.kill(s.proc.pid, signal.SIGTERM)
    rc = s.proc.wait(timeout=5)
    sock.close()
    assert rc == 0 and time.monotonic() - t0 < 3
    s.stop()


# ---------------------------------------------------------------- engine model (issue 6)

def completion_body(prompt, **kw):
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 1}
    body.update(kw)
    return body


def prefix_counters(sim):
    text = call(sim, "GET", "/metrics")[2].decode()
    return (metric_value(text, "vllm:prefix_cache_queries_total"),
            metric_value(text, "vllm:prefix_cache_hits_total"))


def test_prefix_cache_lru_capacity_in_blocks():
    # 20 blocks of 16 tokens (64 characters) hold one 1,280-character prompt.
    a, b = "a" * 1280, "b" * 1280
    with start_sim("--kv-cache-blocks", "20") as s:
        assert post_json(s, "/v1/completions", completion_body(a))[0] == 200
        assert prefix_counters(s) == (320.0, 0.0)
        assert post_json(s, "/v1/completions", completion_body(a + "tail"))[0] == 200
        assert prefix_counters(s) == (641.0, 320.0)   # the whole first prompt was cached
        assert post_json(s, "/v1/completions", completion_body(b))[0] == 200  # evicts a
        assert post_json(s, "/v1/completions", completion_body(a))[0] == 200
        assert prefix_counters(s)[1] == 320.0          # no new hit: a was evicted (LRU)
        assert call(s, "POST", "/sim/reset")[0] == 200
        assert prefix_counters(s) == (0.0, 0.0)


def test_batch_queue_waiting_and_fifo():
    with start_sim("--batch-queue", "--max-num-seqs", "1", "--itl-ms", "40",
                   "--output-tokens", "20") as s:
        first = open_stream(s, chat_body(stream=True))
        try:
            # A second request waits for the single batch slot; it shows as waiting.
            second = socket.create_connection((s.host, s.port), timeout=5)
            data = json.dumps(chat_body(stream=True)).encode()
            second.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
                           + data)
            text = wait_for(lambda: (lambda t: t if metric_value(t, "vllm:num_requests_waiting") == 1.0
                                     else None)(call(s, "GET", "/metrics")[2].decode()))
            assert text, call(s, "GET", "/metrics")[2].decode()
            assert metric_value(text, "vllm:num_requests_running") == 1.0
        finally:
            first.close()
        # The first stream's slot is released when its client leaves: the second one runs.
        second.settimeout(5)
        buf = b""
        while b"data: " not in buf:
            chunk = second.recv(65536)
            assert chunk, buf
            buf += chunk
        second.close()
        text = call(s, "GET", "/metrics")[2].decode()
        assert metric_value(text, "vllm:request_queue_time_seconds_count") == 2.0
        assert metric_value(text, "vllm:request_queue_time_seconds_sum") > 0.0


def test_prefill_cost_per_uncached_token():
    prompt = "p" * 3200   # 800 tokens; 2 ms each uncached -> 1.6 s, cached -> ~0
    with start_sim("--prefill-us-per-token", "2000") as s:
        t0 = time.monotonic()
        assert post_json(s, "/v1/completions", completion_body(prompt), timeout=10)[0] == 200
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        assert post_json(s, "/v1/completions", completion_body(prompt), timeout=10)[0] == 200
        warm = time.monotonic() - t0
        assert 1.5 <= cold < 4.0, cold
        assert warm < 0.5, warm
