// Smooth weighted round robin (nginx's algorithm) over the healthy candidates.
#include "vllm_router/policies/round_robin.h"

#include <mutex>
#include <vector>

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

struct RoundRobinScratch final : PolicyScratch {
  explicit RoundRobinScratch(std::size_t n) : current(n, 0) {}
  std::mutex mutex;
  std::vector<std::int64_t> current;  // by pool slot
};

}  // namespace

std::unique_ptr<PolicyScratch> RoundRobin::make_scratch(std::span<const Endpoint* const> pool) const {
  return std::make_unique<RoundRobinScratch>(pool.size());
}

std::size_t RoundRobin::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  auto* scratch = dynamic_cast<RoundRobinScratch*>(ctx.scratch);
  if (scratch == nullptr || candidates.size() == 1) {
    return candidates.size() == 1 ? 0 : static_cast<std::size_t>(ctx.rng.below(candidates.size()));
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
