// Router: snapshot building, model resolution, picking, forwarding with safe retries.
#include "vllm_router/router.h"

#include <algorithm>
#include <random>
#include <vector>

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// One generator per thread, seeded once from the router's seed and a per-thread counter.
Rng& thread_rng(std::uint64_t seed, std::atomic<std::uint64_t>& counter) {
  thread_local Rng rng(seed + counter.fetch_add(1, std::memory_order_relaxed));
  return rng;
}

}  // namespace

Router::Router(RouterConfig config, RouterOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}

Router::~Router() = default;

Result<std::unique_ptr<Router>> Router::create(const RouterConfig& config, RouterOptions options) {
  if (auto v = validate(config, options.policies.names()); !v) return v.error();
  if (!options.transport) {
    HttpTransportOptions t;
    t.connect_timeout_ms = config.timeouts.connect_ms;
    t.read_timeout_ms = config.timeouts.idle();
    t.write_timeout_ms = config.timeouts.write_ms;
    t.max_idle_per_endpoint = config.max_idle_connections;
    options.transport = make_http_transport(t);
  }
  if (options.seed == 0) options.seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  if (!options.clock) options.clock = std::make_shared<SteadyClock>();
  std::unique_ptr<Router> router(new Router(config, std::move(options)));
  router->outlier_ = std::make_shared<OutlierDetector>(config.outlier_detection, router->options_.clock);
  auto snap = router->build(config);
  if (!snap) return snap.error();
  std::atomic_store(&router->snapshot_, std::move(snap.value()));
  return router;
}

Result<void> Router::update(const RouterConfig& config) {
  if (auto v = validate(config, options_.policies.names()); !v) return v;
  std::lock_guard<std::mutex> lock(update_mutex_);
  auto snap = build(config);
  if (!snap) return snap.error();
  std::atomic_store(&snapshot_, std::move(snap.value()));
  config_ = config;
  outlier_->configure(config.outlier_detection);
  return {};
}

