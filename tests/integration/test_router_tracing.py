"""vllm-router and distributed tracing: W3C traceparent continued or started and sent upstream,
spans exported over OTLP/HTTP (protobuf) to a receiver in this file that decodes every payload
strictly (otlp_proto.py) and checks it against the OTLP specification (resource, scope, ids, parent links, kinds, timestamps, typed
attributes, status), sampling, and the bounded export queue."""

import http.server
import json
import os
import re
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (call, chat_body, clean_env, metric_samples, post_json, router_metrics, run_router,  # noqa: E402
                        sim_stats, start_router, wait_for)
from simproc import start_sim  # noqa: E402
from otlp_proto import decode as decode_otlp  # noqa: E402

CHAT = "/v1/chat/completions"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SAMPLED = "00-%s-%s-01" % (TRACE, PARENT)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
VALUE_TYPES = {"stringValue": str, "boolValue": bool, "intValue": str, "doubleValue": (int, float),
               "arrayValue": dict, "kvlistValue": dict, "bytesValue": str}


# ---------------------------------------------------------------- the OTLP receiver

def check_attributes(attrs, where):
    """OTLP KeyValue list: unique string keys, each value exactly one typed AnyValue field."""
    assert isinstance(attrs, list), where
    keys = set()
    out = {}
    for kv in attrs:
        assert set(kv) == {"key", "value"}, (where, kv)
        key = kv["key"]
        assert isinstance(key, str) and key and key not in keys, (where, kv)
        keys.add(key)
        value = kv["value"]
        assert isinstance(value, dict) and len(value) == 1, (where, kv)
        (vtype, v), = value.items()
        assert vtype in VALUE_TYPES and isinstance(v, VALUE_TYPES[vtype]), (where, kv)
        if vtype == "intValue":  # int64 in the JSON mapping: a decimal string
            assert re.match(r"^-?[0-9]+$", v), (where, kv)
            v = int(v)
        out[key] = v
    return out


