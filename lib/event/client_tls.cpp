// Internal: a client connection over TLS: the handshake driven by the loop's readiness events,
// requests read through the session, answers joined and written with SSL_write. The plain path
// (client_conn.cpp, client_output.cpp) only branches here when the listener terminates TLS.
#include <sys/epoll.h>

#include "client_conn.h"

namespace vllm_router::detail {

void ClientConn::on_tls_event(std::uint32_t events) {
  if (!tls_->handshake_done()) {
    tls_handshake();
  } else {
    // Edge-triggered: every readable edge is read until the session wants the socket again; a
    // read or write that waits for the other direction is retried on that direction's edge.
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 ||
        (tls_read_wants_write_ && (events & EPOLLOUT) != 0)) {
      read_tls();
    }
    if (!closed_ && pending() > 0 &&
        ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0 || (tls_write_wants_read_ && (events & EPOLLIN) != 0))) {
      flush();
    }
  }
  if (!closed_) retime();
}

void ClientConn::tls_handshake() {
  switch (tls_->handshake()) {
    case TlsIo::done:
      // The request may have come with the client's last handshake flight.
      return read_tls();
    case TlsIo::want_read:
    case TlsIo::want_write:
      return;  // the next edge goes on
    case TlsIo::eof:
      return close();  // gone before it finished (a port check): not counted
    case TlsIo::error:
      loop_.shared.tls_handshake_failed(peer_, tls_->error(), loop_.now());
      return close();
  }
}

void ClientConn::read_tls() {
  // Until the session wants the socket: whatever OpenSSL holds (read ahead, decrypted) raises no
  // edge of its own. Each read is one record at most.
  char* buf = loop_.scratch.data();
  const std::size_t size = loop_.scratch.size();
  tls_read_wants_write_ = false;
  for (;;) {
    std::size_t n = 0;
    const TlsIo io = tls_->read(buf, size, n);
    if (io == TlsIo::done) {
      if (!take(std::string_view(buf, n))) return;
      continue;
    }
    if (io == TlsIo::want_read) break;
    if (io == TlsIo::want_write) {
      tls_read_wants_write_ = true;
      break;
    }
    return close();  // the client is gone (or broke the session): its exchange is cancelled
  }
  if (state_ == State::head || state_ == State::body) process();
}

void ClientConn::flush_tls() {
  // One contiguous run for SSL_write: the backlog with this batch appended (a slow client), the
  // one batch piece as it is (the common case), or the pieces joined in the loop's buffer. A
  // write that must wait is retried from the backlog: the same bytes first, and at least as
  // many (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the new address).
  std::string& batch = loop_.out_batch;
  const bool from_backlog = backlog_off_ < backlog_.size();
  const char* data = nullptr;
  std::size_t size = 0;
  if (from_backlog) {
    if (backlog_off_ > 0 && backlog_off_ >= backlog_.size() / 2) {
      backlog_.erase(0, backlog_off_);
      backlog_off_ = 0;
    }
    for (const Piece& p : pieces_) backlog_.append(p.borrowed != nullptr ? p.borrowed : batch.data() + p.offset, p.size);
    drop_batch();
    data = backlog_.data() + backlog_off_;
    size = backlog_.size() - backlog_off_;
  } else if (pieces_.size() == 1 && pieces_[0].borrowed == nullptr) {
    data = batch.data() + pieces_[0].offset;
    size = pieces_[0].size;
  } else {
    std::string& joined = loop_.tls_out;
    joined.clear();
    for (const Piece& p : pieces_) joined.append(p.borrowed != nullptr ? p.borrowed : batch.data() + p.offset, p.size);
    data = joined.data();
    size = joined.size();
  }
  std::size_t written = 0;
  TlsIo io = TlsIo::done;
  while (written < size) {
    std::size_t n = 0;
    io = tls_->write(data + written, size - written, n);
    if (io != TlsIo::done) break;
    written += n;
  }
  pending_ -= written;
  if (from_backlog) {
    backlog_off_ += written;
    if (backlog_off_ == backlog_.size()) {
      backlog_.clear();
      backlog_off_ = 0;
    }
  } else {
    if (written < size) backlog_.append(data + written, size - written);  // before the buffers are reused
    drop_batch();
  }
  tls_write_wants_read_ = io == TlsIo::want_read;
  if (io == TlsIo::eof || io == TlsIo::error) return close();  // the client is gone
  if (written < size) return;  // the socket is full: EPOLLOUT goes on
  if (backlog_.capacity() > 64 * 1024) std::string().swap(backlog_);  // a past slow spell
  flushed();
}

}  // namespace vllm_router::detail
