// Internal: the client half of an Exchange: the answer's head and body framed for the client
// (chunked or not), written with one send per batch, backpressure on the upstream.
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

#include "../http_util.h"
#include "client_conn.h"
#include "http_out.h"
#include "local_routes.h"

namespace vllm_router::detail {
namespace {

constexpr std::size_t kMaxPendingOut = 256 * 1024;  // pause the upstream above this backlog
constexpr std::size_t kBorrowFrom = 4096;            // smaller body pieces are copied

}  // namespace

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
  // Small pieces (an SSE event) are copied into the batch buffer with their chunk framing: one
  // contiguous write. Large ones in the loop's read buffer stay there until this batch is
  // flushed: borrowed.
  const char* scratch = loop_.scratch.data();
  const bool borrow = data.size() >= kBorrowFrom && data.data() >= scratch &&
                      data.data() + data.size() <= scratch + loop_.scratch.size();
  char line[20];
  char* const line_end = line + sizeof line;
  char* p = line_end;
  if (chunked_out_) {
    *--p = '\n';
    *--p = '\r';
    std::size_t n = data.size();
    do {
      *--p = "0123456789abcdef"[n & 15];
      n >>= 4;
    } while (n != 0);
  }
  const std::string_view size_line(p, static_cast<std::size_t>(line_end - p));
  if (borrow) {
    put(size_line);
    put_borrowed(data);
    if (chunked_out_) put_borrowed("\r\n");  // static storage
    return true;
  }
  std::string& batch = claim_batch();
  const std::size_t before = batch.size();
  const std::size_t added = size_line.size() + data.size() + (chunked_out_ ? 2 : 0);
  batch.append(size_line);
  batch.append(data);
  if (chunked_out_) batch.append("\r\n", 2);
  if (!pieces_.empty() && pieces_.back().borrowed == nullptr && pieces_.back().offset + pieces_.back().size == before) {
    pieces_.back().size += added;
  } else {
    pieces_.push_back(Piece{nullptr, before, added});
  }
  pending_ += added;
  return true;
}

// The three ends of an exchange. Each gives the request's place and tokens back to the limiter
// (its usage is final here) before the answer's last bytes go out: a client that has the whole
// answer may send its next request at once, on another connection and another loop.
void ClientConn::on_end() {
  end_admission();
  if (chunked_out_) put_borrowed("0\r\n\r\n");  // static storage
  finished_ = true;
}

void ClientConn::on_abort(const Error&) {
  end_admission();
  finished_ = true;
  cut_ = true;  // the client must not mistake a truncated body for a complete one
}

void ClientConn::on_error(const Error& error) {
  forbidden_ = error.code == Errc::forbidden;
  end_admission();
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
  if (tls_) return flush_tls();
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
      return flushed();
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
  flushed();
}

void ClientConn::flushed() {
  if (state_ == State::flush) {
    request_done();
  } else if (state_ == State::exchange) {
    resume_upstream();
  }
}

}  // namespace vllm_router::detail
