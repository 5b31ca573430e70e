// The blocking driver of an Exchange: Router::forward and Response::relay on the caller's thread
// (blocking sockets with deadlines, a cancel token, the router's keep-alive pool).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "blocking_io.h"
#include "http_util.h"
#include "router_impl.h"
#include "vllm_router/exchange.h"

namespace vllm_router::detail {

class BlockingExchange final : public ExchangeHost {
 public:
  BlockingExchange(Router& router, SocketPool& pool, const ForwardOptions& options)
      : router_(router), pool_(pool), exchange_(router, *this), cancel_(options.cancel), alive_(options.alive),
        timeout_(options.timeout), request_id_(options.request_id), client_address_(options.client_address) {}

  ~BlockingExchange() override {
    if (!exchange_.done()) exchange_.cancel(std::chrono::steady_clock::now());
    tls_.reset();
    if (fd_ >= 0) ::close(fd_);
  }

  // Sends the request and waits for the answer's head (or the error that replaces it).
  Result<void> start(const RequestView& view, const UpstreamRequest& request) {
    view_ = view;
    if (request.headers != nullptr) {
      fields_.reserve(request.headers->size());
      for (const Header& h : *request.headers) fields_.push_back(HeaderField{h.name, h.value});
    }
    ClientRequest req;
    req.method = request.method;
    req.target = request.path;
    req.headers = fields_;
    req.body = request.body;
    req.view = &view_;
    if (request_id_.empty()) {
      // The caller's own X-Request-Id header, when it sent one, names the request upstream.
      for (const HeaderField& f : fields_) {
        if (iequals(f.name, "x-request-id")) request_id_.assign(f.value);
      }
    }
    req.request_id = request_id_;
    req.in_band_errors = false;  // relay() returns the error instead
    req.client_address = client_address_;
    req.timeout = timeout_;
    exchange_.start(req, std::chrono::steady_clock::now());
    pump(/*until_head=*/true);
    if (state_ == State::failed) return error_;
    return {};
  }

  Result<std::uint64_t> relay(BodySink& sink) {
    if (relayed_) return Result<std::uint64_t>(Errc::invalid_argument, "relay() called twice");
    relayed_ = true;
    sink_ = &sink;
    const std::function<bool()> alive = [this] { return sink_->alive() && (!alive_ || alive_()); };
    sink_alive_ = &alive;
    if (!early_.empty()) {
      const bool ok = sink.write(early_.data(), early_.size());
      bytes_ += early_.size();
      early_.clear();
      if (!ok) exchange_.cancel(std::chrono::steady_clock::now());
    }
    pump(/*until_head=*/false);
    sink_ = nullptr;
    sink_alive_ = nullptr;
    if (state_ == State::ended) return bytes_;
    if (!exchange_.done()) exchange_.cancel(std::chrono::steady_clock::now());
    if (state_ == State::aborted || state_ == State::failed) return error_;
    return Result<std::uint64_t>(Errc::cancelled, "the client went away");
  }

  int status = 0;
  Headers headers;
  std::optional<std::uint64_t> length;
  bool event_stream = false;
  const Endpoint* endpoint() const { return exchange_.endpoint(); }
  const std::string& model() const { return exchange_.model(); }
  unsigned attempts() const { return exchange_.attempts(); }

  // ExchangeHost
  Connect connect(const Endpoint& endpoint, bool fresh, Error& error) override {
    endpoint_id_ = endpoint.id;
    if (!fresh) {
      fd_ = pool_.take(endpoint.id, tls_);
      if (fd_ >= 0) return Connect::pooled;
    }
    // A name is resolved by the router's resolver (cached for its TTL); an IP literal needs none.
    Resolver* resolver =
        parse_ip_literal(endpoint.url.host, endpoint.url.port) ? nullptr : &RouterAccess::impl(router_).resolver();
    fd_ = connect_blocking(endpoint.url, exchange_.deadline(), context(), error, resolver);
    if (fd_ < 0 || !uses_tls(endpoint.url)) return fd_ >= 0 ? Connect::connected : Connect::failed;
    // https: the connect timeout covers the handshake; a failed one is a failed connect.
    auto tls_context = RouterAccess::impl(router_).upstream_tls();
    if (tls_context) {
      tls_ = handshake_blocking(fd_, **tls_context, endpoint.url, exchange_.deadline(), context(), error);
    } else {
      error = Error{Errc::connect_failed, "cannot connect to " + endpoint.id + ": " + tls_context.error().message, ""};
    }
    if (tls_) return Connect::connected;
    ::close(fd_);
    fd_ = -1;
    return Connect::failed;
  }

  Send send(std::string_view head, std::string_view body, Error& error) override {
    iovec iov[2] = {{const_cast<char*>(head.data()), head.size()}, {const_cast<char*>(body.data()), body.size()}};
    return write_all(fd_, tls_.get(), iov, body.empty() ? 1 : 2, exchange_.deadline(), context(), error)
               ? Send::done
               : Send::failed;
  }

  void release(bool reusable) override {
    if (fd_ < 0) return;
    if (reusable && !(tls_ && tls_->failed())) {
      pool_.give(endpoint_id_, fd_, std::move(tls_));
    } else {
      tls_.reset();
      ::close(fd_);
    }
    fd_ = -1;
  }

