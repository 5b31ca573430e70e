// Internal: a Router's private state, the hooks its leases report to, and the wait for capacity
// (shared by the Router facade, the exchange core and its drivers; not public API).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "blocking_io.h"
#include "lora.h"
#include "replica_channel.h"
#include "resolver.h"
#include "tls.h"
#include "vllm_router/router.h"

namespace vllm_router::detail {

/// Requests waiting for capacity (every replica of their model at max_in_flight_per_endpoint)
/// and how they learn that a lease ended. Thread-safe.
class Admission {
 public:
  /// Takes a place in the wait if fewer than `limit` wait now.
  bool enter(std::uint32_t limit) noexcept;
  void leave() noexcept;
  std::uint32_t waiting() const noexcept { return waiting_.load(std::memory_order_relaxed); }

  /// A lease ended. Costs one atomic load when nobody waits.
  void notify() noexcept;
  /// Bumped by every notify() while someone waits.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }
  /// Blocks until the generation moves past `seen` or `until` passes (blocking waiters).
  void wait(std::uint64_t seen, std::chrono::steady_clock::time_point until);

  /// Event loops register a wake-up; it is called (from any thread) on notify() while someone
  /// waits. Returns an id for remove_listener().
  int add_listener(std::function<void()> wake);
  void remove_listener(int id);

 private:
  std::atomic<std::uint32_t> waiting_{0};
  std::atomic<std::uint64_t> generation_{0};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<int, std::function<void()>>> listeners_;
  int next_id_ = 1;
};

/// What every lease of a Router reports to. Shared by the Router and its leases (a lease may
/// outlive its Router).
struct LeaseHooks {
  std::shared_ptr<Observer> observer;
  std::shared_ptr<OutlierDetector> outlier;
  mutable Admission admission;  // leases notify it through a const hooks pointer
};

/// Calls `fn` on the observer, swallowing anything it throws (observers must not break the
/// data path).
template <class Fn>
void notify_observer(Observer* observer, Fn&& fn) noexcept {
  if (observer == nullptr) return;
  try {
    fn(*observer);
  } catch (...) {
  }
}

/// Internal access to a Router for the library's own components.
struct RouterAccess {
  static Router::Impl& impl(Router& router) noexcept { return *router.impl_; }
  static const Router::Impl& impl(const Router& router) noexcept { return *router.impl_; }
};

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

struct Router::Impl {
  RouterConfig applied_config;  // the last applied (guarded by update_mutex)
  RouterOptions options;
  std::shared_ptr<const Snapshot> snapshot;  // read/written with std::atomic_load/store
  std::mutex update_mutex;                   // serialises writers only
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> states;  // by endpoint id
  std::atomic<std::uint64_t> next_version{1};
  std::atomic<std::uint64_t> seed_counter{0};
  std::shared_ptr<detail::LeaseHooks> hooks;
  /// Set while a HealthChecker runs: endpoints added by update() start unhealthy.
  std::atomic<int> health_checkers{0};
  std::atomic<std::int64_t> retries_in_flight{0};
  std::atomic<std::int64_t> active_exchanges{0};  // for the retry budget
  /// Replica sync (ReplicaSync): made when one attaches to this router, kept for its lifetime;
  /// `replica` is what picks read (null: off).
  std::shared_ptr<detail::ReplicaChannel> replica_channel;
  std::atomic<detail::ReplicaChannel*> replica{nullptr};
  std::unique_ptr<detail::SocketPool> socket_pool;  // keep-alive sockets of blocking forwards
  /// LoRA-aware placement (lib/lora.h): made by the first configuration with a `lora` model.
  std::shared_ptr<detail::LoraManager> lora;
  /// The LoraPool of a model with `lora` (lib/lora_router.cpp); makes `lora` first if needed.
  std::shared_ptr<const detail::LoraPool> make_lora_pool(const ModelConfig& model, const Pool& pool);

  /// The data path's name resolver (started at first use; its servers are the configuration's
  /// dns_servers at that time). Thread-safe.
  detail::Resolver& resolver();
  std::once_flag resolver_once;
  std::unique_ptr<detail::Resolver> resolver_;

  Result<std::shared_ptr<const Snapshot>> build(const RouterConfig& config);
  /// Router::route's pick in `snapshot->pools[pool]` for a resolved `route`.
  /// Inlined into both callers: route() is the hot one and costs what it did as one function.
  [[gnu::always_inline]] inline Result<Route> pick(Route& route, std::size_t pool, const RequestView& request,
                                                   std::span<const std::string_view> exclude);
  /// Like Router::route, in the resolved model's prefill pool (no_endpoint when it has none).
  Result<Route> route_prefill(const RequestView& request, std::span<const std::string_view> exclude);

  /// The TLS context new connections to https:// endpoints use, as the applied upstream_tls
  /// says (built when a configuration names a CA file or an https endpoint, else at first
  /// use). Thread-safe.
  Result<std::shared_ptr<const detail::TlsContext>> upstream_tls() const;
  /// Makes the context `config` needs before it is applied (an unreadable CA file is a config
  /// error); null when it needs none yet. Call under update_mutex, then install().
  Result<std::shared_ptr<const detail::TlsContext>> prepare_upstream_tls(const RouterConfig& config);
  void install_upstream_tls(const UpstreamTlsConfig& config, std::shared_ptr<const detail::TlsContext> context);
  mutable std::mutex tls_mutex;
  UpstreamTlsConfig tls_config;                                   // guarded by tls_mutex
  mutable std::shared_ptr<const detail::TlsContext> tls_context;  // guarded by tls_mutex; null: not made yet

  /// Retry budget (Envoy's): a retry may start while retries in flight stay below
  /// max(min_concurrent, budget_percent of the exchanges running). Pair true with release.
  bool try_acquire_retry(const RetryConfig& retry) noexcept;
  void release_retry() noexcept { retries_in_flight.fetch_sub(1, std::memory_order_relaxed); }
  Observer* observer() const noexcept { return options.observer.get(); }
};

VLLM_ROUTER_END_NAMESPACE
