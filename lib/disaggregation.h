// Internal: prefill/decode disaggregation in the exchange core (docs/disaggregation.md). A model
// with a prefill pool runs a completion in two legs: the prefill leg (the prompt only, answer read
// whole by the router, never relayed) and the decode leg (the client's request with the prefill's
// `kv_transfer_params`, relayed). The rules (which leg, retries, fallback) are the exchange's
// (lib/exchange.cpp); this file holds the leg state and the bodies each leg sends.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vllm_router/endpoint.h"
#include "vllm_router/result.h"

namespace vllm_router::detail {

enum class PdLeg : std::uint8_t {
  prefill,    ///< the prompt on a prefill endpoint (answer read by the router)
  decode,     ///< the request with the prefill's kv_transfer_params on a decode endpoint
  colocated,  ///< no prefill endpoint could take it: the whole request on a decode endpoint
};

/// The name of a leg for logs and span attributes: "prefill", "decode", "colocated".
std::string_view pd_leg_name(PdLeg leg) noexcept;

/// The legs of one exchange of a disaggregated model. Kept by the exchange across requests of
/// a connection (its buffers are reused).
struct PdState {
  PdLeg leg = PdLeg::prefill;
  bool reading = false;           // the prefill leg's 200 answer is being read
  bool fallback_allowed = true;   // Pool::colocated_fallback
  bool fell_back = false;         // the request ran colocated after the prefill leg failed
  std::string prefill_body;       // what the prefill leg sends
  std::string decode_body;        // what the decode leg sends
  std::string answer;             // the prefill answer, read whole
  std::string request_id;         // made when the client sent none: both legs carry one id
  std::chrono::steady_clock::time_point started{};  // the prefill leg began
  std::chrono::nanoseconds prefill_time{0};         // the prefill leg took (done or given up)
  std::shared_ptr<const Endpoint> prefill_endpoint;  // the prefill leg's last endpoint

  void reset() {
    leg = PdLeg::prefill;
    reading = fell_back = false;
    fallback_allowed = true;
    prefill_body.clear();
    decode_body.clear();
    answer.clear();
    request_id.clear();
    prefill_time = std::chrono::nanoseconds{0};
    prefill_endpoint.reset();
  }
};

/// Longest prefill answer the router reads (a max_tokens 1 answer is a few hundred bytes; prompt
/// logprobs can make it larger).
inline constexpr std::size_t kMaxPrefillAnswer = 8u << 20;

/// Is a request on `path` split into legs (vLLM's disaggregated serving covers the completion
/// APIs only: /v1/completions, /v1/chat/completions)?
bool pd_splits(std::string_view path) noexcept;

/// The prefill leg's body from the client's JSON object `body`: the same members but `stream`
/// false, `max_tokens` 1 (and `max_completion_tokens` 1 when present), no `stream_options`,
/// `min_tokens`, `min_completion_tokens`, and `kv_transfer_params` asking for a remote decode.
Result<void> pd_prefill_body(std::string_view body, std::string& out);

/// The raw JSON object `kv_transfer_params` of a prefill answer (a view into `answer`, which
/// may be padded in place for the parser). Errors: not JSON, or no such object.
Result<std::string_view> pd_transfer_params(std::string& answer);

/// The decode leg's body: the client's `body` with `kv_transfer_params` set to `params`.
Result<void> pd_decode_body(std::string_view body, std::string_view params, std::string& out);

}  // namespace vllm_router::detail
