// Observer: the events a Router emits (picks, retries, ejections, attempt outcomes, finished
// requests), for metrics, logs and traces.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

#include "vllm_router/endpoint.h"
#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// How one attempt on one endpoint ended.
enum class OutcomeKind : std::uint8_t {
  success,          ///< upstream answered (any status) and the body was relayed in full
  connect_failure,  ///< refused/unreachable before the request was sent (safe to retry)
  timeout,          ///< connect or read timeout
  upstream_closed,  ///< upstream broke the connection mid-answer
  cancelled,        ///< the client left (or the lease was dropped without an outcome)
  error,            ///< any other failure (protocol error, local I/O)
};

/// The facts of one attempt; filled by the forwarding path and handed to Lease::complete().
struct Outcome {
  OutcomeKind kind = OutcomeKind::cancelled;
  int status = 0;                              ///< upstream HTTP status, 0 if none
  std::chrono::nanoseconds ttfb{0};            ///< attempt start to the upstream response head
  std::chrono::nanoseconds latency{0};         ///< attempt start to end
  std::uint64_t bytes = 0;                     ///< body bytes relayed to the client, also when cut
};

/// A routing decision (Router::route picked `endpoint`).
struct PickEvent {
  std::string_view policy;     ///< the pool's policy name
  std::size_t candidates = 0;  ///< endpoints the policy chose among
  bool panic = false;          ///< too few healthy endpoints: health was ignored
  /// Prompt characters already served by the chosen endpoint, as far as the policy knows
  /// (prefix_aware: the matched chunks x prefix_chunk_chars); -1: the policy does not tell.
  std::int64_t prefix_match = -1;
};

/// Why an exchange tries another endpoint.
enum class RetryReason : std::uint8_t {
  connect_failure,     ///< refused or unreachable
  connect_timeout,     ///< no connection within timeouts.connect_ms
  status_503,          ///< the replica answered 503 (overloaded or stopping)
  first_byte_timeout,  ///< no answer head within the first-byte (or write) timeout
  reset,               ///< the connection broke before the answer head
};

/// How a client request (an Exchange) ended.
enum class ExchangeEnd : std::uint8_t {
  ok,              ///< the upstream answer (any status) was relayed in full
  rejected,        ///< answered locally with an error: bad request, unknown model, no capacity...
  upstream_error,  ///< no usable answer (every attempt failed), or the answer broke mid-body
  timeout,         ///< a timeout ended it (504 before the answer, a cut body after)
  cancelled,       ///< the client left, or stopped reading for too long
};

/// Tokens a request used, from the answer's `usage` when it has one (`estimated` otherwise).
struct TokenUsage {
  std::uint64_t prompt = 0;
  std::uint64_t completion = 0;
  bool estimated = false;
  std::uint64_t total() const noexcept { return prompt + completion; }
};

/// One routing decision of a traced request and the upstream attempt it led to
/// (ExchangeSummary::trace_attempts). Times are offsets from the exchange's start. Views are
/// valid during the on_exchange call only.
struct AttemptTrace {
  std::string_view route_span_id;  ///< the routing decision's span (16 hex digits)
  std::string_view span_id;        ///< the attempt's span (16 hex digits), the parent id sent
                                   ///< upstream in `traceparent`; empty when routing failed
  const Endpoint* endpoint = nullptr;  ///< the endpoint picked; null when routing failed
  std::string_view model;          ///< the model name sent upstream (an alias resolved)
  std::string_view policy;         ///< the pool's policy
  std::size_t candidates = 0;      ///< endpoints the policy chose among
  bool panic = false;              ///< health was ignored (too few healthy endpoints)
  std::int64_t prefix_match = -1;  ///< PickEvent::prefix_match
  std::chrono::nanoseconds route_start{0};  ///< routing began (a wait for capacity included)
  std::chrono::nanoseconds route_end{0};    ///< routing ended (the pick, or its failure)
  std::chrono::nanoseconds start{0};        ///< the attempt began (== route_end)
  std::chrono::nanoseconds end{0};          ///< the attempt's outcome was known
  OutcomeKind outcome = OutcomeKind::cancelled;
  int status = 0;                  ///< the upstream's HTTP status, 0 if none
  bool retried = false;            ///< the exchange went on to another endpoint, for `retry_reason`
  RetryReason retry_reason = RetryReason::connect_failure;
  std::string_view error;          ///< why the attempt (or the routing) failed; empty otherwise
  /// Prefill/decode disaggregation: "prefill", "decode" or "colocated" (a fallback); empty for
  /// a model without a prefill pool.
  std::string_view leg;
  /// The same span ids as numbers (the hex digits read big-endian), 0 when not given: the OTLP
  /// encoder writes these without parsing the hex.
  std::uint64_t route_span_bits = 0;
  std::uint64_t span_bits = 0;
};

