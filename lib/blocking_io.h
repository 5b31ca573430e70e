// Internal: blocking socket I/O with deadlines and cancellation, and a thread-safe keep-alive
// pool; used by the blocking forward (Router::forward) and the control plane's HTTP client.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "idle_pool.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/error.h"
#include "vllm_router/router.h"

namespace vllm_router::detail {

using SteadyTime = std::chrono::steady_clock::time_point;

/// What a blocking wait watches besides its socket: a cancel token (its descriptor is polled
/// with the socket) and a polled check (false: stop).
struct WaitContext {
  const CancelToken* cancel = nullptr;
  const std::function<bool()>* alive = nullptr;
  std::chrono::milliseconds poll_slice{50};
};

enum class Wait : std::uint8_t { ready, timeout, cancelled, error };

/// Waits until `fd` is ready for `events` (POLLIN/POLLOUT), `deadline` passes or the context
/// says stop.
Wait wait_fd(int fd, short events, SteadyTime deadline, const WaitContext& ctx);

class Resolver;

/// Connects to `url` (each address in turn, IPv4 first) before `deadline`, resolving its name
/// with `resolver` (null: the system's getaddrinfo). Returns the socket (non-blocking,
/// TCP_NODELAY) or -1 with `error` (connect_failed, timeout, cancelled).
int connect_blocking(const Url& url, SteadyTime deadline, const WaitContext& ctx, Error& error,
                     Resolver* resolver = nullptr);

/// Writes every iovec before `deadline`. Errors: timeout, cancelled, upstream_closed.
bool write_all(int fd, iovec* iov, int count, SteadyTime deadline, const WaitContext& ctx, Error& error);

/// An IdlePool behind a mutex, closing what leaves it: the blocking forward's and the probe
/// client's keep-alive pool. Thread-safe.
class SocketPool {
 public:
  explicit SocketPool(std::size_t max_idle) : max_idle_(max_idle) {}
  ~SocketPool();
  SocketPool(const SocketPool&) = delete;
  SocketPool& operator=(const SocketPool&) = delete;
  /// A pooled socket for `id`, or -1.
  int take(const std::string& id);
  /// Keeps `fd` for `id` (closing the oldest beyond the bound).
  void give(const std::string& id, int fd);
  void set_max_idle(std::size_t max_idle);

 private:
  std::mutex mutex_;
  IdlePool idle_;
  std::size_t max_idle_;
};

}  // namespace vllm_router::detail
