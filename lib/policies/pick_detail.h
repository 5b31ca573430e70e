// Building blocks shared by the built-in policies: uniform tie-breaking with one random draw,
// and power-of-two choices straight from the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vllm_router/policy.h"
#include "vllm_router/random.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies::detail {

/// Room for the indices tied for best in one pass, so that a pass draws one of them with a
/// single random number (reservoir sampling would draw once per tie: with a thousand idle
/// endpoints, a thousand draws). Up to kInline indices live on the stack (4 KiB, left
/// uninitialised: pools up to that size never allocate, not even on a thread's first pick);
/// beyond, one buffer per thread and `Tag`, kept (two alive at once on one thread need
/// different tags).
///
/// The pass keeps its count in a local (a register) and writes unconditionally:
///   if (better) { best = x; n = 0; }  buf[n] = i;  n += (x ties best);
template <int Tag = 0>
class TieBuffer {
 public:
  static constexpr std::size_t kInline = 1024;

  /// Room for `max` indices.
  explicit TieBuffer(std::size_t max) {
    if (max > kInline) {
      thread_local std::vector<std::uint32_t> buffer;
      if (buffer.size() < max) buffer.resize(max);
      data_ = buffer.data();
    }
  }
  TieBuffer(const TieBuffer&) = delete;
  TieBuffer& operator=(const TieBuffer&) = delete;

  std::uint32_t* data() noexcept { return data_; }
  /// One of the first `n` uniformly (no draw when n == 1). Precondition: n > 0.
  std::size_t draw(std::size_t n, Rng& rng) const noexcept {
    return n == 1 ? data_[0] : data_[static_cast<std::size_t>(rng.below(n))];
  }

 private:
  std::uint32_t inline_[kInline];
  std::uint32_t* data_ = inline_;
};

/// Power of two choices over the pool's usable endpoints without listing them: two distinct
/// usable slots drawn uniformly (rejection sampling), the one with fewer in flight wins (the
/// first drawn on a tie). With every endpoint usable it draws exactly as PowerOfTwo::pick over
/// the whole pool. Policy::kNoPick when draws keep missing (most of the pool unusable, or
/// fewer than two usable): the caller's list-based pick is then exact.
inline std::size_t power_of_two_from_pool(const PickContext& ctx, const PoolView& pool) {
  const std::size_t n = pool.size();
  if (n == 0) return Policy::kNoPick;
  std::size_t a = 0;
  std::size_t b = 0;
  if (pool.all_usable()) {
    if (n == 1) return 0;
    a = static_cast<std::size_t>(ctx.rng.below(n));
    b = static_cast<std::size_t>(ctx.rng.below(n - 1));
    if (b >= a) ++b;  // distinct from a, uniform over the others
  } else {
    // Each draw hits a usable endpoint with probability (usable share); a pool this rejection
    // keeps missing is mostly unusable, and listing it costs no more than the draws would.
    constexpr int kDraws = 32;
    int left = kDraws;
    do {
      if (left-- == 0) return Policy::kNoPick;
      a = static_cast<std::size_t>(ctx.rng.below(n));
    } while (!pool.usable(a));
    left = kDraws;
    do {
      if (left-- == 0) return Policy::kNoPick;
      b = static_cast<std::size_t>(ctx.rng.below(n));
    } while (b == a || !pool.usable(b));
  }
  const std::int64_t la = pool[a].state->fleet_in_flight();
  const std::int64_t lb = pool[b].state->fleet_in_flight();
  return lb < la ? b : a;
}

}  // namespace policies::detail
VLLM_ROUTER_END_NAMESPACE
