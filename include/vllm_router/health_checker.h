// HealthChecker: active health probes (GET /health) of every endpoint of a Router.
#pragma once

#include <memory>

#include "vllm_router/clock.h"
#include "vllm_router/export.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Probes each endpoint of the router's current snapshot with `GET <health_check.path>` every
/// interval (per model config; an endpoint listed by several models uses the first). A 200
/// counts as a pass; anything else (refused, timeout, 5xx) as a failure. After
/// unhealthy_threshold failures in a row the endpoint's `active_healthy` turns false; after
/// healthy_threshold passes it turns true. The only writer of EndpointState::active_healthy.
/// While a checker exists, endpoints added by Router::update start unhealthy until a probe
/// passes (vLLM refuses connections while it loads weights).
///
/// Probes of a round run on a bounded pool (at most kMaxParallel at once, threads kept between
/// rounds), not a thread each. `run_once()` is deterministic for tests (inject a ManualClock);
/// `start()` runs it on a background thread. A host that embeds the Router starts its own
/// checker (the Router does not). Thread-safe; must not outlive the Router.
class VLLM_ROUTER_API HealthChecker {
 public:
  static constexpr std::size_t kMaxParallel = 8;

  HealthChecker(Router& router, std::shared_ptr<Transport> transport, std::shared_ptr<const Clock> clock);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  /// Probes every endpoint whose probe is due at the clock's now (all of them the first time)
  /// and waits for the results. Returns how many were probed.
  std::size_t run_once();
  /// Runs run_once() every 100 ms on a background thread until stop().
  void start();
  void stop();

  struct Impl;  ///< opaque (pimpl)

 private:
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
