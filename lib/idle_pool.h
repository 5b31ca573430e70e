// Internal: idle keep-alive connections per endpoint, bounded, most recently used kept: the one
// pool logic of every driver (the loops own one each; the blocking forward wraps one in a mutex).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace vllm_router::detail {

/// Not thread-safe. Holds file descriptors; closing them is the owner's (give() and remove()
/// hand back what leaves the pool).
class IdlePool {
 public:
  /// The most recently pooled socket for `id`, or -1.
  int take(const std::string& id) {
    auto it = idle_.find(id);
    if (it == idle_.end() || it->second.empty()) return -1;
    const int fd = it->second.back();
    it->second.pop_back();
    return fd;
  }
  /// Keeps `fd` for `id`, at most `max_idle` per endpoint. Returns a socket that left the pool
  /// to stay within the bound (the oldest, or `fd` itself when max_idle is 0), or -1: close it.
  int give(const std::string& id, int fd, std::size_t max_idle) {
    if (max_idle == 0) return fd;
    auto& fds = idle_[id];
    int evicted = -1;
    if (fds.size() >= max_idle) {
      evicted = fds.front();
      fds.erase(fds.begin());
    }
    fds.push_back(fd);
    return evicted;
  }
  /// Takes `fd` out of the pool if it is there (an idle socket the upstream closed).
  bool remove(int fd) {
    for (auto& [id, fds] : idle_) {
      const auto it = std::find(fds.begin(), fds.end(), fd);
      if (it != fds.end()) {
        fds.erase(it);
        return true;
      }
    }
    return false;
  }
  /// Every pooled socket, emptying the pool (shutdown).
  std::vector<int> take_all() {
    std::vector<int> all;
    for (auto& [id, fds] : idle_) all.insert(all.end(), fds.begin(), fds.end());
    idle_.clear();
    return all;
  }

 private:
  std::unordered_map<std::string, std::vector<int>> idle_;
};

}  // namespace vllm_router::detail
