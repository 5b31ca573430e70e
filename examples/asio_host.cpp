// asio_host: an HTTP/1.1 gateway on standalone Asio that drives vllm_router::Exchange from its own loop.
//
//   example_asio_host --port 0 --model facebook/opt-125m=http://127.0.0.1:8001,http://127.0.0.1:8002
//
// The library decides (routing, retries, timeouts, framing, the error answer); this file only
// does I/O on one io_context and one thread: it feeds each Exchange the events it sees, with the
// time they happened, and does what the ExchangeHost callbacks ask. Endpoint host names go
// through asio's asynchronous resolver (IP literals skip it). Requests: HTTP/1.1, bodies with
// Content-Length only (anything else gets 400), keep-alive and pipelining, Connection: close.
// Answers carry X-Served-By and X-Attempts (this host's own diagnostics); --max-in-flight N sets
// every model's max_in_flight_per_endpoint, so requests beyond it wait (on_wait).
#include <vllm_router/vllm_router.h>

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <asio.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vr = vllm_router;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = asio::error_code;

namespace {

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kMaxBody = 32 * 1024 * 1024;
constexpr std::size_t kPauseAbove = 256 * 1024;   // client backlog that pauses the upstream
constexpr std::size_t kIdlePerEndpoint = 8;       // kept-alive upstream sockets per endpoint
constexpr auto kClientIdle = std::chrono::seconds(60);

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string status_line(int status) {
  const char* reason = "";
  switch (status) {
    case 200: reason = "OK"; break;
    case 400: reason = "Bad Request"; break;
    case 401: reason = "Unauthorized"; break;
    case 404: reason = "Not Found"; break;
    case 413: reason = "Content Too Large"; break;
    case 429: reason = "Too Many Requests"; break;
    case 500: reason = "Internal Server Error"; break;
    case 502: reason = "Bad Gateway"; break;
    case 503: reason = "Service Unavailable"; break;
    case 504: reason = "Gateway Timeout"; break;
    default: break;  // the reason phrase is optional in HTTP/1.1
  }
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
}

vr::Error upstream_error(const char* what, const ErrorCode& ec) {
  return vr::Error{vr::Errc::upstream_closed, what + ec.message(), ""};
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

// One upstream connection. Completion handlers hold it (not only the session): a connection the
// exchange released stays alive until its aborted operations complete, and is told apart from
// the current one by identity.
struct Upstream {
  explicit Upstream(asio::io_context& io) : socket(io), resolver(io) {}
  tcp::socket socket;
  tcp::resolver resolver;
  std::string endpoint_id;
  bool connected = false, reading = false, writing = false, released = false;
  std::array<char, 16 * 1024> buf{};
};
using UpstreamPtr = std::shared_ptr<Upstream>;

class Session;

// What sessions share: the router, the keep-alive pool, the sessions waiting for capacity.
class Gateway {
 public:
  Gateway(asio::io_context& io_context, vr::Router& r, const tcp::endpoint& at);
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  UpstreamPtr take_idle(const std::string& endpoint_id);
  void give_idle(UpstreamPtr conn);
  void add_waiting(std::shared_ptr<Session> session);

  asio::io_context& io;
  vr::Router& router;

 private:
  void accept();
  void retry_waiting();
  void stop();

  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  int capacity_listener_ = 0;
  std::map<std::string, std::vector<UpstreamPtr>> idle_;
  std::vector<std::shared_ptr<Session>> waiting_;
  std::vector<std::weak_ptr<Session>> sessions_;  // to close them all on SIGTERM
};

// One client connection and the Exchange of its current request.
class Session final : public vr::ExchangeHost, public std::enable_shared_from_this<Session> {
 public:
  Session(Gateway& gw, tcp::socket socket)
      : gw_(gw), client_(std::move(socket)), timer_(gw.io), exchange_(gw.router, *this) {}
  ~Session() override {
    if (!exchange_.done()) exchange_.cancel(Clock::now());  // while our members are all alive
  }

  void start() {
    ErrorCode ec;
    client_.set_option(tcp::no_delay(true), ec);
    peer_ = client_.remote_endpoint(ec).address().to_string();
    idle_deadline_ = Clock::now() + kClientIdle;
    read_client();
    arm_timer();
  }

  // The client left (or the gateway stops): the exchange is cancelled, which closes the upstream.
  void close() {
    if (closed_) return;
    closed_ = true;
    if (!exchange_.done()) exchange_.cancel(Clock::now());
    release(false);
    ErrorCode ignored;
    client_.close(ignored);
    timer_.cancel();
  }

  bool waiting() const { return !closed_ && exchange_.waiting(); }
  void retry_wait() {
    if (closed_) return;
    exchange_.retry(Clock::now());
    settle();
  }

  // ---------------------------------------------------------------- ExchangeHost: upstream half
  // Every completion handler below is a later event, never an inline call: asio does not run a
  // handler inside the function that started the operation.
  Connect connect(const vr::Endpoint& endpoint, bool fresh, vr::Error&) override {
    if (!fresh) {
      if (auto idle = gw_.take_idle(endpoint.id)) {
        up_ = std::move(idle);
        up_->released = false;
        return Connect::pooled;  // the exchange sends at once; a stale socket is retried fresh
      }
    }
    auto conn = std::make_shared<Upstream>(gw_.io);
    conn->endpoint_id = endpoint.id;
    up_ = conn;
    auto done = [this, self = shared_from_this(), conn](const ErrorCode& ec) { connect_done(conn, ec); };
    ErrorCode not_literal;
    const auto address = asio::ip::make_address(endpoint.url.host, not_literal);
    if (!not_literal) {
      conn->socket.async_connect(tcp::endpoint(address, endpoint.url.port), done);
    } else {  // a host name: resolved off the loop by asio (the connect timeout covers it)
      conn->resolver.async_resolve(endpoint.url.host, std::to_string(endpoint.url.port),
                                   [conn, done](const ErrorCode& ec, const tcp::resolver::results_type& r) {
                                     if (ec || conn->released) return done(ec);  // done() ignores a released one
                                     asio::async_connect(conn->socket, r,
                                                         [done](const ErrorCode& e, const tcp::endpoint&) { done(e); });
                                   });
    }
    return Connect::pending;
  }

  Send send(std::string_view head, std::string_view body, vr::Error&) override {
    // The views stay valid until on_sent (or until the exchange releases this connection).
    UpstreamPtr conn = up_;
    conn->writing = true;
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(head.data(), head.size()),
                                                 asio::buffer(body.data(), body.size())};
    asio::async_write(conn->socket, bufs, [this, self = shared_from_this(), conn](const ErrorCode& ec, std::size_t) {
      conn->writing = false;
      if (conn != up_ || closed_) return;  // released meanwhile: a stale completion
      if (ec) {
        exchange_.on_upstream_error(upstream_error("writing to the upstream failed: ", ec), Clock::now());
      } else {
        exchange_.on_sent(Clock::now());
      }
      settle();
    });
    return Send::pending;
  }

  void release(bool reusable) override {
    UpstreamPtr conn = std::move(up_);
    up_.reset();  // from now on its completions are stale
    if (!conn) return;
    conn->released = true;
    if (reusable && conn->connected && !conn->reading && !conn->writing) return gw_.give_idle(std::move(conn));
    ErrorCode ignored;
    conn->resolver.cancel();
    conn->socket.close(ignored);  // aborts its pending operations
  }

  // ---------------------------------------------------------------- ExchangeHost: client half
  // These only queue bytes and set flags; settle() acts on them once the exchange returned.
  bool on_head(const vr::ResponseHead& head) override {
    std::string text = status_line(head.status);
    for (const vr::HeaderField& h : head.headers) append_header(text, h.name, h.value);
    chunked_ = !head.content_length;
    if (chunked_) {
      text += "Transfer-Encoding: chunked\r\n";
    } else if (*head.content_length != 0 || (head.status != 204 && head.status != 304)) {
      append_header(text, "Content-Length", std::to_string(*head.content_length));
    }
    // The host's own diagnostics (reading the exchange's state is not an event).
    if (const vr::Endpoint* ep = exchange_.endpoint()) append_header(text, "X-Served-By", ep->id);
    append_header(text, "X-Attempts", std::to_string(exchange_.attempts()));
    if (close_after_) text += "Connection: close\r\n";
    put(text + "\r\n");
    return !closed_;
  }

  bool on_body(std::string_view data) override {
    if (closed_) return false;  // the exchange cancels
    if (!chunked_) {
      put(std::string(data));
      return true;
    }
    char size[20];
    const auto r = std::to_chars(size, size + sizeof size, data.size(), 16);
    put(std::string(size, r.ptr).append("\r\n").append(data).append("\r\n"));
    return true;
  }

  void on_end() override {
    if (chunked_) put("0\r\n\r\n");
  }
  void on_abort(const vr::Error&) override { cut_ = true; }  // closed by settle(): a broken message
  void on_error(const vr::Error& error) override { put(error_response(error)); }
  void on_wait() override { gw_.add_waiting(shared_from_this()); }

 private:
  enum class State { reading, exchange, finishing };

  // After every event: act on what the exchange decided (write, cut, next request), apply
  // backpressure, keep the upstream read and the timer going.
  void settle() {
    if (closed_) return;
    if (cut_) return close();
    const auto now = Clock::now();
    if (state_ == State::exchange) {
      if (exchange_.done()) {
        state_ = State::finishing;
        idle_deadline_ = now + kClientIdle;
      } else if (!paused_ && out_bytes_ > kPauseAbove) {
        paused_ = true;  // a slow client slows the upstream instead of growing memory
        exchange_.on_client_paused(now);
      } else if (paused_ && out_bytes_ <= kPauseAbove / 2) {
        paused_ = false;
        exchange_.on_client_resumed(now);
      }
    }
    if (state_ == State::exchange) read_upstream();
    write_client();
    if (state_ == State::finishing && out_.empty()) return next_request();
    arm_timer();
  }

  void read_upstream() {
    const UpstreamPtr conn = up_;
    if (!conn || !conn->connected || conn->reading || paused_) return;
    conn->reading = true;
    auto on_read = [this, self = shared_from_this(), conn](const ErrorCode& ec, std::size_t n) {
      conn->reading = false;
      if (conn != up_ || closed_) return;
      const auto now = Clock::now();
      if (ec == asio::error::eof) {
        exchange_.on_upstream_eof(now);
      } else if (ec) {
        exchange_.on_upstream_error(upstream_error("upstream connection failed: ", ec), now);
      } else {
        exchange_.on_upstream_data(std::string_view(conn->buf.data(), n), now);
      }
      settle();
    };
    conn->socket.async_read_some(asio::buffer(conn->buf), on_read);
  }

  void connect_done(const UpstreamPtr& conn, const ErrorCode& ec) {
    if (conn != up_ || closed_) return;  // timed out or cancelled meanwhile
    if (ec) {
      const std::string why = "cannot connect to " + conn->endpoint_id + ": " + ec.message();
      exchange_.on_connect_failed(vr::Error{vr::Errc::connect_failed, why, ""}, Clock::now());
    } else {
      ErrorCode ignored;
      conn->socket.set_option(tcp::no_delay(true), ignored);
      conn->connected = true;
      exchange_.on_connected(Clock::now());  // the exchange calls send()
    }
    settle();
  }

  // One exchange deadline (or the client's idle limit between requests), re-armed after every
  // event. A generation tells a stale expiry from the current one.
  void arm_timer() {
    const auto when = state_ == State::exchange ? exchange_.deadline() : idle_deadline_;
    if (when == armed_) return;
    armed_ = when;
    const auto generation = ++timer_generation_;
    if (when == Clock::time_point::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(when);
    timer_.async_wait([this, self = shared_from_this(), generation](const ErrorCode& ec) {
      if (ec || closed_ || generation != timer_generation_) return;
      armed_ = Clock::time_point::max();
      if (state_ != State::exchange) return close();  // idle keep-alive client, or one not reading
      exchange_.on_timer(Clock::now());
      settle();
    });
  }

  // Reads the client all the time: requests, pipelined bytes, and its leaving mid-exchange
  // (EOF or reset cancels the exchange at once, which aborts the request on the vLLM side).
  void read_client() {
    client_.async_read_some(asio::buffer(rbuf_), [this, self = shared_from_this()](const ErrorCode& ec, std::size_t n) {
      if (closed_) return;
      if (ec || in_.size() + n > kMaxHead + kMaxBody) return close();
      in_.append(rbuf_.data(), n);
      idle_deadline_ = Clock::now() + kClientIdle;
      read_client();
      if (state_ == State::reading) parse_request();
      settle();
    });
  }

  void write_client() {
    if (writing_ || out_.empty()) return;
    writing_ = true;
    std::vector<asio::const_buffer> bufs;  // everything queued, in order, one write at a time
    for (const std::string& s : out_) bufs.push_back(asio::buffer(s));
    auto on_written = [this, self = shared_from_this(), count = out_.size()](const ErrorCode& ec, std::size_t n) {
      writing_ = false;
      if (closed_) return;
      if (ec) return close();  // the client is gone
      out_bytes_ -= n;
      out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(count));
      idle_deadline_ = Clock::now() + kClientIdle;
      settle();
    };
    asio::async_write(client_, bufs, on_written);
  }

  void put(std::string bytes) {
    out_bytes_ += bytes.size();
    out_.push_back(std::move(bytes));
  }

  std::string error_response(const vr::Error& error) const {
    const int status = vr::http_status(error.code);
    const std::string body = vr::to_openai_json(error);
    std::string text = status_line(status);
    append_header(text, "Content-Type", "application/json");
    append_header(text, "Content-Length", std::to_string(body.size()));
    if (status == 429 || status == 503) append_header(text, "Retry-After", "1");
    if (!request_id_.empty()) append_header(text, "X-Request-Id", request_id_);
    if (close_after_) text += "Connection: close\r\n";
    return text + "\r\n" + body;
  }

  // Waits for a whole request in in_ (head, then Content-Length body bytes), then starts it.
  void parse_request() {
    if (head_len_ == 0) {
      const auto end = in_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (in_.size() > kMaxHead) bad_request("request head too large");
        return;
      }
      head_len_ = end + 4;
      head_.assign(in_, 0, head_len_);
      if (const char* why = parse_head()) return bad_request(why);
    }
    if (in_.size() < head_len_ + body_len_) {
      if (expect_continue_) put("HTTP/1.1 100 Continue\r\n\r\n");
      expect_continue_ = false;
      return;
    }
    body_.assign(in_, head_len_, body_len_);
    body_.reserve(body_len_ + vr::kBodyPadding);  // lets the exchange parse the JSON in place
    in_.erase(0, head_len_ + body_len_);          // what is left is the next request
    if (request_id_.empty()) request_id_ = "asio-" + std::to_string(++request_counter_);

    vr::ClientRequest req;  // views into head_, fields_ and body_: valid until exchange_.reset()
    req.method = method_;
    req.target = target_;
    req.headers = fields_;
    req.body = body_;
    req.body_capacity = body_.capacity();
    req.request_id = request_id_;
    req.client_address = peer_;
    state_ = State::exchange;
    exchange_.start(req, Clock::now());  // may end at once (on_error); settle() acts on it
  }

