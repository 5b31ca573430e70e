// Fewest in flight wins; ties are broken uniformly at random (reservoir sampling).
#include "vllm_router/policies/least_requests.h"

#include <limits>

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

std::size_t LeastRequests::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  std::size_t best = 0;
  std::int64_t best_load = std::numeric_limits<std::int64_t>::max();
  std::uint64_t ties = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const std::int64_t load = candidates[i].state->in_flight.load(std::memory_order_relaxed);
    if (load < best_load) {
      best = i;
      best_load = load;
      ties = 1;
    } else if (load == best_load) {
      ++ties;
      if (ctx.rng.below(ties) == 0) best = i;
    }
  }
  return best;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
