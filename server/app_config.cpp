// The executable's configuration document: routing keys through the library's parser, the
// listener and process keys through its extension hook.
#include "app_config.h"

#include <array>

#include "vllm_router/endpoint.h"

namespace vllm_router::server {

vllm_router::ServerOptions AppConfig::server_options() const {
  vllm_router::ServerOptions o;
  o.host = host;
  o.port = port;
  o.threads = threads;
  o.max_connections = max_connections;
  o.max_body_bytes = max_body_bytes;
  o.client_timeout_ms = client_timeout_ms;
  o.api_keys = api_keys;
  o.tls_cert_file = tls_cert_file;
  o.tls_key_file = tls_key_file;
  return o;
}

Result<AppConfig> parse_app_config(std::string_view json, AppConfig base) {
  static constexpr std::array<std::string_view, 4> kLevels = {"error", "warn", "info", "debug"};
  static constexpr std::array<std::string_view, 1> kIo = {"epoll"};
  static constexpr std::array<std::string_view, 2> kFormats = {"text", "json"};
  ConfigExtension extension;
  static constexpr std::array<std::string_view, 2> kBackends = {"local", "redis"};
  static constexpr std::array<std::string_view, 4> kRateLimitKeys = {"backend", "redis", "timeout_ms", "prefix"};
  static constexpr std::array<std::string_view, 7> kOtlpKeys = {"endpoint",   "sampling",   "service_name", "batch_size",
                                                                 "interval_ms", "queue_size", "timeout_ms"};
  extension.keys = {"host", "port", "api_keys", "max_body_bytes", "threads", "max_connections", "client_timeout_ms",
                    "drain_timeout_ms", "log_level", "io", "watch_config", "keys_file", "rate_limit",
                    "tls_cert_file", "tls_key_file", "log_format", "access_log", "access_log_buffer", "otlp"};
  extension.read = [&base](ConfigField& f) -> Result<void> {
    const std::string_view key = f.key();
    if (key == "host") return f.read(base.host, true);
    if (key == "port") return f.read(base.port);
    if (key == "api_keys") {
      if (auto r = f.read(base.api_keys); !r) return r;
      for (const std::string& k : base.api_keys) {
        if (k.empty()) return Result<void>(Errc::config, "api_keys: an empty key would accept anyone", "api_keys");
      }
      return {};
    }
    if (key == "max_body_bytes") return f.read(base.max_body_bytes, 1);
    if (key == "threads") return f.read(base.threads);
    if (key == "max_connections") return f.read(base.max_connections);
    if (key == "client_timeout_ms") return f.read(base.client_timeout_ms, 1);
    if (key == "drain_timeout_ms") return f.read(base.drain_timeout_ms);
    if (key == "log_level") return f.read_choice(base.log_level, kLevels);
    if (key == "log_format") return f.read_choice(base.log_format, kFormats);
    if (key == "access_log") return f.read(base.access_log, true);
    if (key == "access_log_buffer") return f.read(base.access_log_buffer, 1);
    if (key == "io") return f.read_choice(base.io, kIo);
    if (key == "tls_cert_file") return f.read(base.tls_cert_file, true);
    if (key == "tls_key_file") return f.read(base.tls_key_file, true);
    if (key == "keys_file") return f.read(base.keys_file, true);
    if (key == "rate_limit") {
      return f.read_object(kRateLimitKeys, [&base](ConfigField& m) -> Result<void> {
        AppConfig::RateLimit& rl = base.rate_limit;
        if (m.key() == "backend") return m.read_choice(rl.backend, kBackends);
        if (m.key() == "timeout_ms") return m.read(rl.timeout_ms, 1);
        if (m.key() == "prefix") return m.read(rl.prefix);
        if (auto r = m.read(rl.redis, true); !r) return r;
        if (auto hp = parse_host_port(rl.redis); !hp) {
          return Result<void>(Errc::config, "rate_limit.redis: " + hp.error().message, "rate_limit.redis");
        }
        return {};
      });
    }
    if (key == "otlp") {
      return f.read_object(kOtlpKeys, [&base](ConfigField& m) -> Result<void> {
        AppConfig::Otlp& o = base.otlp;
        const std::string_view k = m.key();
        if (k == "endpoint") {
          if (auto r = m.read(o.endpoint); !r) return r;
          if (auto url = parse_url(o.endpoint); !o.endpoint.empty() && !url) {
            return Result<void>(Errc::config, "otlp.endpoint: " + url.error().message, "otlp.endpoint");
          }
          return {};
        }
        if (k == "sampling") return m.read(o.sampling, 0.0, 1.0);
        if (k == "service_name") return m.read(o.service_name, true);
        if (k == "batch_size") return m.read(o.batch_size, 1);
        if (k == "interval_ms") return m.read(o.interval_ms, 1);
        if (k == "queue_size") return m.read(o.queue_size, 1);
        return m.read(o.timeout_ms, 1);
      });
    }
    return f.read(base.watch_config);
  };
  auto router = parse_router_config(json, base.router, &extension);
  if (!router) return std::move(router).error();
  base.router = std::move(router).value();
  return base;
}

Result<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text) {
  using Out = Result<std::pair<std::string, std::uint16_t>>;
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Out(Errc::config, "expected HOST:PORT, got '" + std::string(text) + "'", "");
  }
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  for (const char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return Out(Errc::config, "expected HOST:PORT, got '" + std::string(text) + "'", "");
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535 || host.empty()) {
    return Out(Errc::config, "expected HOST:PORT with a port 1..65535, got '" + std::string(text) + "'", "");
  }
  return std::pair<std::string, std::uint16_t>(std::string(host), static_cast<std::uint16_t>(port));
}

}  // namespace vllm_router::server
