// Internal: OpenSSL contexts and sessions on non-blocking sockets (a socket BIO of our own, so
// writes never raise SIGPIPE in a host that does not ignore it).
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace vllm_router::detail {
namespace {

// ---------------------------------------------------------------------------------------------
// The socket BIO: send(MSG_NOSIGNAL) and recv on the descriptor kept as the BIO's data.

int fd_of(BIO* bio) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))); }

int bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::send(fd_of(bio), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return -1;
  }
}

int bio_read(BIO* bio, char* buf, int size) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::recv(fd_of(bio), buf, static_cast<std::size_t>(size), 0);
    if (n > 0) return static_cast<int>(n);
    if (n == 0) {
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // BIO_eof(): the record layer reports the end
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return -1;
  }
}

long bio_ctrl(BIO* bio, int cmd, long, void* ptr) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    case BIO_C_GET_FD:
      if (ptr != nullptr) *static_cast<int*>(ptr) = fd_of(bio);
      return fd_of(bio);
    default:
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* socket_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "vllm_router socket");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

// ---------------------------------------------------------------------------------------------
// Contexts

// The reason of the last queued OpenSSL error ("key values mismatch"), and the queue emptied.
std::string openssl_reason(std::string_view fallback) {
  const unsigned long code = ERR_peek_last_error();
  std::string why;
  if (code != 0) {
    const char* reason = ERR_reason_error_string(code);
    if (reason != nullptr) {
      why = reason;
    } else {
      char buf[256];
      ERR_error_string_n(code, buf, sizeof buf);
      why = buf;
    }
  }
  ERR_clear_error();
  return why.empty() ? std::string(fallback) : why;
}

Result<void> check_readable(const std::string& path, std::string_view key) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Result<void>(Errc::config, std::string(key) + ": cannot read '" + path + "': " + std::strerror(errno),
                        std::string(key));
  }
  std::fclose(f);
  return {};
}

