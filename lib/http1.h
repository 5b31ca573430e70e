// Internal: incremental HTTP/1.1 head parsing and chunked-body scanning shared by the transport
// and the gateway's event loop (not a public header).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http_util.h"
#include "vllm_router/header_field.h"

namespace vllm_router::detail {

/// A parsed header: the public HeaderField, so parsed heads pass to an Exchange without a copy.
using HeaderView = vllm_router::HeaderField;

enum class Parse { ok, incomplete, error };

/// How a message body is delimited.
enum class Framing { none, length, chunked, close };

/// A parsed request head; views point into the parsed buffer.
struct RequestHead {
  std::string_view method;
  std::string_view target;
  bool http10 = false;
  std::vector<HeaderView> headers;
  Framing framing = Framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
  std::size_t size = 0;  ///< bytes of the head including the blank line
};

/// A parsed response head; views point into the parsed buffer.
struct ResponseHead {
  int status = 0;
  bool http10 = false;
  std::vector<HeaderView> headers;  ///< all headers as received
  Framing framing = Framing::close;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  std::size_t size = 0;
};

struct HeadLimits {
  std::size_t max_head_bytes = 64 * 1024;
  std::size_t max_headers = 128;
};

/// Parses a request head at the start of `buf`. `error` says why on Parse::error (it contains
/// "too large" or "too many" when a limit was hit). Strict on framing (RFC 9112): every line ends
/// in CRLF; no obs-fold; no control bytes in the request line or field values; Content-Length is
/// digits only and appears at most once; Transfer-Encoding is exactly `chunked`, at most once,
/// never with Content-Length nor on HTTP/1.0. tests/unit/test_http1.cpp lists every choice.
Parse parse_request_head(std::string_view buf, RequestHead& out, std::string& error,
                         const HeadLimits& limits = {});

/// Parses a response head at the start of `buf` (1xx heads are returned like any other).
/// Responses to HEAD are not told apart: the caller must not expect a body for them.
Parse parse_response_head(std::string_view buf, ResponseHead& out, std::string& error,
                          const HeadLimits& limits = {});

/// Walks chunked framing over raw bytes as they arrive. `feed` consumes what it can; when
/// `payload` is non-null the chunk data is appended to it (decoding), otherwise the bytes are
/// only scanned (relaying verbatim). Bounded: a size line (with its extensions) or a trailer line
/// holds at most kMaxLine bytes, the trailer section at most kMaxTrailer; `overhead()` lets the
/// caller bound the rest (many tiny chunks with long extensions).
class ChunkedScanner {
 public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxTrailer = 8192;

  /// Returns bytes consumed from `data` (all of it unless the body ended inside it), or
  /// std::string::npos on a framing error (and on every call after one). `done()` turns true
  /// after the last chunk and trailers; bytes after that are not consumed.
  std::size_t feed(std::string_view data, std::string* payload);
  /// Like feed, but returns at most one run of chunk data, which `segment` views (inside `data`;
  /// empty when none was reached): decoding without a copy. The framing that follows it is
  /// consumed too, up to the next run of data. Call again with the rest.
  std::size_t next(std::string_view data, std::string_view& segment);
  bool done() const noexcept { return state_ == State::done; }
  /// True between chunks (nothing of the next chunk seen yet): a safe point to end the body.
  bool at_chunk_start() const noexcept { return state_ == State::size && !digits_ && line_ == 0; }
  /// Framing bytes consumed so far: size lines, extensions, CRLFs and trailers (everything but
  /// chunk data). A caller can refuse a body whose overhead is out of proportion to its data.
  std::uint64_t overhead() const noexcept { return overhead_; }

 private:
  std::size_t scan(std::string_view data, std::string* payload, std::string_view* segment);
  enum class State {
    size,           // hex digits of the chunk size
    size_ws,        // BWS after the size: only `;` may follow
    size_ext,       // chunk extensions up to CR
    size_lf,        // LF ending the size line
    data,
    data_cr,
    data_lf,
    trailer,        // start of a trailer line, or the CR of the final CRLF
    trailer_name,
    trailer_value,  // up to CR
    trailer_lf,     // LF ending a trailer line
    end_lf,         // LF of the final CRLF
    done,
    failed,
  };
  State state_ = State::size;
  std::uint64_t left_ = 0;
  std::uint64_t overhead_ = 0;
  std::size_t line_ = 0;      // bytes of the current size/trailer line, bounded by kMaxLine
  std::size_t trailers_ = 0;  // bytes of the trailer section, bounded by kMaxTrailer
  bool digits_ = false;
};

/// Finds the end of a head ("\r\n\r\n") in `buf`; returns its size including the blank line or 0.
inline std::size_t head_end(std::string_view buf, std::size_t from = 0) {
  const std::size_t start = from >= 3 ? from - 3 : 0;
  const auto at = buf.find("\r\n\r\n", start);
  return at == std::string_view::npos ? 0 : at + 4;
}

}  // namespace vllm_router::detail
