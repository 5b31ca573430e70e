// Least-loaded candidate by router in-flight plus fresh scraped vLLM load; ties at random.
#include "vllm_router/policies/load_aware.h"

#include "policies/load_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

std::size_t LoadAware::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  if (candidates.size() <= 1) return 0;
  return detail::least_loaded(ctx, candidates, stale_ms_);
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
