// Policy: the load-balancing contract (pick one of the candidates) and the registry of policies.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_state.h"
#include "vllm_router/export.h"
#include "vllm_router/random.h"
#include "vllm_router/request.h"
#include "vllm_router/result.h"

namespace vllm_router::detail {
class ReplicaChannel;  // replica sync's hand-over (lib/replica_channel.h)
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

/// One endpoint a policy may choose. `slot` is the endpoint's position in its pool (stable for
/// the life of a snapshot), for policies that keep per-endpoint scratch.
struct Candidate {
  const Endpoint* endpoint = nullptr;
  const EndpointState* state = nullptr;
  std::size_t slot = 0;
};

/// Which endpoints of a pool are the candidates of one pick (see PoolView).
struct CandidateFilter {
  bool check_health = false;  ///< drop endpoints not healthy(now_ns); false in panic mode
  std::int64_t now_ns = 0;    ///< steady-clock time the health flags are read at
  std::uint32_t max_in_flight = 0;          ///< drop endpoints with this many in flight; 0: none
  std::span<const std::size_t> excluded;    ///< slots this request already tried (usually none)
};

/// The whole pool of one pick, for policies that choose without a candidate list
/// (Policy::pick_from_pool): every endpoint by slot, and which of them are candidates. A view:
/// it points into the routing table and the filter's `excluded`, valid during the pick only.
/// Cheap to copy; reading it is thread-safe.
class PoolView {
 public:
  /// `pool[i].slot == i` for every i (the pool's endpoints in slot order).
  explicit PoolView(std::span<const Candidate> pool, const CandidateFilter& filter = {}) noexcept
      : pool_(pool), filter_(filter) {}

  /// Endpoints in the pool (candidates or not).
  std::size_t size() const noexcept { return pool_.size(); }
  /// The endpoint at `slot` (< size()), whether or not it is a candidate.
  const Candidate& operator[](std::size_t slot) const noexcept { return pool_[slot]; }
  /// Every endpoint, in slot order.
  std::span<const Candidate> all() const noexcept { return pool_; }
  /// True when no filter applies: every endpoint is a candidate and all() is the candidate list.
  bool all_usable() const noexcept {
    return !filter_.check_health && filter_.max_in_flight == 0 && filter_.excluded.empty();
  }
  /// Whether the endpoint at `slot` (< size()) is a candidate of this pick: what the candidate
  /// list handed to Policy::pick would hold. Reads its live state (a few atomic loads).
  bool usable(std::size_t slot) const noexcept {
    const EndpointState& s = *pool_[slot].state;
    if (filter_.check_health && !s.healthy(filter_.now_ns)) return false;
    if (filter_.max_in_flight != 0 &&
        s.in_flight.load(std::memory_order_relaxed) >= static_cast<std::int64_t>(filter_.max_in_flight)) {
      return false;
    }
    for (const std::size_t x : filter_.excluded) {
      if (x == slot) return false;
    }
    return true;
  }
  const CandidateFilter& filter() const noexcept { return filter_; }

 private:
  std::span<const Candidate> pool_;
  CandidateFilter filter_;
};

/// Per-pool mutable scratch a policy may keep (cursors, weights). Created by the policy for each
/// pool of each snapshot; the policy synchronises its own access to it.
class VLLM_ROUTER_API PolicyScratch {
 public:
  virtual ~PolicyScratch();
};

/// What a policy may tell about its pick (for PickEvent and traces). Every field optional.
struct PickNotes {
  /// Prompt characters the chosen endpoint already served (a prefix-cache match); -1: unknown.
  std::int64_t prefix_match = -1;
};

/// What a pick sees besides the candidates.
struct PickContext {
  const RequestView& request;
  Rng& rng;
  PolicyScratch* scratch = nullptr;  ///< from make_scratch() for this pool; may be null
  std::size_t pool_size = 0;         ///< endpoints in the pool (candidates may be fewer)
  std::int64_t now_ns = 0;           ///< steady-clock time of the pick (injected in tests)
  PickNotes* notes = nullptr;        ///< where a policy may note what it saw; may be null
  /// Replica sync (ReplicaSync) between this router and its peers; null when off. Internal:
  /// prefix_aware publishes its placements there and learns the peers'.
  detail::ReplicaChannel* replica = nullptr;
};

/// A load-balancing policy. `pick` must be a pure function of the context and candidates (plus
/// its own scratch) and safe to call from many threads at once.
class VLLM_ROUTER_API Policy {
 public:
  virtual ~Policy();
  /// Registered name, e.g. "round_robin".
  virtual std::string_view name() const noexcept = 0;
  /// Index into `candidates` of the chosen one. Precondition: !candidates.empty().
  virtual std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const = 0;

  /// pick_from_pool's answer "no choice made": the router builds the candidate list and calls
  /// pick().
  static constexpr std::size_t kNoPick = static_cast<std::size_t>(-1);
  /// Optional fast path, tried by Router::route before pick(): choose straight from the pool,
  /// testing only the endpoints it looks at with `pool.usable(slot)`, so a policy that needs
  /// one or two endpoints (random draws, a ring walk, a cursor) costs O(1) instead of O(pool).
  /// Returns the slot of a usable endpoint (the router checks), or kNoPick to fall back to
  /// pick() (e.g. when most of the pool is unusable). Must follow the same rule, and give the
  /// same distribution, as pick() over the usable endpoints; same purity and thread-safety
  /// rules. Default: kNoPick, so a policy that implements only pick() works unchanged.
  virtual std::size_t pick_from_pool(const PickContext& ctx, const PoolView& pool) const;
  /// Scratch for a pool of `pool_size` endpoints with these weights; default none.
  virtual std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const;
  /// Scratch for `pool` in a new routing table, given the scratch this policy (the same
  /// registered name) kept for the model's pool in the table being replaced, `previous_pool`.
  /// Lets learned state (prefix_aware's index) survive a reload or a discovery change; slots are
  /// positions, so match endpoints by `Endpoint::id`. `previous` may still be in use by picks on
  /// the old table: read it under the policy's own synchronisation. Default: make_scratch(pool).
  virtual std::unique_ptr<PolicyScratch> carry_scratch(std::span<const Endpoint* const> pool,
                                                       const PolicyScratch& previous,
                                                       std::span<const Endpoint* const> previous_pool) const;
};

/// Name -> factory. Each Router owns its own registry (no globals), seeded with the built-ins.
/// Not thread-safe for concurrent add(); lookups after setup are safe.
class VLLM_ROUTER_API PolicyRegistry {
 public:
  using Factory = std::function<std::shared_ptr<const Policy>()>;
  /// A factory that reads the router's PolicyOptions (session header, prefix chunking, ...).
  using OptionsFactory = std::function<std::shared_ptr<const Policy>(const PolicyOptions&)>;

  /// A registry holding the built-in policies.
  static PolicyRegistry with_builtins();

  /// Adds or replaces a policy by name.
  void add(std::string name, Factory factory);
  void add_with_options(std::string name, OptionsFactory factory);
  /// The policy named `name` built with `options`, or Errc::config naming it.
  Result<std::shared_ptr<const Policy>> create(std::string_view name,
                                               const PolicyOptions& options = {}) const;
  bool contains(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, OptionsFactory, std::less<>> factories_;
};

VLLM_ROUTER_END_NAMESPACE