/// The facts of one finished client request. Views are valid during the call only.
struct ExchangeSummary {
  std::string_view request_id;
  /// W3C trace id (32 hex digits): the client's (a valid `traceparent` continued) or one the
  /// router started; empty when tracing is off (RouterOptions::tracing) or the request never
  /// reached the exchange.
  std::string_view trace_id;
  std::string_view span_id;          ///< the request's own span (16 hex digits) when traced
  std::string_view parent_span_id;   ///< the client's span (16 hex) when it sent a valid traceparent
  std::string_view trace_state;      ///< the client's `tracestate` when its trace was continued
  /// The ids above as numbers (the hex digits read big-endian: trace_id's first 16 are
  /// trace_id_high), 0 when not given (ids are never all zeros): encoders use them as they are.
  std::uint64_t trace_id_high = 0, trace_id_low = 0, span_id_bits = 0, parent_span_id_bits = 0;
  bool sampled = false;              ///< the trace is recorded (exporters export only these)
  std::int64_t start_unix_ns = 0;    ///< wall-clock start (Unix nanoseconds) when sampled, else 0
  std::string_view method;           ///< the request's method
  /// When sampled: each routing decision and upstream attempt, in order; empty otherwise.
  std::span<const AttemptTrace> trace_attempts;
  std::string_view client_address;   ///< the client's address as the front end saw it; may be empty
  std::string_view path;             ///< the request target's path (no query), e.g. "/v1/completions"
  std::string_view requested_model;  ///< as the client sent it (may be anything: never a label)
  std::string_view model;            ///< the resolved pool's model; empty when it did not resolve
  const Endpoint* endpoint = nullptr;  ///< the last endpoint tried; null when none
  ExchangeEnd end = ExchangeEnd::ok;
  int status = 0;          ///< the status the client got (499: it left before any answer)
  unsigned attempts = 0;   ///< endpoints tried
  std::chrono::nanoseconds queue_wait{0};  ///< time spent waiting for capacity
  std::chrono::nanoseconds ttfb{0};        ///< start to the answer head sent to the client
  std::chrono::nanoseconds ttft{0};        ///< start to the first body byte relayed (a stream's first event); 0: none
  std::chrono::nanoseconds duration{0};    ///< start to end
  std::uint64_t bytes = 0;                 ///< body bytes sent to the client
  std::uint64_t bytes_in = 0;              ///< request body bytes received
  bool stream = false;                     ///< the answer was an event stream
  std::string_view error;                  ///< why it failed; empty when end == ok
  std::string_view key_id;                 ///< the client's API key id; empty without keys
  TokenUsage usage;                        ///< tokens of the answer (zero when none came)
  /// Prefill/decode disaggregation (docs/disaggregation.md): the prefill leg's endpoint (null:
  /// the request was not split), the prefill leg's time (its retries included) and whether
  /// the request ran colocated on a decode endpoint because no prefill endpoint could take it.
  const Endpoint* prefill_endpoint = nullptr;
  std::chrono::nanoseconds prefill{0};
  bool colocated_fallback = false;
};

/// Stable lower-case names of the enums above (metric labels, access-log fields, span
/// attributes): "connect_failure", "status_503", "upstream_error"...
VLLM_ROUTER_API std::string_view to_string(OutcomeKind kind) noexcept;
VLLM_ROUTER_API std::string_view to_string(RetryReason reason) noexcept;
VLLM_ROUTER_API std::string_view to_string(ExchangeEnd end) noexcept;

/// Receives events. Called on request threads, concurrently: implementations must be
/// thread-safe and fast; exceptions must not escape (they are swallowed). Every method has an
/// empty default, so an observer overrides only what it needs.
class VLLM_ROUTER_API Observer {
 public:
  virtual ~Observer();
  /// One attempt ended. `model` is the resolved pool's model name.
  virtual void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome);
  /// Router::route picked `endpoint` for a request of `model`.
  virtual void on_pick(std::string_view model, const Endpoint& endpoint, const PickEvent& pick);
  /// An exchange leaves `endpoint` for another one (attempt `attempt` failed for `reason`).
  virtual void on_retry(std::string_view model, const Endpoint& endpoint, RetryReason reason,
                        unsigned attempt);
  /// The outlier detector ejected `endpoint` for `duration` (its `ejections`-th ejection).
  virtual void on_ejection(const Endpoint& endpoint, std::chrono::nanoseconds duration,
                           std::uint32_t ejections);
  /// A client request ended (every Exchange reports once; so do requests a front end answers
  /// itself, such as 401).
  virtual void on_exchange(const ExchangeSummary& summary);
  /// A body chunk of an event stream was relayed `gap` after the previous one (the stream's
  /// first chunk reports nothing: ExchangeSummary::ttft covers it). Called on the data path for
  /// every later chunk (one upstream chunk, or the part of it one read brought; chunks that one
  /// read brought together report a gap of 0): keep it to a few atomic increments.
  virtual void on_stream_gap(std::string_view model, const Endpoint& endpoint, std::chrono::nanoseconds gap);
};

VLLM_ROUTER_END_NAMESPACE
