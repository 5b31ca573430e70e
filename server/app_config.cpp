// The executable's configuration document: routing keys through the library's parser, the
// listener and process keys through its extension hook.
#include "app_config.h"

#include <array>

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
  ConfigExtension extension;
  extension.keys = {"host", "port", "api_keys", "max_body_bytes", "threads", "max_connections", "client_timeout_ms",
                    "drain_timeout_ms", "log_level", "io", "watch_config", "tls_cert_file", "tls_key_file"};
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
    if (key == "io") return f.read_choice(base.io, kIo);
    if (key == "tls_cert_file") return f.read(base.tls_cert_file, true);
    if (key == "tls_key_file") return f.read(base.tls_key_file, true);
    return f.read(base.watch_config);
  };
  auto router = parse_router_config(json, base.router, &extension);
  if (!router) return std::move(router).error();
  base.router = std::move(router).value();
  return base;
}

}  // namespace vllm_router::server
