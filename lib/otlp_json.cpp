// OTLP/HTTP JSON encoding of a traced exchange's spans (opentelemetry-proto's JSON mapping:
// lowerCamelCase fields, trace and span ids as hex, 64-bit integers as decimal strings, enums as
// numbers), with OpenTelemetry HTTP and GenAI semantic-convention attribute names.
#include "otlp_json.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>

#include "vllm_router/version.h"

namespace vllm_router::detail {
namespace {

constexpr int kKindInternal = 1;
constexpr int kKindServer = 2;
constexpr int kKindClient = 3;
constexpr int kStatusUnset = 0;
constexpr int kStatusError = 2;

// gen_ai.operation.name of an OpenAI-compatible path; empty when it names none.
std::string_view operation_of(std::string_view path) {
  if (path == "/v1/chat/completions") return "chat";
  if (path == "/v1/completions") return "text_completion";
  if (path == "/v1/embeddings") return "embeddings";
  return {};
}

constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// The escape of an ASCII byte that is not plain.
void escape_ascii(JsonText& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  switch (c) {
    case '"': return out.lit("\\\"");
    case '\\': return out.lit("\\\\");
    case '\n': return out.lit("\\n");
    case '\r': return out.lit("\\r");
    case '\t': return out.lit("\\t");
    default: {
      const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      return out.raw(std::string_view(u, 6));
    }
  }
}

// Length of the valid UTF-8 sequence at p[0..n) (lead byte >= 0x80), 0 when invalid: no
// overlong form, no surrogate, nothing above U+10FFFF (RFC 3629).
std::size_t utf8_length(const unsigned char* p, std::size_t n) {
  const unsigned char c = p[0];
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  }
  if (len == 0 || len > n) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

}  // namespace

void JsonText::grow(std::size_t more) {
  const std::size_t cap = std::max({cap_ * 2, size_ + more, std::size_t{4096}});
  std::unique_ptr<char[]> data(new char[cap]);  // not zero-filled
  if (size_ != 0) std::memcpy(data.get(), data_.get(), size_);
  data_ = std::move(data);
  cap_ = cap;
}

void JsonText::escaped(std::string_view v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    // Eight bytes at a time while none needs a second look (SWAR: a byte below 0x20, at or
    // above 0x80, '"' or '\\' sets its high bit in `special`).
    constexpr std::uint64_t kOnes = 0x0101010101010101ull;
    constexpr std::uint64_t kHigh = 0x8080808080808080ull;
    while (j + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, p + j, 8);
      const std::uint64_t quote = w ^ (kOnes * '"');
      const std::uint64_t slash = w ^ (kOnes * '\\');
      const std::uint64_t special =
          ((w - kOnes * 0x20) | (quote - kOnes) | (slash - kOnes) | w) & kHigh;
      if (special != 0) break;
      j += 8;
    }
    while (j < n && kPlain[p[j]]) ++j;
    if (j > i) raw(v.substr(i, j - i));
    if (j == n) break;
    if (p[j] < 0x80) {
      escape_ascii(*this, p[j]);
      i = j + 1;
    } else if (const std::size_t len = utf8_length(p + j, n - j); len != 0) {
      raw(v.substr(j, len));
      i = j + len;
    } else {
      lit("\xEF\xBF\xBD");  // U+FFFD for the lead byte; resynchronise at the next one
      i = j + 1;
    }
  }
}

namespace {

// The attributes of one span: [{"key":..,"value":{..}},...].
class Attributes {
 public:
  explicit Attributes(JsonText& out) : out_(out) { out_.lit("\"attributes\":["); }
  ~Attributes() { out_.ch(']'); }
  Attributes(const Attributes&) = delete;
  Attributes& operator=(const Attributes&) = delete;

