// Consistent hashing with bounded loads on the session key; the ring is built once per pool.
#include "vllm_router/policies/session.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "policies/hash_detail.h"
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

  // slot -> candidate index (n means: not a candidate now).
  constexpr std::size_t kStack = 64;
  std::size_t stack[kStack];
  std::vector<std::size_t> heap;
  std::size_t* index = stack;
  if (ring->pool_size > kStack) {
    heap.resize(ring->pool_size);
    index = heap.data();
  }
  std::fill(index, index + ring->pool_size, n);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    index[candidates[i].slot] = i;
    total += std::max<std::int64_t>(0, candidates[i].state->in_flight.load(std::memory_order_relaxed));
  }
  // Bounded load: capacity per endpoint after this request is placed.
  const bool bounded = load_factor_ > 1.0;
  const auto cap = std::max<std::int64_t>(
      min_capacity_, static_cast<std::int64_t>(std::ceil(load_factor_ * static_cast<double>(total + 1) /
                                                         static_cast<double>(n))));

  const std::uint64_t key = detail::stable_hash(ctx.request.session_key);
  const auto& pts = ring->points;
  auto it = std::lower_bound(pts.begin(), pts.end(), key,
                             [](const Point& p, std::uint64_t k) { return p.pos < k; });
  std::size_t start = static_cast<std::size_t>(it - pts.begin());
  std::size_t home = n;
  // Candidates already found full, so the walk stops once every one was checked.
  bool visited_stack[kStack] = {};
  std::vector<char> visited_heap;
  if (n > kStack) visited_heap.assign(n, 0);
  auto visited = [&](std::size_t ci) -> bool {
    if (n > kStack) return std::exchange(visited_heap[ci], char{1}) != 0;
    return std::exchange(visited_stack[ci], true);
  };
  std::size_t seen = 0;
  for (std::size_t step = 0; step < pts.size() && seen < n; ++step) {
    const Point& p = pts[(start + step) % pts.size()];
    const std::size_t ci = index[p.slot];
    if (ci == n) continue;
    if (home == n) home = ci;
    if (!bounded) return ci;
    if (visited(ci)) continue;
    ++seen;
    if (candidates[ci].state->in_flight.load(std::memory_order_relaxed) < cap) return ci;
  }
  return home == n ? 0 : home;  // every candidate at capacity: stay home
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
