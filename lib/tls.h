// Internal: TLS with OpenSSL on non-blocking sockets: contexts (the listener's certificate and
// key; the upstream client's trust store) and one session per socket. No OpenSSL header here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vllm_router/result.h"

struct ssl_st;
struct ssl_ctx_st;

namespace vllm_router::detail {

/// An SSL_CTX. OpenSSL counts its references too: every session keeps its context alive, so a
/// replaced context lives on for the connections that use it. Immutable once built; sessions
/// may be made from it on any thread.
class TlsContext {
 public:
  /// The listener's: the certificate chain and private key from PEM files (checked to match),
  /// TLS 1.2 or later, ALPN http/1.1 (a client offering only other protocols is refused with
  /// the no_application_protocol alert), no renegotiation. Errc::config says what is wrong.
  static Result<std::shared_ptr<const TlsContext>> server(const std::string& cert_file, const std::string& key_file);
  /// Upstream connections: TLS 1.2 or later, ALPN http/1.1, peers verified against `ca_file`
  /// (PEM; empty: the system's store) unless `verify` is false. Errc::config when the CA file
  /// cannot be read.
  static Result<std::shared_ptr<const TlsContext>> client(const std::string& ca_file, bool verify);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* get() const noexcept { return ctx_; }
  bool verifies() const noexcept { return verify_; }

 private:
  TlsContext(ssl_ctx_st* ctx, bool verify) noexcept : ctx_(ctx), verify_(verify) {}
  ssl_ctx_st* ctx_;
  bool verify_;
};

/// What a TLS call on a non-blocking socket did.
enum class TlsIo : std::uint8_t {
  done,        ///< done (read/write: `n` bytes)
  want_read,   ///< call again once the socket is readable
  want_write,  ///< call again once the socket is writable
  eof,         ///< the peer closed (close_notify or a bare TCP close)
  error,       ///< failed for good: error() says why; no more I/O on this session
};

/// One TLS connection over a connected non-blocking socket it does not own (the caller closes
/// the socket after the session). Writes: partial writes are reported as they happen (one
/// record at a time) and a write that returned want_read/want_write must be retried with the
/// same bytes, at the same or another address, and at least as many of them (OpenSSL's
/// ENABLE_PARTIAL_WRITE and ACCEPT_MOVING_WRITE_BUFFER modes). I/O never raises SIGPIPE.
/// Not thread-safe: one thread at a time.
class TlsSession {
 public:
  /// The server side of a freshly accepted socket.
  static std::unique_ptr<TlsSession> accept(const TlsContext& context, int fd);
  /// The client side, for `host` (a name: SNI and certificate name check; an IP literal:
  /// certificate IP check, no SNI). Errc::connect_failed when the session cannot be set up.
  static Result<std::unique_ptr<TlsSession>> connect(const TlsContext& context, int fd, const std::string& host);

  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  /// Advances the handshake; done once it completed.
  TlsIo handshake();
  bool handshake_done() const noexcept;
  /// Decrypted bytes into `buf` (at most one record per call).
  TlsIo read(char* buf, std::size_t size, std::size_t& n);
  TlsIo write(const char* data, std::size_t size, std::size_t& n);
  /// Bytes OpenSSL holds already (decrypted or not): read without waiting for the socket.
  bool has_pending() const noexcept;
  /// POLLIN or POLLOUT: what the last call's want_read/want_write asks for; `events` when the
  /// last call waited for nothing.
  short wait_events(short events) const noexcept;
  /// Sends close_notify once, without waiting (skipped after an error or before the handshake).
  void shutdown() noexcept;
  /// Failed for good: the connection must not be reused.
  bool failed() const noexcept { return failed_; }
  /// Why the last call failed ("certificate verify failed: Hostname mismatch", "tlsv1 alert
  /// protocol version"); empty when nothing failed.
  const std::string& error() const noexcept { return error_; }
  /// The protocol ALPN selected ("http/1.1"), empty when none.
  std::string_view alpn() const noexcept;
  /// "TLSv1.3", "TLSv1.2".
  std::string_view version() const noexcept;

 private:
  explicit TlsSession(ssl_st* ssl) noexcept : ssl_(ssl) {}
  TlsIo result(int rc, bool in_handshake);

  ssl_st* ssl_;
  enum class Want : std::uint8_t { none, read, write };
  Want want_ = Want::none;  // what the last call waits for
  bool failed_ = false;
  bool eof_ = false;
  std::string error_;
};

}  // namespace vllm_router::detail
