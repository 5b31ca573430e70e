// OTLP/HTTP protobuf encoding of a traced exchange's spans (opentelemetry-proto:
// collector/trace/v1 ExportTraceServiceRequest, trace/v1 Span, common/v1 KeyValue/AnyValue), with
// OpenTelemetry HTTP and GenAI semantic-convention attribute names. Field numbers are the .proto
// files' (they never change: protobuf's compatibility rule).
#include "otlp_proto.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>

#include "json_writer.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/version.h"

namespace vllm_router::detail {
namespace {

// Field numbers.
namespace request {  // ExportTraceServiceRequest / ResourceSpans / ScopeSpans / InstrumentationScope / Resource
constexpr std::uint32_t kResourceSpans = 1;
constexpr std::uint32_t kResource = 1, kScopeSpans = 2;
constexpr std::uint32_t kScope = 1, kSpans = 2;
constexpr std::uint32_t kScopeName = 1, kScopeVersion = 2;
constexpr std::uint32_t kResourceAttributes = 1;
}  // namespace request
namespace span {
constexpr std::uint32_t kTraceId = 1, kSpanId = 2, kTraceState = 3, kParentSpanId = 4, kName = 5, kKind = 6,
                        kStart = 7, kEnd = 8, kAttributes = 9, kStatus = 15, kFlags = 16;
constexpr std::uint32_t kStatusMessage = 2, kStatusCode = 3;
constexpr int kKindInternal = 1, kKindServer = 2, kKindClient = 3;
constexpr int kStatusError = 2;
// SpanFlags: the W3C trace flags (sampled) and whether the parent is remote.
constexpr std::uint32_t kSampled = 0x01, kHasIsRemote = 0x100, kIsRemote = 0x200;
}  // namespace span
namespace kv {  // KeyValue / AnyValue
constexpr std::uint32_t kKey = 1, kValue = 2;
constexpr std::uint32_t kString = 1, kBool = 2, kInt = 3, kDouble = 4;
}  // namespace kv

// gen_ai.operation.name of an OpenAI-compatible path; empty when it names none.
std::string_view operation_of(std::string_view path) {
  if (path == "/v1/chat/completions") return "chat";
  if (path == "/v1/completions") return "text_completion";
  if (path == "/v1/embeddings") return "embeddings";
  return {};
}

// Whether every byte is ASCII (eight at a time; the last word overlaps the one before).
bool is_ascii(std::string_view v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size();
  std::uint64_t high = 0;
  if (n >= 8) {
    std::uint64_t w;
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
      std::memcpy(&w, p + i, 8);
      high |= w;
    }
    std::memcpy(&w, p + n - 8, 8);
    high |= w;
  } else if (n >= 4) {  // two overlapping words
    std::uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    high = a | b;
  } else {
    for (std::size_t i = 0; i < n; ++i) high |= p[i];
  }
  return (high & 0x8080808080808080ull) == 0;
}


}  // namespace

void ProtoWriter::close(std::size_t mark, std::size_t reserve) {
  const std::size_t len = size_ - mark - reserve;
  const std::size_t n = varint_size(len);
  if (n != reserve) {  // the length takes more (or fewer) bytes than reserved: move the message
    room(n);
    std::memmove(data_.get() + mark + n, data_.get() + mark + reserve, len);
    size_ = size_ + n - reserve;
  }
  char* p = data_.get() + mark;
  std::size_t v = len;
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p = static_cast<char>(v);
}

void ProtoWriter::utf8(std::string_view v, std::size_t limit) {
  if (v.size() <= limit && is_ascii(v)) return raw(v);
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  std::size_t written = 0;
  for (std::size_t i = 0; i < v.size();) {
    if (p[i] < 0x80) {
      if (written + 1 > limit) break;
      raw(v.substr(i, 1));
      ++written;
      ++i;
    } else if (const std::size_t len = utf8_length(p + i, v.size() - i); len != 0) {
      if (written + len > limit) break;
      raw(v.substr(i, len));
      written += len;
      i += len;
    } else {
      if (written + 3 > limit) break;
      raw("\xEF\xBF\xBD");  // U+FFFD for the lead byte; resynchronise at the next one
      written += 3;
      ++i;
    }
  }
}

