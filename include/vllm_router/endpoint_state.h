// EndpointState: the live, lock-free counters of one endpoint, read by policies as a LoadSample.
#pragma once

#include <atomic>
#include <cstdint>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// A plain copy of an endpoint's live numbers, what policies read.
struct LoadSample {
  std::int64_t in_flight = 0;  ///< requests the router has open on it now
  std::uint64_t requests = 0;  ///< requests completed or failed since start
  std::uint64_t failures = 0;  ///< connect failures, timeouts, 5xx
  std::uint64_t consecutive_failures = 0;
  /// vLLM's own load as last scraped from /metrics; negative when unknown.
  std::int32_t waiting = -1;          ///< vllm:num_requests_waiting
  std::int32_t running = -1;          ///< vllm:num_requests_running
  float kv_cache_usage = -1.0F;       ///< vllm:kv_cache_usage_perc, 0..1
  std::int64_t sampled_ns = 0;        ///< steady-clock time of that scrape (0: never)
  /// This router's in_flight when that scrape was taken (-1: not recorded). The engine's
  /// running + waiting minus this is the other routers' share of its load at that time.
  std::int64_t sampled_in_flight = -1;
};

/// A process-wide counter bumped after every change of a health flag (EndpointState's
/// active_healthy or ejected_until_ns, of any endpoint of any Router). Routers cache each pool's
/// count of healthy endpoints (the panic-mode decision) and refresh it when this moves or when
/// an ejection they saw ends, instead of counting the pool on every request. Thread-safe.
VLLM_ROUTER_API std::atomic<std::uint64_t>& health_epoch() noexcept;

/// A std::atomic<T> for a health flag: the same load/store interface, and a write that changes
/// the value also bumps health_epoch() (with release order, after the value). Thread-safe.
template <class T>
class HealthAtomic {
 public:
  constexpr HealthAtomic(T value) noexcept : value_(value) {}  // NOLINT(google-explicit-constructor)
  HealthAtomic(const HealthAtomic&) = delete;
  HealthAtomic& operator=(const HealthAtomic&) = delete;

  T load(std::memory_order order = std::memory_order_seq_cst) const noexcept { return value_.load(order); }
  void store(T value, std::memory_order order = std::memory_order_seq_cst) noexcept { exchange(value, order); }
  T exchange(T value, std::memory_order order = std::memory_order_seq_cst) noexcept {
    const T old = value_.exchange(value, order);
    if (old != value) health_epoch().fetch_add(1, std::memory_order_release);
    return old;
  }
  operator T() const noexcept { return load(); }  // NOLINT(google-explicit-constructor)
  T operator=(T value) noexcept {
    store(value);
    return value;
  }

 private:
  std::atomic<T> value_;
};

/// Live state of one endpoint. All members are atomics: any thread may read them. Each group
/// has one writer: leases (counters), the HealthChecker (active_healthy), the OutlierDetector
/// (ejection), the LoadScraper (scraped load). Survives snapshot swaps for an endpoint that
/// stays (keyed by Endpoint::id). The two health flags are HealthAtomic: written like
/// std::atomic, each change also bumps health_epoch().
class EndpointState {
 public:
  // Declared in the order routing reads them: what route() and the policies look at (in
  // flight, health, scraped load) shares the object's first cache line; the rest follows.

  std::atomic<std::int64_t> in_flight{0};
  /// Requests the router's peers (ReplicaSync) reported in flight on it, summed over the peers
  /// heard from within their timeout; 0 without replica sync. Written by the ReplicaSync only.
  std::atomic<std::int64_t> peer_in_flight{0};
  /// Passive health: ejected while the steady clock is below this (ns since its epoch).
  HealthAtomic<std::int64_t> ejected_until_ns{0};

  std::atomic<std::int64_t> sampled_ns{0};
  std::atomic<std::int32_t> waiting{-1};
  std::atomic<float> kv_cache_usage{-1.0F};
  std::atomic<std::int32_t> running{-1};
  /// in_flight when the scrape at sampled_ns was taken (-1: not recorded; written by the
  /// LoadScraper with the sample). Against the engine's running + waiting it gives this
  /// router's share of the engine's requests (prefix_aware's prefix_replica_affinity).
  std::atomic<std::int64_t> sampled_in_flight{-1};

  std::atomic<std::uint32_t> ejections{0};  ///< times ejected (drives the growing back-off)
  /// Active health: the last probes' verdict. True until a checker says otherwise, except for
  /// endpoints added while health checking runs (they start false and must pass a probe).
  HealthAtomic<bool> active_healthy{true};

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> consecutive_failures{0};

  /// Requests in flight on the endpoint from this router and its peers (what the load-based
  /// policies count).
  std::int64_t fleet_in_flight() const noexcept {
    return in_flight.load(std::memory_order_relaxed) + peer_in_flight.load(std::memory_order_relaxed);
  }

  LoadSample sample() const noexcept {
    LoadSample s;
    s.in_flight = in_flight.load(std::memory_order_relaxed);
    s.requests = requests.load(std::memory_order_relaxed);
    s.failures = failures.load(std::memory_order_relaxed);
    s.consecutive_failures = consecutive_failures.load(std::memory_order_relaxed);
    s.waiting = waiting.load(std::memory_order_relaxed);
    s.running = running.load(std::memory_order_relaxed);
    s.kv_cache_usage = kv_cache_usage.load(std::memory_order_relaxed);
    s.sampled_ns = sampled_ns.load(std::memory_order_relaxed);
    s.sampled_in_flight = sampled_in_flight.load(std::memory_order_relaxed);
    return s;
  }

  /// Usable now by both health writers' verdicts (`now_ns`: steady clock).
  bool healthy(std::int64_t now_ns) const noexcept {
    return active_healthy.load(std::memory_order_relaxed) &&
           ejected_until_ns.load(std::memory_order_relaxed) <= now_ns;
  }
};

VLLM_ROUTER_END_NAMESPACE
