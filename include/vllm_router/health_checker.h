// HealthChecker: active health probes (GET /health) of every endpoint of a Router.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vllm_router/clock.h"
#include "vllm_router/export.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Probes each endpoint of the router's current snapshot with `GET <health_check.path>` every
/// interval (per model config; an endpoint listed by several models uses the first). A 200
/// counts as a pass; anything else (refused, timeout, 5xx) as a failure. After
/// unhealthy_threshold failures in a row the endpoint's `active_healthy` turns false; after
/// healthy_threshold passes it turns true. The only writer of EndpointState::active_healthy.
/// `run_once()` is deterministic for tests (inject a ManualClock); `start()` runs it on a thread.
/// Thread-safe; must not outlive the Router.
class VLLM_ROUTER_API HealthChecker {
 public:
  HealthChecker(Router& router, std::shared_ptr<Transport> transport, std::shared_ptr<const Clock> clock);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  /// Probes every endpoint whose probe is due at the clock's now (all of them the first time),
  /// in parallel, and waits for the results. Returns how many were probed.
  std::size_t run_once();
  /// Runs run_once() every 100 ms on a background thread until stop().
  void start();
  void stop();

 private:
  struct Track {
    std::int64_t next_ns = 0;
    std::uint32_t passes = 0;
    std::uint32_t failures = 0;
  };
  Router& router_;
  std::shared_ptr<Transport> transport_;
  std::shared_ptr<const Clock> clock_;
  std::mutex mutex_;  // guards tracks_ (run_once is not reentrant)
  std::map<std::string, Track> tracks_;
  std::thread thread_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

VLLM_ROUTER_END_NAMESPACE
