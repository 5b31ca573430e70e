// Tests for the internal HTTP/1.1 codec (lib/http1.h): request and response heads, chunked bodies.
//
// Deliberate choices (stricter or looser than RFC 9110/9112 allows), each pinned by a row below:
// - Any second Content-Length is an error, even with the same value, and so is a list
//   (`5, 5`): RFC 9110 8.6 lets a recipient collapse identical values; nginx rejects, so do we.
// - Content-Length takes 1*DIGIT only (no sign, no hex, no inner space, at most 2^64 - 1);
//   surrounding OWS is not part of the value (RFC 9112 5), so `Content-Length: 5 ` is 5.
// - Transfer-Encoding must be exactly `chunked` (any case, OWS trimmed) in one header line;
//   anything else (`gzip, chunked`, `identity`, a second header) is an error, in requests and in
//   responses: we neither decode other codings nor relay them. HTTP/1.0 messages must not carry
//   it at all (RFC 9112 6.1 calls that faulty framing).
// - A response with both Content-Length and Transfer-Encoding is an error (RFC 9112 6.3 would
//   let chunked win, but a proxy must not reuse such a connection; refusing is simpler).
// - Every line ends in CRLF: a bare LF or a bare CR anywhere in a head is an error (RFC 9112 2.2
//   allows accepting bare LF; we don't, it is the classic smuggling lever).
// - obs-fold and whitespace before the colon are errors (RFC 9112 5.1, 5.2).
// - Field values: HTAB, SP, VCHAR and obs-text (0x80-0xff); any other control byte is an error.
// - Request targets: any byte from 0x21 to 0xff (raw UTF-8 paths pass); no checks of the URI
//   grammar. Absolute-form and asterisk-form pass through as they are (recorded below).
// - Only HTTP/1.0 and HTTP/1.1 (exact, case-sensitive) on both sides; status codes 100-599.
//   The reason phrase may be missing, with or without its space.
// - `Connection` is a comma-separated token list; `close` wins over `keep-alive`.
// - `Expect: 100-continue` is ignored on HTTP/1.0 requests (RFC 9110 10.1.1).
// - Empty lines before a request line are skipped (RFC 9112 2.2) but count against the head limit.
// - Recorded, not decided here: a request without Host (or with two) passes; the gateway routes
//   by body, not by authority.
// - Every request error becomes a 400 in the event loop ("too large" a 431): there is no 501 code
//   for an unknown Transfer-Encoding.
// - Chunked: hex sizes up to 2^64 - 1 (leading zeros pass); whitespace after the size must lead
//   to a `;` (`5 \r\n` is an error); extensions hold no control bytes and are not otherwise
//   parsed; size lines and trailer lines are at most 4 KiB, the trailer section at most 8 KiB;
//   trailer lines must look like field lines (token, colon, value). After an error the scanner
//   stays failed.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "http1.h"
#include "http_util.h"
#include "response_reader.h"

using namespace vllm_router::detail;
using namespace std::string_literals;

namespace {

const char* verdict_name(Parse p) {
  switch (p) {
    case Parse::ok: return "ok";
    case Parse::incomplete: return "incomplete";
    case Parse::error: return "error";
  }
  return "?";
}

const char* framing_name(Framing f) {
  switch (f) {
    case Framing::none: return "none";
    case Framing::length: return "length";
    case Framing::chunked: return "chunked";
    case Framing::close: return "close";
  }
  return "?";
}

constexpr std::size_t kWhole = SIZE_MAX;  // size: the whole input

// One request input and what the parser must say about it.
struct ReqRow {
  const char* what;
  std::string in;
  Parse verdict;
  Framing framing = Framing::none;
  std::uint64_t length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
  std::size_t size = kWhole;
  const char* error = nullptr;  // a substring of the error message
};

void check_request(const ReqRow& row, const HeadLimits& limits = {}) {
  INFO("row: " << std::string(row.what));
  RequestHead head;
  std::string error;
  const Parse got = parse_request_head(row.in, head, error, limits);
  CHECK_MESSAGE(got == row.verdict, "got " << std::string(verdict_name(got)) << " (" << error << ")");
  if (got != row.verdict) return;
  if (got == Parse::error) {
    CHECK_FALSE(error.empty());
    if (row.error != nullptr) CHECK_MESSAGE(error.find(row.error) != std::string::npos, error);
    return;
  }
  if (got != Parse::ok) return;
  CHECK_MESSAGE(head.framing == row.framing, "framing " << std::string(framing_name(head.framing)));
  CHECK(head.content_length == row.length);
  CHECK(head.keep_alive == row.keep_alive);
  CHECK(head.expect_continue == row.expect_continue);
  CHECK(head.size == (row.size == kWhole ? row.in.size() : row.size));
}

std::string crlfs(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "\r\n";
  return s;
}

std::string req(std::string_view headers, std::string_view line = "POST /v1/completions HTTP/1.1") {
  return std::string(line) + "\r\nHost: x\r\n" + std::string(headers) + "\r\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Requests

TEST_CASE("iequals is ASCII case folding of letters only, for every pair of bytes") {
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const char x = static_cast<char>(a), y = static_cast<char>(b);
      const bool expected = ascii_lower(x) == ascii_lower(y);
      if (iequals(std::string_view(&x, 1), std::string_view(&y, 1)) != expected) {
        FAIL("iequals(" << a << ", " << b << ") should be " << expected);
      }
    }
  }
  CHECK(iequals("Authorization", "authorization"));
  CHECK(iequals("CONTENT-LENGTH", "content-length"));
  CHECK_FALSE(iequals("content-lengt@", "content-lengt`"));  // 0x40 and 0x60 differ in 0x20 only
  CHECK_FALSE(iequals("te", "tex"));
}

