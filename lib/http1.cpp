// Internal: HTTP/1.1 head parsing and chunked scanning (RFC 9112), strict and bounded.
#include "http1.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace vllm_router::detail {
namespace {

constexpr std::size_t kNpos = std::string_view::npos;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Byte classes, one table lookup per byte on the hot path.
enum : std::uint8_t {
  kToken = 1,      // tchar (RFC 9110 5.6.2): method, field names, trailer names
  kFieldChar = 2,  // field-vchar, SP, HTAB (RFC 9110 5.5): field values, reason phrase, chunk-ext
  kTargetChar = 4, // request-target bytes we pass on: 0x21-0xff except DEL (no URI grammar check)
};

constexpr std::array<std::uint8_t, 256> kClass = [] {
  std::array<std::uint8_t, 256> t{};
  constexpr std::string_view delimiters = "\"(),/:;<=>?@[\\]{}";
  for (int c = 0; c < 256; ++c) {
    std::uint8_t v = 0;
    const bool ctl = c < 0x20 || c == 0x7f;
    if (!ctl || c == '\t') v |= kFieldChar;
    if (c > 0x20 && c != 0x7f) v |= kTargetChar;
    if (c > 0x20 && c < 0x7f && delimiters.find(static_cast<char>(c)) == kNpos) v |= kToken;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}();

inline bool is(char c, std::uint8_t cls) noexcept {
  return (kClass[static_cast<unsigned char>(c)] & cls) != 0;
}

// Size of the head at the start of `buf` through its blank line; 0 while incomplete; kNpos when
// a line ends in a bare LF (RFC 9112 2.2 allows accepting those; a proxy must not: the classic
// smuggling lever). memchr per line, as fast as searching for "\r\n\r\n".
std::size_t scan_head(std::string_view buf) {
  const char* const base = buf.data();
  std::size_t line = 0;  // start of the current line
  for (;;) {
    const void* hit = std::memchr(base + line, '\n', buf.size() - line);
    if (hit == nullptr) return 0;
    const auto lf = static_cast<std::size_t>(static_cast<const char*>(hit) - base);
    if (lf == line || base[lf - 1] != '\r') return kNpos;
    if (lf == line + 1) return lf + 1;  // an empty line ends the head
    line = lf + 1;
  }
}

// Parses field lines in `block` (each ending in CRLF, no blank line). A bare CR, obs-fold,
// whitespace before the colon and control bytes in values are errors. Returns false on error.
bool parse_header_lines(std::string_view block, std::vector<HeaderView>& out, std::string& error,
                        const HeadLimits& limits) {
  out.clear();
  const char* p = block.data();
  const char* const end = p + block.size();
  while (p < end) {
    const char* const name = p;
    while (p < end && is(*p, kToken)) ++p;
    if (p == end || *p != ':' || p == name) {
      if (p < end && (*p == ' ' || *p == '\t')) {
        error = p == name ? "obsolete line folding in header" : "whitespace before colon in header";
      } else if (p < end && *p != ':') {
        error = "invalid character in header name";
      } else {
        error = "malformed header line";
      }
      return false;
    }
    const std::string_view name_view(name, static_cast<std::size_t>(p - name));
    ++p;
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    const char* const value = p;
    while (p < end && is(*p, kFieldChar)) ++p;
    // What stopped the value must be the line's CRLF.
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
      error = "invalid character in header value";
      return false;
    }
    const char* value_end = p;
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
    if (out.size() >= limits.max_headers) {
      error = "too many headers";
      return false;
    }
    out.push_back(HeaderView{name_view, std::string_view(value, static_cast<std::size_t>(value_end - value))});
    p += 2;
  }
  return true;
}

// Content-Length = 1*DIGIT (no sign, no list, no inner space), at most 2^64 - 1.
bool parse_length(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  std::uint64_t n = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10) return false;
    n = n * 10 + digit;
  }
  out = n;
  return true;
}

