// Internal: blocking socket I/O with deadlines and cancellation, and a thread-safe keep-alive
// pool; used by the blocking forward (Router::forward) and the control plane's HTTP client.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "idle_pool.h"
#include "tls.h"
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

/// https: starts TLS on the connected `fd` for `url` (SNI, certificate and name checked as
/// `context` says) and finishes the handshake before `deadline`. Returns the session, or null
/// with `error` (connect_failed with OpenSSL's reason, timeout, cancelled).
std::unique_ptr<TlsSession> handshake_blocking(int fd, const TlsContext& context, const Url& url, SteadyTime deadline,
                                               const WaitContext& ctx, Error& error);

/// Writes every iovec (through `tls` when not null) before `deadline`. Errors: timeout,
/// cancelled, upstream_closed.
bool write_all(int fd, TlsSession* tls, iovec* iov, int count, SteadyTime deadline, const WaitContext& ctx,
               Error& error);

/// recv() or, with `tls`, SSL_read: > 0 bytes, 0 at the end, -1 with errno EAGAIN (wait with
/// wait_readable) or another error (io_error() says what).
ssize_t recv_some(int fd, TlsSession* tls, char* buf, std::size_t size);
/// What the last failed recv_some/write failed with: the session's reason, else errno's.
std::string io_error(const TlsSession* tls);
/// Waits until `fd` has bytes for recv_some: at once when the session holds some already; for
/// writability when the session waits to write.
Wait wait_readable(int fd, const TlsSession* tls, SteadyTime deadline, const WaitContext& ctx);

/// An IdlePool behind a mutex, closing what leaves it: the blocking forward's and the probe
/// client's keep-alive pool. An https socket is kept with its TLS session. Thread-safe.
class SocketPool {
 public:
  explicit SocketPool(std::size_t max_idle) : max_idle_(max_idle) {}
  ~SocketPool();
  SocketPool(const SocketPool&) = delete;
  SocketPool& operator=(const SocketPool&) = delete;
  /// A pooled socket for `id`, or -1; `tls` gets its session (null for plain HTTP).
  int take(const std::string& id, std::unique_ptr<TlsSession>& tls);
  /// Keeps `fd` (and its session) for `id`, closing the oldest beyond the bound.
  void give(const std::string& id, int fd, std::unique_ptr<TlsSession> tls);
  void set_max_idle(std::size_t max_idle);

 private:
  void close_one(int fd);  // with its session (under mutex_)
  std::mutex mutex_;
  IdlePool idle_;
  std::unordered_map<int, std::unique_ptr<TlsSession>> tls_;  // sessions of pooled https sockets
  std::size_t max_idle_;
};

}  // namespace vllm_router::detail