  // The request line and headers of head_ (views into it); null, or why it is refused.
  const char* parse_head() {
    const std::string_view text(head_);
    const auto line_end = text.find("\r\n");
    const std::string_view line = text.substr(0, line_end);
    const auto sp1 = line.find(' ');
    const auto sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return "malformed request line";
    method_ = line.substr(0, sp1);
    target_ = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (line.substr(sp2 + 1) != "HTTP/1.1") return "this gateway speaks HTTP/1.1 only";
    fields_.clear();
    for (std::size_t pos = line_end + 2;;) {
      const auto eol = text.find("\r\n", pos);
      if (eol == pos) break;  // the empty line that ends the head
      const std::string_view header = text.substr(pos, eol - pos);
      pos = eol + 2;
      const auto colon = header.find(':');
      if (colon == std::string_view::npos || colon == 0) return "malformed header line";
      const std::string_view name = header.substr(0, colon);
      const std::string_view value = trim(header.substr(colon + 1));
      fields_.push_back(vr::HeaderField{name, value});  // the exchange filters what goes upstream
      if (iequals(name, "content-length")) {
        const auto r = std::from_chars(value.data(), value.data() + value.size(), body_len_);
        if (r.ec != std::errc() || r.ptr != value.data() + value.size()) return "invalid Content-Length";
        if (body_len_ > kMaxBody) return "request body too large";
      } else if (iequals(name, "transfer-encoding")) {
        return "only request bodies with a Content-Length are supported";
      } else if (iequals(name, "connection")) {
        close_after_ = close_after_ || iequals(value, "close");
      } else if (iequals(name, "x-request-id") && !value.empty() && value.size() <= 128) {
        request_id_.assign(value);
      } else if (iequals(name, "expect")) {
        expect_continue_ = iequals(value, "100-continue");
      }
    }
    return nullptr;
  }

