// session: consistent hashing with bounded loads on the request's session key.
#pragma once

#include <cstdint>

#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018) on
/// RequestView::session_key (the gateway fills it from the header named
/// PolicyOptions::session_header, else from the body's `user`).
///
/// - The ring holds kVirtualNodes x weight points per endpoint, placed by a stable hash of
///   Endpoint::id (FNV-1a + splitmix64, fixed seeds): every router process maps a key to the same
///   endpoint with no shared state, and adding or removing a replica moves only the keys it gains
///   or loses (about 1/n of them).
/// - Bounded load: walking clockwise from the key, the first candidate whose requests in flight
///   are below max(session_min_capacity, ceil(session_load_factor x (total in flight + 1) /
///   candidates)) takes the request, so one hot session cannot pile onto its replica while a
///   lightly loaded fleet keeps every session where it is (a vLLM replica batches dozens of
///   sequences: a few in flight is no overload). With c = session_load_factor <= 1 the bound is
///   off (pure consistent hashing).
/// - The engines' real capacity: an endpoint whose fresh scrape (PolicyOptions::scrape_stale_ms)
///   reports requests waiting is full whatever session_min_capacity says: its sessions are held
///   to ceil(c x average) and the walk passes over it (an engine batching 8 with 13 sessions
///   queues 5 of them; a floor of 16 would never move one).
/// - Candidates missing from the pool (unhealthy, excluded after a failure) are skipped: their
///   keys go to the next endpoint on the ring and come back when they return.
/// - No session key: falls back to power-of-two choices.
/// Thread-safe: the ring is built once per pool (make_scratch) and only read afterwards.
class VLLM_ROUTER_API Session final : public Policy {
 public:
  static constexpr std::uint32_t kVirtualNodes = 160;

  explicit Session(const PolicyOptions& options = {})
      : load_factor_(options.session_load_factor),
        min_capacity_(options.session_min_capacity),
        stale_ms_(options.scrape_stale_ms) {}
  std::string_view name() const noexcept override { return "session"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  /// The same walk over the pool's ring testing usable() per point: O(1) while the key's home
  /// has fewer than session_min_capacity in flight (the bound cannot apply), else one pass for
  /// the average load. kNoPick when 64 points in a row are unusable (most of the pool is).
  /// Without a key: power_of_two's draws from the pool.
  std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const override;
  std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const override;

 private:
  bool queued(const EndpointState& state, std::int64_t now_ns) const noexcept;  // fresh waiting > 0
  double load_factor_;
  std::uint32_t min_capacity_;
  std::uint32_t stale_ms_;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
