// Tracing: traceparent parsing, ids and sampling, the exchange's trace context (upstream
// traceparent, summary facts), and the OTLP JSON encoding.
#include <doctest/doctest.h>

#include <set>

#include "otlp_json.h"
#include "support/exchange_host.h"
#include "trace_context.h"
#include "vllm_router/tracing.h"

using namespace vllm_router;
using namespace vllm_router::testing;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kParent = "00f067aa0ba902b7";
const std::string kSampled = "00-" + std::string(kTrace) + "-" + std::string(kParent) + "-01";
constexpr std::string_view kOk =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
    R"({"usage":{"prompt_tokens":5,"completion_tokens":7},"x":"....."})";

bool is_hex(std::string_view s, std::size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return s.find_first_not_of('0') != std::string_view::npos;
}

// The value of `name:` in an HTTP head ("" when absent); `count` says how often it appears.
std::string head_value(std::string_view head, std::string_view name, int* count = nullptr) {
  std::string found;
  int n = 0;
  std::size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    const std::size_t end = head.find("\r\n", at);
    const std::string_view line = head.substr(at, end - at);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && line.substr(0, colon) == name) {
      ++n;
      found = std::string(line.substr(colon + 2));
    }
  }
  if (count != nullptr) *count = n;
  return found;
}

// Keeps an owned copy of every summary's trace (views die with the call).
struct TraceLog final : Observer {
  std::vector<detail::OtlpTrace> traces;
  std::vector<ExchangeSummary> summaries;  // scalar fields only
  void on_exchange(const ExchangeSummary& s) override {
    summaries.push_back(s);
    if (s.trace_id.empty()) {
      traces.emplace_back();
      return;
    }
    // capture_trace wants wall-clock times: only sampled summaries have them.
    traces.push_back(detail::capture_trace(s));
  }
};

struct Fixture {
  std::shared_ptr<TraceLog> log = std::make_shared<TraceLog>();
  std::unique_ptr<Router> router;
  RecordingHost host;
  std::unique_ptr<Exchange> ex;
  Exchange::TimePoint t{std::chrono::seconds(100)};
  std::string body = R"({"model":"alias-m","prompt":"hi"})";
  std::vector<HeaderField> headers;

  explicit Fixture(bool enabled, double sampling = 1.0, std::size_t endpoints = 2) {
    RouterOptions o;
    o.observer = log;
    o.seed = 7;
    o.tracing.enabled = enabled;
    o.tracing.sampling = sampling;
    auto r = Router::create(fleet_config(endpoints), std::move(o));
    REQUIRE(r.ok());
    router = std::move(r).value();
    ex = std::make_unique<Exchange>(*router, host);
  }
  void start(std::string target = "/v1/completions") {
    ClientRequest r;
    r.method = "POST";
    r.target = target_ = std::move(target);
    r.headers = headers;
    r.body = body;
    r.request_id = "rid-1";
    ex->start(r, t);
  }
  void answer() {
    t += 5ms;
    ex->on_upstream_data(kOk, t);
  }
  const detail::OtlpTrace& trace() const { return log->traces.back(); }
  std::string target_;
};

}  // namespace

TEST_CASE("traceparent: the W3C examples and what the specification rejects") {
  auto tp = parse_traceparent(kSampled);
  REQUIRE(tp);
  CHECK(std::string_view(tp->trace_id.data(), 32) == kTrace);
  CHECK(std::string_view(tp->parent_id.data(), 16) == kParent);
  CHECK(tp->flags == 1);
  CHECK(tp->sampled());
  auto unsampled = parse_traceparent("00-" + std::string(kTrace) + "-" + std::string(kParent) + "-00");
  REQUIRE(unsampled);
  CHECK_FALSE(unsampled->sampled());
  // Unknown flags are kept as they came; only bit 0 is the sampled flag.
  auto flags = parse_traceparent("00-" + std::string(kTrace) + "-" + std::string(kParent) + "-fe");
  REQUIRE(flags);
  CHECK(flags->flags == 0xfe);
  CHECK_FALSE(flags->sampled());

  const std::string t(kTrace);
  const std::string p(kParent);
  for (const std::string& bad : {
           std::string(),
           "00-" + t + "-" + p + "-0",                                   // short
           "00-" + t + "-" + p + "-01-",                                 // version 00 is exactly 55
           "00-" + t + "-" + p + "-01x",                                 // ditto
           "00-00000000000000000000000000000000-" + p + "-01",          // trace id all zeros
           "00-" + t + "-0000000000000000-01",                           // parent id all zeros
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + p + "-01",          // uppercase
           "00-" + t + "-" + "00F067AA0BA902B7" + "-01",                 // uppercase
           "ff-" + t + "-" + p + "-01",                                  // version ff
           "0g-" + t + "-" + p + "-01",                                  // not hex
           "00_" + t + "-" + p + "-01",                                  // separator
           "00-" + t + "_" + p + "-01",                                  // separator
           "00-" + t + "-" + p + "_01",                                  // separator
           "00-" + t + "-" + p + "-0g",                                  // flags not hex
           "00-" + t.substr(1) + "-" + p + "-01",                        // 31 digits
           "01-" + t + "-" + p + "-01x",                                 // a later version: '-' after the flags
       }) {
    CAPTURE(bad);
    CHECK_FALSE(parse_traceparent(bad));
  }
  // A later version is read as version 00 (forward compatibility), extra fields ignored.
  auto future = parse_traceparent("cc-" + t + "-" + p + "-01-what-the-future-holds");
  REQUIRE(future);
  CHECK(future->sampled());
  CHECK(parse_traceparent("01-" + t + "-" + p + "-00"));
}

