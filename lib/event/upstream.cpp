// Internal: the upstream half of an exchange on a loop: pooled or fresh non-blocking sockets,
// the gathered write of head and body, reads into the loop's buffer, backpressure.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../net.h"
#include "../router_impl.h"
#include "loop.h"

namespace vllm_router::detail {

ExchangeDriver::ExchangeDriver(Loop& loop) : LoopItem(loop), exchange_(loop.router, *this) {}

ExchangeDriver::~ExchangeDriver() {
  if (!exchange_.done()) exchange_.cancel(loop_.now());
  if (fd_ >= 0) loop_.close_upstream(fd_);
}

ExchangeHost::Connect ExchangeDriver::connect(const Endpoint& endpoint, bool fresh, Error& error) {
  endpoint_ = &endpoint;
  connecting_ = writing_ = paused_ = peer_closed_ = resolving_ = false;
  handshaking_ = tls_read_wants_write_ = tls_write_wants_read_ = false;
  tls_ = nullptr;
  if (!fresh) {
    fd_ = loop_.take_idle(endpoint.id);
    if (fd_ >= 0) {
      loop_.own_upstream(fd_, this, /*register_now=*/false);  // pooled sockets stay registered
      if (uses_tls(endpoint.url)) tls_ = loop_.upstream_tls(fd_);  // an https one with its session
      return Connect::pooled;
    }
  }
  address_ = 0;
  addresses_.reset();
  if (auto literal = parse_ip_literal(endpoint.url.host, endpoint.url.port)) {
    addresses_ = std::make_shared<const AddressList>(std::move(*literal));
  } else {
    // Never resolve on the loop: the resolver answers from its cache at once, or later on its
    // own thread, and the answer comes back through the loop's mailbox.
    const std::uint64_t lookup = ++lookup_;
    auto hit = RouterAccess::impl(loop_.router)
                   .resolver()
                   .lookup(endpoint.url.host, endpoint.url.port,
                           [mailbox = loop_.mailbox(), loop = &loop_, slot = slot, generation = generation,
                            lookup](Resolver::Answer answer) {
                             mailbox->post([loop, slot, generation, lookup, answer = std::move(answer)]() mutable {
                               if (auto* driver = static_cast<ExchangeDriver*>(loop->find(slot, generation))) {
                                 driver->on_resolved(lookup, std::move(answer));
                               }
                             });
                           });
    if (!hit) {
      resolving_ = true;
      return Connect::pending;  // the connect timeout covers the lookup
    }
    if (!*hit) {
      error = connect_error(hit->error().message);
      return Connect::failed;
    }
    addresses_ = std::move(*hit).value();
  }
  std::string why;
  if (!connect_next(why)) {
    error = connect_error(why);
    return Connect::failed;
  }
  return Connect::pending;  // EPOLLOUT tells when it connected
}

Error ExchangeDriver::connect_error(std::string_view why) const {
  return Error{Errc::connect_failed, "cannot connect to " + endpoint_->id + ": " + std::string(why), ""};
}

bool ExchangeDriver::connect_next(std::string& why) {
  if (why.empty()) why = "no address";
  for (; addresses_ && address_ < addresses_->addresses.size(); ++address_) {
    fd_ = connect_address(addresses_->addresses[address_], why);
    if (fd_ >= 0) {
      connecting_ = true;
      loop_.own_upstream(fd_, this, /*register_now=*/true);
      return true;
    }
  }
  return false;
}

void ExchangeDriver::on_resolved(std::uint64_t lookup, Result<std::shared_ptr<const AddressList>> answer) {
  if (!resolving_ || lookup != lookup_) return;  // abandoned (timed out, cancelled, released)
  resolving_ = false;
  const TimePoint now = loop_.now();
  std::string why;
  if (!answer) {
    why = answer.error().message;
  } else {
    addresses_ = std::move(answer).value();
    address_ = 0;
    if (connect_next(why)) return;
  }
  exchange_.on_connect_failed(connect_error(why), now);
  after_upstream_read();
}

ExchangeHost::Send ExchangeDriver::send(std::string_view head, std::string_view body, Error& error) {
  head_ = head;
  body_ = body;
  written_ = 0;
  writing_ = true;
  return write_upstream(error);
}

ExchangeHost::Send ExchangeDriver::write_upstream(Error& error) {
  if (tls_ != nullptr) return write_upstream_tls(error);
  const std::size_t total = head_.size() + body_.size();
  while (written_ < total) {
    iovec iov[2];
    int count = 0;
    if (written_ < head_.size()) {
      iov[count++] = {const_cast<char*>(head_.data()) + written_, head_.size() - written_};
      if (!body_.empty()) iov[count++] = {const_cast<char*>(body_.data()), body_.size()};
    } else {
      const std::size_t off = written_ - head_.size();
      iov[count++] = {const_cast<char*>(body_.data()) + off, body_.size() - off};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n > 0) {
      written_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Send::pending;
    writing_ = false;
    error = Error{Errc::upstream_closed, std::string("writing to upstream failed: ") + std::strerror(errno), ""};
    return Send::failed;
  }
  // Sent. EPOLLOUT stays registered (edge-triggered: it fires only when a full socket drains)
  // and is ignored from now on; the answer arrives as an EPOLLIN edge.
  writing_ = false;
  return Send::done;
}

void ExchangeDriver::release(bool reusable) {
  resolving_ = false;  // an answer still on its way is ignored
  if (fd_ < 0) return;
  const bool tls_sound = tls_ == nullptr || (!handshaking_ && !tls_->failed());
  if (reusable && !peer_closed_ && endpoint_ != nullptr && tls_sound) {
    loop_.give_idle(endpoint_->id, fd_);  // an https socket keeps its session in the table
  } else {
    loop_.close_upstream(fd_);
  }
  fd_ = -1;
  tls_ = nullptr;
  connecting_ = writing_ = paused_ = peer_closed_ = false;
  handshaking_ = tls_read_wants_write_ = tls_write_wants_read_ = false;
}

void ExchangeDriver::on_wait() { loop_.add_waiting(*this); }

bool ExchangeDriver::retry_wait() {
  exchange_.retry(loop_.now());
  after_upstream_read();
  return !exchange_.waiting();
}

void ExchangeDriver::exchange_timer() {
  exchange_.on_timer(loop_.now());
  after_upstream_read();
}

void ExchangeDriver::on_upstream_event(std::uint32_t events) {
  const TimePoint now = loop_.now();
  if (connecting_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      loop_.close_upstream(fd_);
      fd_ = -1;
      connecting_ = false;
      std::string why = std::strerror(err);
      ++address_;  // the name has another address: try it first
      if (connect_next(why)) return;
      exchange_.on_connect_failed(connect_error(std::strerror(err)), now);
      return after_upstream_read();
    }
    connecting_ = false;
    addresses_.reset();  // connected: the other addresses are not needed (memory per stream)
    if (uses_tls(endpoint_->url)) return start_tls(now);
    exchange_.on_connected(now);  // sends at once
    after_upstream_read();
    if (closed() || fd_ < 0) return;
  } else if (handshaking_) {
    return continue_tls(now);
  } else if (writing_ && ((events & EPOLLOUT) != 0 || (tls_write_wants_read_ && (events & EPOLLIN) != 0))) {
    Error error;
    switch (write_upstream(error)) {
      case Send::pending: break;
      case Send::done:
        exchange_.on_sent(now);
        after_upstream_read();
        break;
      case Send::failed:
        exchange_.on_upstream_error(error, now);
        return after_upstream_read();
    }
  }
  if (closed() || fd_ < 0) return;
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) peer_closed_ = true;
  if (((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 || (tls_read_wants_write_ && (events & EPOLLOUT) != 0)) &&
      !paused_) {
    read_upstream();
  }
}

void ExchangeDriver::read_upstream() {
  if (tls_ != nullptr) return read_upstream_tls();
  char* buf = loop_.scratch.data();
  const std::size_t size = loop_.scratch.size();
  while (fd_ >= 0 && !closed() && !paused_) {
    const ssize_t n = ::recv(fd_, buf, size, 0);
    const TimePoint now = loop_.now();
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      exchange_.on_upstream_error(
          Error{Errc::upstream_closed, std::string("upstream connection failed: ") + std::strerror(errno), ""}, now);
      return after_upstream_read();
    }
    if (n == 0) {
      exchange_.on_upstream_eof(now);
      return after_upstream_read();
    }
    exchange_.on_upstream_data(std::string_view(buf, static_cast<std::size_t>(n)), now);
    after_upstream_read();
    // A short read emptied the socket: later data raises a new edge (unless the peer closed:
    // then the EOF must be read now, no edge will follow).
    if (static_cast<std::size_t>(n) < size && !peer_closed_) return;
  }
}

