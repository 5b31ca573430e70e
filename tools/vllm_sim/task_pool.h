// vllm-sim: growable cpp-httplib TaskQueue (threads spawned on demand up to a cap, small stacks).
#pragma once

#include <httplib.h>
#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace vsim {

// One connection = one task in cpp-httplib, and a task holds its thread for the connection's
// whole life. This pool starts no thread up front, spawns one whenever a task arrives and no
// worker is idle (up to max_threads; beyond that tasks queue), and gives each thread a small
// stack so thousands of concurrent streams stay cheap.
class GrowingPool final : public httplib::TaskQueue {
public:
  explicit GrowingPool(size_t max_threads, size_t stack_bytes = 256 * 1024)
      : max_threads_(max_threads < 1 ? 1 : max_threads), stack_bytes_(stack_bytes) {}
  ~GrowingPool() override = default;

  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lk(mu_);
    jobs_.push_back(std::move(fn));
    if (idle_ < jobs_.size() && threads_.size() < max_threads_) {
      if (spawn_locked()) return;  // the new worker picks the job up
    }
    lk.unlock();
    cv_.notify_one();
  }

  void shutdown() override {
    std::vector<pthread_t> threads;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    {
      std::lock_guard<std::mutex> lk(mu_);
      threads.swap(threads_);
    }
    for (pthread_t t : threads) pthread_join(t, nullptr);
  }

  size_t threads() {
    std::lock_guard<std::mutex> lk(mu_);
    return threads_.size();
  }

private:
  bool spawn_locked() {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack_bytes_);
    pthread_t t;
    int rc = pthread_create(&t, &attr, &GrowingPool::entry, this);
    pthread_attr_destroy(&attr);
    if (rc != 0) return false;  // out of threads: the job waits for a running worker
    threads_.push_back(t);
    return true;
  }

  static void *entry(void *self) {
    static_cast<GrowingPool *>(self)->work();
    return nullptr;
  }

  void work() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // stop_ and nothing left
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<pthread_t> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
  size_t max_threads_;
  size_t stack_bytes_;
};

}  // namespace vsim
