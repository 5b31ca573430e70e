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

VLLM_ROUTER_BEGIN_NAMESPACE

/// Taken when a policy picks an endpoint: increments its in-flight count. `complete()` records
/// the outcome once (state counters, observer) and decrements; a lease destroyed without
/// `complete()` records OutcomeKind::cancelled. Move-only; not for concurrent use.
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
  const std::string& model() const noexcept { return model_; }
  /// When the lease was taken.
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }

 private:
  std::shared_ptr<const Endpoint> endpoint_;
  std::shared_ptr<EndpointState> state_;
  std::string model_;
  std::shared_ptr<Observer> observer_;
  std::shared_ptr<OutlierDetector> outlier_;
  std::chrono::steady_clock::time_point started_{};
};

VLLM_ROUTER_END_NAMESPACE
