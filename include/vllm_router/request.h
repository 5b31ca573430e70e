// RequestView: the few fields of an OpenAI request body that routing needs, parsed once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

namespace vllm_router {

/// Routing-relevant facts of one request body. Views point into the caller's body, which must
/// outlive the RequestView. Plain value type.
struct RequestView {
  std::string model;          ///< unescaped `model`; empty when absent (see has_model)
  bool has_model = false;
  bool stream = false;        ///< `stream: true`
  std::string session_key;    ///< body `user`, when a string (header keys are added by callers)
  std::string_view prompt_prefix;  ///< raw JSON text of `prompt` or `messages`, up to 4 KiB
  std::size_t model_offset = 0;    ///< byte offset of the `model` value token (with its quotes)
  std::size_t model_length = 0;    ///< byte length of that token
};

/// Largest prompt prefix kept in RequestView::prompt_prefix.
inline constexpr std::size_t kPromptPrefixBytes = 4096;

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

/// Returns `body` with the `model` value replaced by `model` (JSON-escaped). Used only when an
/// alias must be rewritten to the served name; costs one copy of the body.
VLLM_ROUTER_API std::string rewrite_model(std::string_view body, const RequestView& view,
                                          std::string_view model);

}  // namespace vllm_router
