// Internal: HTTP/1.1 head parsing and chunked scanning (RFC 9112), strict and bounded.
#include "http1.h"

#include <charconv>

namespace vllm_router::detail {
namespace {

bool is_token_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 32 || u >= 127) return false;
  switch (c) {
    case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':': case '\\':
    case '"': case '/': case '[': case ']': case '?': case '=': case '{': case '}':
      return false;
    default:
      return true;
  }
}

// Parses header lines in `block` (each ending in CRLF, no blank line). Returns false on error.
bool parse_header_lines(std::string_view block, std::vector<HeaderView>& out, std::string& error,
                        const HeadLimits& limits) {
  out.clear();
  while (!block.empty()) {
    const auto eol = block.find("\r\n");
    if (eol == std::string_view::npos) {
      error = "malformed header line";
      return false;
    }
    const std::string_view line = block.substr(0, eol);
    block.remove_prefix(eol + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error = "malformed header line";
      return false;
    }
    const std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (!is_token_char(c)) {
        error = "invalid character in header name";
        return false;
      }
    }
    const std::string_view value = trim(line.substr(colon + 1));
    for (char c : value) {
      if (c == '\r' || c == '\n' || c == '\0') {
        error = "invalid character in header value";
        return false;
      }
    }
    if (out.size() >= limits.max_headers) {
      error = "too many headers";
      return false;
    }
    out.push_back(HeaderView{name, value});
  }
  return true;
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

}  // namespace

Parse parse_request_head(std::string_view buf, RequestHead& out, std::string& error,
                         const HeadLimits& limits) {
  // Tolerate empty lines before a request (RFC 9112 2.2).
  std::size_t skip = 0;
  while (buf.size() >= skip + 2 && buf[skip] == '\r' && buf[skip + 1] == '\n') skip += 2;
  const std::size_t end = head_end(buf.substr(skip));
  if (end == 0) {
    if (buf.size() > limits.max_head_bytes) {
      error = "request head too large";
      return Parse::error;
    }
    return Parse::incomplete;
  }
  if (end > limits.max_head_bytes) {
    error = "request head too large";
    return Parse::error;
  }
  const std::string_view head = buf.substr(skip, end - 2);  // keeps the last header's CRLF
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) {
    error = "malformed request line";
    return Parse::error;
  }
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    out.http10 = false;
  } else if (version == "HTTP/1.0") {
    out.http10 = true;
  } else {
    error = "unsupported HTTP version";
    return Parse::error;
  }
  for (char c : out.method) {
    if (!is_token_char(c)) {
      error = "malformed request line";
      return Parse::error;
    }
  }
  if (out.target.empty() || out.target.find_first_of(" \t\r\n") != std::string_view::npos) {
    error = "malformed request target";
    return Parse::error;
  }
  if (!parse_header_lines(head.substr(line_end + 2), out.headers, error, limits)) return Parse::error;
  out.framing = Framing::none;
  out.content_length = 0;
  out.keep_alive = !out.http10;
  out.expect_continue = false;
  bool has_length = false;
  for (const HeaderView& h : out.headers) {
    if (iequals(h.name, "content-length")) {
      std::uint64_t n = 0;
      if (!parse_u64(h.value, n) || (has_length && n != out.content_length)) {
        error = "invalid Content-Length";
        return Parse::error;
      }
      has_length = true;
      out.content_length = n;
    } else if (iequals(h.name, "transfer-encoding")) {
      if (!iequals(h.value, "chunked")) {
        error = "unsupported Transfer-Encoding";
        return Parse::error;
      }
      out.framing = Framing::chunked;
    } else if (iequals(h.name, "connection")) {
      if (icontains(h.value, "close")) out.keep_alive = false;
      if (icontains(h.value, "keep-alive")) out.keep_alive = true;
    } else if (iequals(h.name, "expect")) {
      out.expect_continue = iequals(h.value, "100-continue");
    }
  }
  if (out.framing == Framing::chunked && has_length) {
    error = "both Content-Length and Transfer-Encoding";  // request smuggling guard
    return Parse::error;
  }
  if (out.framing != Framing::chunked && has_length) out.framing = Framing::length;
  out.size = skip + end;
  return Parse::ok;
}

