// Internal: the control plane's background helpers: a periodic loop on its own thread (Ticker),
// and a bounded pool of worker threads for batches of blocking work (probes, scrapes).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vllm_router::detail {

/// A background thread whose body waits between rounds with wait(): it returns early (false)
/// when stop() is called, or (true) when wake() is. The one background-loop implementation of
/// the library (health checks, load scraping, endpoint sources).
class Ticker {
 public:
  ~Ticker() { stop(); }
  template <class F>
  void start(F&& body) {
    if (thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    thread_ = std::thread(std::forward<F>(body));
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }
  /// Waits up to `d`; false when stopping.
  bool wait(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, d, [this] { return stopping_ || woken_; });
    woken_ = false;
    return !stopping_;
  }
  void wake() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      woken_ = true;
    }
    wake_.notify_all();
  }
  bool stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopping_;
  }
  bool running() const noexcept { return thread_.joinable(); }

 private:
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool woken_ = false;
};

/// At most `size` threads (started on first use, kept) run batches: run(n, f) calls f(0..n-1),
/// each on some worker or on the caller, and returns when all are done. One batch at a time
/// (callers are serialised). For blocking work that must not take a thread per item.
class WorkerPool {
 public:
  explicit WorkerPool(std::size_t size) : size_(size == 0 ? 1 : size) {}
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void run(std::size_t count, const std::function<void(std::size_t)>& work) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    if (count == 0) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // Workers beyond the caller: no more than the items, none beyond the bound.
      while (threads_.size() + 1 < std::min(size_, count)) threads_.emplace_back([this] { worker(); });
      work_ = &work;
      count_.store(count);
      next_.store(0);
      done_ = 0;
      ++batch_;
    }
    start_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [this] { return done_ == count_.load(); });
    work_ = nullptr;
  }
  std::size_t threads() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return threads_.size();
  }

 private:
  void drain() {
    for (std::size_t i = next_.fetch_add(1); i < count_.load(); i = next_.fetch_add(1)) {
      (*work_)(i);
      std::lock_guard<std::mutex> lock(mutex_);
      if (++done_ == count_.load()) finished_.notify_all();
    }
  }
  void worker() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return stopping_ || batch_ != seen; });
        if (stopping_) return;
        seen = batch_;
      }
      drain();
    }
  }

  const std::size_t size_;
  std::mutex run_mutex_;
  mutable std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable finished_;
  std::vector<std::thread> threads_;
  const std::function<void(std::size_t)>* work_ = nullptr;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::size_t> next_{0};
  std::size_t done_ = 0;
  std::uint64_t batch_ = 0;
  bool stopping_ = false;
};

}  // namespace vllm_router::detail
