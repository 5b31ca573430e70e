// Internal: HTTP/1.1 output helpers, request ids and API key checks.
#include "http_out.h"

#include <chrono>
#include <cstdio>

#include "http_util.h"
#include "vllm_router/random.h"

namespace vllm_router::detail {

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

void append_status_line(std::string& out, int status) {
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(reason_phrase(status)).append("\r\n");
}

void append_local_response(std::string& out, const LocalResponse& r, std::string_view request_id, bool close) {
  append_status_line(out, r.status);
  append_header(out, "Content-Type", r.content_type);
  append_header(out, "Content-Length", std::to_string(r.body.size()));
  if (!request_id.empty()) append_header(out, "X-Request-Id", request_id);
  if (r.status == 503 || r.status == 429) {
    append_header(out, "Retry-After", std::to_string(r.retry_after == 0 ? 1 : r.retry_after));
  }
  if (close) append_header(out, "Connection", "close");
  out.append("\r\n").append(r.body);
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char size_line[24];
  const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  out.append(size_line, static_cast<std::size_t>(len)).append(data).append("\r\n");
}

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 256) return false;
  for (char c : id) {
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

std::string new_request_id() {
  thread_local Rng rng(static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                       reinterpret_cast<std::uintptr_t>(&rng));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (std::size_t half = 0; half < 2; ++half) {
    std::uint64_t v = rng.next();
    for (std::size_t i = 0; i < 16; ++i, v >>= 4) id[half * 16 + i] = kHex[v & 15];
  }
  return id;
}

}  // namespace vllm_router::detail
