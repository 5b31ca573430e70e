// The built-in Transport: blocking HTTP/1.1 client with per-endpoint keep-alive pools.
//
// Why not httplib::Client (see docs/architecture.md): a streamed answer must pass the upstream
// status and headers through before the body, a waiting request must notice its client leaving,
// and the request body must be sent from the caller's buffer without a copy. A small client that
// owns its socket does all three.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "http1.h"
#include "net.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = 16 * 1024;

void close_fd(int fd) {
  if (fd >= 0) ::close(fd);
}

// Idle keep-alive sockets per endpoint id, bounded.
class ConnectionPool {
 public:
  explicit ConnectionPool(std::size_t max_idle) : max_idle_(max_idle) {}
  ~ConnectionPool() {
    for (auto& [id, fds] : idle_) {
      for (int fd : fds) close_fd(fd);
    }
  }
  int take(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_.find(id);
    if (it == idle_.end() || it->second.empty()) return -1;
    const int fd = it->second.back();
    it->second.pop_back();
    return fd;
  }
  void give(const std::string& id, int fd) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& fds = idle_[id];
      if (fds.size() < max_idle_) {
        fds.push_back(fd);
        return;
      }
    }
    close_fd(fd);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<int>> idle_;
  std::size_t max_idle_;
};

// Waits until `fd` is ready for `events`, polling `alive` every `slice_ms`. Returns 1 ready,
// 0 timeout, -1 error, -2 client gone.
int wait_fd(int fd, short events, Clock::time_point deadline, const std::function<bool()>& alive,
            std::uint32_t slice_ms) {
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) return 0;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    if (alive) left = std::min<long long>(left, slice_ms);
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return -1;
    if (alive && !alive()) return -2;
  }
}

// Connects to `url` within `timeout_ms`, trying each address in turn. Returns the socket or -1.
int connect_to(const Url& url, std::uint32_t timeout_ms, std::string& why) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool more = true;
  for (std::size_t i = 0; more; ++i) {
    const int fd = detail::start_connect(url, i, more, why);
    if (fd < 0) continue;
    const int ready = wait_fd(fd, POLLOUT, deadline, {}, 0);
    int err = 0;
    socklen_t len = sizeof err;
    if (ready == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return fd;
    why = ready == 0 ? "connect timed out" : std::strerror(err != 0 ? err : errno);
    close_fd(fd);
    if (ready == 0) break;
  }
  return -1;
}

using detail::Framing;

class HttpResponse final : public UpstreamResponse {
 public:
  HttpResponse(const HttpTransportOptions& options, ConnectionPool& pool, std::string id, int fd,
               std::uint32_t read_timeout_ms)
      : options_(options), pool_(pool), id_(std::move(id)), fd_(fd), read_timeout_ms_(read_timeout_ms) {}
  ~HttpResponse() override { close_fd(fd_); }

  int status() const noexcept override { return status_; }
  const Headers& headers() const noexcept override { return headers_; }
  std::optional<std::uint64_t> content_length() const noexcept override {
    if (framing_ == Framing::length) return length_;
    if (framing_ == Framing::none) return 0;
    return std::nullopt;
  }

  // Reads and parses the head. Returns Errc::ok, or the failure; `got_bytes` tells whether
  // anything at all arrived (a reused socket that yields nothing may be retried).
  Result<void> read_head(const AliveCheck& alive, bool& got_bytes, std::uint32_t first_byte_ms) {
    got_bytes = false;
    const std::uint32_t body_ms = read_timeout_ms_;
    read_timeout_ms_ = first_byte_ms;  // the wait for the head has its own limit
    struct Restore {
      std::uint32_t& slot;
      std::uint32_t value;
      ~Restore() { slot = value; }
    } restore{read_timeout_ms_, body_ms};
    for (;;) {
      detail::ResponseHead head;
      std::string error;
      const auto parsed = detail::parse_response_head(buf_, head, error);
      if (parsed == detail::Parse::error) return Result<void>(Errc::upstream_protocol, error);
      if (parsed == detail::Parse::ok) {
        status_ = head.status;
        framing_ = head.framing;
        length_ = head.content_length;
        close_ = !head.keep_alive;
        headers_.clear();
        for (const auto& h : head.headers) {
          if (!detail::is_hop_by_hop(h.name)) headers_.push_back(Header{std::string(h.name), std::string(h.value)});
        }
        buf_.erase(0, head.size);
        if (status_ < 200) continue;  // interim answer (100 Continue): wait for the real one
        return {};
      }
      const auto r = fill(alive);
      if (r.code() == Errc::upstream_closed && buf_.empty() && !got_bytes) return r;
      if (!r) return r;
      got_bytes = true;
    }
  }

