// LoadScraper: polls each endpoint's /metrics and writes vLLM's own load into its EndpointState.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/endpoint_state.h"
#include "vllm_router/export.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Load figures parsed from one Prometheus text exposition of a vLLM server.
struct ScrapedLoad {
  std::int32_t waiting = -1;     ///< sum of vllm:num_requests_waiting over label sets; -1: absent
  std::int32_t running = -1;     ///< sum of vllm:num_requests_running; -1: absent
  float kv_cache_usage = -1.0F;  ///< mean of vllm:kv_cache_usage_perc (older name
                                 ///< vllm:gpu_cache_usage_perc) over label sets, 0..1; -1: absent
};

/// Parses Prometheus text format (version 0.0.4) for the load gauges above. Label sets (e.g.
/// one per engine of a data-parallel server, or per model) are summed for the request counts
/// and averaged for KV usage (a usage share, not an amount). The new KV name wins when both
/// appear. Comments, other metrics, timestamps and malformed lines are skipped. Pure, thread-safe.
VLLM_ROUTER_API ScrapedLoad parse_vllm_load(std::string_view text);

/// What one scrape_once() did.
struct ScrapeStats {
  std::size_t endpoints = 0;  ///< distinct endpoints in the snapshot
  std::size_t succeeded = 0;  ///< answered 200 with at least the waiting or running gauge
  std::size_t failed = 0;     ///< connect/timeout/status/parse failures (their samples age out)
};

/// The control-plane writer of EndpointState::{waiting, running, kv_cache_usage, sampled_ns}
/// (their only writer). Each round GETs `/metrics` (with the endpoint's api_key, as the
/// transport sends it) from every distinct endpoint of the router's current snapshot, at most
/// kMaxParallel at once on a bounded pool, each bounded by PolicyOptions::scrape_timeout_ms,
/// and stores the parsed load with sampled_ns = the injected clock's now (ns since its epoch).
/// A failed scrape writes nothing: the old sample ages past PolicyOptions::scrape_stale_ms and
/// policies stop trusting it. Routing never waits for a scrape. A host that embeds the Router
/// starts its own scraper (the Router does not).
///
/// Ownership: `router` must outlive the scraper; the transport and clock are shared.
/// Thread-safety: start()/stop() from one thread; scrape_once() may be called from any thread
/// when the background thread is not running (tests call it directly, without sleeping).
class VLLM_ROUTER_API LoadScraper {
 public:
  static constexpr std::size_t kMaxParallel = 8;

  /// `transport`: used for the GETs (a probe transport; timeouts are enforced by the scraper
  /// through the AliveCheck). `options`: scrape_interval_ms / scrape_timeout_ms.
  LoadScraper(const Router& router, std::shared_ptr<Transport> transport, std::shared_ptr<const Clock> clock,
              const PolicyOptions& options);
  ~LoadScraper();  ///< stops the thread
  LoadScraper(const LoadScraper&) = delete;
  LoadScraper& operator=(const LoadScraper&) = delete;

  /// One round over the current snapshot's endpoints; returns what happened.
  ScrapeStats scrape_once();
  /// Starts a thread running scrape_once() every scrape_interval_ms (first round at once).
  /// No-op when already running.
  void start();
  /// Stops and joins the thread (an in-progress GET is abandoned within ~50 ms). Idempotent.
  void stop();
  /// Rounds completed since construction (start()ed thread and direct calls).
  std::uint64_t rounds() const noexcept;

  struct Impl;  ///< opaque (pimpl)

 private:
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
