// EventServer: the gateway's data plane on epoll: HTTP/1.1 in, routing, non-blocking relay out.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "metrics.h"
#include "vllm_router/config.h"
#include "vllm_router/result.h"
#include "vllm_router/router.h"

namespace vllm_router::server {

class Loop;
class Conn;

/// Serves the OpenAI-compatible API with one epoll loop per thread. Every client and upstream
/// socket is non-blocking; a stream costs a few KiB, not a thread. The loops share one
/// listening socket (EPOLLEXCLUSIVE). bind() then run() on one thread; stop() from any thread.
class EventServer {
 public:
  EventServer(const GatewayConfig& config, Router& router, std::shared_ptr<Metrics> metrics);
  ~EventServer();
  EventServer(const EventServer&) = delete;
  EventServer& operator=(const EventServer&) = delete;

  /// Binds and listens (backlog 4096). Returns the bound port (port 0 picks a free one).
  Result<int> bind();
  /// Runs the loops until stop(); the calling thread runs loop 0.
  void run();
  /// Graceful stop: /ready turns 503, the listening socket closes, idle connections close,
  /// running requests finish (their connections close after the answer); whatever still runs
  /// after `grace` is cut. run() returns when every connection is gone. Call from any thread
  /// (not from a signal handler).
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  /// True once stop() was called.
  bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }

  /// Open client connections across loops (for tests and metrics).
  std::int64_t connections() const noexcept { return connections_.load(std::memory_order_relaxed); }

 private:
  friend class Loop;
  friend class Conn;
  GatewayConfig config_;
  Router& router_;
  std::shared_ptr<Metrics> metrics_;
  int listen_fd_ = -1;
  std::int64_t created_ = 0;
  std::atomic<std::int64_t> connections_{0};
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> drain_deadline_ns_{0};  // steady_clock, since epoch
  std::vector<std::unique_ptr<Loop>> loops_;
};

}  // namespace vllm_router::server
