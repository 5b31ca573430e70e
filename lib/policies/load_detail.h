// The load score shared by load_aware and prefix_aware (and the staleness rule of scraped samples).
#pragma once

#include <chrono>
#include <cstdint>

#include "vllm_router/endpoint_state.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies::detail {

/// A full KV cache counts like this many extra requests: vLLM preempts (recomputes) when its
/// KV cache runs out, so a nearly full replica is worse than its request count says.
inline constexpr double kKvCacheWeight = 4.0;

/// The pick's time: ctx.now_ns when the caller set it, else the steady clock.
inline std::int64_t pick_now_ns(const PickContext& ctx) noexcept {
  if (ctx.now_ns != 0) return ctx.now_ns;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// True when `s` holds a scrape younger than `stale_ms` at `now_ns`.
inline bool sample_fresh(const LoadSample& s, std::int64_t now_ns, std::uint32_t stale_ms) noexcept {
  if (s.sampled_ns == 0 || s.waiting < 0) return false;
  const std::int64_t age = now_ns - s.sampled_ns;
  return age <= static_cast<std::int64_t>(stale_ms) * 1000000;
}

/// Load of one endpoint: requests this router has in flight on it, plus, from a fresh scrape,
/// vLLM's waiting queue (the main backpressure signal; it also sees other routers' requests)
/// and kKvCacheWeight x KV usage. A stale or missing sample counts in-flight only.
/// Divided by the endpoint's weight, so a weight-2 replica takes twice the load for the score.
inline double load_score(const Candidate& c, std::int64_t now_ns, std::uint32_t stale_ms) noexcept {
  const LoadSample s = c.state->sample();
  double load = static_cast<double>(s.in_flight);
  if (sample_fresh(s, now_ns, stale_ms)) {
    load += static_cast<double>(s.waiting);
    if (s.kv_cache_usage > 0.0F) load += kKvCacheWeight * static_cast<double>(s.kv_cache_usage);
  }
  const double weight = c.endpoint->weight > 0 ? static_cast<double>(c.endpoint->weight) : 1.0;
  return load / weight;
}

/// Index of the least-loaded candidate (load_score); equal scores are broken uniformly at
/// random with ctx.rng (reservoir sampling). `score_out`, when given, receives its score.
inline std::size_t least_loaded(const PickContext& ctx, std::span<const Candidate> candidates,
                                std::uint32_t stale_ms, double* score_out = nullptr) {
  const std::int64_t now = pick_now_ns(ctx);
  std::size_t best = 0;
  double best_score = 0.0;
  std::uint64_t ties = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const double score = load_score(candidates[i], now, stale_ms);
    if (ties == 0 || score < best_score - 1e-9) {
      best = i;
      best_score = score;
      ties = 1;
    } else if (score <= best_score + 1e-9) {
      ++ties;
      if (ctx.rng.below(ties) == 0) best = i;
    }
  }
  if (score_out != nullptr) *score_out = best_score;
  return best;
}

}  // namespace policies::detail
VLLM_ROUTER_END_NAMESPACE
