// Snapshot: the immutable, versioned routing table (catalog and pools) swapped atomically.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_state.h"
#include "vllm_router/export.h"
#include "vllm_router/model_catalog.h"
#include "vllm_router/policy.h"

namespace vllm_router::detail {
struct PoolIndex;  // the router's per-pool routing aids (lib/pool_index.h)
struct LoraPool;   // LoRA-aware placement of the pool's adapters (lib/lora.h)
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

/// The replicas of one model and the policy that picks among them.
struct Pool {
  std::string model;
  std::vector<std::shared_ptr<const Endpoint>> endpoints;
  std::vector<std::shared_ptr<EndpointState>> states;  ///< parallel to endpoints
  std::shared_ptr<const Policy> policy;
  std::unique_ptr<PolicyScratch> scratch;  ///< the policy's own, internally synchronised
  HealthCheckConfig health_check;          ///< the model's (or the router's default)
  std::uint32_t max_in_flight = 0;         ///< per endpoint; 0: unbounded
  /// Internal to the Router that built the pool: every endpoint as a Candidate, endpoint id ->
  /// slot, and the cached count of healthy endpoints (so route() need not scan the pool).
  std::shared_ptr<detail::PoolIndex> index;
  static constexpr std::size_t kNoPrefill = static_cast<std::size_t>(-1);
  /// Prefill/decode disaggregation: Snapshot::pools index of this model's prefill pool (this
  /// pool is then its decode pool); kNoPrefill: none.
  std::size_t prefill = kNoPrefill;
  bool prefill_role = false;       ///< a model's prefill pool (no name resolves to it)
  bool colocated_fallback = true;  ///< PrefillConfig::colocated_fallback (decode pools)
  /// Internal: set when the model's configuration has `lora` (issue 14); null otherwise.
  std::shared_ptr<const detail::LoraPool> lora;
};

/// Immutable routing table. Shared by shared_ptr<const Snapshot>; a request holds the one it
/// started with until it ends, so an update never pulls endpoints from under it.
struct Snapshot {
  std::uint64_t version = 0;
  /// The configuration this table was built from (timeouts, retry and health settings are read
  /// from here on the data path, so a reload never races a running request).
  std::shared_ptr<const RouterConfig> config;
  ModelCatalog catalog;
  std::vector<Pool> pools;
  bool disaggregated = false;  ///< some pool has a prefill pool
};

VLLM_ROUTER_END_NAMESPACE