Parse parse_response_head(std::string_view buf, ResponseHead& out, std::string& error,
                          const HeadLimits& limits) {
  const std::size_t end = head_end(buf);
  if (end == 0) {
    if (buf.size() > limits.max_head_bytes) {
      error = "upstream response head too large";
      return Parse::error;
    }
    return Parse::incomplete;
  }
  const std::string_view head = buf.substr(0, end - 2);
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ') {
    error = "upstream sent no HTTP status line";
    return Parse::error;
  }
  out.http10 = line.substr(0, 8) == "HTTP/1.0";
  int code = 0;
  const std::string_view digits = line.substr(9, 3);
  if (std::from_chars(digits.data(), digits.data() + 3, code).ec != std::errc{} || code < 100) {
    error = "upstream sent a bad status code";
    return Parse::error;
  }
  out.status = code;
  if (!parse_header_lines(head.substr(line_end + 2), out.headers, error, limits)) {
    error = "upstream: " + error;
    return Parse::error;
  }
  bool chunked = false;
  bool has_length = false;
  out.keep_alive = !out.http10;
  for (const HeaderView& h : out.headers) {
    if (iequals(h.name, "content-length")) {
      if (!parse_u64(h.value, out.content_length)) {
        error = "upstream sent a bad Content-Length";
        return Parse::error;
      }
      has_length = true;
    } else if (iequals(h.name, "transfer-encoding")) {
      chunked = icontains(h.value, "chunked");
    } else if (iequals(h.name, "connection")) {
      if (icontains(h.value, "close")) out.keep_alive = false;
      if (icontains(h.value, "keep-alive")) out.keep_alive = true;
    }
  }
  if (out.status < 200 || out.status == 204 || out.status == 304) {
    out.framing = Framing::none;
  } else if (chunked) {
    out.framing = Framing::chunked;
  } else if (has_length) {
    out.framing = out.content_length == 0 ? Framing::none : Framing::length;
  } else {
    out.framing = Framing::close;
    out.keep_alive = false;
  }
  out.size = end;
  return Parse::ok;
}

std::size_t ChunkedScanner::feed(std::string_view data, std::string* payload) {
  constexpr std::size_t kMaxLine = 4096;
  std::size_t i = 0;
  while (i < data.size() && state_ != State::done) {
    const char c = data[i];
    switch (state_) {
      case State::size: {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit >= 0) {
          if (left_ > (UINT64_MAX >> 4)) return std::string::npos;
          left_ = (left_ << 4) | static_cast<std::uint64_t>(digit);
          digits_ = true;
        } else if (c == ';' || c == ' ' || c == '\t') {
          if (!digits_) return std::string::npos;
          state_ = State::size_ext;
        } else if (c == '\r') {
          if (!digits_) return std::string::npos;
          state_ = State::size_lf;
        } else {
          return std::string::npos;
        }
        if (++line_ > kMaxLine) return std::string::npos;
        ++i;
        break;
      }
      case State::size_ext:
        if (c == '\r') state_ = State::size_lf;
        if (++line_ > kMaxLine) return std::string::npos;
        ++i;
        break;
      case State::size_lf:
        if (c != '\n') return std::string::npos;
        ++i;
        line_ = 0;
        digits_ = false;
        if (left_ == 0) {
          state_ = State::trailer;
        } else {
          state_ = State::data;
        }
        break;
      case State::data: {
        const std::size_t take =
            static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size() - i));
        if (payload != nullptr) payload->append(data.data() + i, take);
        i += take;
        left_ -= take;
        if (left_ == 0) state_ = State::data_cr;
        break;
      }
      case State::data_cr:
        if (c != '\r') return std::string::npos;
        ++i;
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return std::string::npos;
        ++i;
        state_ = State::size;
        break;
      case State::trailer:  // start of a trailer line, or the final CRLF
        if (c == '\r') {
          state_ = State::trailer_lf;
        } else {
          state_ = State::trailer_line;
          line_ = 1;
        }
        ++i;
        break;
      case State::trailer_lf:
        if (c != '\n') return std::string::npos;
        ++i;
        state_ = State::done;
        break;
      case State::trailer_line:
        if (c == '\n') {
          state_ = State::trailer;
          line_ = 0;
        } else if (++line_ > kMaxLine) {
          return std::string::npos;
        }
        ++i;
        break;
      case State::done:
        break;
    }
  }
  return i;
}

}  // namespace vllm_router::detail