TEST_CASE("a NameSet finds its names in any case, and nothing else") {
  static constexpr NameSet kSet{std::to_array<std::string_view>({"te", "host", "date", "connection", "keep-alive", "x-request-id"})};
  for (const char* name : {"te", "TE", "Host", "host", "DATE", "Connection", "keep-Alive", "X-Request-Id"}) {
    CHECK_MESSAGE(kSet.contains(name), name);
  }
  for (const char* name : {"", "t", "tex", "hosts", "dat", "connectiom", "keep_alive", "x-request-ids",
                           "a-name-longer-than-the-longest-bucket-of-the-set"}) {
    CHECK_FALSE_MESSAGE(kSet.contains(name), name);
  }
  static constexpr NameSet kEmpty{std::array<std::string_view, 0>{}};
  CHECK_FALSE(kEmpty.contains(""));
  CHECK(is_hop_by_hop("Transfer-Encoding"));
  CHECK(is_hop_by_hop("content-length"));
  CHECK_FALSE(is_hop_by_hop("content-type"));
}

TEST_CASE("request heads that parse") {
  const std::string pipelined = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const ReqRow rows[] = {
      {"simple GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", Parse::ok},
      {"no headers at all (recorded: Host is not required)", "GET / HTTP/1.1\r\n\r\n", Parse::ok},
      {"two Host headers (recorded: passes)", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Parse::ok},
      {"POST with Content-Length; the body is not part of the head",
       req("Content-Length: 5\r\n") + "hello", Parse::ok, Framing::length, 5, true, false,
       req("Content-Length: 5\r\n").size()},
      {"Content-Length: 0", req("Content-Length: 0\r\n"), Parse::ok, Framing::length, 0},
      {"Content-Length with leading zeros", req("Content-Length: 007\r\n"), Parse::ok, Framing::length, 7},
      {"Content-Length with OWS around it (not part of the value)", req("Content-Length: \t5 \t\r\n"),
       Parse::ok, Framing::length, 5},
      {"Content-Length 2^64-1 (the body limit is the caller's)",
       req("Content-Length: 18446744073709551615\r\n"), Parse::ok, Framing::length, UINT64_MAX},
      {"header names are case-insensitive", req("content-LENGTH: 3\r\n"), Parse::ok, Framing::length, 3},
      {"chunked", req("Transfer-Encoding: chunked\r\n"), Parse::ok, Framing::chunked},
      {"chunked in any case", req("Transfer-Encoding: CHunKED\r\n"), Parse::ok, Framing::chunked},
      {"chunked with OWS around it", req("Transfer-Encoding: \t chunked \t\r\n"), Parse::ok, Framing::chunked},
      {"pipelined request after the head is not counted", pipelined + "GET /b HTTP/1.1\r\n\r\n", Parse::ok,
       Framing::none, 0, true, false, pipelined.size()},
      {"leading empty lines are skipped and counted", "\r\n\r\n" + pipelined, Parse::ok, Framing::none, 0,
       true, false, 4 + pipelined.size()},
      {"HTTP/1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", Parse::ok, Framing::none, 0, false},
      {"HTTP/1.0 with Connection: keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", Parse::ok,
       Framing::none, 0, true},
      {"Connection: close", req("Connection: close\r\n"), Parse::ok, Framing::none, 0, false},
      {"Connection: close in a list", req("Connection: foo, close\r\n"), Parse::ok, Framing::none, 0, false},
      {"Connection: close in a list without spaces", req("Connection: foo,CLOSE,bar\r\n"), Parse::ok,
       Framing::none, 0, false},
      {"Connection: close on a second line", req("Connection: foo\r\nConnection: close\r\n"), Parse::ok,
       Framing::none, 0, false},
      {"close wins over keep-alive", req("Connection: keep-alive, close\r\n"), Parse::ok, Framing::none, 0,
       false},
      {"close wins over keep-alive (other order)", req("Connection: close, keep-alive\r\n"), Parse::ok,
       Framing::none, 0, false},
      {"`closed` is not the close token", req("Connection: closed\r\n"), Parse::ok, Framing::none, 0, true},
      {"`x-keep-alive` is not the keep-alive token", "GET / HTTP/1.0\r\nConnection: x-keep-alive\r\n\r\n",
       Parse::ok, Framing::none, 0, false},
      {"Expect: 100-continue", req("Content-Length: 5\r\nExpect: 100-continue\r\n"), Parse::ok,
       Framing::length, 5, true, true},
      {"Expect in any case", req("Content-Length: 5\r\nExpect: 100-Continue\r\n"), Parse::ok,
       Framing::length, 5, true, true},
      {"Expect is ignored on HTTP/1.0", req("Content-Length: 5\r\nExpect: 100-continue\r\n", "POST / HTTP/1.0"),
       Parse::ok, Framing::length, 5, false, false},
      {"other expectations are not 100-continue", req("Expect: something\r\n"), Parse::ok},
      {"empty header value", req("X-Empty:\r\n"), Parse::ok},
      {"header value with HTAB and obs-text", req("X-Y: a\tb \xc3\xa9\xff\r\n"), Parse::ok},
      {"target with raw UTF-8 (accepted)", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", Parse::ok},
      {"absolute-form target (recorded: passes as is)", "GET http://example.com/x HTTP/1.1\r\n\r\n", Parse::ok},
      {"asterisk-form target (recorded: passes as is)", "OPTIONS * HTTP/1.1\r\n\r\n", Parse::ok},
      {"lower-case method is a valid token", "get / HTTP/1.1\r\n\r\n", Parse::ok},
      {"extension method", "M-SEARCH * HTTP/1.1\r\n\r\n", Parse::ok},
      {"unknown header that merely looks like Transfer-Encoding", req("Transfer_Encoding: gzip\r\n"),
       Parse::ok},
  };
  for (const ReqRow& row : rows) check_request(row);

  RequestHead head;
  std::string error;
  REQUIRE(parse_request_head("GET /p?q=1 HTTP/1.1\r\nHost: h\r\nX-A:  v  \r\n\r\n", head, error) == Parse::ok);
  CHECK(head.method == "GET");
  CHECK(head.target == "/p?q=1");
  CHECK_FALSE(head.http10);
  REQUIRE(head.headers.size() == 2);
  CHECK(head.headers[0].name == "Host");
  CHECK(head.headers[0].value == "h");
  CHECK(head.headers[1].name == "X-A");
  CHECK(head.headers[1].value == "v");
  REQUIRE(parse_request_head("OPTIONS * HTTP/1.0\r\n\r\n", head, error) == Parse::ok);
  CHECK(head.method == "OPTIONS");
  CHECK(head.target == "*");
  CHECK(head.http10);
  CHECK(head.headers.empty());
}

TEST_CASE("request heads that are incomplete") {
  const ReqRow rows[] = {
      {"empty", "", Parse::incomplete},
      {"only leading empty lines", "\r\n\r\n", Parse::incomplete},
      {"request line only", "GET / HTTP/1.1\r\n", Parse::incomplete},
      {"no blank line yet", "GET / HTTP/1.1\r\nHost: x\r\n", Parse::incomplete},
      {"half of the blank line", "GET / HTTP/1.1\r\nHost: x\r\n\r", Parse::incomplete},
  };
  for (const ReqRow& row : rows) check_request(row);
}

TEST_CASE("request heads fed one byte at a time are incomplete until the blank line") {
  const std::string heads[] = {
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
  };
  for (const std::string& full : heads) {
    INFO(full);
    RequestHead whole;
    std::string error;
    REQUIRE(parse_request_head(full, whole, error) == Parse::ok);
    for (std::size_t n = 0; n <= full.size(); ++n) {
      RequestHead head;
      const Parse got = parse_request_head(std::string_view(full).substr(0, n), head, error);
      if (n < whole.size) {
        CHECK_MESSAGE(got == Parse::incomplete, n);
      } else {
        REQUIRE_MESSAGE(got == Parse::ok, n);
        CHECK(head.size == whole.size);
        CHECK(head.framing == whole.framing);
        CHECK(head.target == whole.target);
      }
    }
  }
}

TEST_CASE("request head limits") {
  HeadLimits limits;
  limits.max_head_bytes = 64;
  limits.max_headers = 3;
  const ReqRow rows[] = {
      {"head of exactly the limit", "GET / HTTP/1.1\r\nX: " + std::string(64 - 23, 'a') + "\r\n\r\n", Parse::ok},
      {"complete head over the limit", "GET / HTTP/1.1\r\nX: " + std::string(64 - 22, 'a') + "\r\n\r\n",
       Parse::error, Framing::none, 0, true, false, kWhole, "too large"},
      {"incomplete head over the limit", "GET / HTTP/1.1\r\nX: " + std::string(100, 'a'), Parse::error,
       Framing::none, 0, true, false, kWhole, "too large"},
      {"leading empty lines count against the limit", crlfs(30) + "GET / HTTP/1.1\r\n\r\n", Parse::error, Framing::none,
       0, true, false, kWhole, "too large"},
      {"three headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Parse::ok},
      {"four headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", Parse::error, Framing::none, 0,
       true, false, kWhole, "too many"},
  };
  for (const ReqRow& row : rows) check_request(row, limits);
  // The default limit: 64 KiB.
  check_request({"default limit", "GET / HTTP/1.1\r\nX: " + std::string(70 * 1024, 'a'), Parse::error,
                 Framing::none, 0, true, false, kWhole, "too large"});
}

TEST_CASE("request framing conflicts and smuggling shapes are errors") {
  const ReqRow rows[] = {
      // Content-Length and Transfer-Encoding together (RFC 9112 6.1: the classic CL.TE / TE.CL).
      {"CL then TE", req("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), Parse::error},
      {"TE then CL", req("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), Parse::error},
      {"TE then CL 0", req("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), Parse::error},
      // Content-Length shapes.
      {"two different Content-Lengths", req("Content-Length: 5\r\nContent-Length: 6\r\n"), Parse::error},
      {"two equal Content-Lengths (choice: reject)", req("Content-Length: 5\r\nContent-Length: 5\r\n"),
       Parse::error},
      {"Content-Length list 5, 5 (choice: reject)", req("Content-Length: 5, 5\r\n"), Parse::error},
      {"Content-Length list 5,6", req("Content-Length: 5,6\r\n"), Parse::error},
      {"Content-Length +5", req("Content-Length: +5\r\n"), Parse::error},
      {"Content-Length -5", req("Content-Length: -5\r\n"), Parse::error},
      {"Content-Length 0x5", req("Content-Length: 0x5\r\n"), Parse::error},
      {"Content-Length 5 5 (inner space)", req("Content-Length: 5 5\r\n"), Parse::error},
      {"Content-Length 5.0", req("Content-Length: 5.0\r\n"), Parse::error},
      {"Content-Length 1e3", req("Content-Length: 1e3\r\n"), Parse::error},
      {"empty Content-Length", req("Content-Length:\r\n"), Parse::error},
      {"Content-Length 2^64", req("Content-Length: 18446744073709551616\r\n"), Parse::error},
      {"Content-Length far past 2^64", req("Content-Length: 99999999999999999999999\r\n"), Parse::error},
      // Transfer-Encoding shapes: only exactly `chunked` (choice).
      {"gzip, chunked", req("Transfer-Encoding: gzip, chunked\r\n"), Parse::error, Framing::none, 0, true,
       false, kWhole, "Transfer-Encoding"},
      {"chunked, gzip", req("Transfer-Encoding: chunked, gzip\r\n"), Parse::error},
      {"chunked, chunked", req("Transfer-Encoding: chunked, chunked\r\n"), Parse::error},
      {"identity", req("Transfer-Encoding: identity\r\n"), Parse::error},
      {"xchunked", req("Transfer-Encoding: xchunked\r\n"), Parse::error},
      {"chunkedx", req("Transfer-Encoding: chunkedx\r\n"), Parse::error},
      {"chunked with a parameter", req("Transfer-Encoding: chunked;q=1\r\n"), Parse::error},
      {"quoted chunked", req("Transfer-Encoding: \"chunked\"\r\n"), Parse::error},
      {"chunked with a list comma", req("Transfer-Encoding: chunked,\r\n"), Parse::error},
      {"empty Transfer-Encoding", req("Transfer-Encoding:\r\n"), Parse::error},
      {"chunked with a vertical tab", req("Transfer-Encoding: \vchunked\r\n"), Parse::error},
      {"two Transfer-Encoding lines", req("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
       Parse::error},
      {"Transfer-Encoding on HTTP/1.0", req("Transfer-Encoding: chunked\r\n", "POST / HTTP/1.0"), Parse::error},
      {"Transfer-Encoding folded onto the next line", req("Transfer-Encoding:\r\n chunked\r\n"), Parse::error},
      {"Transfer-Encoding behind a leading space", req(" Transfer-Encoding: chunked\r\n"), Parse::error},
      {"Transfer-Encoding with a space before the colon", req("Transfer-Encoding : chunked\r\n"), Parse::error},
      {"Content-Length with a space before the colon", req("Content-Length : 5\r\n"), Parse::error},
      // obs-fold, whitespace before the colon, malformed lines.
      {"obs-fold with a space", req("X-A: a\r\n b\r\n"), Parse::error},
      {"obs-fold with a tab", req("X-A: a\r\n\tb\r\n"), Parse::error},
      {"first header line starts with a space", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", Parse::error},
      {"space before the colon", req("Host : x\r\n"), Parse::error},
      {"tab before the colon", req("Host\t: x\r\n"), Parse::error},
      {"no colon", req("Host x\r\n"), Parse::error},
      {"empty name", req(": x\r\n"), Parse::error},
      {"separator in the name", req("X(a): y\r\n"), Parse::error},
      // Line endings.
      {"bare LF after the request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", Parse::error},
      {"bare LF after a header", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", Parse::error},
      {"bare LF as the blank line", "GET / HTTP/1.1\r\nHost: x\r\n\n", Parse::error},
      {"bare LF inside a value", req("X: a\nb\r\n"), Parse::error},
      {"bare LF only, complete for a lenient parser", "GET / HTTP/1.1\nHost: x\n\n", Parse::error},
      {"bare LF before the head is complete", "GET / HTTP/1.1\nHost: x", Parse::error},
      {"leading bare LF", "\nGET / HTTP/1.1\r\n\r\n", Parse::error},
      {"bare CR inside a value", req("X: a\rb\r\n"), Parse::error},
      {"bare CR ending a header", req("X: a\r\rY: b\r\n"), Parse::error},
      {"bare CR in the request line", "GET /\r HTTP/1.1\r\n\r\n", Parse::error},
      {"bare CR in a name", req("X\r: y\r\n"), Parse::error},
      // NUL and control bytes.
      {"NUL in a name", req("X\0A: y\r\n"s), Parse::error},
      {"NUL in a value", req("X: a\0b\r\n"s), Parse::error},
      {"NUL in the target", "GET /a\0b HTTP/1.1\r\n\r\n"s, Parse::error},
      {"NUL in the method", "GE\0T / HTTP/1.1\r\n\r\n"s, Parse::error},
      {"0x01 in a value", req("X: a\x01z\r\n"), Parse::error},
      {"VT in a value", req("X: a\vb\r\n"), Parse::error},
      {"FF in a value", req("X: a\fb\r\n"), Parse::error},
      {"ESC in a value", req("X: a\x1b[0m\r\n"), Parse::error},
      {"0x1f in a value", req("X: a\x1f\r\n"), Parse::error},
      {"DEL in a value", req("X: a\x7f\r\n"), Parse::error},
      {"control byte at the end of a value", req("X: ab\x01\r\n"), Parse::error},
      {"DEL in a name", req("X\x7f: y\r\n"), Parse::error},
      {"obs-text in a name", req("X\xc3\xa9: y\r\n"), Parse::error},
      // The request line.
      {"space in the target", "GET /a b HTTP/1.1\r\n\r\n", Parse::error},
      {"tab in the target", "GET /a\tb HTTP/1.1\r\n\r\n", Parse::error},
      {"control byte in the target", "GET /a\x01 HTTP/1.1\r\n\r\n", Parse::error},
      {"DEL in the target", "GET /a\x7f HTTP/1.1\r\n\r\n", Parse::error},
      {"two spaces after the method", "GET  / HTTP/1.1\r\n\r\n", Parse::error},
      {"two spaces before the version", "GET /  HTTP/1.1\r\n\r\n", Parse::error},
      {"space before the method", " GET / HTTP/1.1\r\n\r\n", Parse::error},
      {"space after the version", "GET / HTTP/1.1 \r\n\r\n", Parse::error},
      {"tab as separator", "GET\t/ HTTP/1.1\r\n\r\n", Parse::error},
      {"separator in the method", "G(T / HTTP/1.1\r\n\r\n", Parse::error},
      {"no method", "/ HTTP/1.1\r\n\r\n", Parse::error},
      {"no target", "GET HTTP/1.1\r\n\r\n", Parse::error},
      {"HTTP/0.9 request line", "GET /\r\n\r\n", Parse::error},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Parse::error, Framing::none, 0, true, false,
       kWhole, "version"},
      {"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", Parse::error},
      {"HTTP/2", "GET / HTTP/2\r\n\r\n", Parse::error},
      {"lower-case version", "GET / http/1.1\r\n\r\n", Parse::error},
      {"HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", Parse::error},
      {"a header line where the request line belongs", "\r\n\r\n\r\nHost: x\r\n\r\n", Parse::error},
      {"binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"s, Parse::error},
  };
  for (const ReqRow& row : rows) check_request(row);
}

// ---------------------------------------------------------------------------------------------
// Responses

namespace {

struct RespRow {
  const char* what;
  std::string in;
  Parse verdict;
  int status = 0;
  Framing framing = Framing::none;
  std::uint64_t length = 0;
  bool keep_alive = true;
  std::size_t size = kWhole;
};

void check_response(const RespRow& row, const HeadLimits& limits = {}) {
  INFO("row: " << std::string(row.what));
  ResponseHead head;
  std::string error;
  const Parse got = parse_response_head(row.in, head, error, limits);
  CHECK_MESSAGE(got == row.verdict, "got " << std::string(verdict_name(got)) << " (" << error << ")");
  if (got != row.verdict || got != Parse::ok) {
    if (got == Parse::error) CHECK_FALSE(error.empty());
    return;
  }
  CHECK(head.status == row.status);
  CHECK_MESSAGE(head.framing == row.framing, "framing " << std::string(framing_name(head.framing)));
  CHECK(head.content_length == row.length);
  CHECK(head.keep_alive == row.keep_alive);
  CHECK(head.size == (row.size == kWhole ? row.in.size() : row.size));
}

std::string resp(std::string_view headers, std::string_view line = "HTTP/1.1 200 OK") {
  return std::string(line) + "\r\n" + std::string(headers) + "\r\n";
}

}  // namespace

TEST_CASE("response heads") {
  const RespRow rows[] = {
      {"200 with a length; the body is not part of the head", resp("Content-Length: 5\r\n") + "hello", Parse::ok,
       200, Framing::length, 5, true, resp("Content-Length: 5\r\n").size()},
      {"reason with spaces", resp("Content-Length: 1\r\n", "HTTP/1.1 404 Not Found"), Parse::ok, 404,
       Framing::length, 1},
      {"reason with HTAB and obs-text", resp("Content-Length: 1\r\n", "HTTP/1.1 200 O\tK \xc3\xa9"), Parse::ok,
       200, Framing::length, 1},
      {"no reason phrase, no space", resp("Content-Length: 1\r\n", "HTTP/1.1 200"), Parse::ok, 200,
       Framing::length, 1},
      {"empty reason phrase", resp("Content-Length: 1\r\n", "HTTP/1.1 200 "), Parse::ok, 200, Framing::length, 1},
      {"Content-Length: 0 has no body", resp("Content-Length: 0\r\n"), Parse::ok, 200, Framing::none},
      {"chunked", resp("Transfer-Encoding: chunked\r\n"), Parse::ok, 200, Framing::chunked},
      {"chunked in any case", resp("Transfer-Encoding: Chunked\r\n"), Parse::ok, 200, Framing::chunked},
      {"no length: delimited by close", resp("Content-Type: text/plain\r\n"), Parse::ok, 200, Framing::close, 0,
       false},
      {"no length even with keep-alive: close", resp("Connection: keep-alive\r\n"), Parse::ok, 200,
       Framing::close, 0, false},
      {"HTTP/1.0 closes by default", resp("Content-Length: 2\r\n", "HTTP/1.0 200 OK"), Parse::ok, 200,
       Framing::length, 2, false},
      {"HTTP/1.0 with keep-alive", resp("Connection: keep-alive\r\nContent-Length: 2\r\n", "HTTP/1.0 200 OK"),
       Parse::ok, 200, Framing::length, 2, true},
      {"Connection: close", resp("Connection: close\r\nContent-Length: 2\r\n"), Parse::ok, 200, Framing::length,
       2, false},
      {"Connection: close in a list", resp("Connection: te, close\r\nContent-Length: 2\r\n"), Parse::ok, 200,
       Framing::length, 2, false},
      {"close wins over keep-alive", resp("Connection: keep-alive, close\r\nContent-Length: 2\r\n"), Parse::ok,
       200, Framing::length, 2, false},
      {"`closed` is not the close token", resp("Connection: closed\r\nContent-Length: 2\r\n"), Parse::ok, 200,
       Framing::length, 2, true},
      {"100 Continue is returned as a head", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", Parse::ok,
       100, Framing::none, 0, true, 25},
      {"103 Early Hints", resp("Link: </a>; rel=preload\r\n", "HTTP/1.1 103 Early Hints"), Parse::ok, 103},
      {"204 has no body", resp("", "HTTP/1.1 204 No Content"), Parse::ok, 204},
      {"304 has no body despite a length", resp("Content-Length: 10\r\n", "HTTP/1.1 304 Not Modified"),
       Parse::ok, 304, Framing::none, 10},
      {"599 is the highest code", resp("Content-Length: 0\r\n", "HTTP/1.1 599 X"), Parse::ok, 599},
      {"incomplete", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", Parse::incomplete},
      {"incomplete status line", "HTTP/1.1 20", Parse::incomplete},
  };
  for (const RespRow& row : rows) check_response(row);

  ResponseHead head;
  std::string error;
  REQUIRE(parse_response_head("HTTP/1.1 201 Created\r\nX-A: b \r\nSet-Cookie: c\r\n\r\n", head, error) ==
          Parse::ok);
  REQUIRE(head.headers.size() == 2);
  CHECK(head.headers[0].name == "X-A");
  CHECK(head.headers[0].value == "b");
  CHECK(head.headers[1].name == "Set-Cookie");
  CHECK_FALSE(head.http10);
}

TEST_CASE("response heads that are errors") {
  const RespRow rows[] = {
      {"four-digit status", resp("Content-Length: 0\r\n", "HTTP/1.1 2000 OK"), Parse::error},
      {"four-digit status without reason", resp("Content-Length: 0\r\n", "HTTP/1.1 2000"), Parse::error},
      {"status 999", resp("Content-Length: 0\r\n", "HTTP/1.1 999 X"), Parse::error},
      {"status 600", resp("Content-Length: 0\r\n", "HTTP/1.1 600 X"), Parse::error},
      {"status 099", resp("Content-Length: 0\r\n", "HTTP/1.1 099 X"), Parse::error},
      {"two-digit status", resp("Content-Length: 0\r\n", "HTTP/1.1 20 OK"), Parse::error},
      {"two-digit status, no reason", resp("Content-Length: 0\r\n", "HTTP/1.1 20"), Parse::error},
      {"negative status", resp("Content-Length: 0\r\n", "HTTP/1.1 -20 X"), Parse::error},
      {"signed status", resp("Content-Length: 0\r\n", "HTTP/1.1 +20 X"), Parse::error},
      {"letter in the status", resp("Content-Length: 0\r\n", "HTTP/1.1 2x0 OK"), Parse::error},
      {"two spaces before the status", resp("Content-Length: 0\r\n", "HTTP/1.1  200 OK"), Parse::error},
      {"tab after the status", resp("Content-Length: 0\r\n", "HTTP/1.1 200\tOK"), Parse::error},
      {"control byte in the reason", resp("Content-Length: 0\r\n", "HTTP/1.1 200 O\x01K"), Parse::error},
      {"NUL in the reason", resp("Content-Length: 0\r\n", "HTTP/1.1 200 O\0K"s), Parse::error},
      {"HTTP/2", resp("Content-Length: 0\r\n", "HTTP/2 200 OK"), Parse::error},
      {"HTTP/2.0", resp("Content-Length: 0\r\n", "HTTP/2.0 200 OK"), Parse::error},
      {"HTTP/1.2", resp("Content-Length: 0\r\n", "HTTP/1.2 200 OK"), Parse::error},
      {"lower-case version", resp("Content-Length: 0\r\n", "http/1.1 200 OK"), Parse::error},
      {"no status", resp("", "HTTP/1.1"), Parse::error},
      {"not HTTP", resp("", "ICY 200 OK"), Parse::error},
      {"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", Parse::error},
      {"two different Content-Lengths", resp("Content-Length: 5\r\nContent-Length: 6\r\n"), Parse::error},
      {"two equal Content-Lengths (choice: reject)", resp("Content-Length: 5\r\nContent-Length: 5\r\n"),
       Parse::error},
      {"Content-Length list", resp("Content-Length: 5, 5\r\n"), Parse::error},
      {"Content-Length +5", resp("Content-Length: +5\r\n"), Parse::error},
      {"Content-Length 2^64", resp("Content-Length: 18446744073709551616\r\n"), Parse::error},
      {"Content-Length and chunked (choice: reject)", resp("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
       Parse::error},
      {"chunked and Content-Length", resp("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), Parse::error},
      {"gzip, chunked", resp("Transfer-Encoding: gzip, chunked\r\n"), Parse::error},
      {"chunked, gzip", resp("Transfer-Encoding: chunked, gzip\r\n"), Parse::error},
      {"identity", resp("Transfer-Encoding: identity\r\n"), Parse::error},
      {"xchunked", resp("Transfer-Encoding: xchunked\r\n"), Parse::error},
      {"two Transfer-Encoding lines", resp("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
       Parse::error},
      {"Transfer-Encoding on HTTP/1.0", resp("Transfer-Encoding: chunked\r\n", "HTTP/1.0 200 OK"), Parse::error},
      {"bare LF after the status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", Parse::error},
      {"bare LF everywhere", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", Parse::error},
      {"bare LF before the head is complete", "HTTP/1.1 200 OK\nContent", Parse::error},
      {"bare CR in a value", resp("X: a\rb\r\n"), Parse::error},
      {"control byte in a value", resp("X: a\x01\r\n"), Parse::error},
      {"obs-fold", resp("X: a\r\n b\r\nContent-Length: 0\r\n"), Parse::error},
      {"space before the colon", resp("Content-Length : 0\r\n"), Parse::error},
  };
  for (const RespRow& row : rows) check_response(row);

  HeadLimits limits;
  limits.max_head_bytes = 64;
  limits.max_headers = 2;
  ResponseHead head;
  std::string error;
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a') + "\r\n\r\n", head, error, limits) ==
        Parse::error);
  CHECK(error.find("too large") != std::string::npos);
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a'), head, error, limits) == Parse::error);
  CHECK(error.find("too large") != std::string::npos);
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", head, error, limits) ==
        Parse::error);
  CHECK(error.find("too many") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

namespace {

constexpr std::size_t kNpos = std::string::npos;

struct ChunkRow {
  const char* what;
  std::string in;
  std::size_t consumed;  // what one feed of the whole input returns
  bool done;
  std::string payload;
};

// Feeds `in` in pieces of `step` bytes (0: all at once), stopping at an error or once done.
// Returns the total consumed or npos; decodes into `payload`.
std::size_t feed_in_steps(ChunkedScanner& s, std::string_view in, std::size_t step, std::string* payload) {
  if (step == 0) return s.feed(in, payload);
  std::size_t total = 0;
  while (!s.done() && total < in.size()) {
    const std::string_view piece = in.substr(total, step);
    const std::size_t used = s.feed(piece, payload);
    if (used == kNpos) return kNpos;
    total += used;
    if (used < piece.size()) break;  // done inside the piece
  }
  return total;
}

}  // namespace

TEST_CASE("chunked bodies") {
  const std::string ext4k = "1;" + std::string(4090, 'e') + "\r\nx\r\n0\r\n\r\n";
  const std::string ext_over = "1;" + std::string(4100, 'e') + "\r\nx\r\n0\r\n\r\n";
  const std::string trailer_ok = "0\r\nX-A: " + std::string(4000, 't') + "\r\nX-B: " + std::string(3000, 't') +
                                 "\r\n\r\n";
  std::string trailer_many = "0\r\n";
  for (int i = 0; i < 1000; ++i) trailer_many += "X-T: 12345678\r\n";
  trailer_many += "\r\n";
  const ChunkRow rows[] = {
      {"one chunk", "5\r\nhello\r\n0\r\n\r\n", 15, true, "hello"},
      {"two chunks", "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", 21, true, "hello!"},
      {"empty body", "0\r\n\r\n", 5, true, ""},
      {"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", 20, true, "0123456789"},
      {"lower-case hex", "a\r\n0123456789\r\n0\r\n\r\n", 20, true, "0123456789"},
      {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", 20, true, "hello"},
      {"data holds CR LF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 14, true, "\r\n\r\n"},
      {"extension", "5;name=value\r\nhello\r\n0\r\n\r\n", 26, true, "hello"},
      {"quoted extension", "5;n=\"a b\"\r\nhello\r\n0;x\r\n\r\n", 25, true, "hello"},
      {"BWS before the extension", "5 \t;n\r\nhello\r\n0\r\n\r\n", 19, true, "hello"},
      {"size line of 4 KiB", ext4k, ext4k.size(), true, "x"},
      {"trailers", "5\r\nhello\r\n0\r\nX-A: 1\r\nX-B:\t2 \r\n\r\n", 32, true, "hello"},
      {"trailer section of 7 KiB", trailer_ok, trailer_ok.size(), true, ""},
      {"bytes after the last chunk are not consumed", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 11, true, "x"},
      {"trailers, then bytes after", "0\r\nA: b\r\n\r\nHTTP", 11, true, ""},
      {"body not finished", "5\r\nhel", 6, false, "hel"},
      {"in the trailers", "0\r\nX: y\r\n", 9, false, ""},
      // Errors.
      {"size g", "g\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"empty size", "\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"negative size", "-1\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"signed size", "+1\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"0x prefix", "0x1\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"space before the size", " 1\r\nx\r\n0\r\n\r\n", kNpos, false, ""},
      {"size of 2^64 (17 hex digits)", "10000000000000000\r\n", kNpos, false, ""},
      {"size of 20 hex digits", "ffffffffffffffffffff\r\n", kNpos, false, ""},
      {"extension without its `;`", "5 x\r\nhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"size then space then CRLF", "5 \r\nhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"extension with a control byte", "5;a\x01\r\nhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"extension with NUL", "5;a\0b\r\nhello\r\n0\r\n\r\n"s, kNpos, false, ""},
      {"extension with a bare LF", "5;a\nhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"size line over 4 KiB", ext_over, kNpos, false, ""},
      {"bare LF after the size", "5\nhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"bare CR after the size", "5\rhello\r\n0\r\n\r\n", kNpos, false, ""},
      {"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", kNpos, false, ""},
      {"data one byte short", "5\r\nhell\r\n0\r\n\r\n", kNpos, false, ""},
      {"bare LF after data", "5\r\nhello\n0\r\n\r\n", kNpos, false, ""},
      {"bare LF after the last chunk", "0\n\r\n", kNpos, false, ""},
      {"bare LF ending the body", "0\r\n\n", kNpos, false, ""},
      {"bare LF ending a trailer", "0\r\nX: y\n\r\n", kNpos, false, ""},
      {"bare CR in a trailer", "0\r\nX: a\rb\r\n\r\n", kNpos, false, ""},
      {"control byte in a trailer", "0\r\nX: a\x01\r\n\r\n", kNpos, false, ""},
      {"trailer without a colon", "0\r\nXY\r\n\r\n", kNpos, false, ""},
      {"trailer with an empty name", "0\r\n: y\r\n\r\n", kNpos, false, ""},
      {"trailer with a space before the colon", "0\r\nX : y\r\n\r\n", kNpos, false, ""},
      {"folded trailer", "0\r\nX: y\r\n z\r\n\r\n", kNpos, false, ""},
      {"trailer line over 4 KiB", "0\r\nX: " + std::string(5000, 't') + "\r\n\r\n", kNpos, false, ""},
      {"trailer section over 8 KiB", trailer_many, kNpos, false, ""},
  };
  for (const ChunkRow& row : rows) {
    INFO("row: " << std::string(row.what));
    for (const std::size_t step : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
      INFO("step " << step);
      // Decoding.
      ChunkedScanner s;
      std::string payload;
      const std::size_t used = feed_in_steps(s, row.in, step, &payload);
      CHECK(used == row.consumed);
      if (used == kNpos) continue;
      CHECK(s.done() == row.done);
      CHECK(payload == row.payload);
      CHECK(s.overhead() == used - payload.size());
      // Scanning gives the same verdict.
      ChunkedScanner scan;
      CHECK(feed_in_steps(scan, row.in, step, nullptr) == row.consumed);
      CHECK(scan.done() == row.done);
      CHECK(scan.overhead() == s.overhead());
    }
  }
}

TEST_CASE("chunked scanner: done, what follows, at_chunk_start and overhead") {
  ChunkedScanner s;
  std::string payload;
  CHECK(s.at_chunk_start());
  CHECK(s.overhead() == 0);
  CHECK(s.feed("5", &payload) == 1);
  CHECK_FALSE(s.at_chunk_start());
  CHECK(s.feed(";e=1\r\nhe", &payload) == 8);
  CHECK_FALSE(s.at_chunk_start());
  CHECK(s.feed("llo\r", &payload) == 4);
  CHECK_FALSE(s.at_chunk_start());
  CHECK(s.feed("\n", &payload) == 1);
  CHECK(s.at_chunk_start());  // between chunks
  CHECK(payload == "hello");
  CHECK(s.overhead() == 1 + 6 + 2);  // "5", ";e=1\r\n", "\r\n"
  CHECK(s.feed("0\r\n", &payload) == 3);
  CHECK_FALSE(s.at_chunk_start());  // the last chunk: trailers or the end follow
  CHECK_FALSE(s.done());
  CHECK(s.feed("\r\nnext", &payload) == 2);
  CHECK(s.done());
  CHECK_FALSE(s.at_chunk_start());
  CHECK(s.feed("more", &payload) == 0);  // done: nothing more is taken
  CHECK(s.overhead() == 9 + 5);
  CHECK(payload == "hello");

  // A caller can bound framing overhead: 1 payload byte per 4 KB of extension is visible.
  ChunkedScanner pad;
  std::string out;
  const std::string chunk = "1;" + std::string(4000, 'p') + "\r\nx\r\n";
  for (int i = 0; i < 10; ++i) REQUIRE(pad.feed(chunk, &out) == chunk.size());
  CHECK(out == std::string(10, 'x'));
  CHECK(pad.overhead() == 10 * (chunk.size() - 1));

  // After an error the scanner stays failed.
  ChunkedScanner bad;
  CHECK(bad.feed("z", nullptr) == kNpos);
}

TEST_CASE("chunked scanner: byte-at-a-time equals all-at-once on many inputs") {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 300; ++iter) {
    // A valid body of random chunks, extensions and trailers, then some following bytes.
    std::string in;
    std::string expect;
    const int chunks = static_cast<int>(rng() % 5);
    for (int c = 0; c < chunks; ++c) {
      const std::size_t n = 1 + rng() % 40;
      std::string data;
      for (std::size_t k = 0; k < n; ++k) data += static_cast<char>(rng() % 256);
      char size[32];
      if (rng() % 2) {
        std::snprintf(size, sizeof size, "%zx", n);
      } else {
        std::snprintf(size, sizeof size, "%zX", n);
      }
      in += size;
      if (rng() % 3 == 0) in += ";k=v";
      in += "\r\n" + data + "\r\n";
      expect += data;
    }
    in += "0\r\n";
    if (rng() % 2) in += "X-T: v\r\n";
    in += "\r\n";
    const std::size_t body = in.size();
    in += "GET";
    // Random damage in a third of the inputs.
    if (iter % 3 == 0) in[rng() % body] = static_cast<char>(rng() % 256);
    INFO("iteration " << iter);
    ChunkedScanner whole;
    std::string whole_payload;
    const std::size_t w = whole.feed(in, &whole_payload);
    if (iter % 3 != 0) {
      CHECK(w == body);
      CHECK(whole.done());
      CHECK(whole_payload == expect);
    }
    ChunkedScanner bytes;
    std::string bytes_payload;
    const std::size_t b = feed_in_steps(bytes, in, 1, &bytes_payload);
    CHECK(b == w);
    CHECK(bytes.done() == whole.done());
    if (w != kNpos) {
      CHECK(bytes_payload == whole_payload);
      CHECK(bytes.overhead() == whole.overhead());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Robustness: random bytes and random mutations of valid heads never crash or overrun.

TEST_CASE("codec robustness on random and mutated input") {
  const std::string seeds[] = {
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
      "HTTP/1.0 100 Continue\r\n\r\n",
  };
  const char alphabet[] = "\r\n :;,\t\0\x7f\x80-+0aAfFxX";
  std::mt19937 rng(20240601);
  HeadLimits small;
  small.max_head_bytes = 96;
  small.max_headers = 3;
  RequestHead rh;
  ResponseHead sh;
  std::string error;
  for (int iter = 0; iter < 6000; ++iter) {
    std::string in;
    if (iter % 4 == 0) {
      const std::size_t n = rng() % 200;
      for (std::size_t k = 0; k < n; ++k) in += static_cast<char>(rng() % 256);
    } else {
      in = seeds[rng() % std::size(seeds)];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !in.empty(); ++e) {
        const std::size_t at = rng() % in.size();
        const char c = rng() % 2 ? static_cast<char>(rng() % 256) : alphabet[rng() % (sizeof alphabet - 1)];
        switch (rng() % 4) {
          case 0: in[at] = c; break;
          case 1: in.insert(at, 1, c); break;
          case 2: in.erase(at, 1); break;
          default: in.resize(at); break;  // truncate
        }
      }
    }
    INFO("iteration " << iter);
    for (const HeadLimits& limits : {HeadLimits{}, small}) {
      const Parse r = parse_request_head(in, rh, error, limits);
      REQUIRE((r == Parse::ok || r == Parse::incomplete || r == Parse::error));
      if (r == Parse::ok) {
        REQUIRE(rh.size <= in.size());
        REQUIRE(rh.size <= limits.max_head_bytes);
        REQUIRE(rh.headers.size() <= limits.max_headers);
        REQUIRE((rh.framing == Framing::none || rh.framing == Framing::length || rh.framing == Framing::chunked));
        // The views point into the input.
        REQUIRE(rh.method.data() >= in.data());
        REQUIRE(rh.target.data() + rh.target.size() <= in.data() + rh.size);
      }
      if (r == Parse::error) REQUIRE_FALSE(error.empty());
      const Parse s = parse_response_head(in, sh, error, limits);
      REQUIRE((s == Parse::ok || s == Parse::incomplete || s == Parse::error));
      if (s == Parse::ok) {
        REQUIRE(sh.size <= in.size());
        REQUIRE(sh.size <= limits.max_head_bytes);
        REQUIRE((sh.status >= 100 && sh.status <= 599));
      }
    }
    // The chunked scanner over whatever follows a head (or over everything).
    const std::size_t from = in.find("\r\n\r\n");
    const std::string_view body = from == std::string::npos ? std::string_view(in) : std::string_view(in).substr(from + 4);
    ChunkedScanner cs;
    std::string payload;
    const std::size_t used = cs.feed(body, &payload);
    if (used != kNpos) {
      REQUIRE(used <= body.size());
      REQUIRE(payload.size() <= used);
      REQUIRE(cs.overhead() == used - payload.size());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ResponseReader

TEST_CASE("response reader: release_head frees the relayed head, keeps its facts and the bytes after it") {
  ResponseReader reader;
  std::string_view in =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\none\r\n3\r\ntw";
  std::string_view payload;
  REQUIRE(reader.next(in, payload) == ResponseReader::Step::head);
  CHECK(reader.head().headers.size() == 3);
  reader.release_head();
  CHECK(reader.head().headers.empty());  // the views into the head's buffer are gone
  CHECK(reader.head().status == 200);
  CHECK(reader.head().framing == Framing::chunked);
  std::string body;
  for (;;) {
    const auto step = reader.next(in, payload);
    if (step != ResponseReader::Step::body) {
      CHECK(step == ResponseReader::Step::need_more);
      break;
    }
    body.append(payload);
  }
  std::string_view more = "o\r\n0\r\n\r\n";
  for (;;) {
    const auto step = reader.next(more, payload);
    if (step == ResponseReader::Step::end) break;
    REQUIRE(step == ResponseReader::Step::body);
    body.append(payload);
  }
  CHECK(body == "onetwo");
  CHECK(reader.reusable());
  reader.reset();  // the next answer on the connection parses as usual
  std::string_view next = "HTTP/1.1 204 No Content\r\nX-B: c\r\n\r\n";
  REQUIRE(reader.next(next, payload) == ResponseReader::Step::head);
  CHECK(reader.head().status == 204);
  CHECK(reader.head().headers.size() == 1);
}
