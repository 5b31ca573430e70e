// least_requests: the candidate with the fewest requests in flight, ties broken at random.
#pragma once

#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Fewest in flight at this router wins; among equals one is drawn uniformly with ctx.rng.
/// Stateless and thread-safe.
class VLLM_ROUTER_API LeastRequests final : public Policy {
 public:
  std::string_view name() const noexcept override { return "least_requests"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  /// The same choice made in one pass over the pool, testing usable() inline (no list).
  std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const override;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
