// Internal: the windows both limiters count with, and the in-process counts.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "string_map.h"
#include "vllm_router/tenants.h"

namespace vllm_router::detail {

/// One key's counts in the current and the previous one-minute window.
struct WindowCounts {
  std::uint64_t requests = 0;
  std::uint64_t prev_requests = 0;
  std::uint64_t tokens = 0;
  std::uint64_t prev_tokens = 0;
};

/// How much of the previous window still weighs at `now_ms` (1 at a window's start, ~0 at its end).
double window_weight(std::int64_t now_ms) noexcept;
/// The window `now_ms` falls in (minutes since the epoch).
std::int64_t window_of(std::int64_t now_ms) noexcept;
/// Whether one more request of `key` fits (requests first, then tokens), and when to retry if not.
LimitDecision window_decision(const ApiKey& key, const WindowCounts& counts, std::int64_t now_ms);
LimitDecision concurrency_refused();

/// Per key id (counts survive a key table reload): concurrent places and windows. Thread-safe.
class LocalLimits {
 public:
  /// A concurrent place, or false when the key's max_concurrent are taken.
  bool take_place(const ApiKey& key);
  void free_place(const ApiKey& key);
  /// Decides by the windows (when `check`) and counts the request when allowed.
  LimitDecision check_and_count(const ApiKey& key, std::int64_t now_ms, bool check);
  /// take_place + check_and_count (the place given back when refused), under one lock.
  LimitDecision admit(const ApiKey& key, std::int64_t now_ms);
  /// free_place + count_finish, under one lock.
  void finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund);

 private:
  struct Counts {
    std::int64_t window = 0;
    WindowCounts w;
    std::uint32_t in_flight = 0;
  };
  using ById = StringMap<Counts>;
  // Under mutex_, windows rolled to now.
  Counts& counts(const std::string& id, std::int64_t now_ms);
  // The same through the cache of key addresses (a table's keys live until it is replaced),
  // checked against the id: no string hash on the two calls of every request.
  Counts& counts(const ApiKey& key, std::int64_t now_ms);
  static void roll(Counts& c, std::int64_t now_ms);

  std::mutex mutex_;
  ById by_id_;
  std::unordered_map<const ApiKey*, ById::value_type*> by_address_;
};

}  // namespace vllm_router::detail
