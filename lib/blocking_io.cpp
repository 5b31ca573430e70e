// Internal: blocking socket helpers (deadline, cancel descriptor, polled liveness) and the pool.
#include "blocking_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net.h"

namespace vllm_router::detail {

Wait wait_fd(int fd, short events, SteadyTime deadline, const WaitContext& ctx) {
  const int cancel_fd = ctx.cancel != nullptr ? ctx.cancel->fd() : -1;
  const bool polled_alive = ctx.alive != nullptr && *ctx.alive;
  const bool polled_cancel = ctx.cancel != nullptr && cancel_fd < 0;
  for (;;) {
    if (ctx.cancel != nullptr && ctx.cancel->cancelled()) return Wait::cancelled;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Wait::timeout;
    auto left = deadline == SteadyTime::max()
                    ? std::chrono::milliseconds(60000)
                    : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    if (polled_alive || polled_cancel) left = std::min(left, ctx.poll_slice);
    pollfd p[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
    const int rc = ::poll(p, cancel_fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(left.count(), 60000)));
    if (rc < 0 && errno != EINTR) return Wait::error;
    if (rc > 0 && cancel_fd >= 0 && (p[1].revents & POLLIN) != 0) return Wait::cancelled;
    if (rc > 0 && p[0].revents != 0) return Wait::ready;
    if (polled_alive && !(*ctx.alive)()) return Wait::cancelled;
  }
}

int connect_blocking(const Url& url, SteadyTime deadline, const WaitContext& ctx, Error& error, Resolver* resolver) {
  Result<std::shared_ptr<const AddressList>> addresses =
      resolver == nullptr ? resolve_system(url)
                          : resolver->resolve_blocking(url.host, url.port,
                                                       std::chrono::duration_cast<std::chrono::milliseconds>(
                                                           std::max(deadline - std::chrono::steady_clock::now(),
                                                                    SteadyTime::duration::zero())));
  if (!addresses) {
    error = Error{Errc::connect_failed, "cannot connect to " + endpoint_id(url) + ": " + addresses.error().message, ""};
    return -1;
  }
  std::string why = "no address";
  for (const sockaddr_storage& address : addresses.value()->addresses) {
    const int fd = connect_address(address, why);
    if (fd < 0) continue;
    const Wait w = wait_fd(fd, POLLOUT, deadline, ctx);
    int err = 0;
    socklen_t len = sizeof err;
    if (w == Wait::ready && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return fd;
    ::close(fd);
    if (w == Wait::timeout) {
      error = Error{Errc::timeout, "connect to " + endpoint_id(url) + " timed out", ""};
      return -1;
    }
    if (w == Wait::cancelled) {
      error = Error{Errc::cancelled, "cancelled", ""};
      return -1;
    }
    why = std::strerror(err != 0 ? err : errno);
  }
  error = Error{Errc::connect_failed, "cannot connect to " + endpoint_id(url) + ": " + why, ""};
  return -1;
}

namespace {

Error wait_error(Wait w, std::string_view what) {
  return w == Wait::timeout     ? Error{Errc::timeout, std::string(what) + " timed out", ""}
         : w == Wait::cancelled ? Error{Errc::cancelled, "cancelled", ""}
                                : Error{Errc::upstream_closed, "upstream poll failed", ""};
}

// Each iovec through the session in turn (a small head and body joined: one record); a write
// that must wait is retried with the same bytes.
bool write_all_tls(int fd, TlsSession& tls, iovec* iov, int count, SteadyTime deadline, const WaitContext& ctx,
                   Error& error) {
  std::string joined;
  iovec one{};
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (count > 1 && total <= 16 * 1024) {
    for (int i = 0; i < count; ++i) joined.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    one = {joined.data(), joined.size()};
    iov = &one;
    count = 1;
  }
  for (int i = 0; i < count; ++i) {
    const char* data = static_cast<const char*>(iov[i].iov_base);
    std::size_t left = iov[i].iov_len;
    while (left > 0) {
      std::size_t n = 0;
      const TlsIo io = tls.write(data, left, n);
      if (io == TlsIo::done) {
        data += n;
        left -= n;
        continue;
      }
      if (io == TlsIo::want_read || io == TlsIo::want_write) {
        const Wait w = wait_fd(fd, io == TlsIo::want_read ? POLLIN : POLLOUT, deadline, ctx);
        if (w == Wait::ready) continue;
        error = wait_error(w, "writing the request upstream");
        return false;
      }
      error = Error{Errc::upstream_closed, "writing to upstream failed: " + io_error(&tls), ""};
      return false;
    }
  }
  return true;
}

}  // namespace

std::unique_ptr<TlsSession> handshake_blocking(int fd, const TlsContext& context, const Url& url, SteadyTime deadline,
                                               const WaitContext& ctx, Error& error) {
  auto session = TlsSession::connect(context, fd, url.host);
  if (!session) {
    error = Error{Errc::connect_failed, "cannot connect to " + endpoint_id(url) + ": " + session.error().message, ""};
    return nullptr;
  }
  std::unique_ptr<TlsSession> tls = std::move(session).value();
  for (;;) {
    const TlsIo io = tls->handshake();
    if (io == TlsIo::done) return tls;
    if (io == TlsIo::want_read || io == TlsIo::want_write) {
      const Wait w = wait_fd(fd, io == TlsIo::want_read ? POLLIN : POLLOUT, deadline, ctx);
      if (w == Wait::ready) continue;
      error = wait_error(w, "TLS handshake with " + endpoint_id(url));
      return nullptr;
    }
    error = Error{Errc::connect_failed, "cannot connect to " + endpoint_id(url) + ": TLS handshake failed: " + tls->error(), ""};
    return nullptr;
  }
}

ssize_t recv_some(int fd, TlsSession* tls, char* buf, std::size_t size) {
  if (tls == nullptr) return ::recv(fd, buf, size, 0);
  std::size_t n = 0;
  switch (tls->read(buf, size, n)) {
    case TlsIo::done: return static_cast<ssize_t>(n);
    case TlsIo::eof: return 0;
    case TlsIo::want_read:
    case TlsIo::want_write: errno = EAGAIN; return -1;
    case TlsIo::error: break;
  }
  errno = EPROTO;
  return -1;
}

std::string io_error(const TlsSession* tls) {
  if (tls != nullptr && !tls->error().empty()) return tls->error();
  return std::strerror(errno);
}

Wait wait_readable(int fd, const TlsSession* tls, SteadyTime deadline, const WaitContext& ctx) {
  if (tls == nullptr) return wait_fd(fd, POLLIN, deadline, ctx);
  if (tls->has_pending()) return Wait::ready;
  return wait_fd(fd, tls->wait_events(POLLIN), deadline, ctx);
}

bool write_all(int fd, TlsSession* tls, iovec* iov, int count, SteadyTime deadline, const WaitContext& ctx,
               Error& error) {
  if (tls != nullptr) return write_all_tls(fd, *tls, iov, count, deadline, ctx, error);
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        const Wait w = wait_fd(fd, POLLOUT, deadline, ctx);
        if (w == Wait::ready) continue;
        error = wait_error(w, "writing the request upstream");
        return false;
      }
      error = Error{Errc::upstream_closed, std::string("writing to upstream failed: ") + std::strerror(errno), ""};
      return false;
    }
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

SocketPool::~SocketPool() {
  for (int fd : idle_.take_all()) close_one(fd);
}

void SocketPool::close_one(int fd) {
  tls_.erase(fd);  // the session first: it refers to the descriptor
  ::close(fd);
}

int SocketPool::take(const std::string& id, std::unique_ptr<TlsSession>& tls) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int fd = idle_.take(id);
  tls.reset();
  if (const auto it = fd >= 0 ? tls_.find(fd) : tls_.end(); it != tls_.end()) {
    tls = std::move(it->second);
    tls_.erase(it);
  }
  return fd;
}

void SocketPool::give(const std::string& id, int fd, std::unique_ptr<TlsSession> tls) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (tls) tls_[fd] = std::move(tls);
  const int evicted = idle_.give(id, fd, max_idle_);
  if (evicted >= 0) close_one(evicted);
}

void SocketPool::set_max_idle(std::size_t max_idle) {
  std::lock_guard<std::mutex> lock(mutex_);
  max_idle_ = max_idle;
}

}  // namespace vllm_router::detail