TEST_CASE("trace ids: random hex, never zero; the ratio decision reads the trace id") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    char trace[32];
    char span[16];
    detail::new_trace_id(trace);
    detail::new_span_id(span);
    CHECK(is_hex(std::string_view(trace, 32), 32));
    CHECK(is_hex(std::string_view(span, 16), 16));
    seen.emplace(trace, 32);
  }
  CHECK(seen.size() == 1000);
  const std::string low = "ffffffffffffffff0000000000000000";   // random part 0: sampled at any ratio > 0
  const std::string high = "0000000000000001ffffffffffffffff";  // random part max: only at 1.0
  CHECK(detail::ratio_sampled(low.data(), 1e-9));
  CHECK_FALSE(detail::ratio_sampled(low.data(), 0.0));
  CHECK_FALSE(detail::ratio_sampled(high.data(), 0.999));
  CHECK(detail::ratio_sampled(high.data(), 1.0));
  const std::string half = "00000000000000007fffffffffffffff";  // (x >> 1) = 2^62 - 1 < 0.5 x 2^63
  CHECK(detail::ratio_sampled(half.data(), 0.5));
  const std::string over = "00000000000000008000000000000000";  // (x >> 1) = 2^62: not below
  CHECK_FALSE(detail::ratio_sampled(over.data(), 0.5));
  // Over many random ids the share follows the ratio.
  int sampled = 0;
  for (int i = 0; i < 10000; ++i) {
    char trace[32];
    detail::new_trace_id(trace);
    sampled += detail::ratio_sampled(trace, 0.25) ? 1 : 0;
  }
  CHECK(sampled > 2200);
  CHECK(sampled < 2800);
}

TEST_CASE("tracing off: traceparent and tracestate pass through, no trace in the summary") {
  Fixture f(false);
  f.headers = {{"traceparent", kSampled}, {"tracestate", "k=v"}};
  f.start();
  f.answer();
  REQUIRE(f.host.heads.size() == 1);
  CHECK(head_value(f.host.heads[0], "traceparent") == kSampled);
  CHECK(head_value(f.host.heads[0], "tracestate") == "k=v");
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].trace_id.empty());
  CHECK_FALSE(f.log->summaries[0].sampled);
}

