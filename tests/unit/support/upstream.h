// Test helper: a scripted HTTP/1.1 upstream on 127.0.0.1 (port 0), a thread per connection,
// keep-alive; each request's answer comes from a handler (bytes, a delay, close after).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tls.h"

namespace vllm_router::testing {

struct Reply {
  std::string bytes;                     ///< written as is (may be a partial answer)
  std::chrono::milliseconds delay{0};    ///< before writing
  bool close = false;                    ///< close the connection after writing
  std::vector<std::string> pieces;       ///< written one by one, `gap` apart, after `bytes`
  std::chrono::milliseconds gap{0};
};

/// An answer of `bytes`, after `delay`.
inline Reply reply(std::string bytes, std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
  Reply r;
  r.bytes = std::move(bytes);
  r.delay = delay;
  return r;
}

/// Serves until destroyed (over TLS when given a server context: url() is then https://).
/// Thread-safe counters; `heads` and `bodies` under `mutex`.
class TestUpstream {
 public:
  using Handler = std::function<Reply(const std::string& head, const std::string& body)>;

  explicit TestUpstream(Handler handler, std::shared_ptr<const detail::TlsContext> tls = nullptr)
      : handler_(std::move(handler)), tls_(std::move(tls)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 128);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TestUpstream() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    ::close(fd_);
  }
  TestUpstream(const TestUpstream&) = delete;
  TestUpstream& operator=(const TestUpstream&) = delete;

  std::string url() const { return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port); }

  std::uint16_t port = 0;
  std::atomic<int> connections{0};
  std::atomic<int> requests{0};
  std::atomic<int> closed_by_peer{0};  ///< connections the router closed (EOF seen here)
  std::atomic<int> tls_failures{0};    ///< TLS handshakes that failed here
  std::mutex mutex;
  std::vector<std::string> heads;
  std::vector<std::string> bodies;

 private:
  void accept_loop() {
    while (!stopping_) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopping_) return;
        continue;
      }
      connections++;
      std::lock_guard<std::mutex> lock(mutex);
      open_.push_back(c);
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  // A blocking socket: the session's calls block too (no want_read/want_write).
  ssize_t receive(int c, char* buf, std::size_t size) {
    detail::TlsSession* s = session(c);
    if (s == nullptr) return ::recv(c, buf, size, 0);
    std::size_t n = 0;
    return s->read(buf, size, n) == detail::TlsIo::done ? static_cast<ssize_t>(n) : 0;
  }
  detail::TlsSession* session(int c) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = sessions_.find(c);
    return it == sessions_.end() ? nullptr : it->second.get();
  }

  void serve(int c) {
    if (tls_) {
      auto s = detail::TlsSession::accept(*tls_, c);
      if (s->handshake() != detail::TlsIo::done) {
        tls_failures++;
        return finish(c);
      }
      std::lock_guard<std::mutex> lock(mutex);
      sessions_[c] = std::move(s);
    }
    std::string in;
    char buf[8192];
    for (;;) {
      const auto end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        const ssize_t n = receive(c, buf, sizeof buf);
        if (n <= 0) {
          closed_by_peer++;
          break;
        }
        in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      const std::string head = in.substr(0, end + 4);
      std::size_t length = 0;
      const auto cl = head.find("Content-Length: ");
      if (cl != std::string::npos) length = std::stoul(head.substr(cl + 16));
      while (in.size() < end + 4 + length) {
        const ssize_t n = receive(c, buf, sizeof buf);
        if (n <= 0) return finish(c);
        in.append(buf, static_cast<std::size_t>(n));
      }
      const std::string body = in.substr(end + 4, length);
      in.erase(0, end + 4 + length);
      requests++;
      {
        std::lock_guard<std::mutex> lock(mutex);
        heads.push_back(head);
        bodies.push_back(body);
      }
      const Reply r = handler_(head, body);
      if (r.delay.count() > 0 && !sleep_or_peer_gone(c, r.delay)) return finish(c);
      if (!send_all(c, r.bytes)) return finish(c);
      for (const std::string& piece : r.pieces) {
        if (r.gap.count() > 0 && !sleep_or_peer_gone(c, r.gap)) return finish(c);
        if (!send_all(c, piece)) return finish(c);
      }
      if (r.close) break;
    }
    finish(c);
  }

  // Waits `d`; false when the peer closed meanwhile (counted).
  bool sleep_or_peer_gone(int c, std::chrono::milliseconds d) {
    pollfd p{c, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, static_cast<int>(d.count())) > 0) {
      char b;
      if (::recv(c, &b, 1, MSG_PEEK) <= 0) {
        closed_by_peer++;
        return false;
      }
    }
    return !stopping_;
  }

  bool send_all(int c, std::string_view data) {
    detail::TlsSession* s = session(c);
    if (s == nullptr) return write_all(c, data);
    while (!data.empty()) {
      std::size_t n = 0;
      if (s->write(data.data(), data.size(), n) != detail::TlsIo::done) return false;
      data.remove_prefix(n);
    }
    return true;
  }

  static bool write_all(int c, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(c, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void finish(int c) {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& o : open_) {
      if (o == c) o = -1;
    }
    sessions_.erase(c);
    ::close(c);
  }

  Handler handler_;
  std::shared_ptr<const detail::TlsContext> tls_;
  std::map<int, std::unique_ptr<detail::TlsSession>> sessions_;  // under mutex
  int fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::vector<int> open_;
};

/// A loopback port nothing listens on (bound, then closed).
inline std::uint16_t dead_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline std::string json_reply(std::string_view body, int status = 200) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace vllm_router::testing