bool Router::try_acquire_retry(std::int64_t active_requests) noexcept {
  const auto snap = snapshot();
  const RetryConfig& rc = snap->config->retry;
  const std::int64_t limit = std::max<std::int64_t>(rc.min_concurrent, active_requests * rc.budget_percent / 100);
  std::int64_t current = retries_in_flight_.load(std::memory_order_relaxed);
  while (current < limit) {
    if (retries_in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

void Router::release_retry() noexcept { retries_in_flight_.fetch_sub(1, std::memory_order_relaxed); }

std::shared_ptr<const Snapshot> Router::snapshot() const { return std::atomic_load(&snapshot_); }

Result<std::shared_ptr<const Snapshot>> Router::build(const RouterConfig& config) {
  auto snap = std::make_shared<Snapshot>();
  const std::shared_ptr<const Snapshot> previous = snapshot();  // null while the first is built
  snap->version = next_version_.fetch_add(1);
  snap->config = std::make_shared<const RouterConfig>(config);
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> states;
  for (std::size_t m = 0; m < config.models.size(); ++m) {
    const ModelConfig& mc = config.models[m];
    Pool pool;
    pool.model = mc.name;
    const std::string& policy_name = mc.policy.empty() ? config.policy : mc.policy;
    auto policy = options_.policies.create(policy_name, config.policy_options);
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
      ep->id = ep->url.scheme + "://" +
               (ep->url.host.find(':') != std::string::npos ? "[" + ep->url.host + "]"
                                                            : ep->url.host) +
               ":" + std::to_string(ep->url.port) + ep->url.prefix;
      ep->weight = std::max<std::uint32_t>(1, ec.weight);
      ep->api_key = ec.api_key;
      // Live state is per upstream server: shared by every pool that lists it, kept across updates.
      auto& state = states[ep->id];
      if (!state) {
        const auto old = states_.find(ep->id);
        if (old != states_.end()) {
          state = old->second;
        } else {
          state = std::make_shared<EndpointState>();
          // Added while probes run: not used until a probe passes (vLLM refuses connections
          // while it loads weights).
          if (health_checked_.load() && pool.health_check.enabled) state->active_healthy.store(false);
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
  states_ = std::move(states);
  if (outlier_) outlier_->set_endpoint_count(states_.size());
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
  Candidate stack[16];
  std::vector<Candidate> heap;
  Candidate* candidates = stack;
  if (pool.endpoints.size() > std::size(stack)) {
    heap.resize(pool.endpoints.size());
    candidates = heap.data();
  }
  const std::int64_t now_ns = options_.clock->now().time_since_epoch().count();
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
  Rng& rng = thread_rng(options_.seed, seed_counter_);
  PickContext ctx{request, rng, pool.scratch.get(), pool.endpoints.size(), now_ns};
  std::size_t pick = pool.policy->pick(ctx, std::span<const Candidate>(candidates, n));
  if (pick >= n) pick = 0;
  const std::size_t slot = candidates[pick].slot;
  route.lease = Lease(pool.endpoints[slot], pool.states[slot], pool.model, options_.observer, outlier_);
  return route;
}

Result<Exchange> Router::forward(const RequestView& view, const UpstreamRequest& request,
                                 const AliveCheck& alive) {
  std::vector<std::string> tried_ids;  // owned: a retry may see a newer snapshot
  std::vector<std::string_view> tried;
  std::string rewritten;
  UpstreamRequest req = request;
  Error last{Errc::no_endpoint, "no endpoint available", "model"};
  const auto config = snapshot()->config;
  const unsigned max_attempts = std::max<unsigned>(1, config->max_attempts);
  if (req.timeout_ms == 0 && config->timeouts.first_byte_ms != 0) req.timeout_ms = config->timeouts.first_byte_ms;
  // A retry after a delivered request (timeout, reset, 503) spends the retry budget; the slot is
  // held until the answer's head is in.
  bool retry_held = false;
  const auto take_retry = [&] { return retry_held || (retry_held = try_acquire_retry(0)); };
  struct Release {
    Router* router;
    bool* held;
    ~Release() {
      if (*held) router->release_retry();
    }
  } release{this, &retry_held};
  for (unsigned attempt = 1; attempt <= max_attempts; ++attempt) {
    auto route = this->route(view, tried);
    if (!route) {
      if (attempt == 1 || route.code() != Errc::no_endpoint) return route.error();
      break;  // every endpoint tried: report the last failure
    }
    if (attempt == 1 && route->resolution.rewrite && view.has_model) {
      rewritten = rewrite_model(request.body, view, route->resolution.upstream);
      req.body = rewritten;
    }
    const bool others = route->pool->endpoints.size() > tried.size() + 1;
    const auto started = std::chrono::steady_clock::now();
    auto response = options_.transport->send(route->lease.endpoint(), req, alive);
    Outcome outcome;
    outcome.latency = std::chrono::steady_clock::now() - started;
    if (response) {
      // A 503 (vLLM overloaded or stopping) moves to another replica while one is left.
      if (response.value()->status() == 503 && config->retry.on_503 && others && attempt < max_attempts &&
          take_retry()) {
        outcome.kind = OutcomeKind::success;
        outcome.status = 503;
        tried_ids.push_back(route->lease.endpoint().id);
        tried.assign(tried_ids.begin(), tried_ids.end());
        route->lease.complete(outcome);
        last = Error{Errc::no_endpoint, "every replica answered 503", "model"};
        continue;
      }
      Exchange exchange(std::move(route.value()), std::move(response.value()), attempt);
      return exchange;
    }
    switch (response.code()) {
      case Errc::connect_failed: outcome.kind = OutcomeKind::connect_failure; break;
      case Errc::timeout: outcome.kind = OutcomeKind::timeout; break;
      case Errc::upstream_closed: outcome.kind = OutcomeKind::upstream_closed; break;
      case Errc::cancelled: outcome.kind = OutcomeKind::cancelled; break;
      default: outcome.kind = OutcomeKind::error; break;
    }
    tried_ids.push_back(route->lease.endpoint().id);
    tried.assign(tried_ids.begin(), tried_ids.end());
    route->lease.complete(outcome);
    last = std::move(response).error();
    // Nothing reached the client yet: a connect failure is always safe to retry; a timeout or a
    // broken connection (the request may have been delivered) only as configured and budgeted.
    const bool retry = last.code == Errc::connect_failed ||
                       (last.code == Errc::timeout && config->retry.on_first_byte_timeout && take_retry()) ||
                       (last.code == Errc::upstream_closed && config->retry.on_reset && take_retry());
    if (!retry) return last;
  }
  if (last.code == Errc::connect_failed) {
    last.message = "no replica of the model could be reached: " + last.message;
  }
  return last;
}

Exchange::Exchange(Route route, std::unique_ptr<UpstreamResponse> response, unsigned attempts)
    : route_(std::move(route)), response_(std::move(response)), attempts_(attempts) {
  ttfb_ = std::chrono::steady_clock::now() - route_.lease.started();
}

Result<std::uint64_t> Exchange::relay(BodySink& sink) {
  auto r = response_->relay(sink);
  Outcome outcome;
  outcome.status = response_->status();
  outcome.ttfb = ttfb_;
  outcome.latency = std::chrono::steady_clock::now() - route_.lease.started();
  if (r) {
    outcome.kind = OutcomeKind::success;
    outcome.bytes = r.value();
  } else {
    switch (r.code()) {
      case Errc::timeout: outcome.kind = OutcomeKind::timeout; break;
      case Errc::upstream_closed: outcome.kind = OutcomeKind::upstream_closed; break;
      case Errc::cancelled: outcome.kind = OutcomeKind::cancelled; break;
      default: outcome.kind = OutcomeKind::error; break;
    }
  }
  route_.lease.complete(outcome);
  return r;
}

VLLM_ROUTER_END_NAMESPACE
