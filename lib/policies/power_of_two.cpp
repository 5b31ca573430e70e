// Power of two choices: two distinct random candidates, the one with fewer in flight wins.
#include "vllm_router/policies/power_of_two.h"

#include "policies/pick_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

std::size_t PowerOfTwo::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  const std::size_t n = candidates.size();
  if (n <= 1) return 0;
  const auto a = static_cast<std::size_t>(ctx.rng.below(n));
  auto b = static_cast<std::size_t>(ctx.rng.below(n - 1));
  if (b >= a) ++b;  // distinct from a, uniform over the others
  const std::int64_t la = candidates[a].state->fleet_in_flight();
  const std::int64_t lb = candidates[b].state->fleet_in_flight();
  return lb < la ? b : a;
}

std::size_t PowerOfTwo::pick_from_pool(const PickContext& ctx, const PoolView& pool) const {
  return detail::power_of_two_from_pool(ctx, pool);
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
