// The status page's data: recent error rate and latency per model and endpoint (a rolling
// window fed by Observer events), rendered with the live routing table as /status.json.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "vllm_router/observer.h"
#include "vllm_router/snapshot.h"

namespace vllm_router::server {

/// What a RollingWindow holds over its span: request and error counts and a latency histogram.
struct WindowStats {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  double seconds = 0;            ///< the span these cover (up to RollingWindow::kSpanSeconds)
  double latency_avg_ms = 0;     ///< 0 when no request
  double latency_p50_ms = 0;     ///< estimated within a histogram bucket (factor sqrt(2))
  double latency_p95_ms = 0;
};

/// Requests, errors and latency of the last minute in 12 slots of 5 s. add() is a handful of
/// relaxed atomic operations and allocates nothing; any thread may call add() and stats()
/// concurrently. A slot is zeroed by the first add() of a new period: an add racing that reset
/// may be lost (the figures are a dashboard's, not an account's).
class RollingWindow {
 public:
  static constexpr std::int64_t kSlotSeconds = 5;
  static constexpr std::size_t kSlots = 12;
  static constexpr std::int64_t kSpanSeconds = kSlotSeconds * static_cast<std::int64_t>(kSlots);
  /// Latency buckets: [0, 1 ms), then half-octaves (x sqrt(2)) up to ~46 s, then the rest.
  static constexpr std::size_t kBuckets = 32;

  /// Counts one request that ended at `now_ms` (any monotonic milliseconds) after `latency`.
  void add(std::int64_t now_ms, bool error, std::chrono::nanoseconds latency) noexcept;
  /// The window ending at `now_ms` (the current slot counts for the part of it that passed).
  WindowStats stats(std::int64_t now_ms) const noexcept;

  /// Bucket of a latency in microseconds, and the bucket's upper bound in milliseconds.
  static std::size_t bucket_of(std::uint64_t micros) noexcept;
  static double bucket_upper_ms(std::size_t bucket) noexcept;

 private:
  struct Slot {
    std::atomic<std::int64_t> period{-1};  // now_ms / 5000 of the figures below
    std::atomic<std::uint32_t> requests{0};
    std::atomic<std::uint32_t> errors{0};
    std::atomic<std::uint64_t> latency_us{0};
    std::array<std::atomic<std::uint32_t>, kBuckets> histogram{};
  };
  std::array<Slot, kSlots> slots_{};
};

/// A lock for data read on every request and changed rarely (StatusBoard's maps): a reader
/// costs two atomic additions and a load, no call into pthread; a writer announces itself,
/// waits (yielding) for the readers inside to leave, and keeps new ones out until it is done.
/// Meets SharedMutex for std::shared_lock and std::unique_lock; not recursive.
class ReadMostlyLock {
 public:
  void lock_shared() noexcept;
  void unlock_shared() noexcept { readers_.fetch_sub(1, std::memory_order_release); }
  void lock();
  void unlock();

 private:
  std::atomic<std::uint32_t> readers_{0};
  std::atomic<bool> writer_{false};
  std::mutex writers_;  // one writer at a time
};

/// Live facts of the process the JSON shows beside the routing table.
struct StatusContext {
  std::int64_t uptime_ms = 0;
  bool draining = false;
  bool keys = false;  ///< API keys are configured
};

/// The status page's Observer: a RollingWindow per model (client requests, from on_exchange) and
/// per model and endpoint (upstream attempts, from on_outcome). Entries are made once per name
/// and dropped by render_json() when the routing table no longer lists them, so memory follows
/// the table, never what clients send. Thread-safe; the request path takes a shared lock (two
/// atomic additions), does a map look-up by name and a few atomic additions.
class StatusBoard final : public Observer {
 public:
  /// `now_ms`: the clock of the windows (default: CLOCK_MONOTONIC_COARSE), a test seam.
  explicit StatusBoard(std::function<std::int64_t()> now_ms = {});

  /// Where the current routing table comes from (Router::snapshot): a new entry first drops
  /// those it no longer lists. Set before serving; unset, only render_json() prunes.
  void set_snapshot_source(std::function<std::shared_ptr<const Snapshot>()> source);

  void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) override;
  void on_exchange(const ExchangeSummary& summary) override;

  /// The /status.json document: models (aliases, adapters, policy, endpoints with health, in
  /// flight, scraped load, ejections, recent figures), version and uptime.
  std::string render_json(const Snapshot& snapshot, const StatusContext& context);

  /// Windows held (models + endpoints), for tests of pruning.
  std::size_t entries() const;

  /// Whether a client request counts as an error on the page (5xx, or failed or cut upstream).
  static bool exchange_error(const ExchangeSummary& s) noexcept;
  /// Whether an upstream attempt counts as an error (failed, or a 5xx answer).
  static bool outcome_error(const Outcome& o) noexcept;

 private:
  struct ModelEntry {
    RollingWindow client;
    std::map<std::string, std::unique_ptr<RollingWindow>, std::less<>> endpoints;
  };
  RollingWindow* model_window(std::string_view model);
  RollingWindow* endpoint_window(std::string_view model, std::string_view endpoint);
  void prune(const Snapshot& snapshot);
  bool stale_locked(const Snapshot& snapshot) const;  // under mutex_ (shared)
  void prune_locked(const Snapshot& snapshot);        // under mutex_ (exclusive)
  void prune_on_insert();                             // under mutex_ (exclusive)

  std::function<std::int64_t()> now_ms_;
  std::function<std::shared_ptr<const Snapshot>()> snapshot_source_;
  std::int64_t started_ms_;  // rates of a board younger than a window use its age
  mutable ReadMostlyLock mutex_;  // guards the maps' structure, not the windows
  std::map<std::string, std::unique_ptr<ModelEntry>, std::less<>> models_;
};

/// The page itself (server/status.html, embedded at build time).
std::string_view status_page_html() noexcept;

}  // namespace vllm_router::server
