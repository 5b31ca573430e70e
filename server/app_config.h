// The executable's configuration: the Router's (routing) plus the listener and process settings
// around it, read from one JSON document (the library parses the routing keys).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/result.h"
#include "vllm_router/server.h"

namespace vllm_router::server {

/// Everything the vllm-router executable is configured with.
struct AppConfig {
  RouterConfig router;
  std::string host = "::";  ///< every address, IPv4 and IPv6 (dual-stack; 0.0.0.0 without IPv6)
  std::uint16_t port = 8080;
  std::vector<std::string> api_keys;   ///< accepted client keys; empty: no authentication
  /// Tenants' keys file (docs/tenants.md); empty: none. Re-read when it changes and on SIGHUP.
  std::string keys_file;
  /// Where keys' rate-limit counts live.
  struct RateLimit {
    std::string backend = "local";      ///< local | redis
    std::string redis = "127.0.0.1:6379";  ///< HOST:PORT of the Redis server (backend redis)
    std::uint32_t timeout_ms = 50;      ///< longest wait for Redis; then this router decides alone
    std::string prefix = "vllm-router:";   ///< prefix of the counters' Redis keys
  } rate_limit;
  std::uint64_t max_body_bytes = 32ull * 1024 * 1024;
  /// Kept for old configs: "epoll" is the only front end (the thread-per-connection one was
  /// removed, see docs/architecture.md).
  std::string io = "epoll";
  std::uint32_t threads = 0;           ///< event loops; 0: one per CPU the process may use (cgroup quota)
  /// Client connections held at once; beyond it new ones get 503. 0: derived from the
  /// process's file-descriptor limit (two descriptors per proxied connection).
  std::uint32_t max_connections = 0;
  std::uint32_t client_timeout_ms = 60000;  ///< idle client read/write timeout
  /// HTTPS on the listener: PEM certificate chain and key (both or neither); the files are
  /// re-read on SIGHUP (their names are fixed at start).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string log_level = "info";      ///< error | warn | info | debug
  std::string log_format = "text";     ///< text | json (every log line and the access log)
  /// Access log: a file path (appended; reopened on SIGHUP/SIGUSR1), "-" for standard output,
  /// or "off".
  std::string access_log = "off";
  std::uint32_t access_log_buffer = 4096;  ///< lines waiting for the writer; beyond, dropped and counted
  /// On SIGTERM: how long running requests may take to finish before they are cut.
  std::uint32_t drain_timeout_ms = 30000;
  /// Reload the config file when it changes (checked every second); SIGHUP always reloads.
  bool watch_config = false;
  /// Tracing: spans exported over OTLP/HTTP (docs/tracing.md); off while
  /// `endpoint` is empty. Read at start only.
  struct Otlp {
    std::string endpoint;                     ///< collector base URL; spans go to <endpoint>/v1/traces
    double sampling = 1.0;                    ///< share of the traces the router starts that are recorded
    std::string service_name = "vllm-router";  ///< the resource's service.name
    std::uint32_t batch_size = 512;           ///< spans per export request
    std::uint32_t interval_ms = 5000;         ///< longest wait before queued spans are sent
    std::uint32_t queue_size = 8192;          ///< spans held at most; more are dropped and counted
    std::uint32_t timeout_ms = 10000;         ///< per export request
  } otlp;

  /// The library Server's options from these settings.
  vllm_router::ServerOptions server_options() const;
};

/// Parses a config document (docs/configuration.md) over `base`. Errors: Errc::config naming the
/// field as a JSON path.
Result<AppConfig> parse_app_config(std::string_view json, AppConfig base = {});

/// "HOST:PORT" (a bracketed IPv6 literal too) split, or Errc::config.
Result<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text);

}  // namespace vllm_router::server
