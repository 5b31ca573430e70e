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

#include "vllm_router/config.h"
#include "vllm_router/exchange_queue.h"
#include "vllm_router/observer.h"
#include "vllm_router/replica_sync.h"
#include "vllm_router/snapshot.h"
#include "vllm_router/tracing.h"

namespace vllm_router::server {

/// Bucket bounds (seconds) of request, attempt, first-byte, first-token and queue durations:
/// a fixed ladder from 1 ms, cut after the first bound at or above `longest` (the longest
/// configured timeout, so the last finite bucket still tells "ended by a timeout" apart), and
/// never shorter than 60 s. Beyond 3600 s the last bound is `longest` rounded up to a second.
std::vector<double> duration_bounds(double longest);
/// Bounds of the gaps between a stream's chunks (finer below a second: 1 ms to 1 s in ~20
/// steps), then the duration ladder up to `longest`.
std::vector<double> gap_bounds(double longest);
/// The longest timeout a request may run into, in seconds: the router's connect, write,
/// first-byte, idle, total and queue timeouts and the client's idle timeout.
double longest_timeout_seconds(const RouterConfig& config, std::uint32_t client_timeout_ms);

/// A fixed-bucket histogram with atomic counters; `bounds` must outlive it (the Metrics' own).
/// Thread-safe.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds)
      : bounds_(bounds), buckets_(new std::atomic<std::uint64_t>[bounds.size() + 1]()) {}
  void observe(double seconds) noexcept;
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  /// Observations so far (the buckets' total: observe() keeps no separate count).
  std::uint64_t count() const noexcept;
  /// Observations in bucket `i` alone (not cumulative); i == bounds.size() is +Inf's own.
  std::uint64_t bucket(std::size_t i) const noexcept { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  const std::vector<double>& bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> sum_micros_{0};
};

/// Collects request and upstream metrics; renders the Prometheus text format. Thread-safe.
/// Label values are only what the configuration bounds: resolved model names (never what a
/// client sent), endpoint ids, key ids from the keys file, fixed enumerations.
class Metrics final : public Observer {
 public:
  /// Histogram buckets reach `longest_timeout` seconds (longest_timeout_seconds()); they are
  /// fixed for the process's life.
  explicit Metrics(double longest_timeout = 600);
  /// One upstream attempt ended (called by leases).
  void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) override;
  /// An exchange left `endpoint` for another one.
  void on_retry(std::string_view model, const Endpoint& endpoint, RetryReason reason, unsigned attempt) override;
  /// One client request ended (every exchange, and the server's own rejections).
  void on_exchange(const ExchangeSummary& summary) override;
  /// A stream's chunk came `gap` after the previous one: one histogram increment, no lock once
  /// the thread has seen the model (a one-entry cache per thread).
  void on_stream_gap(std::string_view model, const Endpoint& endpoint, std::chrono::nanoseconds gap) override;
  /// One client request answered with `status` after `seconds`; `model` may be empty.
  void on_response(std::string_view model, int status, double seconds);
  /// The whole exposition, with live gauges read from `snapshot`; `queued`: requests waiting
  /// for capacity now (Router::queued()).
  std::string render(const Snapshot& snapshot, std::uint32_t queued = 0) const;
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
  const std::vector<double>& bounds() const noexcept { return durations_; }

 private:
  // Counters indexed by HTTP status (0..599; anything else lands in 0). Entries are created
  // once per label set and never freed, so the hot path takes a shared lock, finds the entry
  // without allocating, and bumps atomics.
  static constexpr std::size_t kStatuses = 600;
  static constexpr std::size_t kKinds = 6;    // OutcomeKind values
  static constexpr std::size_t kReasons = 5;  // RetryReason values
  struct Upstream {
    explicit Upstream(const Metrics& m) : ttfb(m.durations_), latency(m.durations_) {}
    std::array<std::atomic<std::uint64_t>, kKinds * kStatuses> by_outcome{};  // kind * 600 + status
    Histogram ttfb;
    Histogram latency;
  };
  struct Client {  // per resolved model ("" for requests that resolved none)
    explicit Client(const Metrics& m) : latency(m.durations_), ttft(m.durations_), gaps(m.gaps_), prefill(m.durations_) {}
    std::array<std::atomic<std::uint64_t>, kStatuses> by_status{};
    Histogram latency;
    Histogram ttft;  // streams only: start to the first event
    Histogram gaps;  // streams only: between relayed chunks
    Histogram prefill;  // prefill/decode disaggregation: the prefill leg
    std::atomic<std::uint64_t> pd_fallbacks{0};  // ran colocated: no prefill endpoint could
    std::array<std::atomic<std::uint64_t>, kReasons> retries{};
    std::atomic<std::uint64_t> prompt_tokens{0};
    std::atomic<std::uint64_t> completion_tokens{0};
  };
  struct KeyUsage {  // per API key id (ids come from the keys file: a bounded label set)
    explicit KeyUsage(const Metrics&) {}
    std::array<std::atomic<std::uint64_t>, kStatuses> by_status{};
    std::atomic<std::uint64_t> prompt_tokens{0};
    std::atomic<std::uint64_t> completion_tokens{0};
  };
  template <class Entry>
  Entry& find_or_add(std::map<std::string, std::unique_ptr<Entry>, std::less<>>& map, std::string_view key);
  void render_histograms(std::string& out) const;

  const std::uint64_t id_;  // tells this instance's entries apart in the per-thread cache
  const std::vector<double> durations_;
  const std::vector<double> gaps_;
  Histogram queue_wait_;
  mutable std::shared_mutex mutex_;  // guards the maps' structure, not the counters
  std::map<std::string, std::unique_ptr<Upstream>, std::less<>> upstream_;  // "model\0endpoint"
  std::map<std::string, std::unique_ptr<Client>, std::less<>> client_;      // by model
  std::map<std::string, std::unique_ptr<KeyUsage>, std::less<>> keys_;      // by key id
  std::function<std::vector<std::uint32_t>()> connections_;
  std::function<std::uint64_t()> tls_failures_;
};

/// The OTLP exporter's counters in the Prometheus text format (appended to /metrics when tracing).
std::string trace_metrics(const OtlpStats& stats);
/// The counters of the queue to the access log's and the tracer's thread (appended when either is on).
std::string exchange_queue_metrics(const ExchangeQueueStats& stats);
/// Replica sync's counters in the Prometheus text format (appended when replica sync is on).
std::string replica_sync_metrics(const ReplicaSyncStats& stats);

}  // namespace vllm_router::server