// Connection is a comma-separated token list (RFC 9110 7.6.1): whole tokens only, so
// `closed` or `x-keep-alive` mean nothing.
void connection_tokens(std::string_view v, bool& close, bool& keep_alive) {
  for (;;) {
    const auto comma = v.find(',');
    const std::string_view token = trim(v.substr(0, comma));
    if (iequals(token, "close")) close = true;
    if (iequals(token, "keep-alive")) keep_alive = true;
    if (comma == kNpos) return;
    v.remove_prefix(comma + 1);
  }
}

// Framing and connection facts common to requests and responses.
struct Framed {
  bool has_length = false;
  bool chunked = false;
  bool close = false;
  bool keep_alive = false;
  std::uint64_t length = 0;
};

// Reads Content-Length, Transfer-Encoding and Connection. `other` sees the remaining headers.
// Returns an error message, or nullptr.
template <typename Other>
const char* read_framing(const std::vector<HeaderView>& headers, bool http10, Framed& f, Other&& other) {
  for (const HeaderView& h : headers) {
    if (iequals(h.name, "content-length")) {
      // Identical repeats could be collapsed (RFC 9110 8.6); like nginx we refuse them.
      if (f.has_length) return "duplicate Content-Length";
      if (!parse_length(h.value, f.length)) return "invalid Content-Length";
      f.has_length = true;
    } else if (iequals(h.name, "transfer-encoding")) {
      if (f.chunked) return "duplicate Transfer-Encoding";
      // The only coding we frame; anything else (gzip, identity, lists) is not ours to guess.
      if (!iequals(h.value, "chunked")) return "unsupported Transfer-Encoding";
      f.chunked = true;
    } else if (iequals(h.name, "connection")) {
      connection_tokens(h.value, f.close, f.keep_alive);
    } else {
      other(h);
    }
  }
  if (f.chunked && f.has_length) return "both Content-Length and Transfer-Encoding";  // smuggling guard
  if (f.chunked && http10) return "Transfer-Encoding in an HTTP/1.0 message";        // RFC 9112 6.1
  return nullptr;
}

}  // namespace

Parse parse_request_head(std::string_view buf, RequestHead& out, std::string& error,
                         const HeadLimits& limits) {
  // Tolerate empty lines before a request (RFC 9112 2.2); they count against the head limit.
  std::size_t skip = 0;
  while (buf.size() >= skip + 2 && buf[skip] == '\r' && buf[skip + 1] == '\n') skip += 2;
  const std::size_t end = scan_head(buf.substr(skip));
  if (end == kNpos) {
    error = "bare LF in request head";
    return Parse::error;
  }
  if (end == 0 ? buf.size() > limits.max_head_bytes : skip + end > limits.max_head_bytes) {
    error = "request head too large";
    return Parse::error;
  }
  if (end == 0) return Parse::incomplete;
  const std::string_view head = buf.substr(skip, end - 2);  // keeps the last header's CRLF
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  // request-line = method SP request-target SP HTTP-version, single spaces.
  std::size_t i = 0;
  while (i < line.size() && is(line[i], kToken)) ++i;
  if (i == 0 || i == line.size() || line[i] != ' ') {
    error = "malformed request line";
    return Parse::error;
  }
  out.method = line.substr(0, i);
  const std::size_t target = ++i;
  while (i < line.size() && is(line[i], kTargetChar)) ++i;
  if (i == target || i == line.size() || line[i] != ' ') {
    error = i < line.size() && line[i] != ' ' ? "malformed request target" : "malformed request line";
    return Parse::error;
  }
  out.target = line.substr(target, i - target);
  const std::string_view version = line.substr(i + 1);
  if (version == "HTTP/1.1") {
    out.http10 = false;
  } else if (version == "HTTP/1.0") {
    out.http10 = true;
  } else {
    error = version.size() == 8 && version.substr(0, 5) == "HTTP/" ? "unsupported HTTP version"
                                                                   : "malformed request line";
    return Parse::error;
  }
  if (!parse_header_lines(head.substr(line_end + 2), out.headers, error, limits)) return Parse::error;
  bool expect_continue = false;
  Framed f;
  if (const char* why = read_framing(out.headers, out.http10, f, [&](const HeaderView& h) {
        if (iequals(h.name, "expect")) expect_continue = iequals(h.value, "100-continue");
      })) {
    error = why;
    return Parse::error;
  }
  out.framing = f.chunked ? Framing::chunked : f.has_length ? Framing::length : Framing::none;
  out.content_length = f.has_length ? f.length : 0;
  out.keep_alive = !f.close && (!out.http10 || f.keep_alive);
  out.expect_continue = expect_continue && !out.http10;  // RFC 9110 10.1.1: ignore it on 1.0
  out.size = skip + end;
  return Parse::ok;
}