  Result<std::uint64_t> relay(BodySink& sink) override {
    const AliveCheck alive = [&sink] { return sink.alive(); };
    const auto deliver = [&sink](std::string_view data) {
      return data.empty() || sink.write(data.data(), data.size());
    };
    std::uint64_t sent = 0;
    std::string out;
    bool done = framing_ == Framing::none;
    while (!done) {
      if (buf_.empty()) {
        const auto r = fill(alive);
        if (!r) {
          if (r.code() == Errc::upstream_closed && framing_ == Framing::close) break;
          return r.error();
        }
      }
      std::size_t used = buf_.size();
      std::string_view data = buf_;
      if (framing_ == Framing::length) {
        used = static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), length_ - sent));
        data = data.substr(0, used);
        done = sent + used == length_;
      } else if (framing_ == Framing::chunked) {
        out.clear();
        used = chunks_.feed(buf_, &out);
        if (used == std::string::npos) {
          return Result<std::uint64_t>(Errc::upstream_protocol, "upstream sent bad chunked framing");
        }
        data = out;
        done = chunks_.done();
      }
      if (!deliver(data)) return Result<std::uint64_t>(Errc::cancelled, "client went away");
      sent += data.size();
      buf_.erase(0, used);
    }
    if (framing_ != Framing::close && !close_ && buf_.empty()) {
      pool_.give(id_, fd_);
      fd_ = -1;
    }
    return sent;
  }

 private:
  // Appends what the socket has to buf_, waiting up to the read timeout.
  Result<void> fill(const AliveCheck& alive) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(read_timeout_ms_);
    for (;;) {
      char tmp[kReadChunk];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<std::size_t>(n));
        return {};
      }
      if (n == 0) return Result<void>(Errc::upstream_closed, "upstream closed the connection");
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return Result<void>(Errc::upstream_closed,
                            std::string("upstream connection failed: ") + std::strerror(errno));
      }
      const int w = wait_fd(fd_, POLLIN, deadline, alive, options_.alive_poll_ms);
      if (w == 0) return Result<void>(Errc::timeout, "upstream read timed out");
      if (w == -2) return Result<void>(Errc::cancelled, "client went away");
      if (w < 0) return Result<void>(Errc::upstream_closed, "upstream poll failed");
    }
  }

  const HttpTransportOptions& options_;
  ConnectionPool& pool_;
  std::string id_;
  int fd_ = -1;
  std::uint32_t read_timeout_ms_;
  std::string buf_;
  int status_ = 0;
  Headers headers_;
  Framing framing_ = Framing::close;
  std::uint64_t length_ = 0;
  bool close_ = false;
  detail::ChunkedScanner chunks_;
};

// Writes all iovecs, waiting for the socket as needed. Returns bytes written or -1.
Result<std::size_t> write_all(int fd, iovec* iov, int count, std::uint32_t timeout_ms,
                              const AliveCheck& alive, std::uint32_t slice_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::size_t written = 0;
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        const int w = wait_fd(fd, POLLOUT, deadline, alive, slice_ms);
        if (w == 0) return Result<std::size_t>(Errc::timeout, "upstream write timed out");
        if (w == -2) return Result<std::size_t>(Errc::cancelled, "client went away");
        if (w < 0) return Result<std::size_t>(Errc::upstream_closed, "upstream poll failed");
        continue;
      }
      return Result<std::size_t>(Errc::upstream_closed,
                                 std::string("upstream write failed: ") + std::strerror(errno));
    }
    written += static_cast<std::size_t>(n);
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
  return written;
}

class HttpTransport final : public Transport {
 public:
  explicit HttpTransport(const HttpTransportOptions& options)
      : options_(options), pool_(options.max_idle_per_endpoint) {}

  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& endpoint,
                                                 const UpstreamRequest& request,
                                                 const AliveCheck& alive) override {
    std::string head;
    head.reserve(512);
    head.append(request.method).append(" ").append(endpoint.url.prefix).append(request.path);
    head.append(" HTTP/1.1\r\nHost: ").append(endpoint.url.host);
    head.append(":").append(std::to_string(endpoint.url.port)).append("\r\n");
    if (!endpoint.api_key.empty()) head.append("Authorization: Bearer ").append(endpoint.api_key).append("\r\n");
    if (request.headers != nullptr) {
      for (const Header& h : *request.headers) {
        head.append(h.name).append(": ").append(h.value).append("\r\n");
      }
    }
    if (request.method != "GET" || !request.body.empty()) {
      head.append("Content-Length: ").append(std::to_string(request.body.size())).append("\r\n");
    }
    head.append("\r\n");

    // A pooled socket may have been closed by the upstream while idle: if it yields nothing,
    // retry once on a fresh connection (the upstream cannot have acted on the request).
    for (int attempt = 0; attempt < 2; ++attempt) {
      int fd = attempt == 0 ? pool_.take(endpoint.id) : -1;
      const bool reused = fd >= 0;
      if (!reused) {
        std::string why;
        const std::uint32_t connect_ms = request.timeout_ms != 0
                                             ? std::min(request.timeout_ms, options_.connect_timeout_ms)
                                             : options_.connect_timeout_ms;
        fd = connect_to(endpoint.url, connect_ms, why);
        if (fd < 0) {
          return Result<std::unique_ptr<UpstreamResponse>>(
              Errc::connect_failed, "cannot connect to " + endpoint.id + ": " + why);
        }
      }
      auto response = std::make_unique<HttpResponse>(options_, pool_, endpoint.id, fd, options_.read_timeout_ms);
      iovec iov[2] = {{head.data(), head.size()},
                      {const_cast<char*>(request.body.data()), request.body.size()}};
      const auto w = write_all(fd, iov, request.body.empty() ? 1 : 2, options_.write_timeout_ms,
                               alive, options_.alive_poll_ms);
      if (!w) {
        if (reused && w.code() == Errc::upstream_closed) continue;
        return w.error();
      }
      bool got_bytes = false;
      auto r = response->read_head(alive, got_bytes,
                                   request.timeout_ms != 0 ? request.timeout_ms : options_.read_timeout_ms);
      if (!r) {
        if (reused && !got_bytes && r.code() == Errc::upstream_closed) continue;
        return r.error();
      }
      return std::unique_ptr<UpstreamResponse>(std::move(response));
    }
    return Result<std::unique_ptr<UpstreamResponse>>(Errc::upstream_closed,
                                                     "upstream closed the connection");
  }

 private:
  HttpTransportOptions options_;
  ConnectionPool pool_;
};

}  // namespace

std::shared_ptr<Transport> make_http_transport(const HttpTransportOptions& options) {
  return std::make_shared<HttpTransport>(options);
}

VLLM_ROUTER_END_NAMESPACE
