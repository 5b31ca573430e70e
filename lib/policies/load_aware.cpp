// Least-loaded candidate by router in-flight plus fresh scraped vLLM load; ties at random.
#include "vllm_router/policies/load_aware.h"

#include "policies/load_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

// The pool's weights by slot (read-only after construction).
struct LoadAwareScratch final : PolicyScratch {
  detail::SlotWeights weights;
};

const detail::SlotWeights* weights_of(const PolicyScratch* scratch) {
  const auto* s = dynamic_cast<const LoadAwareScratch*>(scratch);
  return s != nullptr ? &s->weights : nullptr;
}

}  // namespace

std::unique_ptr<PolicyScratch> LoadAware::make_scratch(std::span<const Endpoint* const> pool) const {
  auto scratch = std::make_unique<LoadAwareScratch>();
  scratch->weights.assign(pool);
  return scratch;
}

std::size_t LoadAware::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  if (candidates.size() <= 1) return 0;
  return detail::least_loaded(ctx, candidates, stale_ms_, weights_of(ctx.scratch));
}

namespace {

template <class WeightOf>
std::size_t least_loaded_slot(const PickContext& ctx, const PoolView& pool, std::uint32_t stale_ms, WeightOf weight_of) {
  const Candidate* all = pool.all().data();
  if (pool.all_usable()) {
    return detail::least_loaded_of(ctx, all, pool.size(), stale_ms, [](std::size_t) { return true; }, weight_of);
  }
  return detail::least_loaded_of(ctx, all, pool.size(), stale_ms, [&](std::size_t s) { return pool.usable(s); },
                                 weight_of);
}

}  // namespace

std::size_t LoadAware::pick_from_pool(const PickContext& ctx, const PoolView& pool) const {
  const std::size_t n = pool.size();
  const detail::SlotWeights* weights = weights_of(ctx.scratch);
  // The pool's weight array covers every slot: no bounds check per candidate.
  const std::size_t slot =
      weights != nullptr && weights->by_slot.size() == n
          ? least_loaded_slot(ctx, pool, stale_ms_, [w = weights->by_slot.data()](const Candidate& c) { return w[c.slot]; })
          : least_loaded_slot(ctx, pool, stale_ms_, [](const Candidate& c) { return c.endpoint->weight; });
  return slot == n ? kNoPick : slot;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
