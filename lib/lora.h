// Internal: LoRA-aware placement (issue 14). What each endpoint has loaded (from the router's own
// loads, vLLM's vllm:lora_requests_info gauge and GET /v1/models), and the single-flight loads
// of adapters that no replica has, run off the data path on at most four background threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/policy.h"
#include "vllm_router/result.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE
struct Pool;
class Router;
VLLM_ROUTER_END_NAMESPACE

namespace vllm_router::detail {

/// The adapters the router believes one endpoint has loaded, with when each was last used
/// (least recently used first to go), and the endpoint's max_lora. Thread-safe: one short lock.
class LoraEndpoint {
 public:
  bool has(std::string_view name) const;
  std::size_t count() const;
  /// Marks `name` used at `now_ns` (a request was placed there). No-op when not loaded.
  void touch(std::string_view name, std::int64_t now_ns);
  /// touch(), and `name` is in use by one more request until the returned hold is destroyed:
  /// lru() passes over adapters in use, so making room never unloads an adapter a request
  /// routed here is running on. Null when `name` is not loaded on `self`.
  static std::shared_ptr<const void> use(const std::shared_ptr<LoraEndpoint>& self, std::string_view name,
                                         std::int64_t now_ns);
  /// `name` is loaded (the router loaded it, or the gauge saw it running or waiting).
  void add(std::string_view name, std::int64_t now_ns);
  void remove(std::string_view name);
  /// A full listing (GET /v1/models): exactly `names` are loaded, except adapters added at or
  /// after `since_ns` (a load that finished while the listing was on its way) stay.
  void replace(std::span<const std::string> names, std::int64_t since_ns, std::int64_t now_ns);
  /// vLLM's max_lora (from the gauge); -1: unknown (never unloads to make room).
  void set_max_lora(std::int32_t n);
  std::int32_t max_lora() const;
  /// The least recently used adapter other than `keep` and not in use (use()); empty when
  /// there is none.
  std::string lru(std::string_view keep) const;
  std::vector<std::string> names() const;
  /// Loads headed here and not done yet (counted as taken places when choosing a target).
  std::atomic<std::int32_t> pending{0};
  /// Held while a load makes room (unloads): one endpoint's decisions one at a time, so two
  /// loads never both count the same free place.
  std::mutex load_mutex;

 private:
  struct Entry {
    std::string name;
    std::int64_t used_ns = 0;
    std::int64_t added_ns = 0;
    std::int32_t users = 0;  // requests placed here with it and not finished (use())
  };
  void release(std::string_view name);
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  std::int32_t max_lora_ = -1;
};

/// Loads and unloads adapters on one endpoint (vLLM's runtime LoRA API). Thread-safe. Tests
/// inject their own.
class LoraLoader {
 public:
  virtual ~LoraLoader() = default;
  /// POST /v1/load_lora_adapter {lora_name, lora_path}. "already loaded" counts as success.
  virtual Result<void> load(const Endpoint& endpoint, std::string_view name, std::string_view path,
                            std::uint32_t timeout_ms) = 0;
  /// POST /v1/unload_lora_adapter {lora_name}. "cannot be found" counts as success.
  virtual Result<void> unload(const Endpoint& endpoint, std::string_view name, std::uint32_t timeout_ms) = 0;
};

/// The loader over `transport` (the endpoint's api_key goes with each call, as the transport
/// sends it). `stopping` (may be null) cancels a call in progress.
std::shared_ptr<LoraLoader> make_http_lora_loader(std::shared_ptr<Transport> transport,
                                                  const std::atomic<bool>* stopping);

/// One pool's LoRA settings and the LoraEndpoint of each slot (parallel to Pool::endpoints).
struct LoraPool {
  LoraConfig config;
  std::vector<std::string> adapters;  ///< the model's adapter names (sorted)
  std::vector<std::shared_ptr<LoraEndpoint>> slots;
  bool is_adapter(std::string_view name) const;
  /// The lora_path to load `name` from; empty when it has none.
  std::string path_of(std::string_view name) const;
};

/// Counters behind vllm_router_lora_* (docs/metrics.md).
struct LoraCounters {
  std::atomic<std::uint64_t> loads{0}, unloads{0}, load_failures{0};
  std::atomic<std::uint64_t> placed_loaded{0}, placed_load{0}, placed_any{0};
};

/// vllm:lora_requests_info as scraped: the adapters of running and waiting requests (all
/// loaded) and max_lora; max_lora -1 when the gauge is absent.
struct ScrapedLora {
  std::int32_t max_lora = -1;
  std::vector<std::string> adapters;
};
ScrapedLora parse_vllm_lora(std::string_view metrics_text);

/// A Router's LoRA state: endpoint id -> LoraEndpoint (kept across routing-table updates), the
/// loads in flight (one per model and adapter) and the recent failures. Thread-safe.
class LoraManager {
 public:
  /// How long a failed load is answered to the requests for that adapter before one is tried
  /// again.
  static constexpr std::int64_t kFailureHoldNs = 1'000'000'000;
  static constexpr std::size_t kMaxThreads = 4;

