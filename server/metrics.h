// Prometheus metrics of the gateway: an Observer of upstream outcomes plus client-facing counts.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/observer.h"
#include "vllm_router/snapshot.h"

namespace vllm_router::server {

/// A fixed-bucket latency histogram with atomic counters. Thread-safe.
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                     0.5,   1.0,   2.5,  5.0,   10.0, 30.0, 60.0};
  void observe(double seconds) noexcept;
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

/// Collects request and upstream metrics; renders the Prometheus text format. Thread-safe.
class Metrics final : public Observer {
 public:
  /// One upstream attempt ended (called by leases).
  void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) override;
  /// One client request ended (every exchange, and the server's own rejections).
  void on_exchange(const ExchangeSummary& summary) override;
  /// One client request answered with `status` after `seconds`; `model` may be empty.
  void on_response(std::string_view model, int status, double seconds);
  /// The whole exposition, with live gauges read from `snapshot`.
  std::string render(const Snapshot& snapshot) const;
  /// Open client connections, one entry per event loop, read at each render. Set before serving
  /// and cleared (nullptr) before the source goes away.
  void set_connection_source(std::function<std::vector<std::uint32_t>()> source) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    connections_ = std::move(source);
  }
  /// Failed TLS handshakes on the listener so far (set only when it terminates TLS), read at
  /// each render; cleared like the connection source.
  void set_tls_failure_source(std::function<std::uint64_t()> source) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    tls_failures_ = std::move(source);
  }

 private:
  // Counters indexed by HTTP status (0..599; anything else lands in 0). Entries are created
  // once per label set and never freed, so the hot path takes a shared lock, finds the entry
  // without allocating, and bumps atomics.
  static constexpr std::size_t kStatuses = 600;
  static constexpr std::size_t kKinds = 6;  // OutcomeKind values
  struct Upstream {
    std::array<std::atomic<std::uint64_t>, kKinds * kStatuses> by_outcome{};  // kind * 600 + status
    Histogram ttfb;
    Histogram latency;
  };
  struct Client {
    std::array<std::atomic<std::uint64_t>, kStatuses> by_status{};
    Histogram latency;
    std::atomic<std::uint64_t> prompt_tokens{0};
    std::atomic<std::uint64_t> completion_tokens{0};
  };
  struct KeyUsage {  // per API key id (ids come from the keys file: a bounded label set)
    std::array<std::atomic<std::uint64_t>, kStatuses> by_status{};
    std::atomic<std::uint64_t> prompt_tokens{0};
    std::atomic<std::uint64_t> completion_tokens{0};
  };
  template <class Entry>
  Entry& find_or_add(std::map<std::string, std::unique_ptr<Entry>, std::less<>>& map, std::string_view key);

  mutable std::shared_mutex mutex_;  // guards the maps' structure, not the counters
  std::map<std::string, std::unique_ptr<Upstream>, std::less<>> upstream_;  // "model\0endpoint"
  std::map<std::string, std::unique_ptr<Client>, std::less<>> client_;      // by model
  std::map<std::string, std::unique_ptr<KeyUsage>, std::less<>> keys_;      // by key id
  std::function<std::vector<std::uint32_t>()> connections_;
  std::function<std::uint64_t()> tls_failures_;
};

}  // namespace vllm_router::server
