// Server: the OpenAI-compatible front door as a library component: epoll event loops that parse
// HTTP/1.1 requests, run each one as an Exchange through a Router, and relay the answers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"
#include "vllm_router/exchange.h"
#include "vllm_router/result.h"
#include "vllm_router/tenants.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// A request the server answers itself (GET and HEAD routes). Views are valid during the call.
struct LocalRequest {
  std::string_view method;
  std::string_view path;   ///< without the query
  std::string_view target; ///< as received
  std::span<const HeaderField> headers;
  bool authorized = false; ///< carried an accepted API key (or no keys are configured)
  bool admin = false;      ///< carried an admin key (or no keys are configured)
  const ApiKey* key = nullptr;  ///< the accepted key; null without keys
};

/// A complete local answer.
struct LocalResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Retry-After in seconds for a 429 or 503; 0: 1 second.
  std::uint32_t retry_after = 0;
};

/// Listener and process-facing settings of a Server (the routing rules live in RouterConfig).
struct ServerOptions {
  std::string host = "0.0.0.0";  ///< address to listen on (IPv4 or IPv6 literal, or a name)
  std::uint16_t port = 8080;     ///< 0: any free port (see Server::port)
  std::uint32_t threads = 0;     ///< event loops; 0: one per CPU the process may use (affinity, cgroup CPU quota)
  /// Client connections held at once; beyond it a new one gets 503 and is closed. 0: unbounded
  /// (the process's file-descriptor limit still applies).
  std::uint32_t max_connections = 0;
  std::uint64_t max_body_bytes = 32ull * 1024 * 1024;  ///< larger request bodies get 413
  std::uint32_t max_head_bytes = 64 * 1024;            ///< larger request heads get 431
  std::uint32_t max_headers = 128;
  /// Longest a client may take to send a request, sit idle between requests on a keep-alive
  /// connection, or stop reading an answer.
  std::uint32_t client_timeout_ms = 60000;
  /// Accepted client API keys (`Authorization: Bearer KEY`) for POST routes, /v1/models and
  /// /metrics, as plain strings (kept as SHA-256 digests; ids key-1, key-2...; admin). With
  /// `keys` too, both are accepted. Neither: no authentication.
  std::vector<std::string> api_keys;
  /// Tenants' keys (KeyTable::parse of a keys file): ids, model scopes, limits, expiry, admin.
  /// Server::set_keys() replaces them while running.
  std::shared_ptr<const KeyTable> keys;
  /// Holds keys with limits to them; null: an in-process limiter (make_local_rate_limiter).
  std::shared_ptr<RateLimiter> limiter;
  /// TLS on the listener: the PEM certificate chain and its private key. Both empty: plain
  /// HTTP; one without the other is an error. TLS 1.2 or later, ALPN http/1.1 (a client that
  /// offers only h2 is refused). A handshake has `client_timeout_ms` to finish.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// Extra local routes (e.g. /metrics), tried before the built-in ones (/health, /ping,
  /// /ready, /version, /v1/models). Return true when it answered. Called on a loop thread,
  /// concurrently: must be thread-safe and quick.
  std::function<bool(const LocalRequest&, LocalResponse&)> local_routes;
  /// Log lines (level 0 error .. 3 debug) from the loops; default: none. Thread-safe.
  std::function<void(int level, std::string_view message)> log;
};

/// The data plane that the `vllm-router` executable runs, for any host to embed: one epoll
/// loop per thread, edge-triggered and non-blocking; a stream costs a few KiB, not a thread.
/// Connections are balanced across loops; upstream keep-alive pools are per loop. Requests are
/// Exchanges (every rule of a proxied request lives there); the server adds HTTP/1.1 parsing
/// with limits, authentication, request ids, local routes and graceful drain.
///
/// Thread-safety: create() and run() from one thread; stop(), draining(), connections() and
/// connections_per_loop() from any thread. Ownership: the Router must outlive the Server.
class VLLM_ROUTER_API Server {
 public:
  /// Binds and listens (backlog 4096, SO_REUSEADDR only); loads the TLS certificate and key
  /// when the options name them. Errc::config when it cannot (naming the file and why).
  static Result<std::unique_ptr<Server>> create(Router& router, ServerOptions options);
  /// Loads the TLS certificate and key `options` name, as create() does, without listening
  /// (a configuration check). Nothing named: fine.
  static Result<void> check_tls(const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The bound port.
  std::uint16_t port() const noexcept;
  /// Runs the loops until stop() and every connection ended; the calling thread runs loop 0.
  void run();
  /// Graceful stop: /ready turns 503, the listening socket closes (new connections are
  /// refused), idle connections close, running requests finish (their connections close after
  /// the answer); whatever still runs after `grace` is cut. Any thread (not a signal handler).
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  bool draining() const noexcept;
  /// Replaces ServerOptions::keys (a reload); requests that already started keep the key they
  /// had, and every key's counts carry over by id. Any thread.
  void set_keys(std::shared_ptr<const KeyTable> keys);
  /// The listener terminates TLS.
  bool tls() const noexcept;
  /// Reads the certificate and key files again (a renewed certificate): new connections use the
  /// new pair, open ones keep the one they started with. On error the current pair stays and
  /// Errc::config says why; Errc::invalid_argument when the listener has no TLS. Any thread.
  Result<void> reload_tls();
  /// TLS handshakes on the listener that failed (protocol, ALPN, alert or timeout; a client that
  /// closes before sending anything is not counted), since start. Each is logged at debug level;
  /// a warning sums them up at most every 10 s.
  std::uint64_t tls_handshake_failures() const noexcept;
  /// Open client connections, in all and per loop.
  std::int64_t connections() const noexcept;
  std::vector<std::uint32_t> connections_per_loop() const;

  struct Impl;  ///< opaque (pimpl)

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// An error as the OpenAI-shaped local answer a gateway sends (status from http_status()).
VLLM_ROUTER_API LocalResponse error_response(const Error& error);

VLLM_ROUTER_END_NAMESPACE