TEST_CASE("a client's valid traceparent is continued: same trace, the router's span upstream") {
  Fixture f(true);
  f.headers = {{"Traceparent", kSampled}, {"tracestate", "vendor=abc,other=1"}, {"Content-Type", "application/json"}};
  f.start();
  f.answer();
  REQUIRE(f.host.heads.size() == 1);
  int n = 0;
  const std::string up = head_value(f.host.heads[0], "traceparent", &n);
  CHECK(n == 1);
  CHECK(head_value(f.host.heads[0], "Traceparent").empty());  // the client's, replaced
  REQUIRE(up.size() == 55);
  CHECK(up.substr(0, 3) == "00-");
  CHECK(up.substr(3, 32) == kTrace);
  CHECK(up.substr(36, 16) != kParent);
  CHECK(up.substr(52) == "-01");
  CHECK(head_value(f.host.heads[0], "tracestate") == "vendor=abc,other=1");

  REQUIRE(f.log->traces.size() == 1);
  const detail::OtlpTrace& tr = f.trace();
  CHECK(std::string_view(tr.trace_id.data(), 32) == kTrace);
  CHECK(tr.has_parent);
  CHECK(std::string_view(tr.parent_id.data(), 16) == kParent);
  CHECK(tr.trace_state == "vendor=abc,other=1");
  CHECK(tr.method == "POST");
  CHECK(tr.path == "/v1/completions");
  CHECK(tr.requested_model == "alias-m");
  CHECK(tr.model == "m");
  CHECK(tr.status == 200);
  CHECK(tr.usage.prompt == 5);
  CHECK(tr.usage.completion == 7);
  CHECK(tr.start > 1'600'000'000'000'000'000);  // wall clock, Unix nanoseconds
  CHECK(tr.end - tr.start == 5'000'000);          // the injected 5 ms
  REQUIRE(tr.children.size() == 1);
  const detail::OtlpAttempt& a = tr.children[0];
  CHECK(a.routed);
  CHECK(std::string_view(a.span.data(), 16) == up.substr(36, 16));  // the span named upstream
  CHECK(std::string_view(a.span.data(), 16) != std::string_view(tr.span_id.data(), 16));
  CHECK(std::string_view(a.route_span.data(), 16) != std::string_view(a.span.data(), 16));
  CHECK(a.policy == "round_robin");
  CHECK(a.candidates == 2);
  CHECK(a.model == "m");  // the alias resolved: the name sent upstream
  CHECK(a.host.rfind("10.0.0.", 0) == 0);
  CHECK(a.port == 8000);
  CHECK(a.outcome == OutcomeKind::success);
  CHECK(a.status == 200);
  CHECK(a.start == tr.start);
  CHECK(a.end == tr.end);
  CHECK_FALSE(a.retried);
  CHECK(tr.span_count() == 3);
}

TEST_CASE("an invalid or doubled traceparent starts a new trace; the client's tracestate is dropped") {
  const std::string zero_parent = "00-" + std::string(kTrace) + "-0000000000000000-01";
  for (const std::vector<HeaderField>& headers : std::vector<std::vector<HeaderField>>{
           {{"traceparent", zero_parent}, {"tracestate", "k=v"}},
           {{"traceparent", "garbage"}, {"tracestate", "k=v"}},
           {{"traceparent", kSampled}, {"traceparent", kSampled}, {"tracestate", "k=v"}},
       }) {
    Fixture f(true);
    f.headers = headers;
    f.start();
    f.answer();
    REQUIRE(f.host.heads.size() == 1);
    int n = 0;
    const std::string up = head_value(f.host.heads[0], "traceparent", &n);
    CHECK(n == 1);
    CHECK(up.substr(3, 32) != kTrace);
    CHECK(is_hex(up.substr(3, 32), 32));
    CHECK(up.substr(52) == "-01");  // sampling 1.0
    CHECK(head_value(f.host.heads[0], "tracestate").empty());
    const detail::OtlpTrace& tr = f.trace();
    CHECK(std::string_view(tr.trace_id.data(), 32) == up.substr(3, 32));
    CHECK_FALSE(tr.has_parent);
    CHECK(tr.trace_state.empty());
  }
}

TEST_CASE("a retry: two attempt spans, the first failed with its reason, each named upstream") {
  Fixture f(true);
  f.host.connects = {ExchangeHost::Connect::failed, ExchangeHost::Connect::connected};
  f.start();
  f.answer();
  CHECK(f.host.status == 200);
  REQUIRE(f.host.heads.size() == 1);  // the failed connect sent nothing
  const detail::OtlpTrace& tr = f.trace();
  REQUIRE(tr.children.size() == 2);
  CHECK(tr.attempts == 2);
  const auto& first = tr.children[0];
  const auto& second = tr.children[1];
  CHECK(first.outcome == OutcomeKind::connect_failure);
  CHECK(first.retried);
  CHECK(first.retry_reason == RetryReason::connect_failure);
  CHECK(first.error == "refused");
  CHECK(second.outcome == OutcomeKind::success);
  CHECK_FALSE(second.retried);
  CHECK(first.endpoint_id != second.endpoint_id);
  CHECK(std::string_view(first.span.data(), 16) != std::string_view(second.span.data(), 16));
  CHECK(head_value(f.host.heads[0], "traceparent").substr(36, 16) == std::string_view(second.span.data(), 16));
  CHECK(tr.span_count() == 5);

  detail::JsonText text;
  detail::append_spans_json(text, tr, true);
  const std::string_view spans = text.view();
  CHECK(spans.find(R"("key":"vllm_router.retry_reason","value":{"stringValue":"connect_failure"})") != std::string::npos);
  CHECK(spans.find(R"("status":{"code":2,"message":"refused"})") != std::string::npos);
}

