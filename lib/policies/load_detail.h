// The load score shared by load_aware and prefix_aware (and the staleness rule of scraped samples).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "vllm_router/endpoint_state.h"
#include "policies/pick_detail.h"
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

/// The pool's endpoint weights by slot, kept in a policy's scratch: scoring then reads one dense
/// array instead of every candidate's Endpoint (a cache line per candidate less).
struct SlotWeights {
  std::vector<std::uint32_t> by_slot;

  void assign(std::span<const Endpoint* const> pool) {
    by_slot.clear();
    by_slot.reserve(pool.size());
    for (const Endpoint* ep : pool) by_slot.push_back(ep->weight);
  }
  /// `c`'s weight (from its Endpoint when the slot is not this pool's).
  std::uint32_t of(const Candidate& c) const noexcept {
    return c.slot < by_slot.size() ? by_slot[c.slot] : c.endpoint->weight;
  }
};

/// Load of one endpoint of weight `weight`: requests in flight on it (this router's and, with
/// replica sync, its peers': EndpointState::fleet_in_flight), plus, from a fresh scrape, vLLM's
/// waiting queue (the main backpressure signal; it also sees other routers' requests) and
/// kKvCacheWeight x KV usage. A stale or missing sample counts in-flight only. Divided by the
/// weight, so a weight-2 replica takes twice the load for the score.
/// (Reads only the numbers it needs: the same as scoring state->sample().)
/// Without replica sync, the other routers' running requests as scraped (running + waiting less
/// this router's in-flight count at the scrape, LoadSample::sampled_in_flight) are deliberately
/// not added: measured with 3 router processes (bench/fleet/RESULTS.md, issue 14, stop 23)
/// every router then saw the same scrape-old least loaded engine and sent it more than its share
/// until the next scrape (load_aware's TTFT p99 on the random workload 283 -> 369 ms), and
/// prefix_aware spilled cold prefixes three times as often (hit rate 75 % -> 64 %).
/// prefix_replica_affinity scales this router's own count by its share instead (stop 24);
/// replica sync's counts are milliseconds old, not a scrape interval (stop 26).
inline double load_score(const EndpointState& st, std::uint32_t weight, std::int64_t now_ns,
                         std::uint32_t stale_ms) noexcept {
  double load = static_cast<double>(st.fleet_in_flight());
  const std::int64_t sampled_ns = st.sampled_ns.load(std::memory_order_relaxed);
  if (sampled_ns != 0) {
    LoadSample s;
    s.sampled_ns = sampled_ns;
    s.waiting = st.waiting.load(std::memory_order_relaxed);
    if (sample_fresh(s, now_ns, stale_ms)) {
      load += static_cast<double>(s.waiting);
      const float kv = st.kv_cache_usage.load(std::memory_order_relaxed);
      if (kv > 0.0F) load += kKvCacheWeight * static_cast<double>(kv);
    }
  }
  return weight > 1 ? load / static_cast<double>(weight) : load;  // x / 1.0 == x: skip the division
}

/// load_score of a candidate, its weight read from its Endpoint.
inline double load_score(const Candidate& c, std::int64_t now_ns, std::uint32_t stale_ms) noexcept {
  return load_score(*c.state, c.endpoint->weight, now_ns, stale_ms);
}

/// Scores within this of each other are equal.
inline constexpr double kScoreEpsilon = 1e-9;

/// Index (among `count` entries) of the least-loaded usable entry (load_score); equal scores
/// are broken uniformly at random with ctx.rng (one draw among the tied). `count` when none is
/// usable. `weight_of(candidate)`: its weight. `score_out`, when given, receives the winner's
/// score.
template <class Usable, class WeightOf>
std::size_t least_loaded_of(const PickContext& ctx, const Candidate* entries, std::size_t count,
                            std::uint32_t stale_ms, Usable usable, WeightOf weight_of,
                            double* score_out = nullptr) {
  const std::int64_t now = pick_now_ns(ctx);
  TieBuffer<> ties(count);
  std::uint32_t* tied = ties.data();
  std::size_t n = 0;
  double best_score = 0.0;
  double below = std::numeric_limits<double>::infinity();  // a score under this is a new best
  double tie = 0.0;                                          // a score up to this ties the best
  for (std::size_t i = 0; i < count; ++i) {
    if (!usable(i)) continue;
    const Candidate& c = entries[i];
    const double score = load_score(*c.state, weight_of(c), now, stale_ms);  // finite
    if (score < below) {
      best_score = score;
      below = score - kScoreEpsilon;
      tie = score + kScoreEpsilon;
      n = 0;
    }
    tied[n] = static_cast<std::uint32_t>(i);
    n += score <= tie ? 1 : 0;  // always after a new best
  }
  if (score_out != nullptr) *score_out = best_score;
  return n == 0 ? count : ties.draw(n, ctx.rng);
}

/// Index of the least-loaded candidate (load_score); equal scores are broken uniformly at
/// random with ctx.rng. `score_out`, when given, receives its score. Precondition: candidates
/// not empty.
inline std::size_t least_loaded(const PickContext& ctx, std::span<const Candidate> candidates,
                                std::uint32_t stale_ms, const SlotWeights* weights = nullptr,
                                double* score_out = nullptr) {
  const std::size_t i = least_loaded_of(
      ctx, candidates.data(), candidates.size(), stale_ms, [](std::size_t) { return true; },
      [weights](const Candidate& c) { return weights != nullptr ? weights->of(c) : c.endpoint->weight; }, score_out);
  return i == candidates.size() ? 0 : i;
}

}  // namespace policies::detail
VLLM_ROUTER_END_NAMESPACE
