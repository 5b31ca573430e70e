// Internal: the wait for capacity (Admission): requests waiting for a replica below its
// request limit, and the wake-ups of blocking waiters and event loops when a lease ends.
#include <vector>

#include "router_impl.h"

namespace vllm_router::detail {

bool Admission::enter(std::uint32_t limit) noexcept {
  std::uint32_t n = waiting_.load(std::memory_order_relaxed);
  while (n < limit) {
    if (waiting_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
  }
  return false;
}

void Admission::leave() noexcept { waiting_.fetch_sub(1, std::memory_order_acq_rel); }

void Admission::notify() noexcept {
  if (waiting_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  generation_.fetch_add(1, std::memory_order_release);
  changed_.notify_all();
  for (auto& [id, wake] : listeners_) {
    try {
      wake();
    } catch (...) {
    }
  }
}

void Admission::wait(std::uint64_t seen, std::chrono::steady_clock::time_point until) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_until(lock, until, [&] { return generation_.load(std::memory_order_acquire) != seen; });
}

int Admission::add_listener(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mutex_);
  listeners_.emplace_back(next_id_, std::move(wake));
  return next_id_++;
}

void Admission::remove_listener(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(listeners_, [id](const auto& l) { return l.first == id; });
}

}  // namespace vllm_router::detail

