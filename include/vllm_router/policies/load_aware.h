// load_aware: the least-loaded candidate by router in-flight plus vLLM's scraped load.
#pragma once

#include <cstdint>

#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Picks the candidate with the lowest load score (ties broken uniformly with ctx.rng):
///   score = (in_flight + waiting + 4 x kv_cache_usage) / weight
/// where in_flight is this router's open requests on the endpoint and waiting / kv_cache_usage
/// are vLLM's `vllm:num_requests_waiting` / `vllm:kv_cache_usage_perc` as last written by a
/// LoadScraper. A sample older than PolicyOptions::scrape_stale_ms at ctx.now_ns (or never
/// taken) is ignored: the score is then in-flight only, so a failed scrape never blocks routing.
/// (`running` is not added: for this router's own requests in_flight already counts them, and
/// a waiting queue is what says a replica is saturated.) Thread-safe; its scratch only holds the
/// pool's weights by slot (read once per candidate from a dense array rather than from every
/// Endpoint).
class VLLM_ROUTER_API LoadAware final : public Policy {
 public:
  explicit LoadAware(const PolicyOptions& options = {}) : stale_ms_(options.scrape_stale_ms) {}
  std::string_view name() const noexcept override { return "load_aware"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  /// The same choice made in one pass over the pool, testing usable() inline (no list).
  std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const override;
  std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const override;

 private:
  std::uint32_t stale_ms_;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