  template <std::size_t N>
  void str(const char (&key)[N], std::string_view value) {
    open(key);
    out_.lit("\"stringValue\":");
    out_.string(value);
    out_.lit("}}");
  }
  template <std::size_t N>
  void str(const char (&key)[N], std::string_view a, std::string_view b) {  // a and b joined
    open(key);
    out_.lit("\"stringValue\":");
    out_.string(a, "", b);
    out_.lit("}}");
  }
  /// A value known to need no escaping (the router's own constants).
  template <std::size_t N>
  void plain(const char (&key)[N], std::string_view value) {
    open(key);
    out_.lit("\"stringValue\":\"");
    out_.raw(value);
    out_.lit("\"}}");
  }
  template <std::size_t N>
  void str_if(const char (&key)[N], std::string_view value) {
    if (!value.empty()) str(key, value);
  }
  template <std::size_t N>
  void integer(const char (&key)[N], std::int64_t value) {  // int64: a decimal string
    open(key);
    out_.lit("\"intValue\":\"");
    out_.integer(value);
    out_.lit("\"}}");
  }
  template <std::size_t N>
  void boolean(const char (&key)[N], bool value) {
    open(key);
    if (value) {
      out_.lit("\"boolValue\":true}}");
    } else {
      out_.lit("\"boolValue\":false}}");
    }
  }
  template <std::size_t N>
  void milliseconds(const char (&key)[N], std::int64_t ns) {
    open(key);
    out_.lit("\"doubleValue\":");
    out_.milliseconds(ns);
    out_.lit("}}");
  }

