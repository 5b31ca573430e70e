// TLS contexts and sessions (lib/tls.h) over non-blocking socketpairs, with certificates made by
// the openssl tool: handshakes, verification failures, ALPN, protocol floor, write retries.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

#include "support/test_certs.h"
#include "tls.h"

namespace {

using namespace vllm_router;
using detail::TlsContext;
using detail::TlsIo;
using detail::TlsSession;
using testing::TestCerts;

struct Pair {
  int a = -1;
  int b = -1;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    a = fds[0];
    b = fds[1];
  }
  ~Pair() {
    ::close(a);
    ::close(b);
  }
};

// Steps both handshakes until neither can move; returns the last results.
std::pair<TlsIo, TlsIo> handshake(TlsSession& client, TlsSession& server) {
  TlsIo c = TlsIo::want_read;
  TlsIo s = TlsIo::want_read;
  for (int i = 0; i < 20; ++i) {
    if (c != TlsIo::done && c != TlsIo::error && c != TlsIo::eof) c = client.handshake();
    if (s != TlsIo::done && s != TlsIo::error && s != TlsIo::eof) s = server.handshake();
    const bool c_end = c == TlsIo::done || c == TlsIo::error || c == TlsIo::eof;
    const bool s_end = s == TlsIo::done || s == TlsIo::error || s == TlsIo::eof;
    if (c_end && s_end) break;
    if ((c == TlsIo::error || c == TlsIo::eof) && !s_end) {
      s = server.handshake();  // reads the alert or the EOF
      if (s != TlsIo::done) break;
    }
  }
  return {c, s};
}

std::shared_ptr<const TlsContext> server_context() {
  const auto& certs = TestCerts::get();
  auto ctx = TlsContext::server(certs.cert, certs.key);
  REQUIRE(ctx);
  return ctx.value();
}

std::shared_ptr<const TlsContext> client_context(const std::string& ca, bool verify = true) {
  auto ctx = TlsContext::client(ca, verify);
  REQUIRE(ctx);
  return ctx.value();
}

std::string read_all(TlsSession& s, std::size_t want) {
  std::string out;
  char buf[4096];
  for (int i = 0; i < 10000 && out.size() < want; ++i) {
    std::size_t n = 0;
    if (s.read(buf, sizeof buf, n) == TlsIo::done) out.append(buf, n);
  }
  return out;
}

}  // namespace

TEST_CASE("tls: a server context needs a readable certificate and its own key") {
  const auto& certs = TestCerts::get();
  auto missing = TlsContext::server(certs.dir + "/nope.pem", certs.key);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::config);
  CHECK(missing.error().param == "tls_cert_file");
  CHECK(missing.error().message.find("nope.pem") != std::string::npos);
  CHECK(missing.error().message.find("No such file") != std::string::npos);

  auto mismatched = TlsContext::server(certs.cert, certs.other_key);
  REQUIRE_FALSE(mismatched);
  CHECK(mismatched.error().param == "tls_key_file");
  CHECK(mismatched.error().message.find("is not the PEM private key") != std::string::npos);

  auto no_key = TlsContext::server(certs.cert, "");
  REQUIRE_FALSE(no_key);
  CHECK(no_key.error().param == "tls_key_file");

  const std::string garbage = certs.dir + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  auto bad = TlsContext::server(garbage, certs.key);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().param == "tls_cert_file");
  CHECK(bad.error().message.find("no PEM certificate") != std::string::npos);

  CHECK(TlsContext::server(certs.cert, certs.key));
}

TEST_CASE("tls: a client context with a CA file that cannot be read is a config error") {
  auto r = TlsContext::client(TestCerts::get().dir + "/missing-ca.pem", true);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::config);
  CHECK(r.error().param == "upstream_tls.ca_file");
  CHECK(TlsContext::client("", true));                       // the system store
  CHECK(TlsContext::client("/does/not/matter", false));      // not verifying: no CA read
}

TEST_CASE("tls: handshake, ALPN http/1.1 and data both ways over a non-blocking socketpair") {
  Pair p;
  auto server_ctx = server_context();
  auto client_ctx = client_context(TestCerts::get().ca);
  auto server = TlsSession::accept(*server_ctx, p.b);
  auto client = TlsSession::connect(*client_ctx, p.a, "localhost");
  REQUIRE(client);
  const auto [c, s] = handshake(*client.value(), *server);
  REQUIRE(c == TlsIo::done);
  REQUIRE(s == TlsIo::done);
  CHECK(client.value()->alpn() == "http/1.1");
  CHECK(server->alpn() == "http/1.1");
  CHECK(server->version() == "TLSv1.3");

  std::size_t n = 0;
  REQUIRE(client.value()->write("GET / HTTP/1.1\r\n\r\n", 18, n) == TlsIo::done);
  CHECK(n == 18);
  CHECK(read_all(*server, 18) == "GET / HTTP/1.1\r\n\r\n");
  REQUIRE(server->write("HTTP/1.1 200 OK\r\n", 17, n) == TlsIo::done);
  CHECK(read_all(*client.value(), 17) == "HTTP/1.1 200 OK\r\n");

  // Nothing more: the next read waits for the socket.
  char buf[16];
  CHECK(server->read(buf, sizeof buf, n) == TlsIo::want_read);
  CHECK(server->wait_events(POLLOUT) == POLLIN);
  // A close_notify reads as the end.
  client.value()->shutdown();
  CHECK(server->read(buf, sizeof buf, n) == TlsIo::eof);
  CHECK_FALSE(server->failed());
}

