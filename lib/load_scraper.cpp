// LoadScraper: GET /metrics from every endpoint, parse vLLM's load gauges, store them with a time.
#include "vllm_router/load_scraper.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <unordered_set>

#include "background.h"
#include "lora.h"
#include "vllm_router/router.h"
#include "vllm_router/snapshot.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

class CollectSink final : public BodySink {
 public:
  CollectSink(std::string& out, std::chrono::steady_clock::time_point deadline)
      : out_(out), deadline_(deadline) {}
  bool write(const char* data, std::size_t size) override {
    if (out_.size() + size > kMaxBody) return false;  // /metrics is small; refuse a flood
    out_.append(data, size);
    return true;
  }
  bool alive() override { return std::chrono::steady_clock::now() < deadline_; }

 private:
  static constexpr std::size_t kMaxBody = 8u << 20;
  std::string& out_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace

struct LoadScraper::Impl {
  Impl(const Router& r, std::shared_ptr<Transport> t, std::shared_ptr<const Clock> c, const PolicyOptions& o)
      : router(r), transport(std::move(t)), clock(std::move(c)), options(o), pool(kMaxParallel) {}
  bool get(const Endpoint& endpoint, const char* path, std::string& body);
  bool scrape_endpoint(const Endpoint& endpoint, EndpointState& state);
  void list_lora_models(const Endpoint& endpoint);

  const Router& router;
  std::shared_ptr<Transport> transport;
  std::shared_ptr<const Clock> clock;
  PolicyOptions options;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> rounds{0};
  detail::WorkerPool pool;
  detail::Ticker ticker;
};

LoadScraper::LoadScraper(const Router& router, std::shared_ptr<Transport> transport, std::shared_ptr<const Clock> clock,
                         const PolicyOptions& options)
    : impl_(std::make_unique<Impl>(router, std::move(transport), std::move(clock), options)) {}

LoadScraper::~LoadScraper() { stop(); }

std::uint64_t LoadScraper::rounds() const noexcept { return impl_->rounds.load(std::memory_order_relaxed); }

// GET `path` of `endpoint` into `body` within scrape_timeout_ms; false unless a whole 200.
bool LoadScraper::Impl::get(const Endpoint& endpoint, const char* path, std::string& body) {
  if (!transport) return false;
  // A real deadline (not the injected clock): it bounds how long a dead endpoint holds the round.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::max<std::uint32_t>(1, options.scrape_timeout_ms));
  const AliveCheck alive = [this, deadline] {
    return !stopping.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < deadline;
  };
  UpstreamRequest request;
  request.method = "GET";
  request.path = path;
  const Headers headers;
  request.headers = &headers;
  auto response = transport->send(endpoint, request, alive);
  if (!response) return false;
  auto& upstream = *response.value();
  CollectSink sink(body, deadline);
  const auto relayed = upstream.relay(sink);
  return upstream.status() == 200 && relayed;
}

bool LoadScraper::Impl::scrape_endpoint(const Endpoint& endpoint, EndpointState& state) {
  std::string body;
  // This router's in-flight count around the GET: the engine's gauges were taken somewhere in
  // between. The larger of the two is recorded, so a request that started or ended during the
  // GET is never counted as another router's (a lone router's share stays 1).
  const std::int64_t in_flight_before = state.in_flight.load(std::memory_order_relaxed);
  if (!get(endpoint, "/metrics", body)) return false;
  const std::int64_t in_flight_after = state.in_flight.load(std::memory_order_relaxed);
  detail::observe_lora_metrics(router, endpoint, body);  // no-op without a `lora` model
  const ScrapedLoad load = parse_vllm_load(body);
  if (load.waiting < 0 && load.running < 0) return false;  // not a vLLM /metrics
  state.waiting.store(std::max<std::int32_t>(0, load.waiting), std::memory_order_relaxed);
  state.running.store(std::max<std::int32_t>(0, load.running), std::memory_order_relaxed);
  state.kv_cache_usage.store(load.kv_cache_usage, std::memory_order_relaxed);
  state.sampled_in_flight.store(std::max<std::int64_t>(0, std::max(in_flight_before, in_flight_after)),
                                std::memory_order_relaxed);
  const auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock->now().time_since_epoch()).count();
  // Written last: a reader that sees the new time also sees numbers at least this fresh.
  state.sampled_ns.store(now_ns == 0 ? 1 : now_ns, std::memory_order_release);
  return true;
}

// LoRA-aware placement: the adapters an endpoint lists (GET /v1/models), for pools with `lora`.
void LoadScraper::Impl::list_lora_models(const Endpoint& endpoint) {
  const auto started = clock->now().time_since_epoch();
  std::string body;
  if (!get(endpoint, "/v1/models", body)) return;
  detail::observe_lora_models(router, endpoint, body,
                              std::chrono::duration_cast<std::chrono::nanoseconds>(started).count());
}

ScrapeStats LoadScraper::scrape_once() {
  Impl& m = *impl_;
  ScrapeStats stats;
  const std::shared_ptr<const Snapshot> snap = m.router.snapshot();
  std::unordered_set<const EndpointState*> done;  // one state may be listed by several pools
  std::vector<std::pair<const Endpoint*, EndpointState*>> targets;
  std::vector<const Endpoint*> lora_targets;  // endpoints of pools with `lora`: also /v1/models
  std::unordered_set<const EndpointState*> lora_done;
  for (const Pool& pool : snap->pools) {
    for (std::size_t i = 0; i < pool.endpoints.size() && i < pool.states.size(); ++i) {
      EndpointState* state = pool.states[i].get();
      if (state != nullptr && detail::pool_has_lora(pool) && lora_done.insert(state).second) {
        lora_targets.push_back(pool.endpoints[i].get());
      }
      if (state == nullptr || !done.insert(state).second) continue;
      targets.emplace_back(pool.endpoints[i].get(), state);
    }
  }
  std::atomic<std::size_t> succeeded{0};
  m.pool.run(targets.size(), [&m, &targets, &succeeded](std::size_t i) {
    if (m.stopping.load(std::memory_order_relaxed)) return;
    if (m.scrape_endpoint(*targets[i].first, *targets[i].second)) succeeded.fetch_add(1);
  });
  if (!lora_targets.empty()) {
    m.pool.run(lora_targets.size(), [&m, &lora_targets](std::size_t i) {
      if (!m.stopping.load(std::memory_order_relaxed)) m.list_lora_models(*lora_targets[i]);
    });
  }
  stats.endpoints = targets.size();
  stats.succeeded = succeeded.load();
  stats.failed = stats.endpoints - stats.succeeded;
  m.rounds.fetch_add(1, std::memory_order_relaxed);
  return stats;
}

void LoadScraper::start() {
  Impl& m = *impl_;
  if (m.ticker.running()) return;
  m.stopping.store(false);
  const auto interval = std::chrono::milliseconds(std::max<std::uint32_t>(1, m.options.scrape_interval_ms));
  m.ticker.start([this, interval] {
    do {
      scrape_once();
    } while (impl_->ticker.wait(interval));
  });
}

void LoadScraper::stop() {
  impl_->stopping.store(true);
  impl_->ticker.stop();
  impl_->stopping.store(false);
}

VLLM_ROUTER_END_NAMESPACE
