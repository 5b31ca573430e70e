// Internal: a client connection on a loop: HTTP/1.1 requests in (bounded, pipelined,
// keep-alive), local answers, and the client half of each request's Exchange.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../http1.h"
#include "../tls.h"
#include "loop.h"

namespace vllm_router::detail {

class ClientConn final : public ExchangeDriver {
 public:
  ClientConn(Loop& loop, int fd);
  ~ClientConn() override;

  /// Answers 503 on a socket beyond the connection limit and closes it (a TLS listener only
  /// closes it: an answer would need a handshake).
  static void refuse(int fd, bool tls);
  /// Adopted by the loop: timers start (and the TLS handshake, on a TLS listener).
  void start();

  void on_event(std::uint32_t events) override;
  void on_timer() override;
  TimePoint deadline() const override;
  void drain() override;
  void abort() override;

  // ExchangeHost: the client half.
  bool on_head(const vllm_router::ResponseHead& head) override;
  bool on_body(std::string_view data) override;
  void on_end() override;
  void on_abort(const Error& error) override;
  void on_error(const Error& error) override;

 private:
  enum class State : std::uint8_t { head, body, admit, exchange, flush };

  void after_upstream_read() override;
  void read(bool peer_closed);
  bool take(std::string_view data);  // bytes read into the request being read (or the next); false: closed
  void process();
  void dispatch();
  void answer_local(std::string_view method, std::string_view path, bool is_authorized);
  void local(const LocalResponse& r, bool close_after = false, bool head_only = false);
  void reject(const Error& error, std::uint32_t retry_after = 0);  // a POST refused before its exchange (401...)
  bool reject_before_body();        // 401 before any body byte is kept or 100 Continue sent
  bool key_valid();                 // exactly one Authorization header, with a configured key
  Error key_error() const;          // why key_valid() said no
  void admit();                     // the key's limits (rate limiter), then the exchange
  void admitted(const LimitDecision& decision);
  void begin_exchange();
  void end_admission();             // the request's place and tokens back to the limiter
  void take_request_id();
  void flush();
  void request_done();
  void close();
  std::size_t pending() const noexcept { return pending_; }
  // Output. What one batch (one upstream read, one local answer) produces is a list of pieces
  // written with one send: bytes copied into the loop's shared batch buffer, or borrowed views
  // (of the loop's read buffer, or static). Whatever the client cannot take at once moves to
  // this connection's backlog_. A connection that keeps up holds no output memory of its own.
  void put(std::string_view data);          // copied into the loop's batch buffer
  void put_borrowed(std::string_view data); // must stay valid until the end of the batch
  std::string& claim_batch();               // the batch buffer, its bytes of another connection moved out
  void spill();                             // this batch's pieces to backlog_ (still to be flushed)
  void drop_batch();                        // forget this batch (closing)
  // TLS (client_tls.cpp): the same requests and answers through the session; the pieces of a
  // batch are joined for SSL_write, and what it does not take waits in backlog_ like plain bytes.
  void on_tls_event(std::uint32_t events);
  void tls_handshake();
  void read_tls();
  void flush_tls();
  void flushed();  // everything pending went out: next request, or more of the upstream

  int fd_;
  std::unique_ptr<TlsSession> tls_;  // null: plain HTTP
  bool tls_read_wants_write_ = false;
  bool tls_write_wants_read_ = false;
  std::string peer_;
  State state_ = State::head;
  TimePoint client_deadline_;

  // The request being read or served. head_ views point into in_, which is never reallocated
  // while they live (capacity is reserved before the views are taken).
  std::string in_;
  std::string next_;  // bytes of the next (pipelined) request
  RequestHead head_;
  bool head_parsed_ = false;
  std::string chunked_body_;
  std::string chunked_raw_;  // a chunked body's bytes not scanned yet (in_ keeps only the head)
  ChunkedScanner body_scanner_;
  std::string_view body_;
  std::size_t body_capacity_ = 0;
  bool continue_sent_ = false;
  enum class Key : std::uint8_t { unknown, valid, invalid, expired };
  Key key_ = Key::unknown;  // this request's key verdict, worked out once
  const ApiKey* request_key_ = nullptr;  // this request's key (null: none, or no keys)
  bool admitted_ = false;                // holds a place with the rate limiter
  bool forbidden_ = false;               // the exchange refused the key (refund its request)
  // The key table the verdicts came from, and this connection's last Authorization value and
  // its key: a keep-alive client sends the same one each time, hashed once.
  std::shared_ptr<const KeyTable> keys_;
  std::uint64_t keys_version_ = 0;
  std::string auth_seen_;
  const ApiKey* auth_key_ = nullptr;
  bool close_after_ = false;
  std::string request_id_;
  TimePoint started_;

  // The answer.
  struct Piece {
    const char* borrowed;  // null: at `offset` in the loop's batch buffer
    std::size_t offset;
    std::size_t size;
  };
  std::string backlog_;          // bytes the client has not taken yet, from earlier batches
  std::size_t backlog_off_ = 0;  // written prefix of backlog_
  std::vector<Piece> pieces_;    // this batch
  std::size_t pending_ = 0;      // backlog plus batch bytes
  bool chunked_out_ = false;  // the body goes out with chunked framing
  bool finished_ = false;     // the exchange ended (its terminal callback ran)
  bool cut_ = false;          // ...with a broken body: close after what was written
};

// Inline: the plain read loop calls it for every read.
inline bool ClientConn::take(std::string_view data) {
  if (state_ == State::body && head_.framing == Framing::chunked) {
    chunked_raw_.append(data);  // in_ is not appended to: head_ views point into it
  } else if (state_ == State::head || state_ == State::body) {
    in_.append(data);
  } else {
    next_.append(data);  // pipelined while an answer runs
    if (next_.size() > loop_.options.max_body_bytes + loop_.options.max_head_bytes) {
      close();
      return false;
    }
  }
  return true;
}

}  // namespace vllm_router::detail
