// Router: snapshot building, model resolution and picking (the wait for capacity: admission.cpp).
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <vector>

#include "router_impl.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// One generator per thread, seeded once from the router's seed and a per-thread counter.
Rng& thread_rng(std::uint64_t seed, std::atomic<std::uint64_t>& counter) {
  thread_local Rng rng(seed + counter.fetch_add(1, std::memory_order_relaxed));
  return rng;
}

}  // namespace

CancelToken::CancelToken() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

CancelToken::~CancelToken() {
  if (fd_ >= 0) ::close(fd_);
}

void CancelToken::cancel() noexcept {
  if (cancelled_.exchange(true)) return;
  if (fd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(fd_, &one, sizeof one);
  }
}

bool CancelToken::cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Router::~Router() = default;

Result<std::unique_ptr<Router>> Router::create(const RouterConfig& config, RouterOptions options) {
  if (auto v = validate(config, options.policies.names()); !v) return v.error();
  if (options.seed == 0) options.seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  if (!options.clock) options.clock = std::make_shared<SteadyClock>();
  auto impl = std::make_unique<Impl>();
  impl->applied_config = config;
  impl->options = std::move(options);
  impl->hooks = std::make_shared<detail::LeaseHooks>();
  impl->hooks->observer = impl->options.observer;
  impl->hooks->outlier = std::make_shared<OutlierDetector>(config.outlier_detection, impl->options.clock);
  impl->socket_pool = std::make_unique<detail::SocketPool>(config.max_idle_connections);
  auto snap = impl->build(config);
  if (!snap) return snap.error();
  std::atomic_store(&impl->snapshot, std::move(snap.value()));
  return std::unique_ptr<Router>(new Router(std::move(impl)));
}

Result<void> Router::update(const RouterConfig& config) {
  Impl& impl = *impl_;
  if (auto v = validate(config, impl.options.policies.names()); !v) return v;
  std::lock_guard<std::mutex> lock(impl.update_mutex);
  auto snap = impl.build(config);
  if (!snap) return snap.error();
  std::atomic_store(&impl.snapshot, std::move(snap.value()));
  impl.applied_config = config;
  impl.hooks->outlier->configure(config.outlier_detection);
  impl.socket_pool->set_max_idle(config.max_idle_connections);
  return {};
}