void ProtoWriter::string_field(std::uint32_t field, std::string_view v, std::size_t limit) {
  if (v.size() <= limit && is_ascii(v)) return bytes_field(field, v);
  const std::size_t mark = open(field);
  utf8(v, limit);
  close(mark);
}

namespace {

// Lowercase hex digits (a multiple of 16 of them) to bytes.
void hex_to_bytes(std::string_view hex, char* out) noexcept {
  // Eight digits at a time: each digit's value is its low nibble, plus 9 for a letter (bit 6).
  for (std::size_t i = 0; i + 16 <= hex.size(); i += 16, out += 8) {
    std::uint64_t w[2];
    std::memcpy(w, hex.data() + i, 16);
    for (int k = 0; k < 2; ++k) {
      std::uint64_t v = (w[k] & 0x0F0F0F0F0F0F0F0Full) + 9 * ((w[k] >> 6) & 0x0101010101010101ull);
      // digits d0 d1 d2 ... (d0 first in memory: the low byte) -> bytes (d0 << 4 | d1) ...
      v = ((v & 0x00FF00FF00FF00FFull) << 4) | ((v >> 8) & 0x00FF00FF00FF00FFull);
      v = (v | (v >> 8)) & 0x0000FFFF0000FFFFull;
      v = (v | (v >> 16)) & 0x00000000FFFFFFFFull;
      const auto four = static_cast<std::uint32_t>(v);
      std::memcpy(out + 4 * k, &four, 4);
    }
  }
}

// Eight bytes of an id, big-endian (the first hex digits first).
void put_id(char* out, std::uint64_t bits) noexcept {
  if constexpr (std::endian::native == std::endian::little) bits = __builtin_bswap64(bits);
  std::memcpy(out, &bits, 8);
}

// A span id: `bits` (the number) when given, else its hex digits parsed.
void id_bytes(std::uint64_t bits, std::string_view hex, char* out) noexcept {
  if (bits != 0) {
    put_id(out, bits);
  } else {
    hex_to_bytes(hex.substr(0, 16), out);
  }
}

// The attributes of one message: repeated KeyValue in field `field`. Keys are the router's
// literals; each KeyValue's lengths are computed up front (values of a known size), so only a
// string that needs repair is written through open/close.
class Attributes {
 public:
  explicit Attributes(ProtoWriter& out, std::uint32_t field = span::kAttributes) : out_(out), field_(field) {}

