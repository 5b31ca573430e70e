// Internal: a client connection: reading and bounding requests, local answers, keep-alive and
// timeouts. Writing the answer of each request's Exchange is in client_output.cpp.
#include "client_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

#include "../http_util.h"
#include "../router_impl.h"
#include "http_out.h"
#include "local_routes.h"

namespace vllm_router::detail {
namespace {

// Rate-limit windows run on wall-clock time, so router replicas sharing counts agree.
std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

}  // namespace

ClientConn::ClientConn(Loop& loop, int fd) : ExchangeDriver(loop), fd_(fd) {}

ClientConn::~ClientConn() {
  if (fd_ >= 0) ::close(fd_);
}

void ClientConn::refuse(int fd, bool tls) {
  if (tls) {
    ::close(fd);
    return;
  }
  std::string out;
  append_local_response(out, error_response(Error{Errc::overloaded, "the router is at its connection limit; retry later", ""}),
                        {}, /*close=*/true);
  [[maybe_unused]] const auto n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  ::close(fd);
}

void ClientConn::start() {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  peer_ = peer_address(fd_);
  // The handshake, like a request, has client_timeout_ms; it starts with the first readiness
  // event (epoll reports a ClientHello that arrived before the socket was registered).
  if (loop_.shared.tls) {
    if (auto context = loop_.shared.tls_context()) tls_ = TlsSession::accept(*context, fd_);
    if (!tls_) return close();
  }
  client_deadline_ = loop_.now() + std::chrono::milliseconds(loop_.options.client_timeout_ms);
  retime();
}

TimePoint ClientConn::deadline() const {
  if (state_ == State::admit) return TimePoint::max();
  return state_ == State::exchange && !finished_ ? exchange_.deadline() : client_deadline_;
}

void ClientConn::close() {
  if (closed_) return;
  if (exchange_.waiting()) loop_.remove_waiting(*this);
  if (!exchange_.done()) exchange_.cancel(loop_.now());
  end_admission();
  release(false);
  drop_batch();
  if (tls_) {
    tls_->shutdown();  // close_notify, when the session is sound
    tls_.reset();
  }
  ::close(fd_);  // also takes it out of epoll
  fd_ = -1;
  loop_.open.fetch_sub(1, std::memory_order_relaxed);
  loop_.shared.connections.fetch_sub(1, std::memory_order_relaxed);
  close_item();
}

void ClientConn::drain() {
  close_after_ = true;
  if (state_ == State::head && !head_parsed_ && in_.empty()) close();
}

void ClientConn::abort() { close(); }

void ClientConn::on_event(std::uint32_t events) {
  if (tls_) return on_tls_event(events);
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
    read((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
  }
  if (!closed_ && (events & EPOLLOUT) != 0 && pending() > 0) flush();
  if (!closed_) retime();
}

void ClientConn::read(bool peer_closed) {
  char* buf = loop_.scratch.data();
  const std::size_t size = loop_.scratch.size();
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, size, 0);
    if (n > 0) {
      if (!take(std::string_view(buf, static_cast<std::size_t>(n)))) return;
      // A short read emptied the socket: later data raises a new edge, no need to see EAGAIN
      // (unless the peer closed: then the EOF must be read now, no edge will follow).
      if (static_cast<std::size_t>(n) < size && !peer_closed) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return close();  // the client is gone: its exchange is cancelled (vLLM aborts the request)
  }
  if (state_ == State::head || state_ == State::body) process();
}

void ClientConn::process() {
  const ServerOptions& o = loop_.options;
  if (!head_parsed_) {
    std::string error;
    const HeadLimits limits{o.max_head_bytes, o.max_headers};
    const auto r = parse_request_head(in_, head_, error, limits);
    if (r == Parse::incomplete) return;
    started_ = loop_.now();
    if (r == Parse::error) {
      request_id_ = new_request_id();
      const Errc code = error.find("too large") != std::string::npos || error.find("too many") != std::string::npos
                            ? Errc::headers_too_large
                            : Errc::invalid_argument;
      return local(error_response(Error{code, "malformed HTTP request: " + error, ""}), true);
    }
    if (head_.framing == Framing::length && head_.content_length > o.max_body_bytes) {
      if (reject_before_body()) return;  // the key first: a stranger learns no limits
      request_id_ = new_request_id();
      return local(error_response(Error{Errc::body_too_large,
                                        "request body of " + std::to_string(head_.content_length) +
                                            " bytes is larger than the limit of " + std::to_string(o.max_body_bytes),
                                        ""}),
                   true);
    }
    // Room for the whole body plus simdjson's padding, then the views again: the reservation
    // may have moved the buffer.
    const std::size_t need =
        head_.size + (head_.framing == Framing::length ? head_.content_length : 0) + kBodyPadding;
    if (in_.capacity() < need) {
      in_.reserve(need);
      std::string ignored;
      (void)parse_request_head(in_, head_, ignored, limits);
    }
    head_parsed_ = true;
    state_ = State::body;
    if (!head_.keep_alive) close_after_ = true;
    if (head_.framing == Framing::chunked) {
      // Body bytes that came with the head move out: in_ never grows again under the views.
      chunked_raw_.assign(in_, head_.size, std::string::npos);
      in_.resize(head_.size);
    }
  }
  std::size_t end = head_.size;
  if (head_.framing == Framing::length) {
    end = head_.size + static_cast<std::size_t>(head_.content_length);
    if (in_.size() < end) {
      if (reject_before_body()) return;
      if (head_.expect_continue && !continue_sent_) {
        continue_sent_ = true;
        put("HTTP/1.1 100 Continue\r\n\r\n");
        flush();
      }
      return;
    }
    body_ = std::string_view(in_).substr(head_.size, static_cast<std::size_t>(head_.content_length));
    body_capacity_ = in_.capacity() - head_.size;
  } else if (head_.framing == Framing::chunked) {
    if (!body_scanner_.done() && reject_before_body()) return;
    if (head_.expect_continue && !continue_sent_) {
      continue_sent_ = true;
      put("HTTP/1.1 100 Continue\r\n\r\n");
      flush();
      if (closed_) return;
    }
    // The scanner takes every byte until the body ends: chunked_raw_ holds at most one read.
    const std::size_t used = body_scanner_.feed(chunked_raw_, &chunked_body_);
    if (used == std::string::npos) {
      return local(error_response(Error{Errc::invalid_argument, "malformed chunked request body", ""}), true);
    }
    chunked_raw_.erase(0, used);
    // The raw bytes count too: framing (sizes, extensions, trailers) out of proportion to the
    // data it carries is refused before it costs memory.
    if (chunked_body_.size() > o.max_body_bytes ||
        body_scanner_.overhead() > std::max<std::uint64_t>(64 * 1024, chunked_body_.size())) {
      return local(error_response(Error{Errc::body_too_large, "request body is larger than the configured limit", ""}),
                   true);
    }
    if (!body_scanner_.done()) return;
    end = head_.size;
    next_.insert(0, chunked_raw_);  // bytes after the body belong to the next request
    chunked_raw_.clear();
    chunked_body_.reserve(chunked_body_.size() + kBodyPadding);
    body_ = chunked_body_;
    body_capacity_ = chunked_body_.capacity();
  } else {
    body_ = {};
    body_capacity_ = 0;
  }
  // Bytes past this request belong to the next one.
  if (in_.size() > end) {
    next_.insert(0, in_, end, std::string::npos);
    in_.resize(end);
  }
  dispatch();
}

void ClientConn::take_request_id() {
  request_id_.clear();
  for (const auto& h : head_.headers) {
    if (iequals(h.name, "x-request-id") && valid_request_id(h.value)) request_id_.assign(h.value);
  }
  if (request_id_.empty()) request_id_ = new_request_id();
}

bool ClientConn::key_valid() {
  if (key_ != Key::unknown) return key_ == Key::valid;
  request_key_ = nullptr;
  if (!loop_.shared.keys_on.load(std::memory_order_acquire)) {
    key_ = Key::valid;
    return true;
  }
  // The shared table is read again only when it changed (an atomic shared_ptr load per request
  // would bounce its count between the loops).
  if (const std::uint64_t v = loop_.shared.keys_version.load(std::memory_order_acquire); v != keys_version_ || !keys_) {
    keys_version_ = v;
    keys_ = loop_.shared.key_table();
    auth_seen_.clear();
    auth_key_ = nullptr;
    if (keys_ == nullptr) {
      key_ = Key::valid;
      return true;
    }
  }
  std::string_view authorization;
  int count = 0;
  for (const auto& h : head_.headers) {
    if (iequals(h.name, "authorization")) {
      authorization = h.value;
      ++count;
    }
  }
  if (count != 1 || authorization.empty()) {  // two: ambiguous
    key_ = Key::invalid;
    return false;
  }
  if (authorization != auth_seen_) {
    auth_seen_.assign(authorization);
    auth_key_ = keys_->find_bearer(authorization);
  }
  request_key_ = auth_key_;
  if (request_key_ == nullptr) {
    key_ = Key::invalid;
  } else {
    const bool expired =
        request_key_->expires_at != 0 && request_key_->expired(static_cast<std::int64_t>(std::time(nullptr)));
    key_ = expired ? Key::expired : Key::valid;
  }
  return key_ == Key::valid;
}

Error ClientConn::key_error() const {
  if (key_ == Key::expired) return Error{Errc::unauthorized, "API key `" + request_key_->id + "` has expired", ""};
  return Error{Errc::unauthorized, "Missing or invalid API key", ""};
}

bool ClientConn::reject_before_body() {
  if (head_.method != "POST" || key_valid()) return false;
  // Without a valid key nothing of the body is kept, and no 100 Continue invites it. The unread
  // body would be taken for the next request: the connection closes after the answer.
  close_after_ = true;
  take_request_id();
  reject(key_error());
  return true;
}

void ClientConn::dispatch() {
  take_request_id();
  const bool is_authorized = key_valid();
  std::string_view path = head_.target;
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (head_.method == "GET" || head_.method == "HEAD") return answer_local(head_.method, path, is_authorized);
  if (head_.method != "POST") {
    return local(error_response(
        Error{Errc::not_found, "Not Found: " + std::string(head_.method) + " " + std::string(path), ""}));
  }
  if (!is_authorized) return reject(key_error());
  if (request_key_ != nullptr && request_key_->limited()) return admit();
  begin_exchange();
}

void ClientConn::admit() {
  state_ = State::admit;
  const std::shared_ptr<RateLimiter>& limiter = loop_.shared.limiter;
  // Asked for only when the limiter answers later (Redis): the answer comes back through the
  // loop's mailbox, to this connection if it is still waiting, else the place goes back.
  auto later = [this]() -> RateLimiter::Done {
    return [mailbox = loop_.mailbox(), loop = &loop_, slot = slot, generation = generation, keys = keys_,
            key = request_key_, limiter = loop_.shared.limiter](LimitDecision d) {
      mailbox->post([=] {
        auto* conn = static_cast<ClientConn*>(loop->find(slot, generation));
        if (conn != nullptr && conn->state_ == State::admit) return conn->admitted(d);
        if (d.allowed) limiter->finish(*key, 0, wall_clock_ms(), true);
      });
    };
  };
  LimitDecision d;
  if (limiter->admit(*request_key_, wall_clock_ms(), d, later)) admitted(d);
}

void ClientConn::admitted(const LimitDecision& d) {
  if (!d.allowed) {
    const std::string what = d.reason == "tpm" ? "tokens per minute"
                             : d.reason == "rpm" ? "requests per minute"
                                                 : "concurrent requests";
    return reject(Error{Errc::quota_exceeded,
                        "Rate limit reached for API key `" + request_key_->id + "` (" + what + "); retry after " +
                            std::to_string(d.retry_after.count()) + " s",
                        ""},
                  static_cast<std::uint32_t>(d.retry_after.count()));
  }
  admitted_ = true;
  begin_exchange();
  if (!closed_) retime();  // from the mailbox: no event handler re-arms the timer
}

void ClientConn::end_admission() {
  if (!admitted_) return;
  admitted_ = false;
  loop_.shared.limiter->finish(*request_key_, exchange_.usage().total(), wall_clock_ms(), forbidden_);
}

void ClientConn::begin_exchange() {
  ClientRequest req;
  req.method = head_.method;
  req.target = head_.target;
  req.headers = head_.headers;  // the parsed views, no copy
  req.body = body_;
  req.body_capacity = body_capacity_;
  req.request_id = request_id_;
  req.client_address = peer_;
  req.client_stall = std::chrono::milliseconds(loop_.options.client_timeout_ms);
  req.key = request_key_;
  forbidden_ = false;
  state_ = State::exchange;
  finished_ = cut_ = false;
  exchange_.start(req, loop_.now());
  after_upstream_read();
}

void ClientConn::answer_local(std::string_view method, std::string_view path, bool is_authorized) {
  const bool admin = is_authorized && (request_key_ == nullptr || request_key_->admin);
  LocalRequest req{method, path, head_.target, head_.headers, is_authorized, admin, request_key_};
  LocalResponse resp;
  if (!answer_local_route(req, loop_.shared, resp)) {
    resp = error_response(Error{Errc::not_found, "Not Found: " + std::string(method) + " " + std::string(path), ""});
  }
  local(resp, false, method == "HEAD");
}

void ClientConn::reject(const Error& error, std::uint32_t retry_after) {
  ExchangeSummary s;
  s.request_id = request_id_;
  s.client_address = peer_;
  s.path = head_.target.substr(0, head_.target.find('?'));
  s.bytes_in = body_.size();
  s.end = ExchangeEnd::rejected;
  s.status = http_status(error.code);
  s.duration = loop_.now() - started_;
  s.error = error.message;
  if (request_key_ != nullptr) s.key_id = request_key_->id;
  notify_observer(RouterAccess::impl(loop_.router).observer(), [&](Observer& o) { o.on_exchange(s); });
  LocalResponse r = error_response(error);
  r.retry_after = retry_after;
  local(r);
}

void ClientConn::local(const LocalResponse& r, bool close_after, bool head_only) {
  if (close_after) close_after_ = true;
  std::string text;
  append_local_response(text, r, request_id_, close_after_);
  if (head_only) text.resize(text.size() - r.body.size());  // HEAD: the GET's Content-Length, no body
  put(text);
  state_ = State::flush;
  client_deadline_ = loop_.now() + std::chrono::milliseconds(loop_.options.client_timeout_ms);
  flush();
}

void ClientConn::request_done() {
  exchange_.reset();  // its admission ended with it (on_end, on_error, on_abort)
  if (close_after_) return close();
  // Reset for the next request on this keep-alive connection.
  in_.swap(next_);
  next_.clear();
  head_.headers.clear();  // keeps its capacity
  head_.size = 0;
  head_parsed_ = false;
  chunked_body_.clear();
  chunked_raw_.clear();
  key_ = Key::unknown;
  request_key_ = nullptr;
  body_scanner_ = ChunkedScanner{};
  body_ = {};
  continue_sent_ = false;
  request_id_.clear();
  finished_ = cut_ = false;
  state_ = State::head;
  client_deadline_ = loop_.now() + std::chrono::milliseconds(loop_.options.client_timeout_ms);
  if (!in_.empty()) process();
}

void ClientConn::on_timer() {
  switch (state_) {
    case State::head:
    case State::body:
      if (tls_ && !tls_->handshake_done()) {
        loop_.shared.tls_handshake_failed(peer_, "timed out", loop_.now());
        return close();
      }
      if (in_.empty() && !head_parsed_) return close();  // an idle keep-alive connection
      request_id_ = new_request_id();
      return local(error_response(Error{Errc::request_timeout, "timed out reading the request", ""}), true);
    case State::admit:
      return;  // the limiter answers within its own timeout
    case State::exchange:
      if (!finished_) return exchange_timer();
      return close();  // the client stopped reading the end of the answer
    case State::flush:
      return close();  // the client stopped reading
  }
}

}  // namespace vllm_router::detail
