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
constexpr std::size_t kBorrowFrom = 4096;            // smaller body pieces are copied

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
  drop_batch();
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
  ClientRequest req;
  req.method = head_.method;
  req.target = head_.target;
  req.headers = head_.headers;  // the parsed views, no copy
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
  LocalRequest req{method, path, head_.target, head_.headers, is_authorized};
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
  // Small pieces (an SSE event) are copied into the batch buffer: one contiguous write. Large
  // ones in the loop's read buffer stay there until this batch is flushed: borrowed.
  const char* scratch = loop_.scratch.data();
  const bool borrow = data.size() >= kBorrowFrom && data.data() >= scratch &&
                      data.data() + data.size() <= scratch + loop_.scratch.size();
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
  if (borrow) {
    put_borrowed(data);
    if (chunked_out_) put_borrowed("\r\n");  // static storage
    return true;
  }
  // The data and the chunk's CRLF join the size line's piece: one contiguous write.
  std::string& batch = claim_batch();
  const std::size_t before = batch.size();
  batch.append(data);
  if (chunked_out_) batch.append("\r\n", 2);
  const std::size_t added = batch.size() - before;
  if (!pieces_.empty() && pieces_.back().borrowed == nullptr && pieces_.back().offset + pieces_.back().size == before) {
    pieces_.back().size += added;
  } else {
    pieces_.push_back(Piece{nullptr, before, added});
  }
  pending_ += added;
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
  std::string& batch = claim_batch();
  if (!pieces_.empty() && pieces_.back().borrowed == nullptr &&
      pieces_.back().offset + pieces_.back().size == batch.size()) {
    pieces_.back().size += data.size();
  } else {
    pieces_.push_back(Piece{nullptr, batch.size(), data.size()});
  }
  batch.append(data);
  pending_ += data.size();
}

void ClientConn::put_borrowed(std::string_view data) {
  if (data.empty()) return;
  // A static piece right after batch bytes is copied into the batch (one contiguous write).
  if (data.size() <= 8 && !pieces_.empty() && pieces_.back().borrowed == nullptr) return put(data);
  pieces_.push_back(Piece{data.data(), 0, data.size()});
  pending_ += data.size();
}

std::string& ClientConn::claim_batch() {
  ClientConn*& owner = loop_.out_batch_owner;
  if (owner != this) {
    // Each batch is flushed before control returns to the loop, so another connection's bytes
    // here mean a nested answer (one event serving two clients): keep them, in its backlog.
    if (owner != nullptr) owner->spill();
    owner = this;
  }
  return loop_.out_batch;
}

void ClientConn::spill() {
  std::string& batch = loop_.out_batch;
  for (const Piece& p : pieces_) backlog_.append(p.borrowed != nullptr ? p.borrowed : batch.data() + p.offset, p.size);
  pieces_.clear();
  batch.clear();
  loop_.out_batch_owner = nullptr;
}

void ClientConn::drop_batch() {
  pieces_.clear();
  if (loop_.out_batch_owner == this) {
    loop_.out_batch.clear();
    loop_.out_batch_owner = nullptr;
  }
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
  std::string& batch = loop_.out_batch;
  bool blocked = false;
  // The common case: nothing left from before, one piece in the batch buffer (a head with its
  // body, an SSE event): one send, and done.
  if (backlog_off_ == backlog_.size() && pieces_.size() == 1 && pieces_[0].borrowed == nullptr) {
    const ssize_t n = ::send(fd_, batch.data() + pieces_[0].offset, pieces_[0].size, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(pieces_[0].size)) {
      pending_ = 0;
      drop_batch();
      if (state_ == State::flush) {
        request_done();
      } else if (state_ == State::exchange) {
        resume_upstream();
      }
      return;
    }
    if (n > 0) {  // partly taken: the general path below carries on
      pending_ -= static_cast<std::size_t>(n);
      pieces_[0].offset += static_cast<std::size_t>(n);
      pieces_[0].size -= static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      blocked = true;
    } else if (n < 0 && errno != EINTR) {
      drop_batch();
      return close();  // the client is gone
    }
  }
  while (pending_ > 0 && !blocked) {
    iovec iov[kMaxIov];
    std::size_t count = 0;
    const std::size_t backlog = backlog_.size() - backlog_off_;
    if (backlog > 0) iov[count++] = {backlog_.data() + backlog_off_, backlog};
    for (std::size_t i = 0; i < pieces_.size() && count < kMaxIov; ++i) {
      const Piece& p = pieces_[i];
      iov[count++] = {const_cast<char*>(p.borrowed != nullptr ? p.borrowed : batch.data() + p.offset), p.size};
    }
    ssize_t n = 0;
    if (count == 1) {
      n = ::send(fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);  // the common case
    } else {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      blocked = true;
      break;
    }
    if (n <= 0) {
      drop_batch();
      return close();  // the client is gone
    }
    auto left = static_cast<std::size_t>(n);
    pending_ -= left;
    const std::size_t from_backlog = std::min(left, backlog);
    backlog_off_ += from_backlog;
    left -= from_backlog;
    if (backlog_off_ == backlog_.size()) {
      backlog_.clear();
      backlog_off_ = 0;
    }
    std::size_t done = 0;
    while (done < pieces_.size() && left >= pieces_[done].size) left -= pieces_[done++].size;
    if (done < pieces_.size() && left > 0) {
      Piece& p = pieces_[done];
      if (p.borrowed != nullptr) {
        p.borrowed += left;
      } else {
        p.offset += left;
      }
      p.size -= left;
    }
    pieces_.erase(pieces_.begin(), pieces_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  if (!pieces_.empty()) {
    // The client is slow: the rest of this batch joins the backlog (borrowed bytes would be
    // overwritten by the next read, the batch buffer by the next connection's batch).
    if (backlog_off_ > 0 && backlog_off_ >= backlog_.size() / 2) {
      backlog_.erase(0, backlog_off_);
      backlog_off_ = 0;
    }
    for (const Piece& p : pieces_) backlog_.append(p.borrowed != nullptr ? p.borrowed : batch.data() + p.offset, p.size);
  }
  drop_batch();
  if (blocked || pending_ > 0) return;
  if (backlog_.capacity() > 64 * 1024) std::string().swap(backlog_);  // a past slow spell
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
