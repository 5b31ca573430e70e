// Fewest in flight wins; ties are broken uniformly at random (one draw among the tied).
#include "vllm_router/policies/least_requests.h"

#include <limits>

#include "policies/pick_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

// Index (among `count` entries) of the fewest in flight, ties drawn uniformly; `count` when no
// entry is usable. One pass, one random draw.
template <class Usable>
std::size_t fewest_in_flight(const PickContext& ctx, const Candidate* entries, std::size_t count, Usable usable) {
  detail::TieBuffer<> ties(count);
  std::uint32_t* tied = ties.data();
  std::size_t n = 0;
  std::int64_t best_load = std::numeric_limits<std::int64_t>::max();
  for (std::size_t i = 0; i < count; ++i) {
    if (!usable(i)) continue;
    const std::int64_t load = entries[i].state->fleet_in_flight();
    if (load < best_load) {
      best_load = load;
      n = 0;
    }
    tied[n] = static_cast<std::uint32_t>(i);
    n += load == best_load ? 1 : 0;
  }
  return n == 0 ? count : ties.draw(n, ctx.rng);
}

}  // namespace

std::size_t LeastRequests::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  const std::size_t i = fewest_in_flight(ctx, candidates.data(), candidates.size(), [](std::size_t) { return true; });
  return i == candidates.size() ? 0 : i;
}

std::size_t LeastRequests::pick_from_pool(const PickContext& ctx, const PoolView& pool) const {
  const std::size_t n = pool.size();
  const std::size_t slot = pool.all_usable()
                               ? fewest_in_flight(ctx, pool.all().data(), n, [](std::size_t) { return true; })
                               : fewest_in_flight(ctx, pool.all().data(), n, [&](std::size_t s) { return pool.usable(s); });
  return slot == n ? kNoPick : slot;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
