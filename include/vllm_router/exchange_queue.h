// ExchangeQueue: finished exchanges' summaries copied off the request threads and handed, in
// batches, to expensive consumers (span encoders, access-log formatters) on a thread of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "vllm_router/export.h"
#include "vllm_router/observer.h"

VLLM_ROUTER_BEGIN_NAMESPACE

struct ExchangeQueueOptions {
  /// Bytes of copied summaries waiting at most (a summary is its strings plus ~400 bytes);
  /// beyond, new ones are dropped and counted.
  std::size_t capacity_bytes = std::size_t{8} << 20;
  /// The thread hands on what waits this often, or sooner when `batch` summaries wait.
  std::chrono::milliseconds interval{50};
  std::size_t batch = 256;
};

/// Counters of an ExchangeQueue.
struct ExchangeQueueStats {
  std::uint64_t handled = 0;  ///< summaries handed to the consumer
  std::uint64_t dropped = 0;  ///< summaries dropped because the queue was full
};

/// push() copies an ExchangeSummary whole (its strings and trace attempts; an endpoint as its id)
/// into one shared buffer, under a short lock, in a few memcpys: the request's thread pays a copy
/// instead of the consumer's work. The queue's thread reads each summary back and calls the
/// consumer with it, in push order, many in a row (the consumer's code and data stay in that
/// core's caches instead of evicting the request path's). Never blocks a request on the consumer:
/// when `capacity_bytes` wait, further summaries are dropped and counted.
///
/// A summary read back is the one pushed, views valid during the call, with one difference: its
/// endpoints (ExchangeSummary::endpoint, prefill_endpoint, AttemptTrace::endpoint) are copies
/// rebuilt from Endpoint::id (`id` and `url`; `weight` 1, no `api_key`), kept by the queue's
/// thread while the same id recurs. The consumer also gets the wall-clock time (Unix
/// nanoseconds) push() read, the exchange's end. Thread-safe; the destructor hands on what waits,
/// then joins the thread.
class VLLM_ROUTER_API ExchangeQueue {
 public:
  using Consumer = std::function<void(const ExchangeSummary& summary, std::int64_t end_unix_ns)>;

  ExchangeQueue(Consumer consumer, ExchangeQueueOptions options = {});
  ~ExchangeQueue();
  ExchangeQueue(const ExchangeQueue&) = delete;
  ExchangeQueue& operator=(const ExchangeQueue&) = delete;

  /// Copies `summary` into the queue; false when it was dropped (the queue was full).
  bool push(const ExchangeSummary& summary);
  /// Blocks until every summary pushed before the call was handed to the consumer.
  void flush();
  ExchangeQueueStats stats() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
