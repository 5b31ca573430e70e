// round_robin: nginx's smooth weighted round robin over the candidates.
#pragma once

#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Smooth weighted round robin (nginx): each step adds every endpoint's weight to its current
/// value, takes the largest, and subtracts the total from it. Even spread, weights honoured,
/// no bursts. The sequence over the whole pool is periodic (sum of the weights, divided by their
/// gcd, steps), so make_scratch computes one period and picks walk it with a shared cursor
/// (O(1), lock-free); an endpoint that is not a candidate is skipped and its turn passes to the
/// next in the sequence, so the candidates keep their weights' shares and their order. A pool
/// whose period is too long to keep (over 65,536 steps, or pool size x period over 2^22), or
/// a pick whose candidates the walk does not meet within 4 x the pool size (a few light ones
/// among heavy weights), runs nginx's loop over the candidates instead (O(candidates), under a
/// mutex).
/// Thread-safe.
class VLLM_ROUTER_API RoundRobin final : public Policy {
 public:
  std::string_view name() const noexcept override { return "round_robin"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  /// The next usable endpoint of the sequence, in O(1) (kNoPick after 32 unusable ones in a row,
  /// or without a precomputed period).
  std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const override;
  std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const override;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