// ALPN on the listener: HTTP/1.1 (or 1.0) or nothing; a client that offers only other
// protocols (h2 alone) gets the no_application_protocol alert instead of a connection that
// would speak the wrong protocol.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in, unsigned int in_len,
                void*) {
  for (std::string_view want : {std::string_view("http/1.1"), std::string_view("http/1.0")}) {
    for (unsigned int i = 0; i < in_len;) {
      const unsigned int len = in[i];
      if (i + 1 + len > in_len) break;
      if (len == want.size() && std::memcmp(in + i + 1, want.data(), len) == 0) {
        *out = in + i + 1;
        *out_len = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

SSL_CTX* new_context(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // A peer that closes without close_notify is an end like any other: HTTP framing tells a
  // complete answer from a cut one.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Writes report each record as it goes out and may be retried from a moved buffer (the
  // connection's backlog); idle connections give their read and write buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // Whole socket reads instead of a header read and a body read per record: every reader here
  // reads until want_read (or checks has_pending()), so nothing read ahead is stranded.
  SSL_CTX_set_read_ahead(ctx, 1);
  return ctx;
}

}  // namespace

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<const TlsContext>> TlsContext::server(const std::string& cert_file,
                                                             const std::string& key_file) {
  using R = Result<std::shared_ptr<const TlsContext>>;
  if (cert_file.empty() || key_file.empty()) {
    return R(Errc::config, "TLS needs both a certificate file and a key file",
             cert_file.empty() ? "tls_cert_file" : "tls_key_file");
  }
  if (auto r = check_readable(cert_file, "tls_cert_file"); !r) return r.error();
  if (auto r = check_readable(key_file, "tls_key_file"); !r) return r.error();
  ERR_clear_error();
  SSL_CTX* ctx = new_context(TLS_server_method());
  if (ctx == nullptr) return R(Errc::internal, "cannot create a TLS context: " + openssl_reason("out of memory"));
  std::shared_ptr<const TlsContext> context(new TlsContext(ctx, false));
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return R(Errc::config, "tls_cert_file: no PEM certificate in '" + cert_file + "': " + openssl_reason("unreadable"),
             "tls_cert_file");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return R(Errc::config,
             "tls_key_file: '" + key_file + "' is not the PEM private key of the certificate in '" + cert_file +
                 "': " + openssl_reason("unreadable"),
             "tls_key_file");
  }
  // Resumption through session tickets only: no server-side session cache to lock per handshake.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  return context;
}

Result<std::shared_ptr<const TlsContext>> TlsContext::client(const std::string& ca_file, bool verify) {
  using R = Result<std::shared_ptr<const TlsContext>>;
  if (verify && !ca_file.empty()) {
    if (auto r = check_readable(ca_file, "upstream_tls.ca_file"); !r) return r.error();
  }
  ERR_clear_error();
  SSL_CTX* ctx = new_context(TLS_client_method());
  if (ctx == nullptr) return R(Errc::internal, "cannot create a TLS context: " + openssl_reason("out of memory"));
  std::shared_ptr<const TlsContext> context(new TlsContext(ctx, verify));
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn - 1);
  if (!verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return context;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const int loaded = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                     : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
  if (loaded != 1) {
    return R(Errc::config,
             ca_file.empty() ? "cannot load the system's CA store: " + openssl_reason("unknown error")
                             : "upstream_tls.ca_file: no PEM certificate in '" + ca_file + "': " +
                                   openssl_reason("unreadable"),
             "upstream_tls.ca_file");
  }
  return context;
}

// ---------------------------------------------------------------------------------------------
// Sessions

namespace {

SSL* new_session(const TlsContext& context, int fd) {
  SSL* ssl = SSL_new(context.get());
  if (ssl == nullptr) return nullptr;
  BIO* bio = BIO_new(socket_method());
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);  // the session owns the BIO (one reference for both directions)
  return ssl;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::unique_ptr<TlsSession> TlsSession::accept(const TlsContext& context, int fd) {
  SSL* ssl = new_session(context, fd);
  if (ssl == nullptr) return nullptr;
  SSL_set_accept_state(ssl);
  return std::unique_ptr<TlsSession>(new TlsSession(ssl));
}

Result<std::unique_ptr<TlsSession>> TlsSession::connect(const TlsContext& context, int fd, const std::string& host) {
  ERR_clear_error();
  SSL* ssl = new_session(context, fd);
  if (ssl == nullptr) {
    return Result<std::unique_ptr<TlsSession>>(Errc::connect_failed, "cannot start TLS: " + openssl_reason("out of memory"));
  }
  std::unique_ptr<TlsSession> session(new TlsSession(ssl));
  SSL_set_connect_state(ssl);
  bool named = true;
  if (is_ip_literal(host)) {
    // No SNI for an address (RFC 6066); the certificate must list the IP.
    named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
  } else {
    named = SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && SSL_set1_host(ssl, host.c_str()) == 1;
  }
  if (!named) {
    return Result<std::unique_ptr<TlsSession>>(Errc::connect_failed,
                                               "cannot start TLS for '" + host + "': " + openssl_reason("bad name"));
  }
  return session;
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

TlsIo TlsSession::result(int rc, bool in_handshake) {
  want_ = Want::none;
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      want_ = Want::read;
      return TlsIo::want_read;
    case SSL_ERROR_WANT_WRITE:
      want_ = Want::write;
      return TlsIo::want_write;
    case SSL_ERROR_ZERO_RETURN:
      eof_ = true;
      if (in_handshake) error_ = "the peer closed the connection during the TLS handshake";
      return TlsIo::eof;
    case SSL_ERROR_SYSCALL:
      failed_ = true;
      if (ERR_peek_error() == 0 && errno == 0) {  // a bare TCP close
        eof_ = true;
        if (in_handshake) error_ = "the peer closed the connection during the TLS handshake";
        return TlsIo::eof;
      }
      error_ = errno != 0 ? std::strerror(errno) : openssl_reason("socket error");
      ERR_clear_error();
      return TlsIo::error;
    default: {
      failed_ = true;
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
        ERR_clear_error();
      } else {
        error_ = openssl_reason("TLS error");
      }
      return TlsIo::error;
    }
  }
}

TlsIo TlsSession::handshake() {
  ERR_clear_error();
  errno = 0;
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    want_ = Want::none;
    return TlsIo::done;
  }
  return result(rc, true);
}

bool TlsSession::handshake_done() const noexcept { return SSL_is_init_finished(ssl_) == 1; }

TlsIo TlsSession::read(char* buf, std::size_t size, std::size_t& n) {
  ERR_clear_error();
  errno = 0;
  n = 0;
  if (SSL_read_ex(ssl_, buf, size, &n) == 1) {
    want_ = Want::none;
    return TlsIo::done;
  }
  return result(0, false);
}

TlsIo TlsSession::write(const char* data, std::size_t size, std::size_t& n) {
  ERR_clear_error();
  errno = 0;
  n = 0;
  if (SSL_write_ex(ssl_, data, size, &n) == 1) {
    want_ = Want::none;
    return TlsIo::done;
  }
  return result(0, false);
}

bool TlsSession::has_pending() const noexcept { return SSL_has_pending(ssl_) == 1; }

short TlsSession::wait_events(short events) const noexcept {
  if (want_ == Want::read) return POLLIN;
  if (want_ == Want::write) return POLLOUT;
  return events;
}

void TlsSession::shutdown() noexcept {
  if (failed_ || eof_ || SSL_is_init_finished(ssl_) != 1) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string_view TlsSession::alpn() const noexcept {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), len);
}

std::string_view TlsSession::version() const noexcept { return SSL_get_version(ssl_); }

}  // namespace vllm_router::detail
