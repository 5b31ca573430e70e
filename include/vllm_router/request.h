// RequestView: the few fields of an OpenAI request body that routing needs, parsed once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Routing-relevant facts of one request body. Views point into the caller's body, which must
/// outlive the RequestView. Plain value type.
struct RequestView {
  std::string model;          ///< unescaped `model`; empty when absent (see has_model)
  bool has_model = false;
  bool stream = false;        ///< `stream: true`
  std::string session_key;    ///< body `user`, when a string (header keys are added by callers)
  /// Raw JSON text of `prompt` or `messages` (or `input`), whole: a view into the body, no
  /// copy. Policies read as much of it as they need (prefix_aware: PolicyOptions::prefix_window_chars).
  std::string_view prompt_prefix;
  std::size_t model_offset = 0;    ///< byte offset of the `model` value token (with its quotes)
  std::size_t model_length = 0;    ///< byte length of that token
  /// A multipart/form-data body (parse_form_request): `model` is a form field and
  /// model_offset/model_length cover its raw value (no quotes, no escaping).
  bool form = false;
};

/// Extra capacity the parser needs past the end of the body (simdjson's padding).
inline constexpr std::size_t kBodyPadding = 64;

/// Parses `body` (a JSON object). If `capacity >= body.size() + kBodyPadding` the bytes past the
/// end are readable and the body is parsed in place; otherwise it is copied once into a padded
/// buffer. Errors: Errc::invalid_json, Errc::missing_model (`model` absent is not an error here:
/// has_model is false; a non-string `model` is). Thread-safe (no shared state).
VLLM_ROUTER_API Result<RequestView> parse_request(std::string_view body, std::size_t capacity = 0);

/// Pads `body` in place (reserves capacity) and parses it without a copy of its bytes.
inline Result<RequestView> parse_request_padded(std::string& body) {
  body.reserve(body.size() + kBodyPadding);
  return parse_request(std::string_view(body), body.capacity());
}

/// Parses a multipart/form-data body (OpenAI's audio routes, e.g. /v1/audio/transcriptions):
/// `model` and `stream` are form fields; `content_type` is the request's Content-Type, whose
/// `boundary` parameter delimits the parts. File parts are skipped, never copied. Errors:
/// Errc::invalid_argument for a missing boundary or a malformed body, Errc::missing_model for a
/// `model` field that is empty. `model` absent is not an error (has_model is false).
VLLM_ROUTER_API Result<RequestView> parse_form_request(std::string_view body, std::string_view content_type);

/// True when `content_type` is multipart/form-data (case-insensitive, parameters ignored).
VLLM_ROUTER_API bool is_form_content_type(std::string_view content_type) noexcept;

/// Returns `body` with the `model` value replaced by `model` (JSON-escaped, or raw for a form
/// body). Used only when an alias must be rewritten to the served name; costs one copy of the
/// body.
VLLM_ROUTER_API std::string rewrite_model(std::string_view body, const RequestView& view,
                                          std::string_view model);

VLLM_ROUTER_END_NAMESPACE
