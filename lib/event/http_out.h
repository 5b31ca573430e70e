// Internal: what the server writes on HTTP/1.1 (status lines, local answers, chunk framing) and
// the small request helpers every front end shares (request ids, API keys).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/server.h"

namespace vllm_router::detail {

/// The reason phrase for an HTTP status ("OK", "Not Found", ...).
std::string_view reason_phrase(int status) noexcept;

/// Appends "HTTP/1.1 <status> <reason>\r\n".
void append_status_line(std::string& out, int status);

/// Appends "name: value\r\n".
inline void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

/// Appends a complete local answer (Content-Length framing, X-Request-Id when set, Retry-After
/// on 429 and 503, Connection: close when `close`).
void append_local_response(std::string& out, const LocalResponse& r, std::string_view request_id, bool close);

/// Appends one chunk of chunked framing ("<hex size>\r\n<data>\r\n"); nothing for empty data.
void append_chunk(std::string& out, std::string_view data);

/// A valid client-supplied request id (printable ASCII, at most 256 bytes)?
bool valid_request_id(std::string_view id) noexcept;

/// A fresh 32-hex-digit request id. Thread-safe.
std::string new_request_id();

}  // namespace vllm_router::detail
