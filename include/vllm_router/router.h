// Router: the facade: resolve a request's model, pick an endpoint, forward, account the outcome.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/lease.h"
#include "vllm_router/observer.h"
#include "vllm_router/policy.h"
#include "vllm_router/request.h"
#include "vllm_router/result.h"
#include "vllm_router/snapshot.h"
#include "vllm_router/tracing.h"
#include "vllm_router/transport.h"

namespace vllm_router::detail {
struct RouterAccess;
class BlockingExchange;
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

/// Collaborators of a Router. All optional.
struct RouterOptions {
  std::shared_ptr<Observer> observer;    ///< default: none
  PolicyRegistry policies = PolicyRegistry::with_builtins();
  std::uint64_t seed = 0;                ///< 0: seeded from std::random_device
  std::shared_ptr<const Clock> clock;    ///< default: SteadyClock (tests inject a ManualClock)
  /// W3C Trace Context for the exchanges (Server, Forwarder, Router::forward); default off.
  TracingOptions tracing;
};

/// A routing decision: the endpoint picked for a request and the lease that accounts for it.
struct Route {
  std::shared_ptr<const Snapshot> snapshot;  ///< keeps the pool alive for the request's life
  const Pool* pool = nullptr;
  Resolution resolution;
  Lease lease;
  PickEvent pick;  ///< how it was chosen (what Observer::on_pick got); views into `snapshot`
  /// Placement state held while the route lives: a LoRA adapter marked in use on the chosen
  /// replica, so it is not unloaded to make room under this request. Null for most routes.
  std::shared_ptr<const void> hold;
};

/// Cancels a forward from any thread (Router::forward, Response::relay). Thread-safe. Owns a
/// file descriptor (an eventfd) that a blocking forward waits on beside its socket.
class VLLM_ROUTER_API CancelToken {
 public:
  CancelToken();
  ~CancelToken();
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  /// Cancels: a forward using this token stops at once (outcome cancelled). Idempotent.
  void cancel() noexcept;
  bool cancelled() const noexcept;
  /// Readable once cancelled (for poll()); -1 if none could be made (then polled every 50 ms).
  int fd() const noexcept { return fd_; }

 private:
  int fd_ = -1;
  std::atomic<bool> cancelled_{false};
};

/// Per-call settings of Router::forward.
struct ForwardOptions {
  /// Whole-exchange limit (head and body); 0: timeouts.total_ms of the routing table. The
  /// shorter of the two wins.
  std::chrono::milliseconds timeout{0};
  /// Stops the forward when cancelled, from any thread. Must outlive the Response.
  const CancelToken* cancel = nullptr;
  /// Polled every 50 ms while waiting; false cancels (a client that left). Optional.
  AliveCheck alive;
  /// Sent upstream as X-Request-Id; empty: the request's own X-Request-Id header, if any.
  std::string_view request_id;
  std::string_view client_address;  ///< sent upstream as X-Forwarded-For; empty: none
};

/// A forwarded answer whose head arrived: status and headers known, body still to pull. The
/// exchange (retries, timeouts, lease) runs inside; destroying it before the body ended closes
/// the upstream connection and records the attempt as cancelled. Move-only; one thread at a
/// time.
class VLLM_ROUTER_API Response {
 public:
  Response(Response&&) noexcept;
  Response& operator=(Response&&) noexcept;
  ~Response();

  int status() const noexcept;
  /// End-to-end headers of the answer (framing and hop-by-hop ones removed).
  const Headers& headers() const noexcept;
  /// The body's length when the upstream sent one.
  std::optional<std::uint64_t> content_length() const noexcept;
  bool event_stream() const noexcept;
  const Endpoint& endpoint() const noexcept;
  const std::string& model() const noexcept;
  unsigned attempts() const noexcept;
  /// Relays the body into `sink` as it arrives (one write per upstream read) and completes the
  /// lease. Returns the bytes relayed. Errors: timeout (idle or total limit), upstream_closed,
  /// upstream_protocol, cancelled (the sink refused, alive() turned false or the token was
  /// cancelled); the bytes relayed before a failure went to the sink. Call at most once.
  Result<std::uint64_t> relay(BodySink& sink);

 private:
  friend class Router;
  explicit Response(std::unique_ptr<detail::BlockingExchange> exchange) noexcept;
  std::unique_ptr<detail::BlockingExchange> exchange_;
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

  /// The current routing table (never null); its `config` is the configuration in force.
  std::shared_ptr<const Snapshot> snapshot() const;

  /// Resolves the request's model and picks an endpoint not in `exclude` (endpoint ids).
  /// Candidates are the pool's healthy endpoints (active checks passed, not ejected); when
  /// fewer than panic_threshold_percent are healthy the pool panics and uses them all.
  /// Endpoints at the model's max_in_flight_per_endpoint are skipped. No heap allocation (a
  /// thread's first decisions may size its buffers). Cost: the policy's own (O(1) for
  /// round_robin, power_of_two and session through Policy::pick_from_pool, one pass over the
  /// pool for the others); the panic decision reads a cached, exact count of healthy endpoints.
  /// Errors: missing_model, unknown_model (message names it), no_endpoint, overloaded (every
  /// candidate is full: the caller may wait and retry).
  Result<Route> route(const RequestView& request,
                      std::span<const std::string_view> exclude = {});

  /// route() + send, blocking the calling thread: the rules of an Exchange (retries within the
  /// retry budget, every timeout, the wait for capacity when every replica is full) driven over
  /// blocking sockets. Returns once the answer's head arrived; errors are what a gateway would
  /// answer (http_status(), to_openai_json()). `request.headers` are the client's headers (the
  /// exchange filters them); `request.path` the target.
  Result<Response> forward(const RequestView& view, const UpstreamRequest& request,
                           const ForwardOptions& options = {});

  /// Calls `wake` (on whatever thread ended the lease; it must be quick and must not block)
  /// whenever a lease ends while a request waits for capacity (ExchangeHost::on_wait): a host
  /// driving exchanges posts it to its loop and calls Exchange::retry() on its waiters, in
  /// order. Returns an id for remove_capacity_listener(). Thread-safe.
  int add_capacity_listener(std::function<void()> wake);
  void remove_capacity_listener(int id);
  /// Requests waiting for capacity now (at most the configuration's queue_max). Thread-safe.
  std::uint32_t queued() const noexcept;

  const PolicyRegistry& policies() const noexcept;
  const Clock& clock() const noexcept;

  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  ~Router();

  struct Impl;  ///< opaque: the library's own state (pimpl)

 private:
  friend struct detail::RouterAccess;
  explicit Router(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