TEST_CASE("tls: the upstream's certificate is checked against the CA, the host name and the IP") {
  const auto& certs = TestCerts::get();
  auto server_ctx = server_context();
  struct Case {
    std::string ca;
    std::string host;
    bool verify;
    std::string error;  // empty: the handshake succeeds
  };
  const Case cases[] = {
      {certs.ca, "localhost", true, ""},
      {certs.ca, "127.0.0.1", true, ""},
      {certs.other_ca, "localhost", true, "certificate verify failed: unable to get local issuer certificate"},
      {certs.ca, "example.com", true, "certificate verify failed: hostname mismatch"},
      {certs.ca, "127.0.0.2", true, "certificate verify failed: IP address mismatch"},
      {certs.other_ca, "example.com", false, ""},  // verification off: anything goes
  };
  for (const Case& k : cases) {
    CAPTURE(k.host);
    CAPTURE(k.ca);
    Pair p;
    auto client_ctx = client_context(k.ca, k.verify);
    auto server = TlsSession::accept(*server_ctx, p.b);
    auto client = TlsSession::connect(*client_ctx, p.a, k.host);
    REQUIRE(client);
    const auto [c, s] = handshake(*client.value(), *server);
    if (k.error.empty()) {
      CHECK(c == TlsIo::done);
      CHECK(s == TlsIo::done);
    } else {
      CHECK(c == TlsIo::error);
      CHECK(client.value()->failed());
      CHECK(client.value()->error() == k.error);
      CHECK(s != TlsIo::done);
    }
  }
}

TEST_CASE("tls: the listener refuses a client that offers only h2, and one capped at TLS 1.1") {
  auto server_ctx = server_context();
  struct Case {
    const char* name;
    const unsigned char* alpn;
    unsigned alpn_len;
    int max_version;
  };
  static const unsigned char kH2[] = "\x02h2";
  static const unsigned char kBoth[] = "\x02h2\x08http/1.1";
  const Case cases[] = {
      {"h2 only", kH2, sizeof kH2 - 1, 0},
      {"TLS 1.1", nullptr, 0, TLS1_1_VERSION},
      {"h2 and http/1.1", kBoth, sizeof kBoth - 1, 0},
  };
  for (const Case& k : cases) {
    CAPTURE(k.name);
    Pair p;
    SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(raw, 0);  // let the client offer TLS 1.1 at all
    if (k.max_version != 0) {
      SSL_CTX_set_min_proto_version(raw, TLS1_VERSION);
      SSL_CTX_set_max_proto_version(raw, k.max_version);
    }
    if (k.alpn != nullptr) SSL_CTX_set_alpn_protos(raw, k.alpn, k.alpn_len);
    SSL* ssl = SSL_new(raw);
    SSL_set_fd(ssl, p.a);
    SSL_set_connect_state(ssl);
    auto server = TlsSession::accept(*server_ctx, p.b);
    TlsIo s = TlsIo::want_read;
    int c = -1;
    for (int i = 0; i < 20 && s != TlsIo::error && s != TlsIo::done; ++i) {
      c = SSL_do_handshake(ssl);
      s = server->handshake();
    }
    if (k.alpn == kBoth) {
      CHECK(s == TlsIo::done);
      CHECK(server->alpn() == "http/1.1");
    } else {
      CHECK(s == TlsIo::error);
      CHECK(server->error() == (k.max_version != 0 ? "unsupported protocol" : "no application protocol"));
      CHECK(SSL_do_handshake(ssl) != 1);
    }
    (void)c;
    SSL_free(ssl);
    SSL_CTX_free(raw);
  }
}

TEST_CASE("tls: a write that would block is retried from a moved, longer buffer") {
  Pair p;
  int small = 4096;
  ::setsockopt(p.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(p.b, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  auto server_ctx = server_context();
  auto client_ctx = client_context(TestCerts::get().ca);
  auto server = TlsSession::accept(*server_ctx, p.b);
  auto client = TlsSession::connect(*client_ctx, p.a, "localhost");
  REQUIRE(client);
  REQUIRE(handshake(*client.value(), *server) == std::pair(TlsIo::done, TlsIo::done));

  // The client writes until the socket is full; whatever was not taken is kept and offered
  // again from another buffer, with more bytes after it, as the connection's backlog does.
  std::string data;
  for (int i = 0; data.size() < 1 << 20; ++i) data += "line " + std::to_string(i) + "\n";
  std::string pending = data.substr(0, 300000);
  std::size_t next = pending.size();
  std::string received;
  bool blocked_once = false;
  for (int round = 0; round < 100000 && (received.size() < data.size()); ++round) {
    std::size_t n = 0;
    const TlsIo w = pending.empty() ? TlsIo::done : client.value()->write(pending.data(), pending.size(), n);
    REQUIRE(w != TlsIo::error);
    if (w == TlsIo::done) {
      pending.erase(0, n);
    } else {
      blocked_once = true;
      std::string moved = pending;  // a new address, same bytes first
      pending.swap(moved);
    }
    if (next < data.size()) {
      const std::size_t add = std::min<std::size_t>(50000, data.size() - next);
      pending.append(data, next, add);
      next += add;
    }
    char buf[16384];
    for (;;) {
      const TlsIo r = server->read(buf, sizeof buf, n);
      if (r != TlsIo::done) break;
      received.append(buf, n);
    }
  }
  CHECK(blocked_once);
  CHECK(received.size() == data.size());
  CHECK(received == data);
}