  void bad_request(const char* why) {
    close_after_ = true;  // the stream cannot be trusted past a malformed request
    put(error_response(vr::Error{vr::Errc::invalid_argument, std::string("malformed HTTP request: ") + why, ""}));
    state_ = State::finishing;
  }

  // The answer is out: forget the exchange, then serve the next request on this connection.
  void next_request() {
    exchange_.reset();  // first: it holds views into the request's buffers
    if (close_after_) return close();
    state_ = State::reading;
    head_len_ = body_len_ = 0;
    request_id_.clear();
    chunked_ = paused_ = expect_continue_ = false;
    idle_deadline_ = Clock::now() + kClientIdle;
    parse_request();  // a pipelined request may be complete already
    settle();
  }

  Gateway& gw_;
  tcp::socket client_;
  asio::steady_timer timer_;
  Clock::time_point armed_ = Clock::time_point::max(), idle_deadline_;
  std::uint64_t timer_generation_ = 0;
  std::string peer_;
  std::array<char, 16 * 1024> rbuf_{};
  std::string in_;  // bytes read from the client and not yet consumed
  State state_ = State::reading;
  std::size_t head_len_ = 0, body_len_ = 0;
  std::string head_, body_, request_id_;
  std::string_view method_, target_;
  std::vector<vr::HeaderField> fields_;
  std::deque<std::string> out_;  // the answer's bytes, in order
  std::size_t out_bytes_ = 0;
  bool writing_ = false, closed_ = false, close_after_ = false, expect_continue_ = false;
  bool chunked_ = false, cut_ = false, paused_ = false;
  UpstreamPtr up_;  // the current attempt's connection
  inline static std::uint64_t request_counter_ = 0;
  vr::Exchange exchange_;  // last: destroyed first, while everything it may call back is alive
};

