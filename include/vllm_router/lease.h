// Lease: RAII pairing of one pick with exactly one Outcome, keeping in-flight counts honest.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_state.h"
#include "vllm_router/export.h"
#include "vllm_router/observer.h"
#include "vllm_router/outlier_detector.h"

namespace vllm_router::detail {
struct LeaseHooks;  // what a Router's leases report to (observer, outlier detector, waiters)
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Taken when a policy picks an endpoint: increments its in-flight count. `complete()` records
/// the outcome once (state counters, outlier detection, observer), decrements, and wakes
/// requests waiting for capacity; a lease destroyed without `complete()` records
/// OutcomeKind::cancelled. A lease keeps what it reports to alive, so it may outlive the Router
/// that made it (its endpoint and state too). Move-only; not for concurrent use.
class VLLM_ROUTER_API Lease {
 public:
  Lease() = default;
  /// `observer` and `outlier` may be null; the lease shares ownership, so it may outlive the
  /// Router that made it.
  Lease(std::shared_ptr<const Endpoint> endpoint, std::shared_ptr<EndpointState> state,
        std::string model, std::shared_ptr<Observer> observer,
        std::shared_ptr<OutlierDetector> outlier = nullptr);
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  /// Records `outcome`. Later calls do nothing.
  void complete(const Outcome& outcome) noexcept;
  /// True while holding an endpoint and not yet completed.
  bool active() const noexcept { return state_ != nullptr; }

  const Endpoint& endpoint() const noexcept { return *endpoint_; }
  const std::shared_ptr<const Endpoint>& endpoint_ptr() const noexcept { return endpoint_; }
  const std::string& model() const noexcept { return *model_; }
  /// When the lease was taken.
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }

 private:
  friend class Router;
  // Router::route: reports to the router's shared hooks (kept alive by the lease).
  // `model` aliases the routing table that holds the name (no copy, no allocation).
  // `counted`: the caller already took the in-flight place (under a per-endpoint cap).
  Lease(std::shared_ptr<const detail::LeaseHooks> hooks, std::shared_ptr<const Endpoint> endpoint,
        std::shared_ptr<EndpointState> state, std::shared_ptr<const std::string> model, bool counted = false);

  std::shared_ptr<const Endpoint> endpoint_;
  std::shared_ptr<EndpointState> state_;
  std::shared_ptr<const std::string> model_;
  std::shared_ptr<const detail::LeaseHooks> hooks_;
  std::chrono::steady_clock::time_point started_{};
};

VLLM_ROUTER_END_NAMESPACE
