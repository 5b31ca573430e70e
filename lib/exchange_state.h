// Internal: the state of one Exchange (lib/exchange.cpp runs the rules, lib/exchange_http.cpp
// builds and reads the HTTP messages).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "disaggregation.h"
#include "http_util.h"
#include "response_reader.h"
#include "router_impl.h"
#include "trace_context.h"
#include "usage_scanner.h"
#include "vllm_router/exchange.h"

VLLM_ROUTER_BEGIN_NAMESPACE

struct Exchange::State {
  enum class Phase : std::uint8_t { idle, waiting, connecting, sending, awaiting, relaying, done };

  State(Router& r, ExchangeHost& h) : router(r), impl(detail::RouterAccess::impl(r)), host(h) {}

  Router& router;
  Router::Impl& impl;
  ExchangeHost& host;

  // The request, for the exchange's life.
  ClientRequest request;
  RequestView own_view;            // when the exchange parsed the body itself
  const RequestView* view = nullptr;
  std::shared_ptr<const RouterConfig> config;  // the routing table's, when the request came
  std::string rewritten;           // the body with an alias rewritten to the served name
  std::string_view body;           // what goes upstream (request body or rewritten)

  Phase phase = Phase::idle;
  TimePoint started{};
  TimePoint total_deadline = TimePoint::max();
  TimePoint phase_deadline = TimePoint::max();
  TimePoint stall_deadline = TimePoint::max();
  TimePoint wait_started{};
  std::string wait_reason;  // set while the wait is for a LoRA adapter's load (lib/lora.h)
  TimePoint attempt_started{};
  TimePoint responded_at{};
  TimePoint first_body_at{};  // the first body byte relayed; valid when bytes != 0
  TimePoint last_body_at{};   // the last body chunk relayed (an event stream's gaps)
  bool in_admission = false;  // holds a place in the router's wait
  bool counted = false;       // counted in the router's active exchanges
  bool retry_held = false;    // holds a slot of the retry budget
  bool paused = false;        // the client stopped reading
  bool responded = false;     // on_head was called
  bool pooled = false;        // the current connection came from a keep-alive pool
  bool fresh = false;         // the next connect must not take a pooled connection
  bool has_connection = false;
  std::chrono::nanoseconds queue_wait{0};

  // The current attempt.
  std::optional<Route> route;
  unsigned attempts = 0;
  std::vector<std::string> tried;  // endpoint ids, for exclude
  Error last_error;
  std::string upstream_head;
  detail::ResponseReader reader;
  bool event_stream = false;  // the answer is text/event-stream
  std::uint64_t bytes = 0;  // body bytes the client got
  detail::UsageScanner usage;  // the answer's token counts
  TokenUsage final_usage;      // what the summary reported (once done)
  std::string model;        // the resolved pool's model
  std::shared_ptr<const Endpoint> last_endpoint;  // for the summary (the route may be gone)

  // Prefill/decode disaggregation (lib/disaggregation.*): `pd` is made at the first request of a
  // model with a prefill pool and kept for the next; `pd_on` says this request runs in legs.
  std::unique_ptr<detail::PdState> pd;
  bool pd_on = false;
  unsigned leg_base = 0;  // attempts before the current leg (max_attempts counts per leg)

  // Tracing (RouterOptions::tracing): the ids whenever it is on, the spans' facts when sampled.
  struct TraceAttempt {
    AttemptTrace facts;                        // its views are set when reported
    std::shared_ptr<const Snapshot> snapshot;  // keeps the endpoint, policy and model names
    char route_span[16];
    char span[16];
    std::uint64_t route_span_bits = 0, span_bits = 0;  // the same ids as numbers
    bool ended = false;
    std::string error;
  };
  struct Trace {
    bool on = false;
    bool sampled = false;
    bool continued = false;  // the client's traceparent was valid: its trace goes on
    bool routing = false;    // a routing decision is under way since route_started
    char trace_id[32];
    char span_id[16];        // the request's span
    char parent_id[16];      // the client's span (continued traces)
    char attempt_span[16];   // the current attempt's span: the parent id sent upstream
    // the same ids as numbers (for the OTLP encoder: no hex parsing)
    detail::TraceIdBits trace_bits;
    std::uint64_t span_bits = 0, parent_bits = 0, attempt_span_bits = 0;
    std::string_view state;  // the client's tracestate (continued traces)
    std::int64_t start_unix_ns = 0;
    TimePoint route_started{};
    std::vector<TraceAttempt> attempts;  // sampled only
    std::vector<AttemptTrace> views;     // for the summary
  } trace;

  // exchange_trace.cpp
  /// Starts or continues the request's trace from the client's headers (tracing on).
  void start_trace();
  /// The trace's ids and, when sampled, its spans' facts into the summary (tracing on).
  void trace_summary(ExchangeSummary& sum, TimePoint now, std::string_view error);
  /// A routing decision begins (sampled): its span starts; a wait for capacity is in it.
  void trace_routing(TimePoint now);
  /// The routing decision found no endpoint: its span ends with `error`.
  void trace_routing_failed(TimePoint now, std::string_view error);
  /// The route was taken: the attempt's span id (always, for the upstream traceparent), and
  /// when sampled the routing span's end and the attempt span's start.
  void trace_routed(TimePoint now);
  /// The current attempt's span ends (sampled).
  void trace_attempt_end(OutcomeKind kind, int status, TimePoint now, std::string_view error);
  /// The exchange leaves the current attempt for another endpoint (sampled).
  void trace_retry(RetryReason reason);

  // disaggregation.cpp
  /// A completion for a model with a prefill pool (`snap` has some): prepares the legs and
  /// sets pd_on; the body goes to the prefill leg first. An error for a body it cannot split.
  std::optional<Error> pd_begin(const Snapshot& snap);

  // exchange_http.cpp
  /// The upstream request head for the current route into upstream_head.
  void build_upstream_head();
  /// The client's answer head from the upstream one; false when the client is gone.
  bool send_head();
  /// Bad header values (CR, LF, NUL) in the client's headers, or ok.
  std::optional<Error> check_target() const;
  std::optional<Error> check_headers() const;
  /// The key's model scope (after parse_body), or ok.
  std::optional<Error> check_scope() const;
  /// Parses the body when the driver did not: JSON, or multipart/form-data by Content-Type;
  /// fills the session key from the configured header.
  std::optional<Error> parse_body();
};


VLLM_ROUTER_END_NAMESPACE

namespace vllm_router::detail {
/// Is this client request header forwarded upstream (hop-by-hop, framing, the client's
/// credentials and the headers the router sets itself are not)?
bool forward_request_header(std::string_view name) noexcept;
/// Is this upstream response header relayed to the client (framing, hop-by-hop and the ones
/// the router sets itself are not)?
bool relay_response_header(std::string_view name) noexcept;
/// Is `name` one of the comma-separated tokens of `list` (case-insensitive)?
bool listed_in(std::string_view list, std::string_view name) noexcept;
/// The W3C trace-context headers.
inline bool is_traceparent(std::string_view name) noexcept { return name.size() == 11 && iequals(name, "traceparent"); }
inline bool is_tracestate(std::string_view name) noexcept { return name.size() == 10 && iequals(name, "tracestate"); }
}  // namespace vllm_router::detail