void ExchangeDriver::pause_upstream() {
  if (paused_ || fd_ < 0) return;
  paused_ = true;
  exchange_.on_client_paused(loop_.now());
}

void ExchangeDriver::resume_upstream() {
  if (!paused_) return;
  paused_ = false;
  exchange_.on_client_resumed(loop_.now());
  read_upstream();  // edge-triggered: drain what arrived while paused
}

}  // namespace vllm_router::detail

// ---------------------------------------------------------------------------------------------
// https: the session on the socket, kept with it in the pool

namespace vllm_router::detail {

void ExchangeDriver::start_tls(TimePoint now) {
  auto context = RouterAccess::impl(loop_.router).upstream_tls();
  if (!context) return tls_connect_failed(context.error().message, now);
  auto session = TlsSession::connect(**context, fd_, endpoint_->url.host);
  if (!session) return tls_connect_failed(session.error().message, now);
  tls_ = loop_.set_upstream_tls(fd_, std::move(session).value());
  handshaking_ = true;
  continue_tls(now);  // the ClientHello goes out now
}

void ExchangeDriver::continue_tls(TimePoint now) {
  switch (tls_->handshake()) {
    case TlsIo::done:
      handshaking_ = false;
      exchange_.on_connected(now);  // sends at once; the connect timeout covered the handshake
      return after_upstream_read();
    case TlsIo::want_read:
    case TlsIo::want_write:
      return;
    case TlsIo::eof:
    case TlsIo::error:
      return tls_connect_failed("TLS handshake failed: " + tls_->error(), now);
  }
}

void ExchangeDriver::tls_connect_failed(std::string_view why, TimePoint now) {
  // Nothing was sent: a connect failure like a refused one (another endpoint may be tried).
  loop_.close_upstream(fd_);
  fd_ = -1;
  tls_ = nullptr;
  handshaking_ = false;
  exchange_.on_connect_failed(connect_error(why), now);
  after_upstream_read();
}

ExchangeHost::Send ExchangeDriver::write_upstream_tls(Error& error) {
  // A head with a small body goes out as one record (joined in the loop's buffer); a large body
  // after the head, from the caller's buffer. A write that must wait is retried with the same
  // bytes: written_ moves only when a write is done.
  constexpr std::size_t kJoinUpTo = 16 * 1024;
  const std::size_t total = head_.size() + body_.size();
  tls_write_wants_read_ = false;
  while (written_ < total) {
    std::string_view rest;
    if (written_ < head_.size() && total <= kJoinUpTo) {
      std::string& joined = loop_.tls_out;
      joined.assign(head_.substr(written_));
      joined.append(body_);
      rest = joined;
    } else if (written_ < head_.size()) {
      rest = head_.substr(written_);
    } else {
      rest = body_.substr(written_ - head_.size());
    }
    std::size_t n = 0;
    const TlsIo io = tls_->write(rest.data(), rest.size(), n);
    if (io == TlsIo::done) {
      written_ += n;
      continue;
    }
    if (io == TlsIo::want_read || io == TlsIo::want_write) {
      tls_write_wants_read_ = io == TlsIo::want_read;
      return Send::pending;
    }
    writing_ = false;
    error = Error{Errc::upstream_closed,
                  "writing to upstream failed: " + (tls_->error().empty() ? std::string("closed") : tls_->error()), ""};
    return Send::failed;
  }
  writing_ = false;
  return Send::done;
}

void ExchangeDriver::read_upstream_tls() {
  // Until the session wants the socket (records OpenSSL already holds raise no edge), one record
  // per read, each through the exchange before the next.
  char* buf = loop_.scratch.data();
  const std::size_t size = loop_.scratch.size();
  tls_read_wants_write_ = false;
  while (fd_ >= 0 && !closed() && !paused_) {
    std::size_t n = 0;
    const TlsIo io = tls_->read(buf, size, n);
    const TimePoint now = loop_.now();
    switch (io) {
      case TlsIo::done:
        exchange_.on_upstream_data(std::string_view(buf, n), now);
        after_upstream_read();
        continue;
      case TlsIo::want_read:
        return;
      case TlsIo::want_write:
        tls_read_wants_write_ = true;
        return;
      case TlsIo::eof:
        exchange_.on_upstream_eof(now);
        return after_upstream_read();
      case TlsIo::error:
        exchange_.on_upstream_error(Error{Errc::upstream_closed, "upstream connection failed: " + tls_->error(), ""}, now);
        return after_upstream_read();
    }
  }
}

}  // namespace vllm_router::detail
