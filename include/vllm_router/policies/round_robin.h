// round_robin: nginx's smooth weighted round robin over the candidates.
#pragma once

#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Smooth weighted round robin (nginx): each pick adds every candidate's weight to its current
/// value, takes the largest, and subtracts the total from it. Even spread, weights honoured,
/// no bursts. Thread-safe (its scratch has a mutex).
class VLLM_ROUTER_API RoundRobin final : public Policy {
 public:
  std::string_view name() const noexcept override { return "round_robin"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const override;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
