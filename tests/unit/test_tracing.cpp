// Tracing: traceparent parsing, ids and sampling, the exchange's trace context (upstream
// traceparent, summary facts), and the OTLP protobuf encoding (read back by a small decoder here).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "otlp_proto.h"
#include "support/exchange_host.h"
#include "trace_context.h"
#include "vllm_router/tracing.h"
#include "vllm_router/version.h"

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

// ---- a protobuf reader for the tests: the wire format, read strictly.
struct Field {
  std::uint32_t number = 0;
  int wire = 0;
  std::uint64_t value = 0;  // VARINT, I64, I32
  std::string_view bytes;   // LEN
};

std::uint64_t read_varint(std::string_view& in) {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    REQUIRE_FALSE(in.empty());
    const auto b = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    v |= std::uint64_t{b & 0x7Fu} << shift;
    if (b < 0x80) return v;
  }
  FAIL("varint too long");
  return 0;
}

std::uint64_t read_fixed(std::string_view& in, std::size_t n) {
  REQUIRE(in.size() >= n);
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  in.remove_prefix(n);
  return v;
}

std::vector<Field> fields(std::string_view in) {
  std::vector<Field> out;
  while (!in.empty()) {
    const std::uint64_t key = read_varint(in);
    Field f;
    f.number = static_cast<std::uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    switch (f.wire) {
      case 0: f.value = read_varint(in); break;
      case 1: f.value = read_fixed(in, 8); break;
      case 5: f.value = read_fixed(in, 4); break;
      case 2: {
        const std::uint64_t n = read_varint(in);
        REQUIRE(n <= in.size());
        f.bytes = in.substr(0, n);
        in.remove_prefix(n);
        break;
      }
      default: FAIL("wire type " << f.wire);
    }
    out.push_back(f);
  }
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// An AnyValue as text: "s:..." string, "b:true", "i:42", "d:12.345" (3 decimals).
std::string any_value(std::string_view msg) {
  const auto fs = fields(msg);
  REQUIRE(fs.size() == 1);  // a oneof: exactly one member
  const Field& f = fs[0];
  switch (f.number) {
    case 1: REQUIRE(f.wire == 2); return "s:" + std::string(f.bytes);
    case 2: REQUIRE(f.wire == 0); return f.value ? "b:true" : "b:false";
    case 3: REQUIRE(f.wire == 0); return "i:" + std::to_string(static_cast<std::int64_t>(f.value));
    case 4: {
      REQUIRE(f.wire == 1);
      double d;
      std::memcpy(&d, &f.value, 8);
      char buf[64];
      std::snprintf(buf, sizeof buf, "d:%.3f", d);
      return buf;
    }
  }
  FAIL("AnyValue field " << f.number);
  return {};
}

std::map<std::string, std::string> attributes(const std::vector<Field>& fs, std::uint32_t number) {
  std::map<std::string, std::string> out;
  for (const Field& f : fs) {
    if (f.number != number) continue;
    REQUIRE(f.wire == 2);
    const auto kv = fields(f.bytes);
    REQUIRE(kv.size() == 2);
    REQUIRE(kv[0].number == 1);
    REQUIRE(kv[1].number == 2);
    const std::string key(kv[0].bytes);
    CHECK(out.count(key) == 0);  // keys unique
    out[key] = any_value(kv[1].bytes);
  }
  return out;
}

struct Span {
  std::string trace_id, span_id, parent_id, trace_state, name;
  int kind = 0;
  std::int64_t start = 0, end = 0;
  std::uint32_t flags = 0;
  std::map<std::string, std::string> attrs;
  int status_code = 0;
  std::string status_message;
  std::string attr(const std::string& key) const {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string() : it->second;
  }
};

Span decode_span(std::string_view msg) {
  Span s;
  const auto fs = fields(msg);
  for (const Field& f : fs) {
    switch (f.number) {
      case 1: s.trace_id = hex(f.bytes); break;
      case 2: s.span_id = hex(f.bytes); break;
      case 3: s.trace_state = f.bytes; break;
      case 4: s.parent_id = hex(f.bytes); break;
      case 5: s.name = f.bytes; break;
      case 6: s.kind = static_cast<int>(f.value); break;
      case 7: REQUIRE(f.wire == 1); s.start = static_cast<std::int64_t>(f.value); break;
      case 8: REQUIRE(f.wire == 1); s.end = static_cast<std::int64_t>(f.value); break;
      case 9: break;
      case 15:
        for (const Field& st : fields(f.bytes)) {
          if (st.number == 2) s.status_message = st.bytes;
          else if (st.number == 3) s.status_code = static_cast<int>(st.value);
          else FAIL("Status field " << st.number);
        }
        break;
      case 16: REQUIRE(f.wire == 5); s.flags = static_cast<std::uint32_t>(f.value); break;
      default: FAIL("Span field " << f.number);
    }
  }
  s.attrs = attributes(fs, 9);
  return s;
}

int id_bits_checked = 0;  // summaries check_id_bits saw

// The spans append_spans wrote (ScopeSpans' field 2, one after another).
std::vector<Span> decode_spans(std::string_view encoded) {
  std::vector<Span> out;
  for (const Field& f : fields(encoded)) {
    REQUIRE(f.number == 2);
    REQUIRE(f.wire == 2);
    out.push_back(decode_span(f.bytes));
  }
  return out;
}

// A sampled exchange's spans as the exporter encodes them (request, then route and attempt
// spans in order), read back; none for a summary not sampled.
struct Trace {
  std::vector<Span> spans;
  std::size_t encoded_count = 0;  // what append_spans said it wrote
  const Span& request() const { return spans.at(0); }
  std::vector<const Span*> of_kind(int kind) const {
    std::vector<const Span*> out;
    for (const Span& s : spans) {
      if (s.kind == kind) out.push_back(&s);
    }
    return out;
  }
  std::vector<const Span*> routes() const { return of_kind(1); }
  std::vector<const Span*> attempts() const { return of_kind(3); }
};

// The ids' numbers in the summary (what the encoder writes) are its hex ids, and encoding
// from the hex alone (a summary from elsewhere: numbers 0) gives the same bytes.
void check_id_bits(const ExchangeSummary& s, std::string_view encoded) {
  REQUIRE(s.trace_id.size() == 32);
  CHECK(s.trace_id_high == detail::hex16_value(s.trace_id.data()));
  CHECK(s.trace_id_low == detail::hex16_value(s.trace_id.data() + 16));
  CHECK(s.span_id_bits == detail::hex16_value(s.span_id.data()));
  CHECK(s.parent_span_id_bits == (s.parent_span_id.empty() ? 0 : detail::hex16_value(s.parent_span_id.data())));
  ExchangeSummary hex = s;
  hex.trace_id_high = hex.trace_id_low = hex.span_id_bits = hex.parent_span_id_bits = 0;
  std::vector<AttemptTrace> attempts(s.trace_attempts.begin(), s.trace_attempts.end());
  for (AttemptTrace& a : attempts) {
    CHECK(a.route_span_bits == detail::hex16_value(a.route_span_id.data()));
    CHECK(a.span_bits == (a.span_id.empty() ? 0 : detail::hex16_value(a.span_id.data())));
    a.route_span_bits = a.span_bits = 0;
  }
  hex.trace_attempts = attempts;
  detail::ProtoWriter out;
  detail::append_spans(out, hex);
  CHECK(out.view() == encoded);
  ++id_bits_checked;
}

// Keeps every summary's spans, encoded and decoded (views die with the call).
struct TraceLog final : Observer {
  std::vector<Trace> traces;
  std::vector<ExchangeSummary> summaries;  // scalar fields only
  void on_exchange(const ExchangeSummary& s) override {
    summaries.push_back(s);
    Trace t;
    if (s.sampled) {
      detail::ProtoWriter out;
      t.encoded_count = detail::append_spans(out, s);
      t.spans = decode_spans(out.view());
      check_id_bits(s, out.view());
    }
    traces.push_back(std::move(t));
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
  const Trace& trace() const { return log->traces.back(); }
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
  const Trace& tr = f.trace();
  REQUIRE(tr.spans.size() == 3);
  CHECK(tr.encoded_count == 3);
  const Span& req = tr.request();
  CHECK(req.kind == 2);
  CHECK(req.trace_id == kTrace);
  CHECK(req.parent_id == kParent);
  CHECK(req.flags == (0x01 | 0x100 | 0x200));  // sampled; its parent is remote
  CHECK(req.trace_state == "vendor=abc,other=1");
  CHECK(req.name == "POST /v1/completions");
  CHECK(req.attr("http.request.method") == "s:POST");
  CHECK(req.attr("url.path") == "s:/v1/completions");
  CHECK(req.attr("gen_ai.request.model") == "s:alias-m");
  CHECK(req.attr("gen_ai.response.model") == "s:m");
  CHECK(req.attr("http.response.status_code") == "i:200");
  CHECK(req.attr("gen_ai.usage.input_tokens").empty());  // on the attempt's span: counted once
  CHECK(req.attr("gen_ai.usage.output_tokens").empty());
  CHECK(req.attr("vllm_router.request_id") == "s:rid-1");
  CHECK(req.start > 1'600'000'000'000'000'000);  // wall clock, Unix nanoseconds
  CHECK(req.end - req.start == 5'000'000);          // the injected 5 ms
  REQUIRE(tr.routes().size() == 1);
  REQUIRE(tr.attempts().size() == 1);
  const Span& route = *tr.routes()[0];
  const Span& a = *tr.attempts()[0];
  for (const Span& s : tr.spans) CHECK(s.trace_id == kTrace);
  CHECK(route.parent_id == req.span_id);
  CHECK(a.parent_id == req.span_id);
  CHECK(route.flags == (0x01 | 0x100));  // a local parent
  CHECK(a.span_id == up.substr(36, 16));  // the span named upstream
  CHECK(a.span_id != req.span_id);
  CHECK(route.span_id != a.span_id);
  CHECK(route.name == "route");
  CHECK(route.attr("gen_ai.request.model").empty());  // routed: the attempt span names it
  CHECK(route.attr("vllm_router.policy") == "s:round_robin");
  CHECK(route.attr("vllm_router.candidates") == "i:2");
  CHECK(route.attr("vllm_router.panic").empty());  // written only when true
  CHECK(a.name == "text_completion m");
  CHECK(a.attr("gen_ai.request.model") == "s:m");  // the alias resolved: the name sent upstream
  CHECK(a.attr("server.address").rfind("s:10.0.0.", 0) == 0);
  CHECK(a.attr("server.port") == "i:8000");
  CHECK(a.attr("url.full").rfind("s:http://10.0.0.", 0) == 0);
  CHECK(a.attr("url.full").find(":8000/v1/completions") != std::string::npos);
  CHECK(a.attr("vllm_router.outcome").empty());  // success: no outcome, no error.type
  CHECK(a.attr("error.type").empty());
  CHECK(a.attr("vllm_router.attempt").empty());  // one attempt: no number
  CHECK(req.attr("vllm_router.attempts").empty());
  CHECK(a.attr("http.response.status_code") == "i:200");
  CHECK(a.attr("gen_ai.usage.input_tokens") == "i:5");
  CHECK(a.attr("gen_ai.usage.output_tokens") == "i:7");
  CHECK(a.start == req.start);
  CHECK(a.end == req.end);
  CHECK(a.attr("vllm_router.retry_reason").empty());
  CHECK(a.status_code == 0);
  CHECK(req.status_code == 0);
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
    const Span& req = f.trace().request();
    CHECK(req.trace_id == up.substr(3, 32));
    CHECK(req.parent_id.empty());
    CHECK(req.flags == (0x01 | 0x100));
    CHECK(req.trace_state.empty());
  }
}

TEST_CASE("a retry: two attempt spans, the first failed with its reason, each named upstream") {
  Fixture f(true);
  f.host.connects = {ExchangeHost::Connect::failed, ExchangeHost::Connect::connected};
  f.start();
  f.answer();
  CHECK(f.host.status == 200);
  REQUIRE(f.host.heads.size() == 1);  // the failed connect sent nothing
  const Trace& tr = f.trace();
  REQUIRE(tr.spans.size() == 5);
  CHECK(tr.encoded_count == 5);
  CHECK(tr.request().attr("vllm_router.attempts") == "i:2");
  REQUIRE(tr.routes().size() == 2);
  REQUIRE(tr.attempts().size() == 2);
  const Span& first = *tr.attempts()[0];
  const Span& second = *tr.attempts()[1];
  CHECK(first.attr("error.type") == "s:connect_failure");
  CHECK(first.attr("vllm_router.retry_reason") == "s:connect_failure");
  CHECK(first.attr("vllm_router.attempt") == "i:1");
  CHECK(first.status_code == 2);
  CHECK(first.status_message == "refused");
  CHECK(second.attr("error.type").empty());
  CHECK(second.attr("vllm_router.attempt") == "i:2");
  CHECK(second.attr("vllm_router.retry_reason").empty());
  CHECK(second.status_code == 0);
  CHECK(first.attr("url.full") != second.attr("url.full"));
  CHECK(tr.routes()[0]->attr("vllm_router.endpoint") != tr.routes()[1]->attr("vllm_router.endpoint"));
  CHECK(first.span_id != second.span_id);
  CHECK(head_value(f.host.heads[0], "traceparent").substr(36, 16) == second.span_id);
  // usage on the attempt that answered only
  CHECK(first.attr("gen_ai.usage.input_tokens").empty());
  CHECK(second.attr("gen_ai.usage.input_tokens") == "i:5");
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
  const Trace& tr = f.trace();
  REQUIRE(tr.spans.size() == 2);
  CHECK(tr.attempts().empty());  // no client span
  REQUIRE(tr.routes().size() == 1);
  const Span& route = *tr.routes()[0];
  CHECK(route.name == "route");
  CHECK(route.attr("gen_ai.request.model") == "s:nope");  // no attempt span: the routing span names it
  CHECK(route.status_code == 2);
  CHECK(route.status_message.find("nope") != std::string::npos);
  CHECK(route.attr("vllm_router.endpoint").empty());
  CHECK(tr.request().name == "POST");  // a 404: the path is not named (the client picks it)
  CHECK(tr.request().attr("http.route").empty());
  CHECK(tr.request().attr("url.path") == "s:/v1/completions");
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
  CHECK(f.log->traces[0].request().trace_id == kTrace);
  CHECK(f.log->traces[1].request().trace_id != kTrace);
  CHECK(f.log->traces[1].request().parent_id.empty());
  CHECK(f.log->traces[1].spans.size() == 3);
}

TEST_CASE("OTLP protobuf: one resource and scope around the spans, names, kinds, typed attributes") {
  // Every exchange's spans appended to one buffer, as the exporter queues them.
  detail::ProtoWriter spans;
  struct Encode final : Observer {
    detail::ProtoWriter* out;
    std::size_t n = 0;
    void on_exchange(const ExchangeSummary& s) override { n += detail::append_spans(*out, s); }
  };
  auto enc = std::make_shared<Encode>();
  enc->out = &spans;
  {
    RouterOptions o;
    o.observer = enc;
    o.tracing.enabled = true;
    auto r = Router::create(fleet_config(2), std::move(o));
    REQUIRE(r.ok());
    RecordingHost host;
    Exchange ex(*r.value(), host);
    ClientRequest req;
    req.method = "POST";
    req.target = "/v1/chat/completions";
    std::vector<HeaderField> headers{{"traceparent", kSampled}};
    req.headers = headers;
    req.body = R"({"model":"alias-m","messages":[]})";
    req.request_id = "rid-2";
    Exchange::TimePoint t{std::chrono::seconds(5)};
    ex.start(req, t);
    ex.on_upstream_data(kOk, t + 2ms);
  }
  REQUIRE(enc->n == 3);
  detail::ProtoWriter doc;
  detail::otlp_request(doc, "svc \"x\"", spans.view());
  const auto top = fields(doc.view());
  REQUIRE(top.size() == 1);  // one ResourceSpans
  CHECK(top[0].number == 1);
  const auto rs = fields(top[0].bytes);
  REQUIRE(rs.size() == 2);
  REQUIRE(rs[0].number == 1);  // resource
  const auto resource = attributes(fields(rs[0].bytes), 1);
  CHECK(resource.at("service.name") == "s:svc \"x\"");
  CHECK(resource.at("telemetry.sdk.language") == "s:cpp");
  CHECK(resource.at("telemetry.sdk.name") == "s:vllm-router");
  CHECK(resource.at("telemetry.sdk.version") == "s:" + std::string(version()));
  REQUIRE(rs[1].number == 2);  // scope spans
  const auto ss = fields(rs[1].bytes);
  REQUIRE(ss.size() == 4);  // the scope, then three spans
  REQUIRE(ss[0].number == 1);
  const auto scope = fields(ss[0].bytes);
  REQUIRE(scope.size() == 2);
  CHECK(scope[0].bytes == "vllm-router");
  CHECK(scope[1].bytes == version());
  std::vector<Span> got;
  for (std::size_t i = 1; i < ss.size(); ++i) {
    REQUIRE(ss[i].number == 2);
    got.push_back(decode_span(ss[i].bytes));
  }
  CHECK(got[0].name == "POST /v1/chat/completions");
  CHECK(got[0].kind == 2);
  CHECK(got[0].attr("gen_ai.operation.name").empty());  // GenAI attributes: the CLIENT span's
  CHECK(got[2].attr("gen_ai.operation.name") == "s:chat");
  CHECK(got[2].attr("gen_ai.provider.name") == "s:vllm");
  CHECK(got[2].attr("gen_ai.system").empty());  // deprecated since semantic conventions 1.37
  CHECK(got[0].attr("http.route") == "s:/v1/chat/completions");
  CHECK(got[0].attr("vllm_router.time_to_first_byte_ms") == "d:2.000");
  CHECK(got[0].attr("http.request.body.size").empty());  // opt-in in the conventions: the access log has it
  CHECK(got[1].name == "route");
  CHECK(got[1].kind == 1);
  CHECK(got[2].name == "chat m");
  CHECK(got[2].kind == 3);
  CHECK(got[0].end - got[0].start == 2'000'000);
}

TEST_CASE("OTLP protobuf strings: invalid UTF-8 replaced by U+FFFD, cut on a character boundary") {
  auto enc = [](std::string_view s, std::size_t limit = detail::kMaxString) {
    detail::ProtoWriter out;
    out.string_field(7, s, limit);
    const auto fs = fields(out.view());
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].number == 7);
    CHECK(fs[0].wire == 2);
    return std::string(fs[0].bytes);
  };
  CHECK(enc("plain \"quoted\" \n") == "plain \"quoted\" \n");  // no escaping in protobuf
  CHECK(enc("h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") == "h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");  // é € 😀
  CHECK(enc("\xC3") == "\xEF\xBF\xBD");                      // truncated
  CHECK(enc("\xFFx") == "\xEF\xBF\xBDx");                    // never a lead byte
  CHECK(enc("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");      // overlong '/'
  CHECK(enc("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  CHECK(enc("\xF4\x90\x80\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // above U+10FFFF
  CHECK(enc(std::string(600, 'a')).size() == detail::kMaxString);
  CHECK(enc("ab\xC3\xA9", 3) == "ab");  // é does not fit: cut before it
  CHECK(enc("abcdef", 3) == "abc");
  // The ASCII check reads words (8 bytes, two overlapping 4-byte words, single bytes): a stray
  // byte at any position of any short length is found.
  for (std::size_t len = 1; len <= 24; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      std::string v(len, 'a');
      v[at] = '\xFF';
      std::string want(len, 'a');
      want.replace(at, 1, "\xEF\xBF\xBD");
      INFO("length ", len, " position ", at);
      CHECK(enc(v) == want);
    }
  }
}

TEST_CASE("ProtoWriter: varints, fixed fields, nested lengths of every size, growth") {
  detail::ProtoWriter out;
  out.varint_field(1, 0);
  out.varint_field(1, 127);
  out.varint_field(1, 128);
  out.varint_field(1, 1796525321236031393ull);
  out.varint_field(1, ~0ull);
  out.fixed64_field(2, 0x0123456789abcdefull);
  out.fixed32_field(3, 0x101);
  out.bytes_field(4, std::string_view("\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8));
  for (std::size_t len : {0u, 1u, 127u, 128u, 300u, 16383u, 16384u, 70000u}) {
    const std::size_t m = out.open(5);
    out.raw(std::string(len, 'x'));
    const std::size_t inner = out.open(6);  // nested after the bytes: moved with them
    out.raw("yz");
    out.close(inner);
    out.close(m);
  }
  const auto fs = fields(out.view());
  REQUIRE(fs.size() == 16);
  CHECK(fs[0].value == 0);
  CHECK(fs[1].value == 127);
  CHECK(fs[2].value == 128);
  CHECK(fs[3].value == 1796525321236031393ull);
  CHECK(fs[4].value == ~0ull);
  CHECK(fs[5].wire == 1);
  CHECK(fs[5].value == 0x0123456789abcdefull);
  CHECK(fs[6].wire == 5);
  CHECK(fs[6].value == 0x101);
  CHECK(hex(fs[7].bytes) == "00f067aa0ba902b7");
  std::size_t i = 8;
  for (std::size_t len : {0u, 1u, 127u, 128u, 300u, 16383u, 16384u, 70000u}) {
    REQUIRE(fs[i].number == 5);
    CHECK(fs[i].bytes.size() == len + 4);
    CHECK(fs[i].bytes.substr(0, len) == std::string(len, 'x'));
    const auto nested = fields(fs[i].bytes.substr(len));
    REQUIRE(nested.size() == 1);
    CHECK(nested[0].number == 6);
    CHECK(nested[0].bytes == "yz");
    ++i;
  }
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

TEST_CASE("span and trace ids as hex") {
  char hex[16];
  detail::write_hex16(hex, 0x0123456789abcdefull);
  CHECK(std::string_view(hex, 16) == "0123456789abcdef");
  detail::write_hex16(hex, 0);
  CHECK(std::string_view(hex, 16) == "0000000000000000");
}

TEST_CASE("span and trace ids as hex: every value, both ways") {
  std::uint64_t v = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 2000; ++i) {
    v = v * 6364136223846793005ull + 1442695040888963407ull;
    const std::uint64_t x = i < 16 ? (std::uint64_t{0xF} << (4 * i)) : v;  // each nibble alone, then random
    char hex[16];
    detail::write_hex16(hex, x);
    char want[17];
    std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(x));
    REQUIRE(std::string_view(hex, 16) == std::string_view(want, 16));
    REQUIRE(detail::hex16_value(hex) == x);
  }
  char trace[32];
  const detail::TraceIdBits bits = detail::new_trace_id(trace);
  CHECK(bits.high == detail::hex16_value(trace));
  CHECK(bits.low == detail::hex16_value(trace + 16));
  char span[16];
  const std::uint64_t id = detail::new_span_id(span);
  CHECK(id == detail::hex16_value(span));
}

TEST_CASE("OTLP ids: the exchange's id numbers encode byte-exact as its hex ids") {
  const int before = id_bits_checked;
  {
    Fixture f(true);  // a new trace
    f.start();
    f.answer();
  }
  {
    Fixture f(true);  // a continued one, with a retry
    f.headers = {{"traceparent", kSampled}};
    f.host.connects = {ExchangeHost::Connect::failed, ExchangeHost::Connect::connected};
    f.start();
    f.answer();
    REQUIRE(f.trace().spans.size() == 5);
    CHECK(f.trace().request().parent_id == kParent);
  }
  CHECK(id_bits_checked == before + 2);
}

TEST_CASE("OTLP usage: on one span of the trace, the attempt that answered, else the request") {
  // Tools add gen_ai.usage.* up over a trace's spans: the tokens must be written once.
  Endpoint e;
  e.url = parse_url("http://10.0.0.1:8000").value();
  e.id = endpoint_id(e.url);
  const auto count = [](const std::vector<Span>& spans) {
    int n = 0;
    for (const Span& sp : spans) n += sp.attr("gen_ai.usage.output_tokens").empty() ? 0 : 1;
    return n;
  };
  const auto encode = [](const ExchangeSummary& summary) {
    detail::ProtoWriter w;
    detail::append_spans(w, summary);
    return decode_spans(w.view());
  };
  ExchangeSummary s;
  s.sampled = true;
  s.trace_id = "0af7651916cd43dd8448eb211c80319c";
  s.span_id = "b7ad6b7169203331";
  s.method = "POST";
  s.path = "/v1/chat/completions";
  s.model = "m";
  s.start_unix_ns = 1'700'000'000'000'000'000;
  s.usage.prompt = 11;
  s.usage.completion = 3;
  std::array<AttemptTrace, 2> at{};
  for (AttemptTrace& a : at) {
    a.endpoint = &e;
    a.model = "m";
    a.policy = "round_robin";
  }
  at[0].route_span_id = "00f067aa0ba902b7";
  at[0].span_id = "53995c3f42cd8ad8";
  at[1].route_span_id = "00f067aa0ba902b8";
  at[1].span_id = "53995c3f42cd8ad9";
  SUBCASE("the attempt answered") {
    at[0].status = 200;
    s.status = 200;
    s.trace_attempts = std::span<const AttemptTrace>(at.data(), 1);
    const auto spans = encode(s);
    REQUIRE(spans.size() == 3);
    CHECK(count(spans) == 1);
    CHECK(spans[2].attr("gen_ai.usage.input_tokens") == "i:11");
    CHECK(spans[2].attr("gen_ai.usage.output_tokens") == "i:3");
  }
  SUBCASE("a retry: the second attempt answered, the first did not") {
    at[0].outcome = OutcomeKind::connect_failure;
    at[0].retried = true;
    at[1].status = 200;
    s.status = 200;
    s.attempts = 2;
    s.trace_attempts = at;
    const auto spans = encode(s);
    REQUIRE(spans.size() == 5);
    CHECK(count(spans) == 1);
    CHECK(spans[4].attr("gen_ai.usage.output_tokens") == "i:3");
  }
  SUBCASE("the answer broke off: its counted tokens stay on its span, estimated") {
    at[0].status = 200;
    at[0].outcome = OutcomeKind::upstream_closed;
    s.status = 200;
    s.end = ExchangeEnd::upstream_error;
    s.usage.estimated = true;
    s.trace_attempts = std::span<const AttemptTrace>(at.data(), 1);
    const auto spans = encode(s);
    REQUIRE(spans.size() == 3);
    CHECK(count(spans) == 1);
    CHECK(spans[2].attr("gen_ai.usage.output_tokens") == "i:3");
    CHECK(spans[2].attr("vllm_router.usage.estimated") == "b:true");
    CHECK(spans[0].attr("vllm_router.usage.estimated").empty());
  }
  SUBCASE("no attempt span: the request span has them") {
    s.status = 429;
    s.end = ExchangeEnd::rejected;
    s.usage.estimated = true;
    const auto spans = encode(s);
    REQUIRE(spans.size() == 1);
    CHECK(spans[0].attr("gen_ai.usage.input_tokens") == "i:11");
    CHECK(spans[0].attr("vllm_router.usage.estimated") == "b:true");
  }
  SUBCASE("a retry found no endpoint: the attempt before it did not answer; the request span has them") {
    at[0].outcome = OutcomeKind::connect_failure;
    at[0].retried = true;
    at[1].endpoint = nullptr;
    at[1].span_id = {};
    s.status = 503;
    s.end = ExchangeEnd::rejected;
    s.trace_attempts = at;
    const auto spans = encode(s);
    REQUIRE(spans.size() == 4);  // the request, two routing spans, one attempt
    CHECK(count(spans) == 1);
    CHECK(spans[0].attr("gen_ai.usage.output_tokens") == "i:3");
  }
  SUBCASE("routing found no endpoint: a routing span, no attempt span; the request span has them") {
    at[0].endpoint = nullptr;
    at[0].span_id = {};
    s.status = 503;
    s.end = ExchangeEnd::rejected;
    s.trace_attempts = std::span<const AttemptTrace>(at.data(), 1);
    const auto spans = encode(s);
    REQUIRE(spans.size() == 2);
    CHECK(count(spans) == 1);
    CHECK(spans[0].attr("gen_ai.usage.output_tokens") == "i:3");
  }
}

TEST_CASE("OTLP attribute memos: a repeated route's attributes are the bytes a fresh encoding writes") {
  // append_spans keeps each thread's last route (method, path, models, endpoint) encoded; a
  // change of any of them must not leave stale attributes behind.
  Endpoint e1, e2;
  e1.url = parse_url("http://10.0.0.1:8000").value();
  e1.id = endpoint_id(e1.url);
  e2.url = parse_url("http://10.0.0.2:9001").value();
  e2.id = endpoint_id(e2.url);
  struct Case {
    std::string method, path, requested, model, policy;
    const Endpoint* endpoint;
    std::size_t candidates;
  };
  const std::vector<Case> cases{
      {"POST", "/v1/chat/completions", "alias", "m1", "round_robin", &e1, 2},
      {"POST", "/v1/chat/completions", "alias", "m1", "round_robin", &e1, 2},  // the same again
      {"POST", "/v1/completions", "alias", "m1", "round_robin", &e1, 2},       // path
      {"POST", "/v1/completions", "alias", "m2", "round_robin", &e1, 2},       // model
      {"POST", "/v1/completions", "alias", "m2", "round_robin", &e2, 2},       // endpoint
      {"POST", "/v1/completions", "alias", "m2", "prefix_aware", &e2, 3},      // policy, candidates
      {"GET", "/v1/completions", "other", "m2", "prefix_aware", &e2, 3},       // method, requested model
      {"POST", "/v1/chat/completions", "alias", "m1", "round_robin", &e1, 2},  // back to the first
      {"POST", std::string(1500, 'p'), "alias", "m1", "round_robin", &e1, 2},  // too long to keep
      {"POST", std::string(1500, 'p'), "alias", "m1", "round_robin", &e1, 2},
  };
  const char* trace = "0af7651916cd43dd8448eb211c80319c";
  const char* span = "b7ad6b7169203331";
  const char* route = "00f067aa0ba902b7";
  const char* attempt = "53995c3f42cd8ad8";
  const auto summary = [&](const Case& c, AttemptTrace& a) {
    ExchangeSummary s;
    s.sampled = true;
    s.trace_id = trace;
    s.span_id = span;
    s.method = c.method;
    s.path = c.path;
    s.requested_model = c.requested;
    s.model = c.model;
    s.status = 200;
    s.start_unix_ns = 1'700'000'000'000'000'000;
    a.route_span_id = route;
    a.span_id = attempt;
    a.endpoint = c.endpoint;
    a.model = c.model;
    a.policy = c.policy;
    a.candidates = c.candidates;
    a.status = 200;
    s.trace_attempts = std::span<const AttemptTrace>(&a, 1);
    return s;
  };
  for (const Case& c : cases) {
    AttemptTrace a;
    const ExchangeSummary s = summary(c, a);
    detail::ProtoWriter here;
    detail::append_spans(here, s);  // this thread's memos: what the cases before left
    detail::ProtoWriter fresh;
    std::thread([&] { detail::append_spans(fresh, s); }).join();  // a new thread's: empty
    CHECK(here.view() == fresh.view());
    const auto spans = decode_spans(here.view());
    REQUIRE(spans.size() == 3);
    CHECK(spans[0].attr("http.request.method") == "s:" + c.method);
    CHECK(spans[0].attr("url.path") == "s:" + c.path.substr(0, detail::kMaxString));
    CHECK(spans[0].attr("gen_ai.request.model") == "s:" + c.requested);
    CHECK(spans[0].attr("gen_ai.response.model") == "s:" + c.model);
    CHECK(spans[1].attr("vllm_router.policy") == "s:" + c.policy);
    CHECK(spans[1].attr("vllm_router.endpoint") == "s:" + c.endpoint->id);
    CHECK(spans[1].attr("vllm_router.candidates") == "i:" + std::to_string(c.candidates));
    CHECK(spans[2].attr("server.address") == "s:" + c.endpoint->url.host);
    CHECK(spans[2].attr("server.port") == "i:" + std::to_string(c.endpoint->url.port));
    CHECK(spans[2].attr("gen_ai.request.model") == "s:" + c.model);
    CHECK(spans[2].attr("http.request.method") == "s:" + c.method);
  }
}
