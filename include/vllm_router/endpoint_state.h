// EndpointState: the live, lock-free counters of one endpoint, read by policies as a LoadSample.
#pragma once

#include <atomic>
#include <cstdint>

namespace vllm_router {

/// A plain copy of an endpoint's live numbers, what policies read.
struct LoadSample {
  std::int64_t in_flight = 0;  ///< requests the router has open on it now
  std::uint64_t requests = 0;  ///< requests completed or failed since start
  std::uint64_t failures = 0;  ///< connect failures, timeouts, 5xx
  std::uint64_t consecutive_failures = 0;
};

/// Live state of one endpoint. All members are atomics: any thread may read or update.
/// Survives snapshot swaps for an endpoint that stays (keyed by Endpoint::id).
class EndpointState {
 public:
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> consecutive_failures{0};

  LoadSample sample() const noexcept {
    LoadSample s;
    s.in_flight = in_flight.load(std::memory_order_relaxed);
    s.requests = requests.load(std::memory_order_relaxed);
    s.failures = failures.load(std::memory_order_relaxed);
    s.consecutive_failures = consecutive_failures.load(std::memory_order_relaxed);
    return s;
  }
};

}  // namespace vllm_router