 private:
  template <std::size_t N>
  void open(const char (&key)[N]) {
    if (first_) {
      out_.lit("{\"key\":\"");
    } else {
      out_.lit(",{\"key\":\"");
    }
    first_ = false;
    out_.lit(key);
    out_.lit("\",\"value\":{");
  }
  JsonText& out_;
  bool first_ = true;
};

// `{"traceId":..,"spanId":..,["parentSpanId":..,]"name":..,"kind":..,"startTimeUnixNano":..,"endTimeUnixNano":..,`
// The span's name is `name` and `name2` joined by a space.
void open_span(JsonText& out, const OtlpTrace& t, std::string_view span, std::string_view parent, std::string_view name,
               std::string_view name2, int kind, std::int64_t start, std::int64_t end) {
  out.lit("{\"traceId\":\"");
  out.raw(std::string_view(t.trace_id.data(), 32));
  out.lit("\",\"spanId\":\"");
  out.raw(span);
  if (!parent.empty()) {
    out.lit("\",\"parentSpanId\":\"");
    out.raw(parent);
  }
  out.ch('"');
  if (!t.trace_state.empty()) {
    out.lit(",\"traceState\":");
    out.string(t.trace_state);
  }
  out.lit(",\"name\":");
  out.string(name, " ", name2);
  out.lit(",\"kind\":");
  out.integer(kind);
  out.lit(",\"startTimeUnixNano\":\"");
  out.integer(start);
  out.lit("\",\"endTimeUnixNano\":\"");
  out.integer(end < start ? start : end);
  out.lit("\",");
}

void close_span(JsonText& out, bool error, std::string_view message) {
  if (!error) return out.lit(",\"status\":{\"code\":0}}");
  out.lit(",\"status\":{\"code\":2");
  if (!message.empty()) {
    out.lit(",\"message\":");
    out.string(message);
  }
  out.lit("}}");
}

void gen_ai_common(Attributes& a, std::string_view operation) {
  a.plain("gen_ai.provider.name", "vllm");
  a.plain("gen_ai.system", "vllm");  // the name before semantic conventions 1.37
  if (!operation.empty()) a.plain("gen_ai.operation.name", operation);
}

void append_request_span(JsonText& out, const OtlpTrace& t) {
  const std::string_view operation = operation_of(t.path);
  const bool routed_path = !(t.outcome == ExchangeEnd::rejected && t.status == 404);
  const std::string_view parent = t.has_parent ? std::string_view(t.parent_id.data(), 16) : std::string_view();
  // "{method} {http.route}"; an unknown path is not a name (its cardinality is the client's).
  open_span(out, t, std::string_view(t.span_id.data(), 16), parent, t.method, routed_path ? std::string_view(t.path) : "",
            kKindServer, t.start, t.end);
  {
    Attributes a(out);
    a.str("http.request.method", t.method);
    a.str("url.path", t.path);
    if (routed_path) a.str("http.route", t.path);
    if (t.status > 0) a.integer("http.response.status_code", t.status);
    a.str_if("client.address", t.client_address);
    a.integer("http.request.body.size", static_cast<std::int64_t>(t.bytes_in));
    a.integer("http.response.body.size", static_cast<std::int64_t>(t.bytes));
    gen_ai_common(a, operation);
    a.str_if("gen_ai.request.model", t.requested_model);
    a.str_if("gen_ai.response.model", t.model);
    if (t.usage.total() > 0) {
      a.integer("gen_ai.usage.input_tokens", static_cast<std::int64_t>(t.usage.prompt));
      a.integer("gen_ai.usage.output_tokens", static_cast<std::int64_t>(t.usage.completion));
      if (t.usage.estimated) a.boolean("vllm_router.usage.estimated", true);
    }
    a.str_if("vllm_router.request_id", t.request_id);
    a.str_if("vllm_router.key_id", t.key_id);
    a.integer("vllm_router.attempts", t.attempts);
    a.plain("vllm_router.outcome", to_string(t.outcome));
    if (t.stream) a.boolean("vllm_router.stream", true);
    if (t.queue_wait > 0) a.milliseconds("vllm_router.queue_wait_ms", t.queue_wait);
    if (t.ttft > 0) a.milliseconds("vllm_router.time_to_first_byte_ms", t.ttft);
    if (t.outcome != ExchangeEnd::ok) a.plain("error.type", to_string(t.outcome));
  }
  // Server spans: 5xx and answers that broke are errors; a 4xx is the client's (unset).
  const bool error = t.status >= 500 || t.outcome == ExchangeEnd::upstream_error || t.outcome == ExchangeEnd::timeout;
  close_span(out, error, t.error);
}

void append_routing_span(JsonText& out, const OtlpTrace& t, const OtlpAttempt& c) {
  open_span(out, t, std::string_view(c.route_span.data(), 16), std::string_view(t.span_id.data(), 16), "route", "",
            kKindInternal, c.route_start, c.route_end);
  {
    Attributes a(out);
    a.str_if("gen_ai.request.model", c.model);
    a.str_if("vllm_router.policy", c.policy);
    if (c.routed) {
      a.integer("vllm_router.candidates", static_cast<std::int64_t>(c.candidates));
      a.str("vllm_router.endpoint", c.endpoint_id);
      a.boolean("vllm_router.panic", c.panic);
      if (c.prefix_match >= 0) a.integer("vllm_router.prefix_match_chars", c.prefix_match);
    }
    if (c.route_end > c.route_start && c.routed) a.milliseconds("vllm_router.queue_wait_ms", c.route_end - c.route_start);
  }
  close_span(out, !c.routed, c.error);
}

void append_attempt_span(JsonText& out, const OtlpTrace& t, const OtlpAttempt& c, std::size_t index, bool last) {
  const std::string_view operation = operation_of(t.path);
  // GenAI: "{gen_ai.operation.name} {gen_ai.request.model}"; else HTTP's "{method}".
  open_span(out, t, std::string_view(c.span.data(), 16), std::string_view(t.span_id.data(), 16),
            operation.empty() ? std::string_view(t.method) : operation, operation.empty() ? std::string_view() : c.model,
            kKindClient, c.start, c.end);
  const bool failed = c.outcome != OutcomeKind::success || c.status >= 400;
  {
    Attributes a(out);
    a.str("http.request.method", t.method);
    a.str("server.address", c.host);
    a.integer("server.port", c.port);
    a.str("url.full", c.endpoint_id, t.path);
    if (c.status > 0) a.integer("http.response.status_code", c.status);
    gen_ai_common(a, operation);
    a.str_if("gen_ai.request.model", c.model);
    if (last && !failed && t.usage.total() > 0) {
      a.integer("gen_ai.usage.input_tokens", static_cast<std::int64_t>(t.usage.prompt));
      a.integer("gen_ai.usage.output_tokens", static_cast<std::int64_t>(t.usage.completion));
    }
    a.str("vllm_router.endpoint", c.endpoint_id);
    a.integer("vllm_router.attempt", static_cast<std::int64_t>(index));
    a.plain("vllm_router.outcome", to_string(c.outcome));
    if (c.retried) a.plain("vllm_router.retry_reason", to_string(c.retry_reason));
    if (c.outcome != OutcomeKind::success) {
      a.plain("error.type", to_string(c.outcome));
    } else if (c.status >= 400) {
      char buf[8];
      const auto r = std::to_chars(buf, buf + sizeof buf, c.status);
      a.str("error.type", std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
    }
  }
  std::string message = c.error;
  if (failed && message.empty()) message = "HTTP " + std::to_string(c.status);
  close_span(out, failed, message);
}

}  // namespace

std::size_t OtlpTrace::span_count() const noexcept {
  std::size_t n = 1;
  for (const OtlpAttempt& c : children) n += c.routed ? 2 : 1;
  return n;
}

OtlpTrace capture_trace(const ExchangeSummary& s) {
  OtlpTrace t;
  std::copy_n(s.trace_id.data(), std::min<std::size_t>(32, s.trace_id.size()), t.trace_id.begin());
  std::copy_n(s.span_id.data(), std::min<std::size_t>(16, s.span_id.size()), t.span_id.begin());
  if (s.parent_span_id.size() == 16) {
    std::copy_n(s.parent_span_id.data(), 16, t.parent_id.begin());
    t.has_parent = true;
  }
  t.trace_state.assign(s.trace_state);
  t.method.assign(s.method);
  t.path.assign(s.path);
  t.request_id.assign(s.request_id);
  t.client_address.assign(s.client_address);
  t.requested_model.assign(s.requested_model);
  t.model.assign(s.model);
  t.key_id.assign(s.key_id);
  t.error.assign(s.error);
  t.start = s.start_unix_ns;
  t.end = s.start_unix_ns + s.duration.count();
  t.status = s.status;
  t.outcome = s.end;
  t.attempts = s.attempts;
  t.usage = s.usage;
  t.stream = s.stream;
  t.bytes = s.bytes;
  t.bytes_in = s.bytes_in;
  t.queue_wait = s.queue_wait.count();
  t.ttft = s.ttft.count();
  t.children.reserve(s.trace_attempts.size());
  for (const AttemptTrace& a : s.trace_attempts) {
    OtlpAttempt& c = t.children.emplace_back();
    std::copy_n(a.route_span_id.data(), std::min<std::size_t>(16, a.route_span_id.size()), c.route_span.begin());
    c.routed = a.endpoint != nullptr && a.span_id.size() == 16;
    if (c.routed) {
      std::copy_n(a.span_id.data(), 16, c.span.begin());
      c.endpoint_id = a.endpoint->id;
      c.host = a.endpoint->url.host;
      c.port = a.endpoint->url.port;
    }
    c.model.assign(a.model);
    c.policy.assign(a.policy);
    c.error.assign(a.error);
    c.candidates = a.candidates;
    c.panic = a.panic;
    c.prefix_match = a.prefix_match;
    c.route_start = s.start_unix_ns + a.route_start.count();
    c.route_end = s.start_unix_ns + a.route_end.count();
    c.start = s.start_unix_ns + a.start.count();
    c.end = s.start_unix_ns + a.end.count();
    c.outcome = a.outcome;
    c.status = a.status;
    c.retried = a.retried;
    c.retry_reason = a.retry_reason;
  }
  return t;
}

void append_spans_json(JsonText& out, const OtlpTrace& t, bool first) {
  if (!first) out.ch(',');
  append_request_span(out, t);
  std::size_t routed = 0;
  for (std::size_t i = 0; i < t.children.size(); ++i) {
    const OtlpAttempt& c = t.children[i];
    out.ch(',');
    append_routing_span(out, t, c);
    if (!c.routed) continue;
    out.ch(',');
    append_attempt_span(out, t, c, ++routed, i + 1 == t.children.size());
  }
}

void otlp_request_open(JsonText& out, std::string_view service_name) {
  out.lit("{\"resourceSpans\":[{\"resource\":{");
  {
    Attributes a(out);
    a.str("service.name", service_name);
    a.str("telemetry.sdk.name", "vllm-router");
    a.str("telemetry.sdk.language", "cpp");
    a.str("telemetry.sdk.version", version());
  }
  out.lit("},\"scopeSpans\":[{\"scope\":{\"name\":\"vllm-router\",\"version\":");
  out.string(version());
  out.lit("},\"spans\":[");
}

void otlp_request_close(JsonText& out) { out.lit("]}]}]}"); }

std::string otlp_request_json(std::string_view service_name, std::string_view spans_json) {
  JsonText out;
  otlp_request_open(out, service_name);
  out.raw(spans_json);
  otlp_request_close(out);
  return std::string(out.view());
}

void append_json_utf8(std::string& text, std::string_view s) {
  JsonText out;
  out.string(s);
  text += out.view();
}

}  // namespace vllm_router::detail
