// Internal: reads one upstream HTTP/1.1 answer from bytes as they arrive: the head (interim 1xx
// answers skipped), then the body payload by its framing, and whether the connection may be
// reused. Shared by the exchange core and the control plane's HTTP client.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http1.h"
#include "vllm_router/endpoint.h"

namespace vllm_router::detail {

/// Appends "METHOD <prefix><target> HTTP/1.1\r\nHost: host:port\r\n" for `url` (an IPv6 host
/// in brackets, no port when it is the scheme's: 80, 443), plus the endpoint's "Authorization:
/// Bearer" line when `api_key` is set.
void append_request_start(std::string& out, std::string_view method, const Url& url, std::string_view target,
                          std::string_view api_key);

class ResponseReader {
 public:
  enum class Step : std::uint8_t {
    need_more,  ///< every byte of `data` was used; feed more
    head,       ///< the final head is in: head() is valid until reset()
    body,       ///< `payload` holds body bytes (valid until the next call)
    end,        ///< the body is complete
    error,      ///< the answer is malformed: error() says how
  };

  /// Takes the next piece of the answer from the front of `data` (consuming it). Call again
  /// until need_more (feed more bytes), end or error.
  Step next(std::string_view& data, std::string_view& payload);
  /// The upstream closed its side: the end of a close-delimited body, else an error.
  Step eof();

  const ResponseHead& head() const noexcept { return head_; }
  /// The head, for the exchange to filter its headers in place before relaying them.
  ResponseHead& head_for_relay() noexcept { return head_; }
  bool head_done() const noexcept { return head_done_; }
  bool body_done() const noexcept { return body_done_; }
  /// Any byte of the answer seen yet (a kept-alive connection that yields none was stale).
  bool any_bytes() const noexcept { return any_bytes_; }
  /// The body's length when the head gave one (0 for answers without a body).
  bool length_known() const noexcept {
    return head_.framing == Framing::length || head_.framing == Framing::none;
  }
  /// Between two chunks of a chunked body, or anywhere in a close-delimited one: a point where
  /// the relayed body can end cleanly (an SSE event boundary for vLLM's streams).
  bool at_boundary() const noexcept;
  /// The connection can carry another request after this answer.
  bool reusable() const noexcept;
  const std::string& error() const noexcept { return error_; }
  /// For the next answer (keeps buffer capacity).
  void reset();
  /// The head has been relayed and its header views are not needed again (a long stream): free
  /// the head's memory now, or as soon as the body bytes that came with it are delivered.
  /// head()'s status, framing, length and keep-alive stay valid; its headers become empty.
  void release_head();

 private:
  std::string head_buf_;   // the head as it arrives (head_ views point into it)
  std::string_view rest_;  // bytes after the head still to deliver (in head_buf_)
  ResponseHead head_;
  bool head_done_ = false;
  bool body_done_ = false;
  bool any_bytes_ = false;
  bool extra_ = false;     // bytes after the end: not reusable
  bool release_ = false;   // free head_buf_ once rest_ is delivered
  std::uint64_t left_ = 0;
  ChunkedScanner chunks_;
  std::string error_;
};

}  // namespace vllm_router::detail
