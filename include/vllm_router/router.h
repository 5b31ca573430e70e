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

#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/lease.h"
#include "vllm_router/observer.h"
#include "vllm_router/policy.h"
#include "vllm_router/request.h"
#include "vllm_router/result.h"
#include "vllm_router/snapshot.h"
#include "vllm_router/transport.h"

namespace vllm_router {

/// Collaborators of a Router. All optional.
struct RouterOptions {
  std::shared_ptr<Transport> transport;  ///< default: make_http_transport(from config timeouts)
  std::shared_ptr<Observer> observer;    ///< default: none
  PolicyRegistry policies = PolicyRegistry::with_builtins();
  std::uint64_t seed = 0;                ///< 0: seeded from std::random_device
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
  /// Errors: missing_model, unknown_model (message names it), no_endpoint.
  Result<Route> route(const RequestView& request,
                      std::span<const std::string_view> exclude = {});

  /// route() + send: sends `request` (rewriting `model` when an alias resolved) and returns once
  /// the upstream head arrived. An endpoint that fails before the request was delivered
  /// (connect_failed) is skipped and another is tried, up to max_attempts.
  Result<Exchange> forward(const RequestView& view, const UpstreamRequest& request,
                           const AliveCheck& alive = {});

  const RouterConfig& config() const noexcept { return config_; }
  const PolicyRegistry& policies() const noexcept { return options_.policies; }

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
};

}  // namespace vllm_router