  bool on_head(const ResponseHead& head) override {
    status = head.status;
    headers.clear();
    for (const HeaderField& f : head.headers) headers.push_back(Header{std::string(f.name), std::string(f.value)});
    length = head.content_length;
    event_stream = head.event_stream;
    state_ = State::head;
    return true;
  }

  bool on_body(std::string_view data) override {
    if (sink_ == nullptr) {  // came with the head, before relay()
      early_.append(data);
      return true;
    }
    bytes_ += data.size();
    return sink_->write(data.data(), data.size());
  }

  void on_end() override { state_ = State::ended; }
  void on_abort(const Error& error) override {
    error_ = error;
    state_ = State::aborted;
  }
  void on_error(const Error& error) override {
    error_ = error;
    state_ = State::failed;
  }
  void on_wait() override {}

 private:
  enum class State : std::uint8_t { running, head, ended, aborted, failed };

  WaitContext context() const {
    WaitContext ctx;
    ctx.cancel = cancel_;
    ctx.alive = sink_alive_ != nullptr ? sink_alive_ : (alive_ ? &alive_ : nullptr);
    return ctx;
  }

  // Runs the exchange on this thread until the head (or the end).
  void pump(bool until_head) {
    char buf[16 * 1024];
    while (!exchange_.done() && !(until_head && state_ == State::head)) {
      if (exchange_.waiting()) {
        wait_for_capacity();
        continue;
      }
      const auto deadline = exchange_.deadline();
      const Wait w = fd_ >= 0 ? wait_readable(fd_, tls_.get(), deadline, context()) : Wait::timeout;
      const auto now = std::chrono::steady_clock::now();
      switch (w) {
        case Wait::ready: {
          const ssize_t n = recv_some(fd_, tls_.get(), buf, sizeof buf);
          if (n > 0) {
            exchange_.on_upstream_data(std::string_view(buf, static_cast<std::size_t>(n)), now);
          } else if (n == 0) {
            exchange_.on_upstream_eof(now);
          } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            exchange_.on_upstream_error(
                Error{Errc::upstream_closed, "upstream connection failed: " + io_error(tls_.get()), ""}, now);
          }
          break;
        }
        case Wait::timeout: exchange_.on_timer(now); break;
        case Wait::cancelled: exchange_.cancel(now); break;
        case Wait::error:
          exchange_.on_upstream_error(Error{Errc::upstream_closed, "upstream poll failed", ""}, now);
          break;
      }
    }
    if (exchange_.done() && state_ == State::running) {
      error_ = Error{Errc::cancelled, "cancelled", ""};
      state_ = State::failed;
    }
  }

  // Every replica is full: wait until a lease ends somewhere, the wait's deadline, or a cancel.
  void wait_for_capacity() {
    Admission& admission = RouterAccess::impl(router_).hooks->admission;
    const std::uint64_t seen = admission.generation();
    const auto slice = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    admission.wait(seen, std::min(exchange_.deadline(), slice));
    const auto now = std::chrono::steady_clock::now();
    const auto* alive = context().alive;
    if ((cancel_ != nullptr && cancel_->cancelled()) || (alive != nullptr && *alive && !(*alive)())) {
      return exchange_.cancel(now);
    }
    if (now >= exchange_.deadline()) return exchange_.on_timer(now);
    exchange_.retry(now);
  }

  Router& router_;
  SocketPool& pool_;
  Exchange exchange_;
  const CancelToken* cancel_;
  AliveCheck alive_;
  std::chrono::milliseconds timeout_;
  std::string request_id_;
  std::string client_address_;
  RequestView view_;
  std::vector<HeaderField> fields_;
  std::string endpoint_id_;
  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;  // https
  State state_ = State::running;
  Error error_;
  std::string early_;
  BodySink* sink_ = nullptr;
  const std::function<bool()>* sink_alive_ = nullptr;
  std::uint64_t bytes_ = 0;
  bool relayed_ = false;
};

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

Result<Response> Router::forward(const RequestView& view, const UpstreamRequest& request,
                                 const ForwardOptions& options) {
  auto exchange = std::make_unique<detail::BlockingExchange>(*this, *impl_->socket_pool, options);
  if (auto r = exchange->start(view, request); !r) return r.error();
  return Response(std::move(exchange));
}

Response::Response(std::unique_ptr<detail::BlockingExchange> exchange) noexcept : exchange_(std::move(exchange)) {}
Response::Response(Response&&) noexcept = default;
Response& Response::operator=(Response&&) noexcept = default;
Response::~Response() = default;

int Response::status() const noexcept { return exchange_->status; }
const Headers& Response::headers() const noexcept { return exchange_->headers; }
std::optional<std::uint64_t> Response::content_length() const noexcept { return exchange_->length; }
bool Response::event_stream() const noexcept { return exchange_->event_stream; }
const Endpoint& Response::endpoint() const noexcept { return *exchange_->endpoint(); }
const std::string& Response::model() const noexcept { return exchange_->model(); }
unsigned Response::attempts() const noexcept { return exchange_->attempts(); }
Result<std::uint64_t> Response::relay(BodySink& sink) { return exchange_->relay(sink); }

VLLM_ROUTER_END_NAMESPACE