  /// `wake` runs (on a load thread) after each load ends, so the requests waiting for it route
  /// again (the Router's wait for capacity).
  LoraManager(std::shared_ptr<LoraLoader> loader, std::shared_ptr<const Clock> clock, std::function<void()> wake);
  ~LoraManager();  ///< waits for the loads in progress (their calls see `stopping`)
  LoraManager(const LoraManager&) = delete;
  LoraManager& operator=(const LoraManager&) = delete;

  std::shared_ptr<LoraEndpoint> endpoint(const std::string& id);
  void set_loader(std::shared_ptr<LoraLoader> loader);

  /// No candidate has `adapter` loaded: starts its load on the least loaded of `candidates`
  /// (slots of `pool`), or joins the one in progress. Ok(true): a load started; Ok(false): one
  /// was already running; an error: the last load failed less than kFailureHoldNs ago (its
  /// error, 404 when vLLM found no adapter, else 503), or the adapter has no path.
  Result<bool> ensure_loaded(const Pool& pool, const LoraPool& lora, std::string_view adapter,
                             std::span<const Candidate> candidates);
  /// Loads in progress now.
  std::size_t loading() const;

  LoraCounters counters;
  const std::atomic<bool>& stopping() const noexcept { return stopping_; }
  std::int64_t now_ns() const;

 private:
  struct Flight {
    bool running = false;
    std::int64_t failed_at_ns = 0;
    Error error;
  };
  struct Job {
    std::string key;
    std::shared_ptr<const Endpoint> endpoint;
    std::shared_ptr<LoraEndpoint> state;
    std::string adapter, path;
    std::uint32_t timeout_ms = 0;
  };
  void run(Job job);
  void worker();

  std::shared_ptr<LoraLoader> loader_;
  std::shared_ptr<const Clock> clock_;
  std::function<void()> wake_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::condition_variable jobs_changed_;
  std::map<std::string, std::shared_ptr<LoraEndpoint>, std::less<>> endpoints_;
  std::map<std::string, Flight, std::less<>> flights_;  // "model\nadapter"
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
};

/// What the LoadScraper read from an endpoint (lib/lora_router.cpp): its /metrics text (the
/// gauge: adapters running or waiting are loaded; max_lora), its /v1/models answer (the full
/// list; `since_ns`: when the GET started). No-ops while the router has no LoRA model.
void observe_lora_metrics(const Router& router, const Endpoint& endpoint, std::string_view metrics_text);
void observe_lora_models(const Router& router, const Endpoint& endpoint, std::string_view models_json,
                         std::int64_t since_ns);
/// True when `pool` places adapters (the scraper then also lists its endpoints' /v1/models).
bool pool_has_lora(const Pool& pool);

/// The candidates for a request naming `adapter` (Router::route, lib/router.cpp): those with it
/// loaded (a view of a per-thread buffer); none: with dynamic loading, starts or joins its load
/// and answers Errc::overloaded (the request waits for capacity; the load's end wakes it) or
/// the load's failure; without, every candidate (any replica, as before).
Result<std::span<const Candidate>> place_lora(LoraManager& manager, const Pool& pool, const LoraPool& lora,
                                              std::string_view adapter, std::span<const Candidate> candidates);

}  // namespace vllm_router::detail
