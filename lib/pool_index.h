// Internal: what Router::route keeps per pool to decide without scanning it (the endpoints as
// candidates, endpoint id -> slot, the cached count of healthy endpoints). Not public API.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vllm_router/endpoint_state.h"
#include "vllm_router/policy.h"

namespace vllm_router::detail {

/// The number of a pool's endpoints that are healthy at a time, cached. Health changes only
/// when a flag is written (which bumps health_epoch()) or when an ejection ends (a time the
/// count records), so a cached count is exact while neither happened: get() then costs a few
/// atomic loads instead of a pass over the pool. Thread-safe (a seqlock; readers never wait,
/// a reader that meets a writer counts for itself).
class HealthCount {
 public:
  std::size_t get(std::span<const Candidate> pool, std::int64_t now_ns) noexcept {
    // Read before counting: a flag written during the count bumps the epoch past this value,
    // so the count published with it is refreshed by the next reader.
    const std::uint64_t epoch = health_epoch().load(std::memory_order_acquire);
    std::uint64_t seq = seq_.load(std::memory_order_acquire);
    if ((seq & 1) == 0) {
      // Acquire loads (no fences: TSan models them poorly): a value from a writer that has
      // begun makes its odd sequence visible to the check below.
      const std::uint64_t cached_epoch = epoch_.load(std::memory_order_acquire);
      const std::int64_t from = from_ns_.load(std::memory_order_acquire);
      const std::int64_t until = until_ns_.load(std::memory_order_acquire);
      const std::size_t count = count_.load(std::memory_order_acquire);
      if (seq_.load(std::memory_order_relaxed) == seq && cached_epoch == epoch && from <= now_ns &&
          now_ns < until) {
        return count;
      }
    }
    std::size_t healthy = 0;
    std::int64_t until = std::numeric_limits<std::int64_t>::max();  // the earliest ejection end
    for (const Candidate& c : pool) {
      const bool active = c.state->active_healthy.load(std::memory_order_relaxed);
      const std::int64_t ejected_until = c.state->ejected_until_ns.load(std::memory_order_relaxed);
      if (ejected_until > now_ns) {
        until = std::min(until, ejected_until);
      } else if (active) {
        ++healthy;
      }
    }
    if ((seq & 1) == 0 && seq_.compare_exchange_strong(seq, seq + 1, std::memory_order_relaxed)) {
      epoch_.store(epoch, std::memory_order_release);  // release: the odd sequence comes first
      from_ns_.store(now_ns, std::memory_order_release);
      until_ns_.store(until, std::memory_order_release);
      count_.store(healthy, std::memory_order_release);
      seq_.store(seq + 2, std::memory_order_release);
    }
    return healthy;
  }

 private:
  std::atomic<std::uint64_t> seq_{0};  // odd while a writer publishes
  std::atomic<std::uint64_t> epoch_{std::numeric_limits<std::uint64_t>::max()};  // none yet
  std::atomic<std::int64_t> from_ns_{0};
  std::atomic<std::int64_t> until_ns_{0};
  std::atomic<std::size_t> count_{0};
};

/// Built with the pool (Router::Impl::build), then read-only except for the health cache.
struct PoolIndex {
  std::vector<Candidate> endpoints;  // every endpoint, slot order (slot == position)
  std::unordered_multimap<std::string_view, std::size_t> slot_of;  // by Endpoint::id
  HealthCount health;
};

}  // namespace vllm_router::detail