Gateway::Gateway(asio::io_context& io_context, vr::Router& r, const tcp::endpoint& at)
    : io(io_context), router(r), acceptor_(io_context, at), signals_(io_context, SIGINT, SIGTERM) {
  capacity_listener_ = router.add_capacity_listener([this] { asio::post(io, [this] { retry_waiting(); }); });
  signals_.async_wait([this](const ErrorCode& ec, int) {
    if (!ec) stop();
  });
  accept();
}

void Gateway::accept() {
  acceptor_.async_accept([this](const ErrorCode& ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;  // stopping
    if (!ec) {
      auto session = std::make_shared<Session>(*this, std::move(socket));
      std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
      sessions_.push_back(session);
      session->start();
    }
    accept();
  });
}

UpstreamPtr Gateway::take_idle(const std::string& endpoint_id) {
  auto it = idle_.find(endpoint_id);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  UpstreamPtr conn = std::move(it->second.back());
  it->second.pop_back();
  return conn;
}

void Gateway::give_idle(UpstreamPtr conn) {
  auto& idle = idle_[conn->endpoint_id];
  if (idle.size() < kIdlePerEndpoint) idle.push_back(std::move(conn));  // else closed by its destructor
}

// Capacity frees when a lease ends, on whatever thread ended it: the router's capacity listener
// posts a retry of the waiting exchanges (oldest first) to this loop.
void Gateway::add_waiting(std::shared_ptr<Session> session) { waiting_.push_back(std::move(session)); }

