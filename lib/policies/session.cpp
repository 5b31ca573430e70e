// Consistent hashing with bounded loads on the session key; the ring is built once per pool.
#include "vllm_router/policies/session.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "policies/hash_detail.h"
#include "policies/load_detail.h"
#include "policies/pick_detail.h"
#include "vllm_router/policies/power_of_two.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

struct Point {
  std::uint64_t pos;
  std::uint32_t slot;  // pool slot
};

struct Ring final : PolicyScratch {
  std::vector<Point> points;  // sorted by pos; immutable after construction
  std::size_t pool_size = 0;
};

// Virtual nodes per endpoint: kVirtualNodes x weight, capped so a huge weight cannot blow up
// the ring.
void build_ring(Ring& ring, std::size_t n, const auto& id_of, const auto& weight_of) {
  ring.pool_size = n;
  ring.points.clear();
  for (std::size_t slot = 0; slot < n; ++slot) {
    const std::uint32_t w = std::clamp<std::uint32_t>(weight_of(slot), 1, 64);
    const std::uint32_t vnodes = Session::kVirtualNodes * w;
    for (std::uint32_t r = 0; r < vnodes; ++r)
      ring.points.push_back(Point{detail::vnode_hash(id_of(slot), r), static_cast<std::uint32_t>(slot)});
  }
  // Ties on position (astronomically rare) are ordered by slot so every process agrees.
  std::sort(ring.points.begin(), ring.points.end(), [](const Point& a, const Point& b) {
    return a.pos != b.pos ? a.pos < b.pos : a.slot < b.slot;
  });
}

}  // namespace

std::unique_ptr<PolicyScratch> Session::make_scratch(std::span<const Endpoint* const> pool) const {
  auto ring = std::make_unique<Ring>();
  build_ring(
      *ring, pool.size(), [&](std::size_t s) -> std::string_view { return pool[s]->id; },
      [&](std::size_t s) { return pool[s]->weight; });
  return ring;
}

namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// Bits over pool slots for the bounded walk: on the stack up to kInline x 64 slots, beyond in
// one buffer per thread, kept.
class Visited {
 public:
  static constexpr std::size_t kInline = 64;
  explicit Visited(std::size_t slots) : words_((slots + 63) / 64) {
    if (words_ > kInline) {
      thread_local std::vector<std::uint64_t> buffer;
      if (buffer.size() < words_) buffer.resize(words_);
      bits_ = buffer.data();
    }
    std::fill(bits_, bits_ + words_, 0);
  }
  Visited(const Visited&) = delete;
  Visited& operator=(const Visited&) = delete;
  // True when `slot` was marked before; marks it.
  bool test_and_set(std::size_t slot) noexcept {
    const std::uint64_t bit = std::uint64_t{1} << (slot % 64);
    const bool was = (bits_[slot / 64] & bit) != 0;
    bits_[slot / 64] |= bit;
    return was;
  }

 private:
  std::uint64_t inline_[kInline];
  std::uint64_t* bits_ = inline_;
  std::size_t words_;
};

// The walk shared by pick() and pick_from_pool(). `usable(slot)`: whether the endpoint is a
// candidate now; `load(slot)`: its requests in flight; `stats()`: {candidates, their total in
// flight}, asked only when the bound matters. Returns the chosen slot, kNone when no point of
// the ring is usable.
// `home_limit`: points looked at for the home before giving up (kNone).
// `queued(slot)`: the engine reports requests waiting (a fresh scrape): it is at its real
// capacity, whatever session_min_capacity says.
template <class Usable, class Load, class Queued, class Stats>
std::size_t walk_ring(const Ring& ring, std::uint64_t key, double load_factor, std::uint32_t min_capacity,
                      std::size_t home_limit, Usable usable, Load load, Queued queued, Stats stats) {
  const auto& pts = ring.points;
  if (pts.empty()) return kNone;
  auto it = std::lower_bound(pts.begin(), pts.end(), key, [](const Point& p, std::uint64_t k) { return p.pos < k; });
  std::size_t at = static_cast<std::size_t>(it - pts.begin());
  if (at == pts.size()) at = 0;
  // The key's home: the first usable endpoint clockwise.
  std::size_t home = kNone;
  std::size_t step = 0;
  for (std::size_t pos = at; step < std::min(home_limit, pts.size()); ++step) {
    if (usable(pts[pos].slot)) {
      home = pts[pos].slot;
      break;
    }
    if (++pos == pts.size()) pos = 0;
  }
  if (home == kNone || load_factor <= 1.0) return home;  // bound off: pure consistent hashing
  const std::int64_t home_load = load(home);
  const bool home_queued = queued(home);
  // Below any cap, unless the engine itself says it is full (its batch is smaller than the floor).
  if (!home_queued && home_load < static_cast<std::int64_t>(min_capacity)) return home;
  // Bounded load: capacity per endpoint after this request is placed.
  const auto [live_count, total] = stats();
  const std::size_t count = std::max<std::size_t>(live_count, 1);
  const auto fair =
      static_cast<std::int64_t>(std::ceil(load_factor * static_cast<double>(total + 1) / static_cast<double>(count)));
  const auto cap = home_queued ? fair : std::max<std::int64_t>(min_capacity, fair);
  if (home_load < cap) return home;
  // Walk on; each candidate checked once, so the walk stops once every one was found full.
  Visited visited(ring.pool_size);
  visited.test_and_set(home);
  std::size_t seen = 1;
  std::size_t pos = (at + step) % pts.size();
  for (++step; step < pts.size() && seen < count; ++step) {
    if (++pos == pts.size()) pos = 0;
    const std::size_t slot = pts[pos].slot;
    if (!usable(slot) || visited.test_and_set(slot)) continue;
    ++seen;
    if (load(slot) < cap && !queued(slot)) return slot;
  }
  return home;  // every candidate at capacity: stay home
}