Parse parse_response_head(std::string_view buf, ResponseHead& out, std::string& error,
                          const HeadLimits& limits) {
  const std::size_t end = scan_head(buf);
  if (end == kNpos) {
    error = "upstream sent a bare LF in its response head";
    return Parse::error;
  }
  if (end == 0 ? buf.size() > limits.max_head_bytes : end > limits.max_head_bytes) {
    error = "upstream response head too large";
    return Parse::error;
  }
  if (end == 0) return Parse::incomplete;
  const std::string_view head = buf.substr(0, end - 2);
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  // status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ]; the last SP may be missing.
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/") {
    error = "upstream sent no HTTP status line";
    return Parse::error;
  }
  if (line.substr(0, 8) != "HTTP/1.1" && line.substr(0, 8) != "HTTP/1.0") {
    error = "upstream sent an unsupported HTTP version";
    return Parse::error;
  }
  out.http10 = line[7] == '0';
  const auto digit = [&](std::size_t k) { return line[k] >= '0' && line[k] <= '9'; };
  if (line[8] != ' ' || !digit(9) || !digit(10) || !digit(11) || (line.size() > 12 && line[12] != ' ')) {
    error = "upstream sent a bad status code";
    return Parse::error;
  }
  out.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (out.status < 100 || out.status > 599) {
    error = "upstream sent a bad status code";
    return Parse::error;
  }
  for (std::size_t k = 13; k < line.size(); ++k) {
    if (!is(line[k], kFieldChar)) {
      error = "upstream sent a bad reason phrase";
      return Parse::error;
    }
  }
  if (!parse_header_lines(head.substr(line_end + 2), out.headers, error, limits)) {
    error = "upstream: " + error;
    return Parse::error;
  }
  Framed f;
  // RFC 9112 6.3 lets chunked win over Content-Length in a response; a proxy cannot trust the
  // connection afterwards, so both together are an error, as in requests.
  if (const char* why = read_framing(out.headers, out.http10, f, [](const HeaderView&) {})) {
    error = std::string("upstream sent ") + why;
    return Parse::error;
  }
  out.content_length = f.has_length ? f.length : 0;
  out.keep_alive = !f.close && (!out.http10 || f.keep_alive);
  if (out.status < 200 || out.status == 204 || out.status == 304) {
    out.framing = Framing::none;
  } else if (f.chunked) {
    out.framing = Framing::chunked;
  } else if (f.has_length) {
    out.framing = f.length == 0 ? Framing::none : Framing::length;
  } else {
    out.framing = Framing::close;
    out.keep_alive = false;
  }
  out.size = end;
  return Parse::ok;
}

std::size_t ChunkedScanner::feed(std::string_view data, std::string* payload) {
  return scan(data, payload, nullptr);
}

std::size_t ChunkedScanner::next(std::string_view data, std::string_view& segment) {
  segment = {};
  return scan(data, nullptr, &segment);
}

