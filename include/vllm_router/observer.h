// Observer: the events a Router emits (request outcomes), for metrics and logs.
#pragma once

#include <chrono>
#include <cstdint>
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
  std::chrono::nanoseconds ttfb{0};            ///< request start to first upstream byte
  std::chrono::nanoseconds latency{0};         ///< request start to end
  std::uint64_t bytes = 0;                     ///< body bytes relayed to the client
};

/// Receives events. Called on request threads, concurrently: implementations must be
/// thread-safe and fast; exceptions must not escape (they are swallowed).
class VLLM_ROUTER_API Observer {
 public:
  virtual ~Observer();
  /// One attempt ended. `model` is the resolved pool's model name.
  virtual void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome);
};

VLLM_ROUTER_END_NAMESPACE
