// Differential libFuzzer target: our request-head parser (lib/http1.cpp) against Boost.Beast's
// http::request_parser<empty_body> (Debian's libboost1.74-dev, header-only) on the same bytes.
//
// Our parser is deliberately stricter than Beast (a proxy must not read framing differently from
// the server behind it), so a rejection by us of what Beast accepts is expected for these rules
// (RFC 9112 allows a recipient to reject them; tests/unit/test_http1.cpp has each one), and only
// for these: any other reason of ours is a finding (kStricterRules below):
//   - a bare LF ending a line;
//   - obs-fold (Beast unfolds it), whitespace before a colon;
//   - two Content-Length fields, even identical (Beast merges equal ones), or a list of
//     identical values in one (`5, 5`; RFC 9110 8.6 lets a recipient collapse it, we refuse);
//   - Transfer-Encoding other than exactly `chunked`, or twice (Beast takes `gzip, chunked`);
//   - Transfer-Encoding with Content-Length, or on HTTP/1.0 (Beast frames that as chunked);
//   - a head over our limits (4096 bytes, 32 fields here; Beast's are set out of the way).
// Where both accept, the rules must match, and the target asserts it: same method, target,
// version, fields (names, values, order), framing (Content-Length value, chunked or neither),
// keep-alive, and where the head ends. Beast keeps the fields of one name together, so field
// order is compared within each name. Beast also reads the non-standard Proxy-Connection like
// Connection; we ignore it (hop-by-hop, dropped), so keep-alive is compared only without it.
// When we accept a head Beast rejects, that is a finding, except where Beast is stricter than a
// proxy needs and its rejection is not about framing (encoded in beast_only_rejection):
//   - Beast checks Connection, Proxy-Connection and Upgrade values as token lists and rejects a
//     value that is not one (`close x`, obs-text); we read Connection by whole comma-separated
//     tokens and ignore the rest, and drop all three (hop-by-hop). The head must pass Beast once
//     those values are replaced by a token.
//   - HTTP/1.0 with both `close` and `keep-alive` in Connection: we close, Beast keeps alive.
// Empty lines before the request line: we skip them (RFC 9112 2.2), Beast does not; Beast is fed
// the bytes after them.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http.hpp>

#include "http1.h"

using namespace vllm_router::detail;
namespace http = boost::beast::http;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

using Fields = std::vector<std::pair<std::string_view, std::string_view>>;

// Fields grouped by name, each name's values in order: Beast keeps the fields of one name together
// (it inserts a repeat after the last field of its name), so only the order within a name is
// comparable.
void group(Fields& fields) {
  std::stable_sort(fields.begin(), fields.end(), [](const auto& a, const auto& b) {
    return std::lexicographical_compare(a.first.begin(), a.first.end(), b.first.begin(), b.first.end(),
                                        [](char x, char y) { return ascii_lower(x) < ascii_lower(y); });
  });
}

bool has_field(const RequestHead& head, std::string_view name) {
  return std::any_of(head.headers.begin(), head.headers.end(),
                     [&](const HeaderView& h) { return iequals(h.name, name); });
}

// Whether a Connection field lists `token` (whole comma-separated tokens, any case).
bool connection_lists(const RequestHead& head, std::string_view token) {
  for (const HeaderView& h : head.headers) {
    if (!iequals(h.name, "connection")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      const std::size_t comma = v.find(',');
      std::string_view t = v.substr(0, comma);
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (iequals(t, token)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

struct Beast {
  boost::system::error_code ec;
  std::size_t used = 0;
  bool done = false;
  http::request_parser<http::empty_body> parser;

  explicit Beast(std::string_view bytes) {
    parser.header_limit(1u << 20);  // our limits are the tighter ones
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.eager(false);  // stop after the head
    used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    done = !ec && parser.is_header_done();
  }
};

constexpr std::string_view kStricterRules[] = {
    "bare LF in request head",
    "obsolete line folding in header",
    "whitespace before colon in header",
    "duplicate Content-Length",
    "duplicate Transfer-Encoding",
    "unsupported Transfer-Encoding",
    "both Content-Length and Transfer-Encoding",
    "Transfer-Encoding in an HTTP/1.0 message",
    "request head too large",
    "too many headers",
};

bool token_list_field(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "proxy-connection") || iequals(name, "upgrade");
}

// Whether a Beast rejection of a head we accept is the deliberate exception above: a token-list
// value Beast refuses, and nothing else (the head, rebuilt with those values as `x`, passes).
bool beast_only_rejection(const Beast& beast, const RequestHead& ours) {
  const auto listed = [](const HeaderView& h) { return token_list_field(h.name); };
  if (beast.ec != http::error::bad_value || std::none_of(ours.headers.begin(), ours.headers.end(), listed)) {
    return false;
  }
  std::string head(ours.method);
  head.append(" ").append(ours.target).append(ours.http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (const HeaderView& h : ours.headers) {
    head.append(h.name).append(": ").append(listed(h) ? std::string_view("x") : h.value).append("\r\n");
  }
  head += "\r\n";
  return Beast(head).done;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string error;
  const HeadLimits limits{4096, 32};
  RequestHead ours;
  const Parse r = parse_request_head(input, ours, error, limits);
  std::size_t skip = 0;
  while (input.size() >= skip + 2 && input.substr(skip, 2) == "\r\n") skip += 2;
  const Beast beast(input.substr(skip));

  if (r == Parse::incomplete) {
    // No blank line yet for us: Beast must not have found the end of a head either.
    require(!beast.done);
    return 0;
  }
  if (r == Parse::error) {
    if (beast.done) {
      const auto length_list = [](const HeaderView& h) {
        return iequals(h.name, "content-length") && h.value.find(',') != std::string_view::npos;
      };
      const bool listed_length = error == "invalid Content-Length" &&
                                 std::any_of(ours.headers.begin(), ours.headers.end(), length_list);
      require(listed_length ||
              std::find(std::begin(kStricterRules), std::end(kStricterRules), error) != std::end(kStricterRules));
    }
    return 0;
  }

  if (!beast.done) {
    require(beast_only_rejection(beast, ours));
    return 0;
  }
  const auto& msg = beast.parser.get();
  require(beast.used == ours.size - skip);  // the head ends at the same byte
  require(sv(msg.method_string()) == ours.method);
  require(sv(msg.target()) == ours.target);
  require(msg.version() == (ours.http10 ? 10 : 11));
  Fields theirs, mine;
  for (const auto& field : msg) theirs.emplace_back(sv(field.name_string()), sv(field.value()));
  for (const HeaderView& h : ours.headers) mine.emplace_back(h.name, h.value);
  group(theirs);
  group(mine);
  require(theirs == mine);
  require(beast.parser.chunked() == (ours.framing == Framing::chunked));
  const auto length = beast.parser.content_length();
  require(bool(length) == (ours.framing == Framing::length));
  if (length) require(*length == ours.content_length);
  require(ours.framing != Framing::close);
  // Proxy-Connection: see above (an HTTP/1.0 client that sends only that gets a close from us).
  // An HTTP/1.0 head listing both `close` and `keep-alive`: Beast keeps the connection (for 1.0
  // it looks only for keep-alive), we close it (a close option always wins, RFC 9112 9.6: the
  // safe reading). Found by this target in a CI-like run; compared everywhere else.
  const bool both = ours.http10 && connection_lists(ours, "close") && connection_lists(ours, "keep-alive");
  if (!has_field(ours, "proxy-connection") && !both) require(beast.parser.keep_alive() == ours.keep_alive);
  return 0;
}
