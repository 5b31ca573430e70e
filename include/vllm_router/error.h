// Error codes of the library and their mapping to HTTP status and OpenAI error types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// What went wrong. Stable numeric values (the C API exposes them).
enum class Errc : std::uint8_t {
  ok = 0,
  invalid_argument = 1,   ///< a caller passed something unusable
  invalid_json = 2,       ///< request body is not valid JSON
  missing_model = 3,      ///< request body has no string `model`
  unknown_model = 4,      ///< `model` resolves to nothing in the catalog
  body_too_large = 5,     ///< request body above the configured limit
  no_endpoint = 6,        ///< the model's pool has no usable endpoint
  connect_failed = 7,     ///< every tried endpoint refused or failed before the request was sent
  timeout = 8,            ///< upstream connect/read timeout
  upstream_protocol = 9,  ///< upstream answered something that is not HTTP/1.1
  upstream_closed = 10,   ///< upstream closed the connection mid-answer
  cancelled = 11,         ///< the downstream client went away
  config = 12,            ///< invalid configuration (message names the field)
  unauthorized = 13,      ///< missing or wrong API key
  overloaded = 14,        ///< a configured limit refuses the request
  internal = 15,          ///< a bug; please report
  not_found = 16,         ///< no such route
  // 17 was method_not_allowed (never produced; removed in 0.2, the number stays retired)
  request_timeout = 18,   ///< the client was too slow sending its request
  headers_too_large = 19, ///< request head above the limit
  rate_limited = 20,      ///< too many requests waiting: back off (429)
  quota_exceeded = 21,    ///< the API key's rate limit (requests, tokens or concurrent requests): 429
  forbidden = 22,         ///< the API key may not do this (a model outside its scope, an admin route): 403
};

/// An error value: a code, a human message, and the offending field or parameter if any.
/// Plain value type; copy freely.
struct Error {
  Errc code = Errc::internal;
  std::string message;
  std::string param;  ///< request field or config path that caused it; may be empty
};

/// The HTTP status the gateway answers for `code` (e.g. unknown_model -> 404).
VLLM_ROUTER_API int http_status(Errc code) noexcept;

/// OpenAI/vLLM error `type` for `code` (e.g. "NotFoundError"). Static storage.
VLLM_ROUTER_API std::string_view error_type(Errc code) noexcept;

/// Stable snake_case name of `code` (e.g. "unknown_model"). Static storage.
VLLM_ROUTER_API std::string_view errc_name(Errc code) noexcept;

/// Renders `{"error":{"message","type","param","code"}}` (OpenAI's nested shape, `code` is the
/// integer HTTP status as vLLM >= 0.10.1 does, except for a key's rate limit: OpenAI's
/// "rate_limit_exceeded"). Strings are JSON-escaped.
VLLM_ROUTER_API std::string to_openai_json(const Error& error);

VLLM_ROUTER_END_NAMESPACE
