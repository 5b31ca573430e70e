// Router: snapshot building, model resolution and picking (the wait for capacity: admission.cpp).
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <unordered_set>
#include <vector>

#include "pool_index.h"
#include "router_impl.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Live state for the endpoints a routing table adds, allocated side by side in blocks: route()
// and the policies read a pool's states in slot order, and a dense run of them is read several
// times faster than objects scattered over the heap (fewer cache lines, prefetched). A block
// lives while any of its states does; blocks are small so that a survivor pins little.
class StateSlab {
 public:
  static constexpr std::size_t kBlock = 64;
  explicit StateSlab(std::size_t expected) : left_(expected) {}
  std::shared_ptr<EndpointState> next() {
    if (used_ == size_) {
      size_ = std::clamp<std::size_t>(left_, 1, kBlock);
      block_ = std::shared_ptr<EndpointState[]>(new EndpointState[size_]);
      used_ = 0;
    }
    left_ = left_ > 0 ? left_ - 1 : 0;
    return std::shared_ptr<EndpointState>(block_, &block_[used_++]);
  }

 private:
  std::shared_ptr<EndpointState[]> block_;
  std::size_t size_ = 0;
  std::size_t used_ = 0;
  std::size_t left_;  // states still expected in this build
};

// Calls `f` with every endpoint `config` lists: each model's own and its prefill pool's.
template <class F>
void for_each_endpoint_config(const RouterConfig& config, F f) {
  for (const ModelConfig& mc : config.models) {
    for (const EndpointConfig& ec : mc.endpoints) f(ec);
    if (mc.prefill) {
      for (const EndpointConfig& ec : mc.prefill->endpoints) f(ec);
    }
  }
}

// Distinct endpoint ids in `config` that have no live state yet (URLs that do not parse are
// left to the build, which rejects them).
std::size_t count_new_endpoints(const RouterConfig& config,
                                const std::unordered_map<std::string, std::shared_ptr<EndpointState>>& states) {
  std::unordered_set<std::string> added;
  for_each_endpoint_config(config, [&](const EndpointConfig& ec) {
    auto url = parse_url(ec.url);
    if (!url) return;
    std::string id = endpoint_id(url.value());
    if (states.find(id) == states.end()) added.insert(std::move(id));
  });
  return added.size();
}

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
  auto tls = impl->prepare_upstream_tls(config);
  if (!tls) return tls.error();
  impl->install_upstream_tls(config.upstream_tls, std::move(tls).value());
  auto snap = impl->build(config);
  if (!snap) return snap.error();
  std::atomic_store(&impl->snapshot, std::move(snap.value()));
  return std::unique_ptr<Router>(new Router(std::move(impl)));
}

Result<void> Router::update(const RouterConfig& config) {
  Impl& impl = *impl_;
  if (auto v = validate(config, impl.options.policies.names()); !v) return v;
  std::lock_guard<std::mutex> lock(impl.update_mutex);
  auto tls = impl.prepare_upstream_tls(config);
  if (!tls) return tls.error();
  auto snap = impl.build(config);
  if (!snap) return snap.error();
  impl.install_upstream_tls(config.upstream_tls, std::move(tls).value());
  std::atomic_store(&impl.snapshot, std::move(snap.value()));
  impl.applied_config = config;
  impl.hooks->outlier->configure(config.outlier_detection);
  impl.socket_pool->set_max_idle(config.max_idle_connections);
  return {};
}

Result<std::shared_ptr<const detail::TlsContext>> Router::Impl::prepare_upstream_tls(const RouterConfig& config) {
  const UpstreamTlsConfig& tls = config.upstream_tls;
  {
    std::lock_guard<std::mutex> lock(tls_mutex);
    if (tls_context && tls == tls_config) return tls_context;  // unchanged: keep it
  }
  bool https = !tls.ca_file.empty();
  for_each_endpoint_config(config, [&](const EndpointConfig& ec) { https = https || ec.url.rfind("https://", 0) == 0; });
  if (!https) return std::shared_ptr<const detail::TlsContext>();  // made at first use, if ever
  return detail::TlsContext::client(tls.ca_file, !tls.insecure_skip_verify);
}

void Router::Impl::install_upstream_tls(const UpstreamTlsConfig& config, std::shared_ptr<const detail::TlsContext> context) {
  std::lock_guard<std::mutex> lock(tls_mutex);
  tls_config = config;
  tls_context = std::move(context);
}

