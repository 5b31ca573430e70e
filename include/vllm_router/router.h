// Router: the facade: resolve a request's model, pick an endpoint, forward, account the outcome.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/lease.h"
#include "vllm_router/observer.h"
#include "vllm_router/outlier_detector.h"
#include "vllm_router/policy.h"
#include "vllm_router/request.h"
#include "vllm_router/result.h"
#include "vllm_router/snapshot.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Collaborators of a Router. All optional.
struct RouterOptions {
  std::shared_ptr<Transport> transport;  ///< default: make_http_transport(from config timeouts)
  std::shared_ptr<Observer> observer;    ///< default: none
  PolicyRegistry policies = PolicyRegistry::with_builtins();
  std::uint64_t seed = 0;                ///< 0: seeded from std::random_device
  std::shared_ptr<const Clock> clock;    ///< default: SteadyClock (tests inject a ManualClock)
};

/// A routing decision: the endpoint picked for a request and the lease that accounts for it.
struct Route {
  std::shared_ptr<const Snapshot> snapshot;  ///< keeps the pool alive for the request's life
  const Pool* pool = nullptr;
  Resolution resolution;
  Lease lease;
};

/// An upstream answer being relayed: status and headers known, body still to pull. Completes its
/// lease when the relay ends (or as cancelled when destroyed early). Move-only.
class VLLM_ROUTER_API Exchange {
 public:
  Exchange(Route route, std::unique_ptr<UpstreamResponse> response, unsigned attempts);
  int status() const noexcept { return response_->status(); }
  const Headers& headers() const noexcept { return response_->headers(); }
  std::optional<std::uint64_t> content_length() const noexcept {
    return response_->content_length();
  }
  const Endpoint& endpoint() const noexcept { return route_.lease.endpoint(); }
  const std::string& model() const noexcept { return route_.lease.model(); }
  unsigned attempts() const noexcept { return attempts_; }
  /// Relays the body into `sink`, then completes the lease. Call at most once.
  Result<std::uint64_t> relay(BodySink& sink);

 private:
  Route route_;
  std::unique_ptr<UpstreamResponse> response_;
  unsigned attempts_ = 1;
  std::chrono::nanoseconds ttfb_{0};
};

/// Thread-safe: route/forward from any number of threads while update() swaps the snapshot.
class VLLM_ROUTER_API Router {
 public:
  /// Validates `config` and builds the first snapshot. Errc::config names a bad field.
  static Result<std::unique_ptr<Router>> create(const RouterConfig& config,
                                                RouterOptions options = {});

  /// Replaces the routing table. Live endpoint state survives for endpoints that stay.
  /// On error the current table stays.
  Result<void> update(const RouterConfig& config);

  /// The current routing table (never null).
  std::shared_ptr<const Snapshot> snapshot() const;

  /// Resolves the request's model and picks an endpoint not in `exclude` (endpoint ids).
  /// Candidates are the pool's healthy endpoints (active checks passed, not ejected); when
  /// fewer than panic_threshold_percent are healthy the pool panics and uses them all.
  /// Endpoints at the model's max_in_flight_per_endpoint are skipped.
  /// Errors: missing_model, unknown_model (message names it), no_endpoint, overloaded (every
  /// candidate is full: the caller may queue and retry).
  Result<Route> route(const RequestView& request,
                      std::span<const std::string_view> exclude = {});

  /// route() + send: sends `request` (rewriting `model` when an alias resolved) and returns once
  /// the upstream head arrived. An endpoint that fails before the request was delivered
  /// (connect_failed) is skipped and another is tried, up to max_attempts.
  Result<Exchange> forward(const RequestView& view, const UpstreamRequest& request,
                           const AliveCheck& alive = {});

  /// The configuration in force. Not synchronised with update(): read it from the thread that
  /// calls update(), or take snapshot() for the routing table.
  const RouterConfig& config() const noexcept { return config_; }
  const PolicyRegistry& policies() const noexcept { return options_.policies; }
  const Clock& clock() const noexcept { return *options_.clock; }
  OutlierDetector& outlier_detector() noexcept { return *outlier_; }

  /// Retry budget: a retry may start while retries in flight stay below
  /// max(min_concurrent, budget_percent of `active_requests`). Pair each true with
  /// release_retry(). Thread-safe.
  bool try_acquire_retry(std::int64_t active_requests) noexcept;
  void release_retry() noexcept;

  /// Called by HealthChecker: from now on endpoints added by update() start unhealthy and are
  /// not used until they pass a probe.
  void set_health_checked(bool on) noexcept { health_checked_.store(on); }

  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  ~Router();

 private:
  Router(RouterConfig config, RouterOptions options);
  Result<std::shared_ptr<const Snapshot>> build(const RouterConfig& config);

  RouterConfig config_;
  RouterOptions options_;
  std::shared_ptr<const Snapshot> snapshot_;  // read/written with std::atomic_load/store
  std::mutex update_mutex_;                   // serialises writers only
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> states_;  // by endpoint id
  std::atomic<std::uint64_t> next_version_{1};
  std::atomic<std::uint64_t> seed_counter_{0};
  std::shared_ptr<OutlierDetector> outlier_;
  std::atomic<bool> health_checked_{false};
  std::atomic<std::int64_t> retries_in_flight_{0};
};

VLLM_ROUTER_END_NAMESPACE
