// OutlierDetector: passive health from request outcomes (nginx max_fails, Envoy outlier ejection).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/endpoint_state.h"
#include "vllm_router/export.h"
#include "vllm_router/observer.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Ejects an endpoint after `consecutive_failures` failed attempts in a row (connect failure,
/// timeout, broken connection, 5xx) for a back-off that doubles with each ejection (capped);
/// re-admission is automatic when the back-off ends. At most max_ejection_percent of the
/// endpoints it knows are ejected at once. The only writer of EndpointState::ejected_until_ns
/// and ejections. Thread-safe.
class VLLM_ROUTER_API OutlierDetector {
 public:
  OutlierDetector(OutlierConfig config, std::shared_ptr<const Clock> clock);

  /// Records one attempt's outcome for `state` (called by Lease::complete). Returns how long
  /// the endpoint is now ejected for, 0 when this outcome ejected nothing.
  std::chrono::nanoseconds record(EndpointState& state, const Outcome& outcome);
  /// How many endpoints the ejection cap is computed over (set on every routing-table change).
  void set_endpoint_count(std::size_t count);
  /// Replaces the configuration (reload).
  void configure(const OutlierConfig& config);
  /// Endpoints ejected now.
  std::size_t ejected() const;

  /// Whether an outcome counts as a failure for outlier detection.
  static bool is_failure(const Outcome& outcome) noexcept;

 private:
  std::int64_t now_ns() const { return clock_->now().time_since_epoch().count(); }
  void prune(std::int64_t now) const;

  mutable std::mutex mutex_;
  OutlierConfig config_;
  std::shared_ptr<const Clock> clock_;
  std::size_t endpoints_ = 0;
  mutable std::vector<std::pair<const EndpointState*, std::int64_t>> ejected_;  // state, until
};

VLLM_ROUTER_END_NAMESPACE