struct Stats {
  std::size_t count;
  std::int64_t total;
};

}  // namespace

bool Session::queued(const EndpointState& st, std::int64_t now_ns) const noexcept {
  LoadSample s;
  s.sampled_ns = st.sampled_ns.load(std::memory_order_relaxed);
  if (s.sampled_ns == 0) return false;
  s.waiting = st.waiting.load(std::memory_order_relaxed);
  return s.waiting > 0 && detail::sample_fresh(s, now_ns, stale_ms_);
}

std::size_t Session::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  const std::size_t n = candidates.size();
  if (n <= 1) return 0;
  if (ctx.request.session_key.empty()) return PowerOfTwo().pick(ctx, candidates);

  // The ring of this pool; without scratch (a caller that made none), one over the candidates.
  const Ring* ring = dynamic_cast<const Ring*>(ctx.scratch);
  Ring local;
  std::size_t max_slot = 0;
  for (const auto& c : candidates) max_slot = std::max(max_slot, c.slot);
  if (ring == nullptr || ring->pool_size <= max_slot) {
    std::vector<const Candidate*> by_slot(max_slot + 1, nullptr);
    for (const auto& c : candidates) by_slot[c.slot] = &c;
    build_ring(
        local, max_slot + 1,
        [&](std::size_t s) -> std::string_view {
          return by_slot[s] != nullptr ? std::string_view(by_slot[s]->endpoint->id) : std::string_view();
        },
        [&](std::size_t s) { return by_slot[s] != nullptr ? by_slot[s]->endpoint->weight : 1u; });
    // Slots that are no candidate are skipped below like unhealthy endpoints.
    ring = &local;
  }

  // Slot -> candidate index (kNone: not a candidate now). One table per thread, kept; reset
  // before returning.
  thread_local std::vector<std::size_t> index_of;
  if (index_of.size() < ring->pool_size) index_of.resize(ring->pool_size, kNone);
  for (std::size_t i = 0; i < n; ++i) index_of[candidates[i].slot] = i;
  const auto in_flight = [&](std::size_t slot) {
    return candidates[index_of[slot]].state->fleet_in_flight();
  };
  const std::int64_t now = detail::pick_now_ns(ctx);
  const std::size_t slot = walk_ring(
      *ring, detail::stable_hash(ctx.request.session_key), load_factor_, min_capacity_, kNone,
      [&](std::size_t s) { return index_of[s] != kNone; }, in_flight,
      [&](std::size_t s) { return queued(*candidates[index_of[s]].state, now); },
      [&] {
        std::int64_t total = 0;
        for (const auto& c : candidates) {
          total += std::max<std::int64_t>(0, c.state->fleet_in_flight());
        }
        return Stats{n, total};
      });
  const std::size_t chosen = slot == kNone ? 0 : index_of[slot];
  for (const auto& c : candidates) index_of[c.slot] = kNone;
  return chosen;
}

std::size_t Session::pick_from_pool(const PickContext& ctx, const PoolView& pool) const {
  if (pool.size() == 0) return kNoPick;
  if (ctx.request.session_key.empty()) return detail::power_of_two_from_pool(ctx, pool);
  const Ring* ring = dynamic_cast<const Ring*>(ctx.scratch);
  if (ring == nullptr || ring->pool_size != pool.size()) return kNoPick;
  const bool all = pool.all_usable();
  const auto usable = [&](std::size_t s) { return all || pool.usable(s); };
  // Points belong to endpoints at random: a home not met within 64 points means most of the
  // pool is unusable (or all of it, e.g. full), which the candidate list settles at once.
  constexpr std::size_t kHomeLimit = 64;
  const std::size_t slot = walk_ring(
      *ring, detail::stable_hash(ctx.request.session_key), load_factor_, min_capacity_, kHomeLimit, usable,
      [&](std::size_t s) { return pool[s].state->fleet_in_flight(); },
      [&, now = detail::pick_now_ns(ctx)](std::size_t s) { return queued(*pool[s].state, now); },
      [&] {
        Stats stats{0, 0};
        for (std::size_t s = 0; s < pool.size(); ++s) {
          if (!usable(s)) continue;
          ++stats.count;
          stats.total += std::max<std::int64_t>(0, pool[s].state->fleet_in_flight());
        }
        return stats;
      });
  return slot == kNone ? kNoPick : slot;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