void Gateway::retry_waiting() {
  std::vector<std::shared_ptr<Session>> batch;
  batch.swap(waiting_);
  for (const auto& s : batch) s->retry_wait();
  for (auto& s : batch) {
    if (s->waiting()) add_waiting(std::move(s));
  }
}

// SIGTERM/SIGINT: stop accepting and close every connection; run() returns once the aborted
// operations have completed.
void Gateway::stop() {
  ErrorCode ignored;
  acceptor_.close(ignored);
  router.remove_capacity_listener(capacity_listener_);
  waiting_.clear();
  for (const auto& w : sessions_) {
    if (auto s = w.lock()) s->close();
  }
  sessions_.clear();
  idle_.clear();
}

int usage() {
  std::fprintf(stderr,
               "usage: example_asio_host [--port N] [--max-in-flight N] --model NAME=URL[,URL...] ...\n"
               "  --port 0 picks a free port.\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long port = 8080;
  unsigned long max_in_flight = 0;
  vr::RouterConfig config;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const std::string value = argv[i + 1];
    if (arg == "--port") {
      port = std::strtoul(value.c_str(), nullptr, 10);
    } else if (arg == "--max-in-flight") {  // per endpoint; above it requests wait (on_wait)
      max_in_flight = std::strtoul(value.c_str(), nullptr, 10);
    } else if (arg == "--model" && value.find('=') != std::string::npos) {
      vr::ModelConfig model;
      model.name = value.substr(0, value.find('='));
      for (std::size_t start = value.find('=') + 1; start <= value.size();) {
        const auto comma = std::min(value.find(',', start), value.size());
        model.endpoints.push_back(vr::EndpointConfig{value.substr(start, comma - start), 1, ""});
        start = comma + 1;
      }
      config.models.push_back(std::move(model));
    } else {
      return usage();
    }
  }
  if (argc % 2 == 0 || config.models.empty() || port > 65535) return usage();
  for (vr::ModelConfig& m : config.models) m.max_in_flight_per_endpoint = static_cast<std::uint32_t>(max_in_flight);
  auto created = vr::Router::create(config);
  if (!created) {
    std::fprintf(stderr, "config: %s (%s)\n", created.error().message.c_str(), created.error().param.c_str());
    return 1;
  }
  const std::unique_ptr<vr::Router> router = std::move(created).value();  // outlives every exchange

  try {
    asio::io_context io;
    Gateway gateway(io, *router, tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port)));
    std::printf("asio_host listening on http://127.0.0.1:%u\n", static_cast<unsigned>(gateway.port()));
    std::fflush(stdout);
    io.run();  // one thread: every exchange event and callback happens here
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_host: %s\n", e.what());
    return 1;
  }
  return 0;
}