  /// A value from anywhere (checked as UTF-8, cut at kMaxString bytes).
  template <std::size_t N>
  void str(const char (&key)[N], std::string_view value) {
    if (value.size() <= kMaxString && is_ascii(value)) return plain(key, value);
    const std::size_t kv = out_.open(field_, 2);
    write_key(key);
    const std::size_t v = out_.open(kv::kValue, 2);
    out_.string_field(kv::kString, value);
    out_.close(v, 2);
    out_.close(kv, 2);
  }
  /// `a` then `b` as one string value (each checked and cut like str's).
  template <std::size_t N>
  void str(const char (&key)[N], std::string_view a, std::string_view b) {
    if (a.size() <= kMaxString && b.size() <= kMaxString && is_ascii(a) && is_ascii(b)) {
      const std::size_t len = a.size() + b.size();
      const std::size_t any = 1 + varint_size(len) + len;
      char* p = head(key, any, any);
      *p++ = static_cast<char>((kv::kString << 3) | ProtoWriter::kLen);
      p = put_varint(p, len);
      if (!a.empty()) std::memcpy(p, a.data(), a.size());
      p += a.size();
      if (!b.empty()) std::memcpy(p, b.data(), b.size());
      out_.commit(p + b.size());
      return;
    }
    const std::size_t kv = out_.open(field_, 2);
    write_key(key);
    const std::size_t v = out_.open(kv::kValue, 2);
    const std::size_t s = out_.open(kv::kString, 2);
    out_.utf8(a, kMaxString);
    out_.utf8(b, kMaxString);
    out_.close(s, 2);
    out_.close(v, 2);
    out_.close(kv, 2);
  }
  /// A value known to be valid UTF-8 and at most kMaxString bytes (the router's own text).
  template <std::size_t N>
  void plain(const char (&key)[N], std::string_view value) {
    const std::size_t len = value.size();
    const std::size_t any = 1 + varint_size(len) + len;  // AnyValue{string_value}
    char* p = head(key, any, any);
    *p++ = static_cast<char>((kv::kString << 3) | ProtoWriter::kLen);
    p = put_varint(p, len);
    if (len != 0) std::memcpy(p, value.data(), len);
    out_.commit(p + len);
  }
  template <std::size_t N>
  void str_if(const char (&key)[N], std::string_view value) {
    if (!value.empty()) str(key, value);
  }
  template <std::size_t N>
  void integer(const char (&key)[N], std::int64_t value) {
    const auto u = static_cast<std::uint64_t>(value);
    const std::size_t any = 1 + varint_size(u);
    char* p = head(key, any, any);
    *p++ = static_cast<char>((kv::kInt << 3) | ProtoWriter::kVarint);
    out_.commit(put_varint(p, u));
  }
  template <std::size_t N>
  void boolean(const char (&key)[N], bool value) {
    char* p = head(key, 2, 2);
    p[0] = static_cast<char>((kv::kBool << 3) | ProtoWriter::kVarint);
    p[1] = value ? 1 : 0;  // a oneof member: written even when false
    out_.commit(p + 2);
  }
  /// Nanoseconds as a double of milliseconds.
  template <std::size_t N>
  void milliseconds(const char (&key)[N], std::int64_t ns) {
    char* p = head(key, 9, 9);
    *p++ = static_cast<char>((kv::kDouble << 3) | ProtoWriter::kFixed64);
    ProtoWriter::put_fixed(p, std::bit_cast<std::uint64_t>(static_cast<double>(ns < 0 ? 0 : ns) / 1e6));
    out_.commit(p + 8);
  }

 private:
  // KeyValue{key, value: AnyValue of `any` bytes} up to the AnyValue's content, with room for
  // `more` bytes after it; the caller writes the AnyValue's content and commits.
  template <std::size_t N>
  char* head(const char (&key)[N], std::size_t any, std::size_t more) {
    static_assert(N - 1 < 0x80 && N + 1 < 0x80, "a key's field fits a one-byte length");
    const std::size_t kv = (N + 1) + 1 + varint_size(any) + any;
    char* p = out_.begin(1 + 10 + (N + 1) + 1 + 10 + more);
    *p++ = static_cast<char>((field_ << 3) | ProtoWriter::kLen);  // fields 1 and 9: one byte
    p = put_varint(p, kv);
    p[0] = static_cast<char>((kv::kKey << 3) | ProtoWriter::kLen);
    p[1] = static_cast<char>(N - 1);
    std::memcpy(p + 2, key, N - 1);  // a constant size: inlined
    p += N + 1;
    *p++ = static_cast<char>((kv::kValue << 3) | ProtoWriter::kLen);
    return put_varint(p, any);
  }
  template <std::size_t N>
  void write_key(const char (&key)[N]) {
    char* p = out_.extend(N + 1);  // tag, length, the key
    p[0] = static_cast<char>((kv::kKey << 3) | ProtoWriter::kLen);
    p[1] = static_cast<char>(N - 1);
    std::memcpy(p + 2, key, N - 1);
  }
  ProtoWriter& out_;
  std::uint32_t field_;
};

// A run of attributes that depends only on a few strings and one number (a route's method,
// path, models, endpoint): encoded once per thread and copied while they stay the same, as they
// do from one request to the next. The inputs are compared by content, so a copy is the bytes a
// fresh encoding would write. Inputs above kMaxKey bytes in all are encoded every time (the
// memo's memory stays bounded whatever clients send).
template <std::size_t N>
class AttributeMemo {
 public:
  static constexpr std::size_t kMaxKey = 1024;
  using Parts = std::array<std::string_view, N>;

