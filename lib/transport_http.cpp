// The built-in Transport: the control plane's blocking HTTP/1.1 client (health probes, /metrics
// scrapes, /v1/models), on the same socket helpers and answer reader as the blocking forward.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "blocking_io.h"
#include "response_reader.h"
#include "router_impl.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

using detail::ResponseReader;
using Step = ResponseReader::Step;
using Clock = std::chrono::steady_clock;

class HttpResponse final : public UpstreamResponse {
 public:
  HttpResponse(detail::SocketPool& pool, std::string id, int fd, std::unique_ptr<detail::TlsSession> tls,
               std::uint32_t read_timeout_ms)
      : pool_(pool), id_(std::move(id)), fd_(fd), tls_(std::move(tls)), read_timeout_ms_(read_timeout_ms) {}
  ~HttpResponse() override {
    tls_.reset();
    if (fd_ >= 0) ::close(fd_);
  }
  detail::TlsSession* tls() const noexcept { return tls_.get(); }

  int status() const noexcept override { return reader_.head().status; }
  const Headers& headers() const noexcept override { return headers_; }
  std::optional<std::uint64_t> content_length() const noexcept override {
    if (reader_.head().framing == detail::Framing::length) return reader_.head().content_length;
    if (reader_.head().framing == detail::Framing::none) return 0;
    return std::nullopt;
  }

  // Reads until the head is in. `got_bytes`: anything arrived (a reused socket that yields
  // nothing was stale and may be retried).
  Result<void> read_head(const AliveCheck& alive, std::uint32_t head_timeout_ms, bool& got_bytes) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(head_timeout_ms);
    for (;;) {
      std::string_view data;
      if (auto r = fill(alive, deadline, data); !r) {
        got_bytes = reader_.any_bytes();
        return r;
      }
      std::string_view payload;
      for (;;) {
        const Step step = reader_.next(data, payload);
        if (step == Step::error) return Result<void>(Errc::upstream_protocol, reader_.error());
        if (step == Step::body) early_.append(payload);
        if (step == Step::end || (step == Step::need_more && reader_.head_done())) {
          for (const auto& h : reader_.head().headers) {
            if (!detail::is_hop_by_hop(h.name)) headers_.push_back(Header{std::string(h.name), std::string(h.value)});
          }
          ended_ = step == Step::end;
          return {};
        }
        if (step == Step::need_more) break;
      }
    }
  }

  Result<std::uint64_t> relay(BodySink& sink) override {
    const AliveCheck alive = [&sink] { return sink.alive(); };
    std::uint64_t sent = early_.size();
    if (!early_.empty() && !sink.write(early_.data(), early_.size())) {
      return Result<std::uint64_t>(Errc::cancelled, "client went away");
    }
    while (!ended_) {
      std::string_view data;
      if (auto r = fill(alive, Clock::now() + std::chrono::milliseconds(read_timeout_ms_), data); !r) {
        if (r.code() == Errc::upstream_closed && reader_.eof() == Step::end) break;
        return r.error();
      }
      std::string_view payload;
      for (Step step = reader_.next(data, payload); step != Step::need_more; step = reader_.next(data, payload)) {
        if (step == Step::error) return Result<std::uint64_t>(Errc::upstream_protocol, reader_.error());
        if (step == Step::end) {
          ended_ = true;
          break;
        }
        if (step == Step::body && !payload.empty()) {
          if (!sink.write(payload.data(), payload.size())) return Result<std::uint64_t>(Errc::cancelled, "client went away");
          sent += payload.size();
        }
      }
    }
    if (reader_.reusable() && !(tls_ && tls_->failed())) {
      pool_.give(id_, fd_, std::move(tls_));
      fd_ = -1;
    }
    return sent;
  }

 private:
  // One read into buf_, waiting until `deadline`; `data` views what arrived.
  Result<void> fill(const AliveCheck& alive, Clock::time_point deadline, std::string_view& data) {
    detail::WaitContext ctx;
    ctx.alive = alive ? &alive : nullptr;
    for (;;) {
      const ssize_t n = detail::recv_some(fd_, tls_.get(), buf_, sizeof buf_);
      if (n > 0) {
        data = std::string_view(buf_, static_cast<std::size_t>(n));
        return {};
      }
      if (n == 0) return Result<void>(Errc::upstream_closed, "upstream closed the connection");
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return Result<void>(Errc::upstream_closed, "upstream connection failed: " + detail::io_error(tls_.get()));
      }
      switch (detail::wait_readable(fd_, tls_.get(), deadline, ctx)) {
        case detail::Wait::ready: break;
        case detail::Wait::timeout: return Result<void>(Errc::timeout, "upstream read timed out");
        case detail::Wait::cancelled: return Result<void>(Errc::cancelled, "client went away");
        case detail::Wait::error: return Result<void>(Errc::upstream_closed, "upstream poll failed");
      }
    }
  }

  detail::SocketPool& pool_;
  std::string id_;
  int fd_ = -1;
  std::unique_ptr<detail::TlsSession> tls_;  // https
  std::uint32_t read_timeout_ms_;
  ResponseReader reader_;
  Headers headers_;
  std::string early_;  // body bytes that came with the head
  bool ended_ = false;
  char buf_[16 * 1024];
};

