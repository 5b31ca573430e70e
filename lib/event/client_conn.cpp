// Internal: a client connection: reading and bounding requests, local answers, and writing the
// answer of each request's Exchange (head and body in one write when they arrive together).
#include "client_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "../http_util.h"
#include "../router_impl.h"
#include "http_out.h"
#include "local_routes.h"

namespace vllm_router::detail {
namespace {

constexpr std::size_t kMaxPendingOut = 256 * 1024;  // pause the upstream above this backlog

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

void ClientConn::refuse(int fd) {
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
  client_deadline_ = loop_.now() + std::chrono::milliseconds(loop_.options.client_timeout_ms);
  retime();
}

TimePoint ClientConn::deadline() const {
  return state_ == State::exchange && !finished_ ? exchange_.deadline() : client_deadline_;
}

void ClientConn::close() {
  if (closed_) return;
  if (exchange_.waiting()) loop_.remove_waiting(*this);
  if (!exchange_.done()) exchange_.cancel(loop_.now());
  release(false);
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
      const std::string_view data(buf, static_cast<std::size_t>(n));
      if (state_ == State::head || state_ == State::body) {
        in_.append(data);
      } else {
        next_.append(data);  // pipelined while an answer runs
        if (next_.size() > loop_.options.max_body_bytes + loop_.options.max_head_bytes) return close();
      }
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
  }
  std::size_t end = head_.size;
  if (head_.framing == Framing::length) {
    end = head_.size + static_cast<std::size_t>(head_.content_length);
    if (in_.size() < end) {
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
    if (head_.expect_continue && !continue_sent_) {
      continue_sent_ = true;
      put("HTTP/1.1 100 Continue\r\n\r\n");
      flush();
      if (closed_) return;
    }
    const std::string_view fresh = std::string_view(in_).substr(head_.size + chunked_seen_);
    const std::size_t used = body_scanner_.feed(fresh, &chunked_body_);
    if (used == std::string::npos) {
      return local(error_response(Error{Errc::invalid_argument, "malformed chunked request body", ""}), true);
    }
    chunked_seen_ += used;
    // The raw bytes count too: framing (sizes, extensions, trailers) out of proportion to the
    // data it carries is refused before it costs memory.
    if (chunked_body_.size() > o.max_body_bytes ||
        body_scanner_.overhead() > std::max<std::uint64_t>(64 * 1024, chunked_body_.size())) {
      return local(error_response(Error{Errc::body_too_large, "request body is larger than the configured limit", ""}),
                   true);
    }
    if (!body_scanner_.done()) return;
    end = head_.size + chunked_seen_;
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

void ClientConn::dispatch() {
  request_id_.clear();
  std::string_view authorization;
  for (const auto& h : head_.headers) {
    if (iequals(h.name, "x-request-id")) {
      if (valid_request_id(h.value)) request_id_.assign(h.value);
    } else if (iequals(h.name, "authorization")) {
      authorization = h.value;
    }
  }
  if (request_id_.empty()) request_id_ = new_request_id();
  const bool is_authorized = authorized(loop_.options.api_keys, authorization);
  std::string_view path = head_.target;
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (head_.method == "GET" || head_.method == "HEAD") return answer_local(head_.method, path, is_authorized);
  if (head_.method != "POST") {
    return local(error_response(
        Error{Errc::not_found, "Not Found: " + std::string(head_.method) + " " + std::string(path), ""}));
  }
  if (!is_authorized) return reject(Error{Errc::unauthorized, "Missing or invalid API key", ""});
  fields_.clear();
  for (const auto& h : head_.headers) fields_.push_back(HeaderField{h.name, h.value});
  ClientRequest req;
  req.method = head_.method;
  req.target = head_.target;
  req.headers = fields_;
  req.body = body_;
  req.body_capacity = body_capacity_;
  req.request_id = request_id_;
  req.client_address = peer_;
  req.client_stall = std::chrono::milliseconds(loop_.options.client_timeout_ms);
  state_ = State::exchange;
  finished_ = cut_ = false;
  exchange_.start(req, loop_.now());
  after_upstream_read();
}

void ClientConn::answer_local(std::string_view method, std::string_view path, bool is_authorized) {
  fields_.clear();
  for (const auto& h : head_.headers) fields_.push_back(HeaderField{h.name, h.value});
  LocalRequest req{method, path, head_.target, fields_, is_authorized};
  LocalResponse resp;
  if (!answer_local_route(req, loop_.shared, resp)) {
    resp = error_response(Error{Errc::not_found, "Not Found: " + std::string(method) + " " + std::string(path), ""});
  }
  local(resp, false, method == "HEAD");
}

void ClientConn::reject(const Error& error) {
  ExchangeSummary s;
  s.request_id = request_id_;
  s.end = ExchangeEnd::rejected;
  s.status = http_status(error.code);
  s.duration = loop_.now() - started_;
  s.error = error.message;
  notify_observer(RouterAccess::impl(loop_.router).observer(), [&](Observer& o) { o.on_exchange(s); });
  local(error_response(error));
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

// ---------------------------------------------------------------------------------------------
// The client half of the exchange

bool ClientConn::on_head(const vllm_router::ResponseHead& head) {
  std::string text;
  text.reserve(256);
  append_status_line(text, head.status);
  for (const HeaderField& h : head.headers) append_header(text, h.name, h.value);
  chunked_out_ = false;
  if (head.content_length) {
    if (*head.content_length != 0 || (head.status != 204 && head.status != 304)) {
      append_header(text, "Content-Length", std::to_string(*head.content_length));
    }
  } else if (head_.http10) {
    close_after_ = true;  // an HTTP/1.0 client cannot read chunked framing: the close ends the body
  } else {
    text.append("Transfer-Encoding: chunked\r\n");
    chunked_out_ = true;
  }
  if (close_after_) text.append("Connection: close\r\n");
  text.append("\r\n");
  put(text);
  return true;
}

bool ClientConn::on_body(std::string_view data) {
  if (closed_) return false;
  // Bytes in the loop's read buffer stay there until this batch is flushed: borrow them.
  const char* scratch = loop_.scratch.data();
  const bool in_scratch = data.data() >= scratch && data.data() + data.size() <= scratch + loop_.scratch.size();
  if (chunked_out_) {
    char line[20];
    char* end = line + sizeof line;
    char* p = end;
    *--p = '\n';
    *--p = '\r';
    std::size_t n = data.size();
    do {
      *--p = "0123456789abcdef"[n & 15];
      n >>= 4;
    } while (n != 0);
    put(std::string_view(p, static_cast<std::size_t>(end - p)));
  }
  if (in_scratch) {
    put_borrowed(data);
  } else {
    put(data);
  }
  if (chunked_out_) put_borrowed("\r\n");  // static storage
  return true;
}

void ClientConn::on_end() {
  if (chunked_out_) put_borrowed("0\r\n\r\n");  // static storage
  finished_ = true;
}

void ClientConn::on_abort(const Error&) {
  finished_ = true;
  cut_ = true;  // the client must not mistake a truncated body for a complete one
}

void ClientConn::on_error(const Error& error) {
  std::string text;
  append_local_response(text, error_response(error), request_id_, close_after_);
  put(text);
  finished_ = true;
}

void ClientConn::put(std::string_view data) {
  if (data.empty()) return;
  if (!pieces_.empty() && pieces_.back().borrowed == nullptr &&
      pieces_.back().offset + pieces_.back().size == out_.size()) {
    pieces_.back().size += data.size();
  } else {
    pieces_.push_back(Piece{nullptr, out_.size(), data.size()});
  }
  out_.append(data);
  pending_ += data.size();
}

void ClientConn::put_borrowed(std::string_view data) {
  if (data.empty()) return;
  pieces_.push_back(Piece{data.data(), 0, data.size()});
  pending_ += data.size();
}

void ClientConn::after_upstream_read() {
  if (closed_) return;
  if (pending() > 0) flush();
  if (closed_) return;
  if (finished_ && state_ == State::exchange) {
    if (cut_) return close();
    state_ = State::flush;
    client_deadline_ = loop_.now() + std::chrono::milliseconds(loop_.options.client_timeout_ms);
    if (pending() == 0) request_done();
    if (!closed_) retime();
    return;
  }
  if (state_ == State::exchange && pending() > kMaxPendingOut) pause_upstream();
  if (!closed_) retime();
}

void ClientConn::flush() {
  constexpr std::size_t kMaxIov = 64;
  while (!pieces_.empty()) {
    iovec iov[kMaxIov];
    std::size_t count = 0;
    for (; count < pieces_.size() && count < kMaxIov; ++count) {
      const Piece& p = pieces_[count];
      iov[count].iov_base = const_cast<char*>(p.borrowed != nullptr ? p.borrowed : out_.data() + p.offset);
      iov[count].iov_len = p.size;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) return close();  // the client is gone
    auto left = static_cast<std::size_t>(n);
    pending_ -= left;
    std::size_t done = 0;
    while (done < pieces_.size() && left >= pieces_[done].size) left -= pieces_[done++].size;
    if (done < pieces_.size()) {
      Piece& p = pieces_[done];
      if (p.borrowed != nullptr) p.borrowed += left; else p.offset += left;
      p.size -= left;
    }
    pieces_.erase(pieces_.begin(), pieces_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  if (!pieces_.empty()) {
    // The client is slow: keep what is left in owned memory (borrowed bytes would be
    // overwritten by the next read).
    bool borrowed = false;
    for (const Piece& p : pieces_) borrowed = borrowed || p.borrowed != nullptr;
    if (borrowed || pieces_.front().offset > 0) {
      std::string rest;
      rest.reserve(pending_);
      for (const Piece& p : pieces_) rest.append(p.borrowed != nullptr ? p.borrowed : out_.data() + p.offset, p.size);
      out_.swap(rest);
      pieces_.assign(1, Piece{nullptr, 0, out_.size()});
    }
    return;
  }
  out_.clear();
  if (state_ == State::flush) {
    request_done();
  } else if (state_ == State::exchange) {
    resume_upstream();
  }
}

void ClientConn::request_done() {
  exchange_.reset();
  if (close_after_) return close();
  // Reset for the next request on this keep-alive connection.
  in_.swap(next_);
  next_.clear();
  head_.headers.clear();  // keeps its capacity
  head_.size = 0;
  head_parsed_ = false;
  chunked_body_.clear();
  body_scanner_ = ChunkedScanner{};
  chunked_seen_ = 0;
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
      if (in_.empty() && !head_parsed_) return close();  // an idle keep-alive connection
      request_id_ = new_request_id();
      return local(error_response(Error{Errc::request_timeout, "timed out reading the request", ""}), true);
    case State::exchange:
      if (!finished_) return exchange_timer();
      return close();  // the client stopped reading the end of the answer
    case State::flush:
      return close();  // the client stopped reading
  }
}

}  // namespace vllm_router::detail
