// power_of_two: two distinct candidates drawn at random, the one with fewer in flight wins.
#pragma once

#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// "Power of two choices": draws two distinct candidates uniformly with ctx.rng and picks the
/// one with fewer requests in flight at this router (the first drawn on a tie). Spreads load
/// almost as well as least_requests without herding many routers onto one replica.
/// Stateless and thread-safe.
class VLLM_ROUTER_API PowerOfTwo final : public Policy {
 public:
  std::string_view name() const noexcept override { return "power_of_two"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  /// The same draws made straight from the pool: O(1) (rejection sampling of usable slots;
  /// kNoPick when most of the pool is unusable).
  std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const override;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