  /// Appends the attributes for `parts` and `number` to `out`: the stored bytes when they match,
  /// else what `encode(Attributes&)` writes (kept for the next call).
  template <typename Encode>
  void write(ProtoWriter& out, const Parts& parts, std::int64_t number, Encode encode) {
    if (matches(parts, number)) return out.raw(block_);
    const std::size_t from = out.size();
    {
      Attributes a(out);
      encode(a);
    }
    std::size_t total = 0;
    for (std::string_view p : parts) total += p.size();
    if (total > kMaxKey) return;  // not kept
    block_.assign(out.view().substr(from));
    key_.clear();
    for (std::size_t i = 0; i < N; ++i) {
      key_.append(parts[i]);
      sizes_[i] = parts[i].size();
    }
    number_ = number;
    valid_ = true;
  }

 private:
  bool matches(const Parts& parts, std::int64_t number) const noexcept {
    if (!valid_ || number != number_) return false;
    const char* k = key_.data();
    for (std::size_t i = 0; i < N; ++i) {
      const std::size_t n = parts[i].size();
      if (n != sizes_[i] || (n != 0 && std::memcmp(k, parts[i].data(), n) != 0)) return false;
      k += n;
    }
    return true;
  }
  bool valid_ = false;
  std::int64_t number_ = 0;
  std::array<std::size_t, N> sizes_{};
  std::string key_;    // the parts, one after another
  std::string block_;  // their attributes, encoded
};

// The memos of one thread's spans.
struct SpanMemos {
  AttributeMemo<4> request;  // method, path, requested model, model (+ whether the path is a route)
  AttributeMemo<2> route;    // policy, endpoint (+ candidates)
  AttributeMemo<5> attempt;  // method, host, endpoint, path, model (+ port)
};

// A span's ids in binary (OTLP's `bytes`), each converted once per exchange.
struct Ids {
  char trace[16];
  char parent[8];  // the client's span (has_parent)
  char request[8];  // the request's span
  bool has_parent = false;
  std::string_view trace_id() const { return {trace, 16}; }
  std::string_view request_id() const { return {request, 8}; }
};

// The ids and times of a span, opened in ScopeSpans' `spans`; the caller writes the
// attributes, then close_span(). `name` and `name2` are joined by a space.
std::size_t open_span(ProtoWriter& out, const ExchangeSummary& s, const Ids& ids, std::string_view id,
                      std::string_view parent, bool remote_parent, std::string_view name, std::string_view name2,
                      int kind, std::int64_t start, std::int64_t end) {
  const std::size_t mark = out.open(request::kSpans, 2);  // a span: 128 bytes .. 16 KiB
  {
    // ids, kind, times and flags: 70 bytes at most, written at once
    char* p = out.begin(80);
    *p++ = static_cast<char>((span::kTraceId << 3) | ProtoWriter::kLen);
    *p++ = 16;
    std::memcpy(p, ids.trace, 16);
    p += 16;
    *p++ = static_cast<char>((span::kSpanId << 3) | ProtoWriter::kLen);
    *p++ = 8;
    std::memcpy(p, id.data(), 8);
    p += 8;
    if (parent.size() == 8) {
      *p++ = static_cast<char>((span::kParentSpanId << 3) | ProtoWriter::kLen);
      *p++ = 8;
      std::memcpy(p, parent.data(), 8);
      p += 8;
    }
    *p++ = static_cast<char>((span::kKind << 3) | ProtoWriter::kVarint);
    *p++ = static_cast<char>(kind);  // 1..3
    *p++ = static_cast<char>((span::kStart << 3) | ProtoWriter::kFixed64);
    ProtoWriter::put_fixed(p, static_cast<std::uint64_t>(start));
    p += 8;
    *p++ = static_cast<char>((span::kEnd << 3) | ProtoWriter::kFixed64);
    ProtoWriter::put_fixed(p, static_cast<std::uint64_t>(end < start ? start : end));
    p += 8;
    std::uint32_t flags = span::kSampled | span::kHasIsRemote;
    if (remote_parent) flags |= span::kIsRemote;
    // field 16: a two-byte tag
    *p++ = static_cast<char>(((span::kFlags << 3) | ProtoWriter::kFixed32) | 0x80);
    *p++ = static_cast<char>(((span::kFlags << 3) | ProtoWriter::kFixed32) >> 7);
    ProtoWriter::put_fixed(p, flags);
    out.commit(p + 4);
  }
  if (!s.trace_state.empty()) out.string_field(span::kTraceState, s.trace_state);
  const bool space = !name.empty() && !name2.empty();
  if (name.size() + name2.size() < 120 && is_ascii(name) && is_ascii(name2)) {  // the usual: lengths known
    const std::size_t len = name.size() + (space ? 1 : 0) + name2.size();
    char* p = out.begin(2 + len);
    *p++ = static_cast<char>((span::kName << 3) | ProtoWriter::kLen);
    *p++ = static_cast<char>(len);
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    if (space) *p++ = ' ';
    if (!name2.empty()) std::memcpy(p, name2.data(), name2.size());
    out.commit(p + name2.size());
    return mark;
  }
  const std::size_t n = out.open(span::kName);
  out.utf8(name);
  if (space) out.raw(" ");
  out.utf8(name2);
  out.close(n);
  return mark;
}

// The status (only an error's: an unset status is the default) and the span's end.
void close_span(ProtoWriter& out, std::size_t mark, bool error, std::string_view message) {
  if (error) {
    const std::size_t st = out.open(span::kStatus);
    if (!message.empty()) out.string_field(span::kStatusMessage, message);
    out.varint_field(span::kStatusCode, span::kStatusError);
    out.close(st);
  }
  out.close(mark, 2);
}

// The GenAI inference attributes: on the CLIENT span, the call to the engine (the SERVER span
// is the router's own HTTP request).
void gen_ai_common(Attributes& a, std::string_view operation) {
  a.plain("gen_ai.provider.name", "vllm");
  if (!operation.empty()) a.plain("gen_ai.operation.name", operation);
}

// The request's token usage: on the span of the attempt that answered (the GenAI span, where the
// conventions place it), or on the request span when no attempt span exists. Never both: tools
// that add up `gen_ai.usage.*` over a trace's spans would count it twice.
void usage_attributes(Attributes& a, const TokenUsage& u) {
  a.integer("gen_ai.usage.input_tokens", static_cast<std::int64_t>(u.prompt));
  a.integer("gen_ai.usage.output_tokens", static_cast<std::int64_t>(u.completion));
  if (u.estimated) a.boolean("vllm_router.usage.estimated", true);
}

// `usage`: whether this span carries the usage (no attempt span does).
void request_span(ProtoWriter& out, const ExchangeSummary& s, const Ids& ids, bool usage, AttributeMemo<4>& memo) {
  const bool routed_path = !(s.end == ExchangeEnd::rejected && s.status == 404);
  const std::int64_t start = s.start_unix_ns;
  // "{method} {http.route}"; an unknown path is not a name (its cardinality is the client's).
  const std::size_t mark = open_span(out, s, ids, ids.request_id(),
                                     ids.has_parent ? std::string_view(ids.parent, 8) : std::string_view(),
                                     ids.has_parent, s.method,
                                     routed_path ? s.path : std::string_view(), span::kKindServer, start,
                                     start + s.duration.count());
  {
    memo.write(out, {s.method, s.path, s.requested_model, s.model}, routed_path ? 1 : 0, [&](Attributes& a) {
      a.str("http.request.method", s.method);
      a.str("url.path", s.path);
      if (routed_path) a.str("http.route", s.path);
      a.str_if("gen_ai.request.model", s.requested_model);
      a.str_if("gen_ai.response.model", s.model);
    });
    Attributes a(out);
    if (s.status > 0) a.integer("http.response.status_code", s.status);
    a.str_if("client.address", s.client_address);
    if (usage && s.usage.total() > 0) usage_attributes(a, s.usage);
    a.str_if("vllm_router.request_id", s.request_id);
    a.str_if("vllm_router.key_id", s.key_id);
    // Facts a reader gets from the span itself are left out (the cost is per request): the
    // outcome when ok (error.type names any other), attempts when one (the child spans count).
    if (s.attempts > 1) a.integer("vllm_router.attempts", s.attempts);
    if (s.stream) a.boolean("vllm_router.stream", true);
    if (s.queue_wait.count() > 0) a.milliseconds("vllm_router.queue_wait_ms", s.queue_wait.count());
    if (s.ttft.count() > 0) a.milliseconds("vllm_router.time_to_first_byte_ms", s.ttft.count());
    if (s.end != ExchangeEnd::ok) a.plain("error.type", to_string(s.end));
  }
  // Server spans: 5xx and answers that broke are errors; a 4xx is the client's (unset).
  const bool error = s.status >= 500 || s.end == ExchangeEnd::upstream_error || s.end == ExchangeEnd::timeout;
  close_span(out, mark, error, s.error);
}

void routing_span(ProtoWriter& out, const ExchangeSummary& s, const Ids& ids, const AttemptTrace& c,
                  AttributeMemo<2>& memo) {
  const bool routed = c.endpoint != nullptr && c.span_id.size() == 16;
  const std::int64_t base = s.start_unix_ns;
  char id[8]{};
  id_bytes(c.route_span_bits, c.route_span_id, id);
  const std::size_t mark = open_span(out, s, ids, std::string_view(id, 8), ids.request_id(), false, "route", "",
                                     span::kKindInternal,
                                     base + c.route_start.count(), base + c.route_end.count());
  {
    if (routed) {
      memo.write(out, {c.policy, c.endpoint->id}, static_cast<std::int64_t>(c.candidates), [&](Attributes& a) {
        a.str_if("vllm_router.policy", c.policy);
        a.integer("vllm_router.candidates", static_cast<std::int64_t>(c.candidates));
        a.str("vllm_router.endpoint", c.endpoint->id);
      });
    }
    Attributes a(out);
    if (!routed) {
      a.str_if("gen_ai.request.model", c.model);  // else the attempt span has it
      a.str_if("vllm_router.policy", c.policy);
    } else {
      if (c.panic) a.boolean("vllm_router.panic", true);
      if (c.prefix_match >= 0) a.integer("vllm_router.prefix_match_chars", c.prefix_match);
      // A wait for capacity is the span's own duration (the request span has queue_wait_ms).
    }
  }
  close_span(out, mark, !routed, c.error);
}

// `index`: the attempt's number (1, 2, ...), written when the request made several (0: one).
void attempt_span(ProtoWriter& out, const ExchangeSummary& s, const Ids& ids, const AttemptTrace& c, std::size_t index,
                  bool last, AttributeMemo<5>& memo) {
  const std::string_view operation = operation_of(s.path);
  const std::int64_t base = s.start_unix_ns;
  // GenAI: "{gen_ai.operation.name} {gen_ai.request.model}"; else HTTP's "{method}".
  char id[8]{};
  id_bytes(c.span_bits, c.span_id, id);
  const std::size_t mark =
      open_span(out, s, ids, std::string_view(id, 8), ids.request_id(), false, operation.empty() ? s.method : operation,
                operation.empty() ? std::string_view() : c.model, span::kKindClient, base + c.start.count(),
                base + c.end.count());
  const bool failed = c.outcome != OutcomeKind::success || c.status >= 400;
  char status[8];
  const auto status_end = std::to_chars(status, status + sizeof status, c.status).ptr;
  {
    const Endpoint& e = *c.endpoint;
    memo.write(out, {s.method, e.url.host, e.id, s.path, c.model}, e.url.port, [&](Attributes& a) {
      a.str("http.request.method", s.method);
      a.str("server.address", e.url.host);
      a.integer("server.port", e.url.port);
      a.str("url.full", e.id, s.path);
      gen_ai_common(a, operation);
      a.str_if("gen_ai.request.model", c.model);
    });
    Attributes a(out);
    if (c.status > 0) a.integer("http.response.status_code", c.status);
    if (last && s.usage.total() > 0) usage_attributes(a, s.usage);  // retries come before any answer
    if (index != 0) a.integer("vllm_router.attempt", static_cast<std::int64_t>(index));
    if (!c.leg.empty()) a.plain("vllm_router.leg", c.leg);
    if (c.retried) a.plain("vllm_router.retry_reason", to_string(c.retry_reason));
    if (c.outcome != OutcomeKind::success) {
      a.plain("error.type", to_string(c.outcome));
    } else if (c.status >= 400) {
      a.plain("error.type", std::string_view(status, static_cast<std::size_t>(status_end - status)));
    }
  }
  if (failed && c.error.empty()) {
    char message[16] = "HTTP ";
    const auto end = std::to_chars(message + 5, message + sizeof message, c.status).ptr;
    close_span(out, mark, true, std::string_view(message, static_cast<std::size_t>(end - message)));
  } else {
    close_span(out, mark, failed, c.error);
  }
}

}  // namespace