Result<std::shared_ptr<const detail::TlsContext>> Router::Impl::upstream_tls() const {
  std::lock_guard<std::mutex> lock(tls_mutex);
  if (!tls_context) {
    auto made = detail::TlsContext::client(tls_config.ca_file, !tls_config.insecure_skip_verify);
    if (!made) return made.error();
    tls_context = std::move(made).value();
  }
  return tls_context;
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
std::uint32_t Router::queued() const noexcept { return impl_->hooks->admission.waiting(); }

const Clock& Router::clock() const noexcept { return *impl_->options.clock; }

Result<std::shared_ptr<const Snapshot>> Router::Impl::build(const RouterConfig& config) {
  auto snap = std::make_shared<Snapshot>();
  const std::shared_ptr<const Snapshot> previous = std::atomic_load(&snapshot);  // null while the first is built
  snap->version = next_version.fetch_add(1);
  snap->config = std::make_shared<const RouterConfig>(config);
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> next_states;
  StateSlab slab(count_new_endpoints(config, states));
  // One pool: a model's (decode) pool, or its prefill pool (prefill/decode disaggregation).
  const auto build_pool = [&](const ModelConfig& mc, const std::vector<EndpointConfig>& endpoints,
                              const std::string& policy_name, bool prefill_role,
                              const std::string& base) -> Result<Pool> {
    Pool pool;
    pool.model = mc.name;
    pool.prefill_role = prefill_role;
    auto policy = options.policies.create(policy_name, config.policy_options);
    if (!policy) {
      Error e = policy.error();
      e.param = base + ".policy";
      return e;
    }
    pool.policy = std::move(policy.value());
    pool.health_check = mc.health_check ? *mc.health_check : config.health_check;
    pool.max_in_flight = mc.max_in_flight_per_endpoint;
    std::vector<const Endpoint*> raw;
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      const EndpointConfig& ec = endpoints[i];
      auto url = parse_url(ec.url);
      if (!url) {
        Error e = url.error();
        e.param = base + ".endpoints[" + std::to_string(i) + "].url";
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
          state = slab.next();
          // Added while probes run: not used until a probe passes (vLLM refuses connections
          // while it loads weights).
          if (health_checkers.load() > 0 && pool.health_check.enabled) state->active_healthy.store(false);
        }
      }
      pool.states.push_back(state);
      raw.push_back(ep.get());
      pool.endpoints.push_back(std::move(ep));
    }
    // The model's pool in the table being replaced (same role and policy): its scratch carries over.
    const Pool* previous_pool = nullptr;
    if (previous) {
      for (const Pool& old : previous->pools) {
        if (old.model == mc.name && old.prefill_role == prefill_role && old.scratch &&
            old.policy->name() == pool.policy->name()) {
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
    auto pool_index = std::make_shared<detail::PoolIndex>();
    pool_index->endpoints.reserve(pool.endpoints.size());
    pool_index->slot_of.reserve(pool.endpoints.size());
    for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
      pool_index->endpoints.push_back(Candidate{pool.endpoints[i].get(), pool.states[i].get(), i});
      pool_index->slot_of.emplace(std::string_view(pool.endpoints[i]->id), i);
    }
    pool.index = std::move(pool_index);
    return pool;
  };
  for (std::size_t m = 0; m < config.models.size(); ++m) {
    const ModelConfig& mc = config.models[m];
    const std::string& policy_name = mc.policy.empty() ? config.policy : mc.policy;
    auto built = build_pool(mc, mc.endpoints, policy_name, false, "models[" + std::to_string(m) + "]");
    if (!built) return built.error();
    Pool pool = std::move(built).value();
    // LoRA-aware placement on the model's own (decode) pool; a prefill pool places no adapters.
    if (mc.lora) pool.lora = make_lora_pool(mc, pool);
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
  // Prefill pools after every model's own, so catalog indices stay the models' (a model at m is
  // pools[m]).
  for (std::size_t m = 0; m < config.models.size(); ++m) {
    const ModelConfig& mc = config.models[m];
    if (!mc.prefill) continue;
    const std::string& decode_policy = mc.policy.empty() ? config.policy : mc.policy;
    auto built = build_pool(mc, mc.prefill->endpoints, mc.prefill->policy.empty() ? decode_policy : mc.prefill->policy,
                            true, "models[" + std::to_string(m) + "].prefill");
    if (!built) return built.error();
    snap->pools[m].prefill = snap->pools.size();
    snap->pools[m].colocated_fallback = mc.prefill->colocated_fallback;
    snap->pools.push_back(std::move(built).value());
    snap->disaggregated = true;
  }
  if (!config.default_model.empty() && !snap->catalog.set_default(config.default_model)) {
    return Error{Errc::config, "default_model '" + config.default_model + "' is not a model",
                 "default_model"};
  }
  this->states = std::move(next_states);
  hooks->outlier->set_endpoint_count(states.size());
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

namespace {

// Slots of the endpoints named in `exclude` (usually none; a retry names the ones it tried).
struct ExcludedSlots {
  static constexpr std::size_t kInline = 16;
  std::size_t inline_slots[kInline];
  std::size_t count = 0;
  std::size_t* slots = inline_slots;

  ExcludedSlots(const detail::PoolIndex& index, std::span<const std::string_view> exclude) {
    if (exclude.empty()) return;
    // Rare (a request retried more than kInline times): one buffer per thread, kept.
    thread_local std::vector<std::size_t> overflow;
    std::size_t capacity = kInline;
    for (const std::string_view id : exclude) {
      const auto [first, last] = index.slot_of.equal_range(id);
      for (auto it = first; it != last; ++it) {
        if (count == capacity) {
          if (slots == inline_slots) overflow.assign(inline_slots, inline_slots + count);
          overflow.resize(count * 2);
          slots = overflow.data();
          capacity = overflow.size();
        }
        slots[count++] = it->second;
      }
    }
  }
  ExcludedSlots(const ExcludedSlots&) = delete;
  ExcludedSlots& operator=(const ExcludedSlots&) = delete;
  std::span<const std::size_t> span() const noexcept { return {slots, count}; }
};

// The number of candidates of a pick (for PickEvent) when the policy chose without the list:
// O(1) unless an in-flight limit applies, then one pass.
std::size_t count_candidates(const PoolView& view, std::size_t healthy) {
  if (view.all_usable()) return view.size();
  const CandidateFilter& f = view.filter();
  if (f.max_in_flight != 0) {
    std::size_t n = 0;
    for (std::size_t slot = 0; slot < view.size(); ++slot) n += view.usable(slot) ? 1 : 0;
    return n;
  }
  std::size_t n = f.check_health ? healthy : view.size();
  for (std::size_t i = 0; i < f.excluded.size(); ++i) {
    const std::size_t slot = f.excluded[i];
    if (std::find(f.excluded.begin(), f.excluded.begin() + static_cast<std::ptrdiff_t>(i), slot) !=
        f.excluded.begin() + static_cast<std::ptrdiff_t>(i)) {
      continue;  // named twice
    }
    if (!f.check_health || view[slot].state->healthy(f.now_ns)) --n;
  }
  return std::min(n, view.size());
}

}  // namespace

namespace {

[[gnu::always_inline]] inline Result<void> resolve(const Snapshot& snap, const RequestView& request, Resolution& out) {
  if (!request.has_model) {
    if (!snap.catalog.resolve_default(out)) {
      return Result<void>(Errc::missing_model, "you must provide a model parameter", "model");
    }
  } else if (!snap.catalog.resolve(request.model, out)) {
    return Result<void>(Errc::unknown_model, "The model `" + request.model + "` does not exist.", "model");
  }
  return {};
}

}  // namespace

Result<Route> Router::route(const RequestView& request, std::span<const std::string_view> exclude) {
  Route route;
  route.snapshot = snapshot();
  if (auto r = resolve(*route.snapshot, request, route.resolution); !r) return r.error();
  return impl_->pick(route, route.resolution.pool, request, exclude);
}

Result<Route> Router::Impl::route_prefill(const RequestView& request, std::span<const std::string_view> exclude) {
  Route route;
  route.snapshot = std::atomic_load(&snapshot);
  if (auto r = resolve(*route.snapshot, request, route.resolution); !r) return r.error();
  const Pool& decode = route.snapshot->pools[route.resolution.pool];
  if (decode.prefill == Pool::kNoPrefill) {
    return Result<Route>(Errc::no_endpoint, "model `" + decode.model + "` has no prefill pool", "model");
  }
  return pick(route, decode.prefill, request, exclude);
}

// `route` (resolved) is moved into the result once picked, as the one local it was before.
Result<Route> Router::Impl::pick(Route& route, std::size_t pool_index, const RequestView& request,
                                 std::span<const std::string_view> exclude) {
  const Snapshot& snap = *route.snapshot;
  const Pool& pool = snap.pools[pool_index];
  route.pool = &pool;
  detail::PoolIndex& index = *pool.index;
  const std::span<const Candidate> all(index.endpoints);
  const std::size_t size = all.size();
  const Impl& impl = *this;
  const std::int64_t now_ns = impl.options.clock->now().time_since_epoch().count();
  // Cached: exact, and O(1) until a health flag changes or an ejection ends.
  const std::size_t healthy = size == 0 ? 0 : index.health.get(all, now_ns);
  // Panic mode: with too few healthy endpoints, health is ignored rather than overloading the few.
  const bool panic = healthy == 0 || healthy * 100 < std::size_t{snap.config->panic_threshold_percent} * size;
  const ExcludedSlots excluded(index, exclude);
  CandidateFilter filter;
  filter.check_health = !panic && healthy < size;
  filter.now_ns = now_ns;
  filter.max_in_flight = pool.max_in_flight;
  filter.excluded = excluded.span();
  const PoolView view(all, filter);
  Rng& rng = thread_rng(impl.options.seed, seed_counter);
  PickNotes notes;
  PickContext ctx{request, rng, pool.scratch.get(), size, now_ns, &notes,
                  impl.replica.load(std::memory_order_acquire)};
  Observer* observer = impl.observer();

  // LoRA-aware placement (lib/lora.h): an adapter's request picks among the replicas with it.
  const detail::LoraPool* lora_pool = pool.lora && pool.lora->is_adapter(route.resolution.upstream) ? pool.lora.get() : nullptr;
  // The policy's fast path first (O(1) for the sampling and walking policies).
  std::size_t slot = size == 0 || lora_pool != nullptr ? Policy::kNoPick : pool.policy->pick_from_pool(ctx, view);
  std::size_t n = 0;
  if (slot < size && view.usable(slot)) {
    if (observer != nullptr) n = count_candidates(view, healthy);
  } else {
    std::span<const Candidate> candidates = all;
    if (!view.all_usable()) {
      // One buffer per thread, grown to the largest pool seen: no allocation per decision.
      thread_local std::vector<Candidate> buffer;
      if (buffer.size() < size) buffer.resize(size);
      bool full = false;
      n = 0;
      for (std::size_t i = 0; i < size; ++i) {
        const EndpointState& state = *all[i].state;
        if (std::find(filter.excluded.begin(), filter.excluded.end(), i) != filter.excluded.end()) continue;
        if (filter.check_health && !state.healthy(now_ns)) continue;
        if (pool.max_in_flight != 0 && state.in_flight.load(std::memory_order_relaxed) >= pool.max_in_flight) {
          full = true;
          continue;
        }
        buffer[n++] = all[i];
      }
      if (n == 0) {
        if (full) {
          return Result<Route>(Errc::overloaded,
                               "every replica of model `" + pool.model + "` is at its request limit", "model");
        }
        return Result<Route>(Errc::no_endpoint,
                             "no endpoint available for model `" + pool.model + "`", "model");
      }
      candidates = std::span<const Candidate>(buffer.data(), n);
    } else if (size == 0) {
      return Result<Route>(Errc::no_endpoint, "no endpoint available for model `" + pool.model + "`", "model");
    }
    if (lora_pool != nullptr) {
      auto placed = detail::place_lora(*impl.lora, pool, *lora_pool, route.resolution.upstream, candidates);
      if (!placed) return placed.error();
      candidates = placed.value();
    }
    n = candidates.size();
    std::size_t pick = pool.policy->pick(ctx, candidates);
    if (pick >= n) pick = 0;
    slot = candidates[pick].slot;
  }
  // Under a per-endpoint cap the place is taken atomically: two threads that both saw one free
  // place must not both take it (the loser finds the replica full, as if it had been at the pick).
  bool counted = false;
  if (pool.max_in_flight != 0) {
    std::atomic<std::int64_t>& in_flight = pool.states[slot]->in_flight;
    std::int64_t v = in_flight.load(std::memory_order_relaxed);
    do {
      if (v >= static_cast<std::int64_t>(pool.max_in_flight)) {
        return Result<Route>(Errc::overloaded,
                             "every replica of model `" + pool.model + "` is at its request limit", "model");
      }
    } while (!in_flight.compare_exchange_weak(v, v + 1, std::memory_order_relaxed));
    counted = true;
  }
  if (lora_pool != nullptr) {
    route.hold = detail::LoraEndpoint::use(lora_pool->slots[slot], route.resolution.upstream, now_ns);
  }
  route.lease = Lease(impl.hooks, pool.endpoints[slot], pool.states[slot],
                      std::shared_ptr<const std::string>(route.snapshot, &pool.model), counted);
  route.pick = PickEvent{pool.policy->name(), n, panic, notes.prefix_match};
  detail::notify_observer(observer, [&](Observer& o) { o.on_pick(pool.model, *pool.endpoints[slot], route.pick); });
  return std::move(route);
}

VLLM_ROUTER_END_NAMESPACE
