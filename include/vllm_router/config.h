// Configuration values of a Router (and of the gateway around it) and their JSON parser.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

namespace vllm_router {

/// One replica of a model as configured.
struct EndpointConfig {
  std::string url;            ///< base URL, e.g. "http://10.0.0.7:8000"
  std::uint32_t weight = 1;   ///< >= 1
  std::string api_key;        ///< the replica's own vLLM --api-key; empty for none
};

/// One model: the name clients send, other names that resolve to it, and its replicas.
struct ModelConfig {
  std::string name;                    ///< served model name (sent upstream unchanged)
  std::vector<std::string> aliases;    ///< extra names; rewritten to `name` before forwarding
  std::vector<std::string> loras;      ///< LoRA adapter names served by the same replicas
  std::vector<EndpointConfig> endpoints;
  std::string policy;                  ///< empty: RouterConfig::policy
};

/// Upstream timeouts, in milliseconds.
struct TimeoutConfig {
  std::uint32_t connect_ms = 3000;
  /// Longest wait for any upstream byte (first byte and gaps between chunks). Default 10 minutes:
  /// a loaded vLLM can take a minute before its first token.
  std::uint32_t read_ms = 600000;
  std::uint32_t write_ms = 30000;
};

/// Everything a Router needs.
struct RouterConfig {
  std::vector<ModelConfig> models;
  std::string default_model;           ///< used when a body has no `model`; empty: 400 instead
  std::string policy = "round_robin";  ///< default policy name
  TimeoutConfig timeouts;
  std::uint32_t max_attempts = 3;      ///< endpoints tried per request on connect failure
  std::uint32_t max_idle_connections = 64;  ///< idle keep-alive sockets kept per endpoint
};

/// The gateway executable's settings around the Router.
struct GatewayConfig {
  RouterConfig router;
  std::string host = "0.0.0.0";
  std::uint16_t port = 8080;
  std::vector<std::string> api_keys;   ///< accepted client keys; empty: no auth
  std::uint64_t max_body_bytes = 32ull * 1024 * 1024;
  /// "epoll": event loops, a stream costs no thread (default); "threads": cpp-httplib's
  /// thread-per-connection server (kept for comparison in bench/).
  std::string io = "epoll";
  /// epoll: event-loop threads, 0 = one per CPU. threads: HTTP worker threads, 0 = 256.
  std::uint32_t threads = 0;
  /// Client connections held at once; beyond it new ones get 503. 0: derived from the
  /// process's file-descriptor limit (two descriptors per proxied connection).
  std::uint32_t max_connections = 0;
  std::uint32_t client_timeout_ms = 60000;  ///< idle client read/write timeout
  std::string log_level = "info";      ///< error | warn | info | debug
  /// On SIGTERM: how long running requests may take to finish before they are cut.
  std::uint32_t drain_timeout_ms = 30000;
};

/// Parses a JSON configuration document (the config file's format, see docs/configuration.md)
/// on top of `base` (fields the document omits keep their values in `base`). Errors are
/// Errc::config with `param` naming the bad field as a JSON path (e.g. "models[1].endpoints[0].url").
VLLM_ROUTER_API Result<GatewayConfig> parse_gateway_config(std::string_view json,
                                                           GatewayConfig base = {});

/// Same, for the router part only (the "models", "policy", "timeouts"... members).
VLLM_ROUTER_API Result<RouterConfig> parse_router_config(std::string_view json);

/// Checks cross-field rules (names unique across models/aliases/loras, URLs parse, weights >= 1,
/// known policy names given `policy_names`, default model exists). Errc::config names the field.
VLLM_ROUTER_API Result<void> validate(const RouterConfig& config,
                                      const std::vector<std::string>& policy_names);

}  // namespace vllm_router