std::size_t append_spans(ProtoWriter& out, const ExchangeSummary& s) {
  Ids ids;
  if (s.trace_id_high != 0 || s.trace_id_low != 0) {
    put_id(ids.trace, s.trace_id_high);
    put_id(ids.trace + 8, s.trace_id_low);
  } else {
    hex_to_bytes(s.trace_id.substr(0, 32), ids.trace);
  }
  id_bytes(s.span_id_bits, s.span_id, ids.request);
  ids.has_parent = s.parent_span_id.size() == 16;
  if (ids.has_parent) id_bytes(s.parent_span_id_bits, s.parent_span_id, ids.parent);
  thread_local SpanMemos memos;
  SpanMemos& m = memos;
  const auto sent = [](const AttemptTrace& c) { return c.endpoint != nullptr && c.span_id.size() == 16; };
  request_span(out, s, ids, s.trace_attempts.empty() || !sent(s.trace_attempts.back()), m.request);
  const bool numbered = std::count_if(s.trace_attempts.begin(), s.trace_attempts.end(), sent) > 1;
  std::size_t spans = 1, routed = 0;
  for (std::size_t i = 0; i < s.trace_attempts.size(); ++i) {
    const AttemptTrace& c = s.trace_attempts[i];
    routing_span(out, s, ids, c, m.route);
    ++spans;
    if (!sent(c)) continue;
    ++routed;
    attempt_span(out, s, ids, c, numbered ? routed : 0, i + 1 == s.trace_attempts.size(), m.attempt);
    ++spans;
  }
  return spans;
}