class HttpTransport final : public Transport {
 public:
  explicit HttpTransport(const HttpTransportOptions& options)
      : options_(options), pool_(options.max_idle_per_endpoint) {}

  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& endpoint, const UpstreamRequest& request,
                                                 const AliveCheck& alive) override {
    std::string head;
    head.reserve(512);
    detail::append_request_start(head, request.method, endpoint.url, request.path, endpoint.api_key);
    if (request.headers != nullptr) {
      for (const Header& h : *request.headers) head.append(h.name).append(": ").append(h.value).append("\r\n");
    }
    if (request.method != "GET" || !request.body.empty()) {
      head.append("Content-Length: ").append(std::to_string(request.body.size())).append("\r\n");
    }
    head.append("\r\n");
    const std::uint32_t connect_ms =
        request.timeout_ms != 0 ? std::min(request.timeout_ms, options_.connect_timeout_ms) : options_.connect_timeout_ms;
    const std::uint32_t head_ms = request.timeout_ms != 0 ? request.timeout_ms : options_.read_timeout_ms;
    detail::WaitContext ctx;
    ctx.alive = alive ? &alive : nullptr;
    ctx.poll_slice = std::chrono::milliseconds(options_.alive_poll_ms);
    // A pooled socket may have been closed by the upstream while idle: if it yields nothing,
    // once more on a fresh connection (the upstream cannot have acted on the request).
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::unique_ptr<detail::TlsSession> tls;
      int fd = attempt == 0 ? pool_.take(endpoint.id, tls) : -1;
      const bool reused = fd >= 0;
      Error error;
      if (!reused) {
        fd = connect(endpoint, Clock::now() + std::chrono::milliseconds(connect_ms), ctx, tls, error);
        if (fd < 0) {
          if (error.code == Errc::timeout) error.code = Errc::connect_failed;  // nothing was sent
          return error;
        }
      }
      auto response = std::make_unique<HttpResponse>(pool_, endpoint.id, fd, std::move(tls), options_.read_timeout_ms);
      iovec iov[2] = {{head.data(), head.size()}, {const_cast<char*>(request.body.data()), request.body.size()}};
      if (!detail::write_all(fd, response->tls(), iov, request.body.empty() ? 1 : 2,
                             Clock::now() + std::chrono::milliseconds(options_.write_timeout_ms), ctx, error)) {
        if (reused && error.code == Errc::upstream_closed) continue;
        return error;
      }
      bool got_bytes = false;
      if (auto r = response->read_head(alive, head_ms, got_bytes); !r) {
        if (reused && !got_bytes && r.code() == Errc::upstream_closed) continue;
        return r.error();
      }
      return std::unique_ptr<UpstreamResponse>(std::move(response));
    }
    return Result<std::unique_ptr<UpstreamResponse>>(Errc::upstream_closed, "upstream closed the connection");
  }

 private:
  // A TCP connection to `endpoint`, and for https its TLS session (handshake done).
  int connect(const Endpoint& endpoint, Clock::time_point deadline, const detail::WaitContext& ctx,
              std::unique_ptr<detail::TlsSession>& tls, Error& error) {
    const int fd = detail::connect_blocking(endpoint.url, deadline, ctx, error);
    if (fd < 0 || !uses_tls(endpoint.url)) return fd;
    auto context = tls_context();
    if (context) {
      tls = detail::handshake_blocking(fd, **context, endpoint.url, deadline, ctx, error);
    } else {
      error = Error{Errc::connect_failed, "cannot connect to " + endpoint.id + ": " + context.error().message, ""};
    }
    if (tls) return fd;
    ::close(fd);
    return -1;
  }

  // The router's current one (its upstream_tls, followed across updates), else this
  // transport's own from options.tls, made at first use.
  Result<std::shared_ptr<const detail::TlsContext>> tls_context() {
    if (options_.router != nullptr) return detail::RouterAccess::impl(*options_.router).upstream_tls();
    std::lock_guard<std::mutex> lock(tls_mutex_);
    if (!tls_) {
      auto made = detail::TlsContext::client(options_.tls.ca_file, !options_.tls.insecure_skip_verify);
      if (!made) return made.error();
      tls_ = std::move(made).value();
    }
    return tls_;
  }

  HttpTransportOptions options_;
  detail::SocketPool pool_;
  std::mutex tls_mutex_;
  std::shared_ptr<const detail::TlsContext> tls_;
};

}  // namespace

std::shared_ptr<Transport> make_http_transport(const HttpTransportOptions& options) {
  return std::make_shared<HttpTransport>(options);
}

VLLM_ROUTER_END_NAMESPACE