std::size_t ChunkedScanner::scan(std::string_view data, std::string* payload, std::string_view* segment) {
  if (state_ == State::failed) return std::string::npos;
  const auto fail = [this] {
    state_ = State::failed;
    return std::string::npos;
  };
  std::size_t i = 0;
  std::size_t taken = 0;  // chunk data in this call; the rest is overhead
  while (i < data.size() && state_ != State::done) {
    // Fast path: a whole "HEX\r\n" size line at the start of a line (what every sender writes);
    // anything else (extensions, whitespace, a line split across reads) takes the byte machine.
    if (state_ == State::size && line_ == 0 && !digits_) {
      std::uint64_t value = 0;
      std::size_t j = i;
      const std::size_t limit = std::min(data.size(), i + 16);  // 16 hex digits fit in 64 bits
      for (; j < limit; ++j) {
        const int digit = hex_digit(data[j]);
        if (digit < 0) break;
        value = (value << 4) | static_cast<std::uint64_t>(digit);
      }
      if (j > i && j + 1 < data.size() && data[j] == '\r' && data[j + 1] == '\n') {
        left_ = value;
        i = j + 2;
        state_ = value == 0 ? State::trailer : State::data;
        continue;
      }
    } else if (state_ == State::data_cr && i + 1 < data.size() && data[i] == '\r' && data[i + 1] == '\n') {
      i += 2;
      state_ = State::size;
      continue;
    }
    const char c = data[i];
    switch (state_) {
      case State::size: {
        const int digit = hex_digit(c);
        if (digit >= 0) {
          if (left_ > (UINT64_MAX >> 4)) return fail();
          left_ = (left_ << 4) | static_cast<std::uint64_t>(digit);
          digits_ = true;
        } else if (!digits_) {
          return fail();
        } else if (c == ';') {
          state_ = State::size_ext;
        } else if (c == ' ' || c == '\t') {
          state_ = State::size_ws;
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else {
          return fail();
        }
        if (++line_ > kMaxLine) return fail();
        ++i;
        break;
      }
      case State::size_ws:  // chunk-ext = *( BWS ";" ... ): whitespace only leads to `;`
        if (c == ';') state_ = State::size_ext;
        else if (c != ' ' && c != '\t') return fail();
        if (++line_ > kMaxLine) return fail();
        ++i;
        break;
      case State::size_ext:  // names, values, quoted strings: no control bytes, no bare LF
        if (c == '\r') state_ = State::size_lf;
        else if (!is(c, kFieldChar)) return fail();
        if (++line_ > kMaxLine) return fail();
        ++i;
        break;
      case State::size_lf:
        if (c != '\n') return fail();
        ++i;
        line_ = 0;
        digits_ = false;
        state_ = left_ == 0 ? State::trailer : State::data;
        break;
      case State::data: {
        // next(): one run of data per call; the framing after it (CRLF, the next size line) is
        // consumed in the same call when it is there, so a chunk costs one call.
        if (segment != nullptr && !segment->empty()) {
          overhead_ += i - taken;
          return i;
        }
        const std::size_t take =
            static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size() - i));
        if (payload != nullptr) payload->append(data.data() + i, take);
        if (segment != nullptr) *segment = data.substr(i, take);
        i += take;
        taken += take;
        left_ -= take;
        if (left_ == 0) state_ = State::data_cr;
        break;
      }
      case State::data_cr:
        if (c != '\r') return fail();
        ++i;
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::size;
        break;
      case State::trailer:  // a field line (no obs-fold, no empty name) or the final CRLF
      case State::trailer_name:
      case State::trailer_value:
      case State::trailer_lf:
      case State::end_lf:
        if (++trailers_ > kMaxTrailer) return fail();
        if (state_ == State::trailer) {
          if (c == '\r') state_ = State::end_lf;
          else if (is(c, kToken)) state_ = State::trailer_name;
          else return fail();
        } else if (state_ == State::trailer_name) {
          if (c == ':') state_ = State::trailer_value;
          else if (!is(c, kToken)) return fail();
        } else if (state_ == State::trailer_value) {
          if (c == '\r') state_ = State::trailer_lf;
          else if (!is(c, kFieldChar)) return fail();
        } else if (c != '\n') {
          return fail();
        } else {
          state_ = state_ == State::end_lf ? State::done : State::trailer;
          line_ = 0;
          ++i;
          break;
        }
        if (++line_ > kMaxLine) return fail();
        ++i;
        break;
      case State::done:
      case State::failed:
        break;
    }
  }
  overhead_ += i - taken;
  return i;
}

}  // namespace vllm_router::detail