OtlpHeader::OtlpHeader(std::string_view service_name) {
  ProtoWriter w;
  {
    Attributes a(w, request::kResourceAttributes);
    a.str("service.name", service_name);
    a.plain("telemetry.sdk.name", "vllm-router");
    a.plain("telemetry.sdk.language", "cpp");
    a.str("telemetry.sdk.version", version());
  }
  resource_.assign(w.view());
  w.clear();
  w.bytes_field(request::kScopeName, "vllm-router");
  w.string_field(request::kScopeVersion, version());
  scope_.assign(w.view());
}

std::size_t OtlpHeader::max_size() const noexcept {
  // three tags of one byte, three lengths of at most 10, the resource and the scope
  return 3 + 30 + resource_.size() + scope_.size();
}

std::size_t OtlpHeader::write_before(char* spans, std::size_t spans_size) const {
  // ExportTraceServiceRequest{resource_spans: ResourceSpans{resource: R, scope_spans:
  // ScopeSpans{scope: S, spans...}}}: every length is known from the spans' size.
  const std::size_t scope_field = 1 + varint_size(scope_.size()) + scope_.size();
  const std::size_t ss = scope_field + spans_size;
  const std::size_t resource_field = 1 + varint_size(resource_.size()) + resource_.size();
  const std::size_t rs = resource_field + 1 + varint_size(ss) + ss;
  ProtoWriter w;
  w.tag(request::kResourceSpans, ProtoWriter::kLen);
  w.varint(rs);
  w.bytes_field(request::kResource, resource_);
  w.tag(request::kScopeSpans, ProtoWriter::kLen);
  w.varint(ss);
  w.bytes_field(request::kScope, scope_);
  std::memcpy(spans - w.size(), w.view().data(), w.size());
  return w.size();
}

void otlp_request(ProtoWriter& out, std::string_view service_name, std::string_view spans) {
  const OtlpHeader header(service_name);
  out.clear();
  out.extend(header.max_size());
  out.raw(spans);
  char* start = out.data() + header.max_size();
  const std::size_t n = header.write_before(start, spans.size());
  std::memmove(out.data(), start - n, n + spans.size());  // the request from the buffer's start
  out.commit(out.data() + n + spans.size());
}

}  // namespace vllm_router::detail
