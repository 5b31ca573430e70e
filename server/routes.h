// Gateway behaviour shared by every front end: GET routes, auth, header policy, request ids.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metrics.h"
#include "vllm_router/error.h"
#include "vllm_router/router.h"

namespace vllm_router::server {

/// A complete local answer (not relayed from an upstream).
struct LocalResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

/// Answers the gateway's own GET routes (/health, /ping, /ready, /metrics, /version,
/// /v1/models). Returns false when `path` is not one of them. `authorized` applies to /v1/*;
/// `draining` turns /ready to 503 so load balancers stop sending new work.
bool answer_get(std::string_view path, bool authorized, const Router& router, const Metrics& metrics,
                std::int64_t created, LocalResponse& out, bool draining = false);

/// An error as an OpenAI-shaped local response.
LocalResponse error_response(const Error& error);

/// True when `authorization` ("Bearer KEY") carries one of `keys`, or `keys` is empty.
/// Compares in constant time for equal lengths.
bool authorized(const std::vector<std::string>& keys, std::string_view authorization);

/// Whether a client request header is forwarded upstream (hop-by-hop, framing, Host,
/// Authorization, Accept-Encoding, X-Request-Id and cpp-httplib pseudo-headers are not).
bool forward_request_header(std::string_view name);

/// Whether an upstream response header is relayed to the client (framing, hop-by-hop and the
/// ones the gateway sets itself are not).
bool relay_response_header(std::string_view name);

/// A valid client-supplied request id (printable ASCII, at most 256 bytes)?
bool valid_request_id(std::string_view id);

/// A fresh 32-hex-digit request id. Thread-safe.
std::string new_request_id();

/// The reason phrase for an HTTP status ("OK", "Not Found", ...).
std::string_view reason_phrase(int status);

}  // namespace vllm_router::server
