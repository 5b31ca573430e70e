// Injectable monotonic clock, so time-dependent logic is testable without sleeping.
#pragma once

#include <chrono>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Monotonic time source. Implementations must be thread-safe.
class VLLM_ROUTER_API Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const noexcept = 0;
};

/// std::chrono::steady_clock. Thread-safe, stateless.
class VLLM_ROUTER_API SteadyClock final : public Clock {
 public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

/// A clock tests move by hand. Thread-safe for reads; advance from one thread.
class VLLM_ROUTER_API ManualClock final : public Clock {
 public:
  time_point now() const noexcept override { return now_; }
  void advance(std::chrono::nanoseconds d) noexcept { now_ += d; }

 private:
  time_point now_{};
};

VLLM_ROUTER_END_NAMESPACE
