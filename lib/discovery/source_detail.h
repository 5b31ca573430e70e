// Internal helpers shared by the endpoint sources: set comparison and a periodic polling thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "vllm_router/endpoint_source.h"

namespace vllm_router::detail {

inline bool same_endpoint(const DiscoveredEndpoint& a, const DiscoveredEndpoint& b) {
  return a.url == b.url && a.models == b.models && a.loras == b.loras && a.api_key == b.api_key &&
         a.weight == b.weight;
}

inline bool same_set(const EndpointSet& a, const EndpointSet& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_endpoint(a[i], b[i])) return false;
  }
  return true;
}

/// Sorts by URL and drops later duplicates, so equal sets compare equal.
void normalise_set(EndpointSet& set);

/// "host" or "[v6]" for a URL.
inline std::string url_host(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

/// A background loop that calls `round()` every `interval`, until stop(). wait() returns early
/// (false) when stopping, or when wake() was called.
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

 private:
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool woken_ = false;
};

}  // namespace vllm_router::detail