bool Router::Impl::try_acquire_retry(const RetryConfig& retry) noexcept {
  const std::int64_t active = active_exchanges.load(std::memory_order_relaxed);
  const std::int64_t limit = std::max<std::int64_t>(retry.min_concurrent, active * retry.budget_percent / 100);
  std::int64_t current = retries_in_flight.load(std::memory_order_relaxed);
  while (current < limit) {
    if (retries_in_flight.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

detail::Resolver& Router::Impl::resolver() {
  std::call_once(resolver_once, [this] {
    detail::ResolverOptions o;
    o.servers = std::atomic_load(&snapshot)->config->dns_servers;
    resolver_ = std::make_unique<detail::Resolver>(std::move(o), options.clock);
  });
  return *resolver_;
}

std::shared_ptr<const Snapshot> Router::snapshot() const { return std::atomic_load(&impl_->snapshot); }

const PolicyRegistry& Router::policies() const noexcept { return impl_->options.policies; }

int Router::add_capacity_listener(std::function<void()> wake) {
  return impl_->hooks->admission.add_listener(std::move(wake));
}

void Router::remove_capacity_listener(int id) { impl_->hooks->admission.remove_listener(id); }

const Clock& Router::clock() const noexcept { return *impl_->options.clock; }

Result<std::shared_ptr<const Snapshot>> Router::Impl::build(const RouterConfig& config) {
  auto snap = std::make_shared<Snapshot>();
  const std::shared_ptr<const Snapshot> previous = std::atomic_load(&snapshot);  // null while the first is built
  snap->version = next_version.fetch_add(1);
  snap->config = std::make_shared<const RouterConfig>(config);
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> next_states;
  for (std::size_t m = 0; m < config.models.size(); ++m) {
    const ModelConfig& mc = config.models[m];
    Pool pool;
    pool.model = mc.name;
    const std::string& policy_name = mc.policy.empty() ? config.policy : mc.policy;
    auto policy = options.policies.create(policy_name, config.policy_options);
    if (!policy) {
      Error e = policy.error();
      e.param = "models[" + std::to_string(m) + "].policy";
      return e;
    }
    pool.policy = std::move(policy.value());
    pool.health_check = mc.health_check ? *mc.health_check : config.health_check;
    pool.max_in_flight = mc.max_in_flight_per_endpoint;
    std::vector<const Endpoint*> raw;
    for (std::size_t i = 0; i < mc.endpoints.size(); ++i) {
      const EndpointConfig& ec = mc.endpoints[i];
      auto url = parse_url(ec.url);
      if (!url) {
        Error e = url.error();
        e.param = "models[" + std::to_string(m) + "].endpoints[" + std::to_string(i) + "].url";
        return e;
      }
      auto ep = std::make_shared<Endpoint>();
      ep->url = std::move(url.value());
      ep->id = endpoint_id(ep->url);
      ep->weight = std::max<std::uint32_t>(1, ec.weight);
      ep->api_key = ec.api_key;
      // Live state is per upstream server: shared by every pool that lists it, kept across updates.
      auto& state = next_states[ep->id];
      if (!state) {
        const auto old = states.find(ep->id);
        if (old != states.end()) {
          state = old->second;
        } else {
          state = std::make_shared<EndpointState>();
          // Added while probes run: not used until a probe passes (vLLM refuses connections
          // while it loads weights).
          if (health_checkers.load() > 0 && pool.health_check.enabled) state->active_healthy.store(false);
        }
      }
      pool.states.push_back(state);
      raw.push_back(ep.get());
      pool.endpoints.push_back(std::move(ep));
    }
    // The model's pool in the table being replaced (same policy): its scratch carries over.
    const Pool* previous_pool = nullptr;
    if (previous) {
      for (const Pool& old : previous->pools) {
        if (old.model == mc.name && old.scratch && old.policy->name() == pool.policy->name()) {
          previous_pool = &old;
          break;
        }
      }
    }
    if (previous_pool != nullptr) {
      std::vector<const Endpoint*> previous_raw;
      previous_raw.reserve(previous_pool->endpoints.size());
      for (const auto& ep : previous_pool->endpoints) previous_raw.push_back(ep.get());
      pool.scratch = pool.policy->carry_scratch(raw, *previous_pool->scratch, previous_raw);
    } else {
      pool.scratch = pool.policy->make_scratch(raw);
    }
    const std::size_t index = snap->pools.size();
    snap->pools.push_back(std::move(pool));
    const auto add = [&](const std::string& name, NameKind kind, const std::string& upstream,
                         const std::string& field) -> Result<void> {
      if (!snap->catalog.add(name, kind, index, upstream)) {
        return Result<void>(Errc::config, "model name '" + name + "' is defined twice", field);
      }
      return {};
    };
    const std::string base = "models[" + std::to_string(m) + "]";
    if (auto r = add(mc.name, NameKind::model, mc.name, base + ".name"); !r) return r.error();
    for (std::size_t a = 0; a < mc.aliases.size(); ++a) {
      if (auto r = add(mc.aliases[a], NameKind::alias, mc.name,
                       base + ".aliases[" + std::to_string(a) + "]");
          !r) {
        return r.error();
      }
    }
    for (std::size_t l = 0; l < mc.loras.size(); ++l) {
      if (auto r = add(mc.loras[l], NameKind::lora, mc.loras[l],
                       base + ".loras[" + std::to_string(l) + "]");
          !r) {
        return r.error();
      }
    }
  }
  if (!config.default_model.empty() && !snap->catalog.set_default(config.default_model)) {
    return Error{Errc::config, "default_model '" + config.default_model + "' is not a model",
                 "default_model"};
  }
  this->states = std::move(next_states);
  hooks->outlier->set_endpoint_count(states.size());
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

Result<Route> Router::route(const RequestView& request, std::span<const std::string_view> exclude) {
  Route route;
  route.snapshot = snapshot();
  const Snapshot& snap = *route.snapshot;
  if (!request.has_model) {
    if (!snap.catalog.resolve_default(route.resolution)) {
      return Result<Route>(Errc::missing_model, "you must provide a model parameter", "model");
    }
  } else if (!snap.catalog.resolve(request.model, route.resolution)) {
    return Result<Route>(Errc::unknown_model,
                         "The model `" + request.model + "` does not exist.", "model");
  }
  const Pool& pool = snap.pools[route.resolution.pool];
  route.pool = &pool;
  // One buffer per thread, grown to the largest pool seen: no allocation per decision.
  thread_local std::vector<Candidate> buffer;
  if (buffer.size() < pool.endpoints.size()) buffer.resize(pool.endpoints.size());
  Candidate* candidates = buffer.data();
  const Impl& impl = *impl_;
  const std::int64_t now_ns = impl.options.clock->now().time_since_epoch().count();
  std::size_t healthy = 0;
  for (const auto& state : pool.states) healthy += state->healthy(now_ns) ? 1 : 0;
  // Panic mode: with too few healthy endpoints, health is ignored rather than overloading the few.
  const bool panic = healthy == 0 || healthy * 100 < std::size_t{snap.config->panic_threshold_percent} * pool.states.size();
  std::size_t n = 0;
  bool full = false;
  for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
    const Endpoint* ep = pool.endpoints[i].get();
    const EndpointState* state = pool.states[i].get();
    if (std::find(exclude.begin(), exclude.end(), std::string_view(ep->id)) != exclude.end()) continue;
    if (!panic && !state->healthy(now_ns)) continue;
    if (pool.max_in_flight != 0 && state->in_flight.load(std::memory_order_relaxed) >= pool.max_in_flight) {
      full = true;
      continue;
    }
    candidates[n++] = Candidate{ep, state, i};
  }
  if (n == 0) {
    if (full) {
      return Result<Route>(Errc::overloaded,
                           "every replica of model `" + pool.model + "` is at its request limit", "model");
    }
    return Result<Route>(Errc::no_endpoint,
                         "no endpoint available for model `" + pool.model + "`", "model");
  }
  Rng& rng = thread_rng(impl.options.seed, impl_->seed_counter);
  PickContext ctx{request, rng, pool.scratch.get(), pool.endpoints.size(), now_ns};
  std::size_t pick = pool.policy->pick(ctx, std::span<const Candidate>(candidates, n));
  if (pick >= n) pick = 0;
  const std::size_t slot = candidates[pick].slot;
  route.lease = Lease(impl.hooks, pool.endpoints[slot], pool.states[slot],
                      std::shared_ptr<const std::string>(route.snapshot, &pool.model));
  detail::notify_observer(impl.observer(), [&](Observer& o) {
    o.on_pick(pool.model, *pool.endpoints[slot], PickEvent{pool.policy->name(), n, panic});
  });
  return route;
}

VLLM_ROUTER_END_NAMESPACE