def check_payload(doc, service_name):
    """An ExportTraceServiceRequest in the OTLP JSON mapping (as otlp_proto.decode gives it);
    returns its spans, each a dict with the parsed attributes under "attrs"."""
    assert set(doc) == {"resourceSpans"}, doc.keys()
    assert isinstance(doc["resourceSpans"], list) and doc["resourceSpans"]
    now_ns = time.time_ns()
    spans = []
    for rs in doc["resourceSpans"]:
        resource = check_attributes(rs["resource"]["attributes"], "resource")
        assert resource["service.name"] == service_name, resource
        assert resource["telemetry.sdk.language"] == "cpp"
        assert isinstance(rs["scopeSpans"], list) and rs["scopeSpans"]
        for ss in rs["scopeSpans"]:
            scope = ss["scope"]
            assert scope["name"] == "vllm-router" and isinstance(scope["version"], str) and scope["version"]
            for span in ss["spans"]:
                assert HEX32.match(span["traceId"]) and span["traceId"] != "0" * 32, span
                assert HEX16.match(span["spanId"]) and span["spanId"] != "0" * 16, span
                if "parentSpanId" in span:
                    assert HEX16.match(span["parentSpanId"]) and span["parentSpanId"] != "0" * 16, span
                assert isinstance(span["name"], str) and span["name"], span
                assert span["kind"] in (KIND_INTERNAL, KIND_SERVER, KIND_CLIENT), span
                # SpanFlags: sampled, and whether the parent is remote is known (bit 8); only a
                # SERVER span continuing a client's trace has a remote parent (bit 9)
                remote = span["kind"] == KIND_SERVER and "parentSpanId" in span
                assert span.get("flags", 0) == 0x101 | (0x200 if remote else 0), span
                start, end = span["startTimeUnixNano"], span["endTimeUnixNano"]
                assert isinstance(start, str) and isinstance(end, str), span  # fixed64: strings
                assert start.isdigit() and end.isdigit(), span
                assert int(start) <= int(end), span
                assert abs(int(start) - now_ns) < 600 * 10**9, span  # Unix nanoseconds, not steady time
                status = span.get("status", {})
                assert set(status) <= {"code", "message"} and status.get("code", 0) in (0, 1, 2), span
                if "message" in status:
                    assert isinstance(status["message"], str)
                span = dict(span)
                span["attrs"] = check_attributes(span.get("attributes", []), span["name"])
                spans.append(span)
    return spans


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1:0 (stdlib): accepts POST /v1/traces with protobuf,
    checks each payload and keeps its spans."""

    def __init__(self, service_name="vllm-router"):
        self.service_name = service_name
        self.spans = []
        self.requests = 0
        self.errors = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    assert self.path == "/v1/traces", self.path
                    assert self.headers.get("Content-Type") == "application/x-protobuf", self.headers
                    spans = check_payload(decode_otlp(body), receiver.service_name)
                    with receiver.lock:
                        receiver.spans.extend(spans)
                        receiver.requests += 1
                    status, answer = 200, b"{}"
                except Exception as e:  # reported by the test, not lost in a thread
                    with receiver.lock:
                        receiver.errors.append("%r in %r" % (e, body[:2000]))
                    status, answer = 400, b'{"error":"bad payload"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id, count, timeout=5.0):
        """The spans of `trace_id` once `count` of them arrived (polled with a deadline)."""
        def got():
            with self.lock:
                assert not self.errors, self.errors
                found = [s for s in self.spans if s["traceId"] == trace_id]
            return found if len(found) >= count else None
        found = wait_for(got, timeout=timeout)
        assert found, "spans of %s did not arrive (have: %r)" % (trace_id, self.trace_ids())
        assert len(found) == count, found
        return found

    def trace_ids(self):
        with self.lock:
            return {s["traceId"] for s in self.spans}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def one(spans, kind):
    found = [s for s in spans if s["kind"] == kind]
    assert len(found) == 1, spans
    return found[0]


def config_file(**otlp):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"otlp": otlp, "health_check": {"enabled": False},
               "outlier_detection": {"enabled": False}}, f)
    f.close()
    return f.name


def upstream_traceparent(sim):
    m = TRACEPARENT.match(sim_stats(sim)["last_headers"].get("traceparent", ""))
    assert m, sim_stats(sim)["last_headers"]
    return m.groups()  # trace id, parent id (the router's attempt span), flags


@pytest.fixture(scope="module")
def traced():
    receiver = Receiver()
    sim = start_sim("--model", "m", "--id", "sim-1")
    cfg = config_file(interval_ms=20)
    router = start_router("--config", cfg, "--model", "m=" + sim.url, "--alias", "m-alias=m",
                          "--otlp-endpoint", receiver.url)
    yield router, sim, receiver
    assert router.stop() == 0
    sim.stop()
    receiver.close()
    os.unlink(cfg)


# ---------------------------------------------------------------- trace context and spans

def test_client_trace_continued_and_its_spans_exported(traced):
    router, sim, receiver = traced
    status, _, body = post_json(router, CHAT, chat_body("m-alias", max_tokens=3),
                                headers={"traceparent": SAMPLED, "tracestate": "vendor=abc"})
    assert status == 200, body
    trace_id, upstream_parent, flags = upstream_traceparent(sim)
    assert trace_id == TRACE and flags == "01"
    assert upstream_parent != PARENT  # the router's own span, not the client's
    assert sim_stats(sim)["last_headers"].get("tracestate") == "vendor=abc"

    spans = receiver.trace(TRACE, 3)
    request, routing, attempt = one(spans, KIND_SERVER), one(spans, KIND_INTERNAL), one(spans, KIND_CLIENT)
    assert request["parentSpanId"] == PARENT  # a child of the client's span
    assert routing["parentSpanId"] == request["spanId"]
    assert attempt["parentSpanId"] == request["spanId"]
    assert attempt["spanId"] == upstream_parent  # the span the engine was told about
    assert len({request["spanId"], routing["spanId"], attempt["spanId"]}) == 3
    assert all(s.get("traceState") == "vendor=abc" for s in spans)
    # The request span: HTTP server and GenAI attributes, status unset.
    assert request["name"] == "POST " + CHAT
    a = request["attrs"]
    assert a["http.request.method"] == "POST" and a["url.path"] == CHAT and a["http.route"] == CHAT
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.request.model"] == "m-alias" and a["gen_ai.response.model"] == "m"
    # Token usage once per trace: on the attempt's (GenAI) span, not again on the request's.
    assert "gen_ai.usage.output_tokens" not in a and "gen_ai.usage.input_tokens" not in a
    u = attempt["attrs"]
    assert u["gen_ai.usage.output_tokens"] == 3 and u["gen_ai.usage.input_tokens"] > 0
    # Facts the span already tells are not repeated: one attempt, outcome ok, no error.
    assert "vllm_router.attempts" not in a and "vllm_router.outcome" not in a and "error.type" not in a
    assert request.get("status", {}).get("code", 0) == 0
    # Children inside the request's time.
    for child in (routing, attempt):
        assert int(request["startTimeUnixNano"]) <= int(child["startTimeUnixNano"])
        assert int(child["endTimeUnixNano"]) <= int(request["endTimeUnixNano"])
    # The routing decision.
    r = routing["attrs"]
    assert routing["name"] == "route"
    assert r["vllm_router.policy"] == "round_robin" and r["vllm_router.candidates"] == 1
    assert r["vllm_router.endpoint"] == sim.url and "vllm_router.panic" not in r
    # The upstream attempt: an HTTP/GenAI client span.
    c = attempt["attrs"]
    assert attempt["name"] == "chat m"
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == sim.port
    assert c["url.full"] == sim.url + CHAT and c["http.response.status_code"] == 200
    assert c["gen_ai.request.model"] == "m" and "error.type" not in c and "vllm_router.attempt" not in c
    assert c["gen_ai.provider.name"] == "vllm" and c["gen_ai.operation.name"] == "chat"
    assert attempt.get("status", {}).get("code", 0) == 0


def test_trace_started_when_the_client_sends_none(traced):
    router, sim, receiver = traced
    status, _, _ = post_json(router, CHAT, chat_body("m"))
    assert status == 200
    trace_id, upstream_parent, flags = upstream_traceparent(sim)
    assert trace_id != TRACE and flags == "01"
    spans = receiver.trace(trace_id, 3)
    request = one(spans, KIND_SERVER)
    assert "parentSpanId" not in request  # a root span
    assert one(spans, KIND_CLIENT)["spanId"] == upstream_parent
    assert "tracestate" not in sim_stats(sim)["last_headers"]


@pytest.mark.parametrize("bad", [
    "00-%s-0000000000000000-01" % TRACE,       # parent id all zeros
    "00-%s-%s-01" % (TRACE.upper(), PARENT),   # uppercase
    "ff-%s-%s-01" % (TRACE, PARENT),           # version ff
    "00-%s-%s-01-extra" % (TRACE, PARENT),     # version 00 with more fields
])
def test_invalid_traceparent_starts_a_new_trace(traced, bad):
    router, sim, receiver = traced
    status, _, _ = post_json(router, CHAT, chat_body("m"), headers={"traceparent": bad, "tracestate": "k=v"})
    assert status == 200
    trace_id, _, flags = upstream_traceparent(sim)
    assert trace_id.lower() != TRACE and flags == "01"
    headers = sim_stats(sim)["last_headers"]
    assert "tracestate" not in headers  # it belonged to the trace that was not continued
    assert bad not in json.dumps(headers)
    spans = receiver.trace(trace_id, 3)
    assert "parentSpanId" not in one(spans, KIND_SERVER)


def test_failed_request_has_error_status(traced):
    router, _, receiver = traced
    trace = "0af7651916cd43dd8448eb211c80319c"
    status, _, _ = post_json(router, CHAT, chat_body("no-such-model"),
                             headers={"traceparent": "00-%s-b7ad6b7169203331-01" % trace})
    assert status == 404
    spans = receiver.trace(trace, 2)  # the request, and the routing decision that found nothing
    request, routing = one(spans, KIND_SERVER), one(spans, KIND_INTERNAL)
    assert request["attrs"]["http.response.status_code"] == 404
    assert request["attrs"]["error.type"] == "rejected"
    assert request.get("status", {}).get("code", 0) == 0  # a 4xx is the client's: unset
    assert routing["status"]["code"] == 2 and "no-such-model" in routing["status"]["message"]
    assert routing["parentSpanId"] == request["spanId"]


def test_streamed_answer_traced_to_its_end(traced):
    router, _, receiver = traced
    trace = "11111111111111111111111111111111"
    status, _, raw = call(router, "POST", CHAT,
                          chat_body("m", stream=True, max_tokens=4, stream_options={"include_usage": True}),
                          headers={"traceparent": "00-%s-2222222222222222-01" % trace})
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    spans = receiver.trace(trace, 3)
    request, attempt = one(spans, KIND_SERVER), one(spans, KIND_CLIENT)
    assert request["attrs"]["vllm_router.stream"] is True
    assert attempt["attrs"]["gen_ai.usage.output_tokens"] == 4  # from the final SSE chunk
    assert "gen_ai.usage.output_tokens" not in request["attrs"]
    assert "http.response.body.size" not in request["attrs"]  # opt-in: the access log has it


# ---------------------------------------------------------------- retries

def test_retry_gives_two_attempt_spans_the_first_in_error():
    receiver = Receiver()
    busy = start_sim("--model", "m", "--fail", "error503", "--id", "busy")
    ok = start_sim("--model", "m", "--id", "ok")
    cfg = config_file(interval_ms=20)
    router = start_router("--config", cfg, "--model", "m=%s,%s" % (busy.url, ok.url),
                          "--otlp-endpoint", receiver.url)
    try:
        traces = []
        for i in range(2):  # round robin: one of the two starts on the busy replica
            trace = "%032x" % (0xabc000 + i)
            status, hdrs, _ = post_json(router, CHAT, chat_body("m"),
                                        headers={"traceparent": "00-%s-%s-01" % (trace, PARENT)})
            assert status == 200 and hdrs["x-sim-id"] == "ok"
            traces.append(trace)
        retried = None
        for trace in traces:
            found = wait_for(lambda: [s for s in receiver.spans if s["traceId"] == trace and s["kind"] == KIND_SERVER])
            assert found, receiver.trace_ids()
            if found[0]["attrs"]["vllm_router.attempts"] == 2:
                retried = trace
        assert retried, "no request was retried"
        spans = receiver.trace(retried, 5)  # request, two routing decisions, two attempts
        request = one(spans, KIND_SERVER)
        attempts = sorted((s for s in spans if s["kind"] == KIND_CLIENT), key=lambda s: int(s["startTimeUnixNano"]))
        routings = [s for s in spans if s["kind"] == KIND_INTERNAL]
        assert len(attempts) == 2 and len(routings) == 2
        assert all(s["parentSpanId"] == request["spanId"] for s in attempts + routings)
        first, second = attempts
        assert first["attrs"]["url.full"] == busy.url + CHAT
        assert first["attrs"]["http.response.status_code"] == 503
        assert first["attrs"]["vllm_router.retry_reason"] == "status_503"
        assert first["attrs"]["vllm_router.attempt"] == 1 and second["attrs"]["vllm_router.attempt"] == 2
        assert first["status"]["code"] == 2 and first["attrs"]["error.type"] == "503"
        assert second["attrs"]["url.full"] == ok.url + CHAT
        assert second["attrs"]["http.response.status_code"] == 200
        assert second.get("status", {}).get("code", 0) == 0
        assert int(first["endTimeUnixNano"]) <= int(second["startTimeUnixNano"])
        # The engine that answered saw the second attempt's span.
        trace_id, parent, _ = upstream_traceparent(ok)
        assert parent in {s["spanId"] for s in attempts}
        assert request["attrs"]["vllm_router.attempts"] == 2
    finally:
        assert router.stop() == 0
        busy.stop()
        ok.stop()
        receiver.close()
        os.unlink(cfg)


# ---------------------------------------------------------------- sampling, queue, off

def test_sampling_zero_records_no_trace_it_starts():
    receiver = Receiver(service_name="edge-router")
    sim = start_sim("--model", "m")
    cfg = config_file(interval_ms=20)
    router = start_router("--config", cfg, "--model", "m=" + sim.url, "--otlp-endpoint", receiver.url,
                          "--otlp-sampling", "0", "--otlp-service-name", "edge-router")
    try:
        unsampled = []
        for _ in range(5):
            assert post_json(router, CHAT, chat_body("m"))[0] == 200
            trace_id, _, flags = upstream_traceparent(sim)
            assert flags == "00"  # not sampled: the engine is told so
            unsampled.append(trace_id)
        # A client's sampled trace is still recorded (parent based); the export queue is FIFO,
        # so once its spans arrived, spans of the requests before it would have too.
        trace = "33333333333333333333333333333333"
        assert post_json(router, CHAT, chat_body("m"), headers={"traceparent": "00-%s-%s-01" % (trace, PARENT)})[0] == 200
        assert upstream_traceparent(sim)[2] == "01"
        receiver.trace(trace, 3)
        assert receiver.trace_ids() == {trace}
        assert not set(unsampled) & receiver.trace_ids()
    finally:
        assert router.stop() == 0
        sim.stop()
        receiver.close()
        os.unlink(cfg)


def test_full_queue_drops_spans_and_counts_them():
    receiver = Receiver()
    sim = start_sim("--model", "m")
    # Room for one request's three spans; no batch fills and the interval never comes: what is
    # queued waits for the shutdown flush.
    cfg = config_file(queue_size=3, batch_size=1000, interval_ms=600000)
    router = start_router("--config", cfg, "--model", "m=" + sim.url, "--otlp-endpoint", receiver.url)
    try:
        for _ in range(4):
            assert post_json(router, CHAT, chat_body("m"))[0] == 200

        def counts():
            text = router_metrics(router)
            return {labels["result"]: value for labels, value in metric_samples(text, "vllm_router_trace_spans_total")}
        # Spans are encoded and queued on the observe queue's thread, a moment after the answer.
        wait_for(lambda: counts()["dropped"] == 9)
        assert counts() == {"exported": 0, "dropped": 9, "failed": 0}, counts()
        assert receiver.requests == 0
    finally:
        assert router.stop() == 0
        sim.stop()
    # Stopping sent the queued request's spans and logged the drops.
    assert receiver.requests == 1 and len(receiver.spans) == 3, receiver.spans
    assert "9 span(s) dropped" in router.stderr_text()
    receiver.close()
    os.unlink(cfg)


def test_tracing_off_passes_traceparent_through():
    sim = start_sim("--model", "m")
    router = start_router("--model", "m=" + sim.url)
    try:
        assert post_json(router, CHAT, chat_body("m"), headers={"traceparent": SAMPLED, "tracestate": "a=b"})[0] == 200
        headers = sim_stats(sim)["last_headers"]
        assert headers["traceparent"] == SAMPLED and headers["tracestate"] == "a=b"
        assert post_json(router, CHAT, chat_body("m"))[0] == 200
        assert "traceparent" not in sim_stats(sim)["last_headers"]
        assert "vllm_router_trace_spans_total" not in router_metrics(router)
    finally:
        assert router.stop() == 0
        sim.stop()


def test_tracing_options_validated_and_in_help():
    help_text = run_router("--help").stdout
    for flag in ("--otlp-endpoint", "--otlp-sampling", "--otlp-service-name", "VLLM_ROUTER_OTLP_ENDPOINT"):
        assert flag in help_text
    bad = run_router("--model", "m=http://127.0.0.1:1", "--otlp-endpoint", "http://127.0.0.1:1",
                     "--otlp-sampling", "1.5", "--check-config")
    assert bad.returncode != 0 and "--otlp-sampling" in bad.stderr
    bad = run_router("--model", "m=http://127.0.0.1:1", "--otlp-endpoint", "ftp://x", "--check-config")
    assert bad.returncode != 0 and "--otlp-endpoint" in bad.stderr
    cfg = config_file(sampling=2)
    bad = run_router("--config", cfg, "--model", "m=http://127.0.0.1:1", "--check-config")
    os.unlink(cfg)
    assert bad.returncode != 0 and "otlp.sampling" in bad.stderr
    env_ok = run_router("--model", "m=http://127.0.0.1:1", "--check-config",
                        env=clean_env(VLLM_ROUTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
                                      VLLM_ROUTER_OTLP_SAMPLING="0.25"))
    assert env_ok.returncode == 0, env_ok.stderr


def test_opentelemetry_environment_variables():
    """OTEL_* (as the OpenTelemetry Operator injects them) configure the exporter; the router's
    own variables and flags win over them; what the exporter cannot do is refused at start."""
    receiver = Receiver(service_name="from-otel")
    sim = start_sim("--model", "m")
    cfg = config_file(interval_ms=20)
    try:
        env = clean_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url + "/v1/traces",
                        OTEL_SERVICE_NAME="overridden", VLLM_ROUTER_OTLP_SERVICE_NAME="from-otel",
                        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                        OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1.0")
        router = start_router("--config", cfg, "--model", "m=" + sim.url, env=env)
        try:
            status, headers, _ = post_json(router, CHAT, chat_body("m"))
            assert status == 200
            trace_id, _, flags = upstream_traceparent(sim)
            assert flags == "01"
            assert len(receiver.trace(trace_id, 3)) == 3  # checked against service.name from-otel: ours won
        finally:
            assert router.stop() == 0
        # sampler always_off: trace context only, nothing recorded
        env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url + "/", OTEL_TRACES_SAMPLER="always_off")
        router = start_router("--config", cfg, "--model", "m=" + sim.url, env=env)
        try:
            assert post_json(router, CHAT, chat_body("m"))[0] == 200
            assert upstream_traceparent(sim)[2] == "00"
        finally:
            assert router.stop() == 0
        # OTEL_SDK_DISABLED: not a participant, the client's traceparent passes through
        env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SDK_DISABLED="true")
        router = start_router("--config", cfg, "--model", "m=" + sim.url, env=env)
        try:
            assert post_json(router, CHAT, chat_body("m"), headers={"traceparent": SAMPLED})[0] == 200
            assert sim_stats(sim)["last_headers"].get("traceparent") == SAMPLED
        finally:
            assert router.stop() == 0
    finally:
        sim.stop()
        receiver.close()
        os.unlink(cfg)
    for var, value, says in (("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
                             ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "http/protobuf"),
                             ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318", "/v1/traces"),
                             ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x", "OTEL_EXPORTER_OTLP_ENDPOINT"),
                             ("OTEL_TRACES_SAMPLER", "jaeger_remote", "not supported"),
                             ("OTEL_TRACES_SAMPLER_ARG", "2", "0.0..1.0")):
        env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_TRACES_SAMPLER="traceidratio")
        env[var] = value
        bad = run_router("--model", "m=http://127.0.0.1:1", "--check-config", env=env)
        assert bad.returncode != 0 and var in bad.stderr and says in bad.stderr, (var, bad.stderr)


def test_prefill_and_decode_legs_are_attempts_with_their_leg():
    """Prefill/decode disaggregation (docs/disaggregation.md): the prefill and decode legs are
    two attempt spans of one request, named by vllm_router.leg; both engines saw one trace."""
    receiver = Receiver()
    prefill = start_sim("--model", "m", "--kv-role", "prefill", "--id", "p")
    decode = start_sim("--model", "m", "--kv-role", "decode", "--id", "d")
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"otlp": {"interval_ms": 20}, "health_check": {"enabled": False},
               "outlier_detection": {"enabled": False},
               "models": [{"name": "m", "endpoints": [decode.url], "prefill": {"endpoints": [prefill.url]}}]}, f)
    f.close()
    router = start_router("--config", f.name, "--otlp-endpoint", receiver.url)
    try:
        trace = "%032x" % 0xdd0001
        status, _, _ = post_json(router, CHAT, chat_body("m"), headers={"traceparent": "00-%s-%s-01" % (trace, PARENT)})
        assert status == 200
        spans = receiver.trace(trace, 5)  # request, two routing decisions, two attempts
        attempts = sorted((s for s in spans if s["kind"] == KIND_CLIENT), key=lambda s: int(s["startTimeUnixNano"]))
        assert [s["attrs"]["vllm_router.leg"] for s in attempts] == ["prefill", "decode"]
        assert [s["attrs"]["url.full"] for s in attempts] == [prefill.url + CHAT, decode.url + CHAT]
        assert [s["attrs"]["vllm_router.attempt"] for s in attempts] == [1, 2]
        assert "vllm_router.retry_reason" not in attempts[0]["attrs"]  # a leg, not a retry
        assert one(spans, KIND_SERVER)["attrs"]["vllm_router.attempts"] == 2
        assert upstream_traceparent(prefill)[0] == trace == upstream_traceparent(decode)[0]
    finally:
        assert router.stop() == 0
        prefill.stop()
        decode.stop()
        receiver.close()
        os.unlink(f.name)