TEST_CASE("sampling: 0.0 records nothing it starts; a client's sampled flag decides for its trace") {
  SUBCASE("a new trace at 0.0: not sampled, flags 00 upstream, ids still in the summary") {
    Fixture f(true, 0.0);
    f.start();
    f.answer();
    const std::string up = head_value(f.host.heads[0], "traceparent");
    CHECK(up.substr(52) == "-00");
    REQUIRE(f.log->summaries.size() == 1);
    CHECK_FALSE(f.log->summaries[0].sampled);
    CHECK(f.log->summaries[0].trace_attempts.empty());
    CHECK(f.log->summaries[0].start_unix_ns == 0);
  }
  SUBCASE("a client's sampled trace at 0.0: recorded (parent based)") {
    Fixture f(true, 0.0);
    f.headers = {{"traceparent", kSampled}};
    f.start();
    f.answer();
    CHECK(head_value(f.host.heads[0], "traceparent").substr(52) == "-01");
    CHECK(f.log->summaries[0].sampled);
  }
  SUBCASE("a client's unsampled trace at 1.0: not recorded, flags 00 upstream") {
    Fixture f(true, 1.0);
    const std::string unsampled = "00-" + std::string(kTrace) + "-" + std::string(kParent) + "-00";
    f.headers = {{"traceparent", unsampled}};
    f.start();
    f.answer();
    const std::string up = head_value(f.host.heads[0], "traceparent");
    CHECK(up.substr(3, 32) == kTrace);
    CHECK(up.substr(52) == "-00");
    CHECK_FALSE(f.log->summaries[0].sampled);
  }
}

TEST_CASE("a routing failure is a routing span in error, with no attempt span") {
  Fixture f(true);
  f.body = R"({"model":"nope","prompt":"hi"})";
  f.start();
  CHECK(f.host.error);
  const detail::OtlpTrace& tr = f.trace();
  REQUIRE(tr.children.size() == 1);
  CHECK_FALSE(tr.children[0].routed);
  CHECK(tr.children[0].error.find("nope") != std::string::npos);
  CHECK(tr.span_count() == 2);
  detail::JsonText text;
  detail::append_spans_json(text, tr, true);
  const std::string_view spans = text.view();
  CHECK(spans.find(R"("name":"route")") != std::string::npos);
  CHECK(spans.find(R"("kind":3)") == std::string::npos);  // no client span
}

TEST_CASE("a reused exchange starts a fresh trace") {
  Fixture f(true);
  f.headers = {{"traceparent", kSampled}};
  f.start();
  f.answer();
  f.ex->reset();
  f.headers.clear();
  f.start();
  f.answer();
  REQUIRE(f.log->traces.size() == 2);
  CHECK(std::string_view(f.log->traces[1].trace_id.data(), 32) != kTrace);
  CHECK_FALSE(f.log->traces[1].has_parent);
  CHECK(f.log->traces[1].children.size() == 1);
}

