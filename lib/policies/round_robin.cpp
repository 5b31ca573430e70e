// Smooth weighted round robin (nginx's algorithm): one period of its sequence over the pool,
// walked by a shared cursor that skips endpoints that are not candidates.
#include "vllm_router/policies/round_robin.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>
#include <vector>

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

// Longest period kept as a schedule (4 bytes each), and the most work spent computing one
// (pool size x period steps of nginx's loop); beyond, picks run nginx's loop over the candidates.
constexpr std::size_t kMaxSchedule = std::size_t{1} << 16;
constexpr std::size_t kMaxScheduleWork = std::size_t{1} << 22;
// Schedule entries a fast pick looks at before leaving the choice to the candidate list.
constexpr std::size_t kMaxSkips = 32;

struct RoundRobinScratch final : PolicyScratch {
  std::size_t pool_size = 0;
  // One period of nginx's sequence over the whole pool (slots), or empty (period too long).
  std::vector<std::uint32_t> schedule;
  std::atomic<std::size_t> cursor{0};  // next schedule position, < schedule.size()
  // nginx's current values, by slot: without a schedule, or when its walk finds no candidate.
  std::mutex mutex;
  std::vector<std::int64_t> current;
};

// One period of smooth weighted round robin over `weights`: with weights divided by their gcd
// (the same sequence) it lasts sum(weights) picks, after which every current value is 0 again.
// Equal weights give 0, 1, ..., n-1. Empty when that period is too long to keep.
std::vector<std::uint32_t> build_schedule(const std::vector<std::uint64_t>& weights) {
  const std::size_t n = weights.size();
  std::uint64_t g = 0;
  for (const std::uint64_t w : weights) g = std::gcd(g, w);
  std::uint64_t period = 0;
  for (const std::uint64_t w : weights) period += w / g;
  std::vector<std::uint32_t> schedule;
  if (period > kMaxSchedule) return schedule;
  schedule.reserve(period);
  if (period == n) {  // equal weights
    for (std::size_t i = 0; i < n; ++i) schedule.push_back(static_cast<std::uint32_t>(i));
    return schedule;
  }
  if (period * n > kMaxScheduleWork) return schedule;
  std::vector<std::int64_t> current(n, 0);
  const auto total = static_cast<std::int64_t>(period);
  for (std::uint64_t step = 0; step < period; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < n; ++i) {
      current[i] += static_cast<std::int64_t>(weights[i] / g);
      if (i == 0 || current[i] > current[best]) best = i;
    }
    current[best] -= total;
    schedule.push_back(static_cast<std::uint32_t>(best));
  }
  return schedule;
}

// Walks the schedule from the cursor to the first entry `take` accepts (looking at no more than
// `limit` entries), moves the cursor past it and returns its slot; `npos` when none was found.
// The entries skipped are consumed: their turns pass on, so over one period every accepted
// endpoint is taken exactly as often as in the full sequence.
template <class Take>
std::size_t walk(RoundRobinScratch& s, std::size_t limit, Take take) {
  constexpr std::size_t npos = static_cast<std::size_t>(-1);
  const std::size_t period = s.schedule.size();
  limit = std::min(limit, period);
  std::size_t at = s.cursor.load(std::memory_order_relaxed);
  for (;;) {
    std::size_t pos = at;
    std::size_t found = npos;
    for (std::size_t k = 0; k < limit; ++k) {
      if (take(s.schedule[pos])) {
        found = pos;
        break;
      }
      if (++pos == period) pos = 0;
    }
    if (found == npos) return npos;
    const std::size_t next = found + 1 == period ? 0 : found + 1;
    if (s.cursor.compare_exchange_weak(at, next, std::memory_order_relaxed)) return s.schedule[found];
  }
}

}  // namespace

std::unique_ptr<PolicyScratch> RoundRobin::make_scratch(std::span<const Endpoint* const> pool) const {
  auto scratch = std::make_unique<RoundRobinScratch>();
  scratch->pool_size = pool.size();
  std::vector<std::uint64_t> weights;
  weights.reserve(pool.size());
  for (const Endpoint* ep : pool) weights.push_back(std::max<std::uint64_t>(1, ep->weight));
  if (!pool.empty()) scratch->schedule = build_schedule(weights);
  scratch->current.assign(pool.size(), 0);
  return scratch;
}

std::size_t RoundRobin::pick_from_pool(const PickContext& ctx, const PoolView& pool) const {
  auto* scratch = dynamic_cast<RoundRobinScratch*>(ctx.scratch);
  if (scratch == nullptr || scratch->schedule.empty() || scratch->pool_size != pool.size()) return kNoPick;
  const std::size_t slot = pool.all_usable() ? walk(*scratch, 1, [](std::size_t) { return true; })
                                             : walk(*scratch, kMaxSkips, [&](std::size_t s) { return pool.usable(s); });
  return slot < pool.size() ? slot : kNoPick;
}

std::size_t RoundRobin::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  auto* scratch = dynamic_cast<RoundRobinScratch*>(ctx.scratch);
  if (scratch == nullptr || candidates.size() == 1) {
    return candidates.size() == 1 ? 0 : static_cast<std::size_t>(ctx.rng.below(candidates.size()));
  }
  constexpr std::uint32_t kNone = UINT32_MAX;
  if (!scratch->schedule.empty()) {
    // Slot -> candidate index, for the walk. One table per thread, kept; reset before returning.
    thread_local std::vector<std::uint32_t> index_of;
    if (index_of.size() < scratch->pool_size) index_of.resize(scratch->pool_size, kNone);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (candidates[i].slot < scratch->pool_size) index_of[candidates[i].slot] = static_cast<std::uint32_t>(i);
    }
    // Equal weights: the period is the pool, so the walk always finds a candidate. Weighted
    // periods can be long next to a few light candidates: past 4 x the pool, nginx's loop
    // below decides instead (O(candidates), as without a schedule).
    const std::size_t limit = std::max<std::size_t>(64, 4 * scratch->pool_size);
    const std::size_t slot = walk(*scratch, limit, [&](std::size_t s) { return index_of[s] != kNone; });
    const std::size_t chosen = slot < scratch->pool_size ? index_of[slot] : kNone;
    for (const Candidate& c : candidates) {
      if (c.slot < scratch->pool_size) index_of[c.slot] = kNone;
    }
    if (chosen != kNone) return chosen;
  }
  std::lock_guard<std::mutex> lock(scratch->mutex);
  std::int64_t total = 0;
  std::size_t best = 0;
  std::int64_t best_value = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const std::size_t slot = candidates[i].slot;
    if (slot >= scratch->current.size()) continue;
    const auto weight = static_cast<std::int64_t>(candidates[i].endpoint->weight);
    scratch->current[slot] += weight;
    total += weight;
    if (i == 0 || scratch->current[slot] > best_value) {
      best = i;
      best_value = scratch->current[slot];
    }
  }
  if (candidates[best].slot < scratch->current.size()) scratch->current[candidates[best].slot] -= total;
  return best;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