TEST_CASE("OTLP JSON: resource, scope, spans with hex ids, kinds, times as strings, typed attributes") {
  Fixture f(true);
  f.headers = {{"traceparent", kSampled}};
  f.start("/v1/chat/completions");
  f.answer();
  detail::JsonText spans;
  detail::append_spans_json(spans, f.trace(), true);
  const std::string doc = detail::otlp_request_json("svc \"x\"", spans.view());
  CHECK(doc.rfind(R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc \"x\""}})", 0) == 0);
  CHECK(doc.find(R"("scopeSpans":[{"scope":{"name":"vllm-router","version":")") != std::string::npos);
  CHECK(doc.find(R"("traceId":")" + std::string(kTrace) + R"(","spanId":")") != std::string::npos);
  CHECK(doc.find(R"("parentSpanId":")" + std::string(kParent) + "\"") != std::string::npos);
  CHECK(doc.find(R"("name":"POST /v1/chat/completions","kind":2,"startTimeUnixNano":")") != std::string::npos);
  CHECK(doc.find(R"("name":"chat m","kind":3)") != std::string::npos);
  CHECK(doc.find(R"("name":"route","kind":1)") != std::string::npos);
  CHECK(doc.find(R"({"key":"http.response.status_code","value":{"intValue":"200"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.usage.input_tokens","value":{"intValue":"5"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.usage.output_tokens","value":{"intValue":"7"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.request.model","value":{"stringValue":"alias-m"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.response.model","value":{"stringValue":"m"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.provider.name","value":{"stringValue":"vllm"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"gen_ai.operation.name","value":{"stringValue":"chat"}})") != std::string::npos);
  CHECK(doc.find(R"({"key":"vllm_router.panic","value":{"boolValue":false}})") != std::string::npos);
  CHECK(doc.find(R"("status":{"code":0}})") != std::string::npos);
  CHECK(doc.substr(doc.size() - 6) == "]}]}]}");
  // Balanced and free of raw control bytes.
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    const char c = doc[i];
    CHECK(static_cast<unsigned char>(c) >= 0x20);
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    CHECK(depth >= 0);
  }
  CHECK(depth == 0);
}

TEST_CASE("OTLP JSON strings: escapes, and invalid UTF-8 replaced by U+FFFD") {
  auto enc = [](std::string_view s) {
    std::string out;
    detail::append_json_utf8(out, s);
    return out;
  };
  CHECK(enc("plain") == "\"plain\"");
  CHECK(enc("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
  CHECK(enc("h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") == "\"h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");  // é € 😀
  CHECK(enc("\xC3") == "\"\xEF\xBF\xBD\"");                      // truncated
  CHECK(enc("\xFFx") == "\"\xEF\xBF\xBDx\"");                    // never a lead byte
  CHECK(enc("\xC0\xAF") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");      // overlong '/'
  CHECK(enc("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // a surrogate
  CHECK(enc("\xF4\x90\x80\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // above U+10FFFF
}

TEST_CASE("the pick's facts: prefix_aware tells how much of the prompt the chosen replica served") {
  RouterConfig c = fleet_config(3);
  c.policy = "prefix_aware";
  c.policy_options.prefix_chunk_chars = 4;
  auto r = Router::create(c);
  REQUIRE(r.ok());
  RequestView view;
  view.model = "m";
  view.has_model = true;
  view.prompt_prefix = "abcdefghijkl";  // three chunks of 4
  auto first = r.value()->route(view);
  REQUIRE(first.ok());
  CHECK(first->pick.policy == "prefix_aware");
  CHECK(first->pick.candidates == 3);
  CHECK(first->pick.prefix_match == 0);
  first->lease.complete(Outcome{OutcomeKind::success, 200});
  auto second = r.value()->route(view);
  REQUIRE(second.ok());
  CHECK(second->pick.prefix_match == 12);
  CHECK(second->lease.endpoint().id == first->lease.endpoint().id);
  view.prompt_prefix = "abcdefghXXXX";  // the first two chunks in common
  auto third = r.value()->route(view);
  REQUIRE(third.ok());
  CHECK(third->pick.prefix_match == 8);
  // A policy that does not tell: -1.
  RouterConfig rr = fleet_config(2);
  auto plain = Router::create(rr);
  REQUIRE(plain.ok());
  auto route = plain.value()->route(view);
  REQUIRE(route.ok());
  CHECK(route->pick.policy == "round_robin");
  CHECK(route->pick.prefix_match == -1);
}

TEST_CASE("the encoder's numbers: hex ids, integers, milliseconds with three decimals") {
  char hex[16];
  detail::write_hex16(hex, 0x0123456789abcdefull);
  CHECK(std::string_view(hex, 16) == "0123456789abcdef");
  detail::write_hex16(hex, 0);
  CHECK(std::string_view(hex, 16) == "0000000000000000");
  detail::JsonText out;
  out.integer(1796525321236031393);
  out.ch(' ');
  out.integer(-42);
  out.ch(' ');
  out.milliseconds(12'345'678);
  out.ch(' ');
  out.milliseconds(1'000);
  out.ch(' ');
  out.milliseconds(5);
  out.ch(' ');
  out.milliseconds(3'000'000'000);
  CHECK(out.view() == "1796525321236031393 -42 12.345 0.001 0.000 3000.000");
  // Growth keeps what was written.
  detail::JsonText big;
  for (int i = 0; i < 10000; ++i) big.lit("0123456789");
  CHECK(big.size() == 100000);
  CHECK(big.view().substr(99990) == "0123456789");
}
