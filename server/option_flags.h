// Internal to the executable: the table of flags and environment variables, shared by the
// option parser (options.cpp) and --help (usage.cpp).
#pragma once

#include <string_view>

namespace vllm_router::server {

// How a flag or variable is used; one table drives parsing and --help.
enum class Kind {
  host,
  port,
  model,
  alias,
  lora,
  lora_loading,
  config,
  api_key,
  keys_file,
  rate_limit_redis,
  hash_key,
  policy,
  default_model,
  max_body_bytes,
  connect_timeout_ms,
  read_timeout_ms,
  threads,
  max_connections,
  tls_cert,
  tls_key,
  log_level,
  log_format,
  access_log,
  otlp_endpoint,
  otlp_sampling,
  otlp_service_name,
  replica_sync_listen,
  replica_sync_peers,
  io,
  check_config,
  demo,
  help,
  version,
};

struct FlagSpec {
  Kind kind;
  std::string_view flag;  // "--port"
  std::string_view env;   // "VLLM_ROUTER_PORT"; empty: none
  std::string_view arg;   // "P"; empty: takes no value
  std::string_view help;
};

inline constexpr FlagSpec kFlags[] = {
    {Kind::config, "--config", "VLLM_ROUTER_CONFIG", "FILE",
     "JSON config file (format: docs/configuration.md)"},
    {Kind::host, "--host", "VLLM_ROUTER_HOST", "HOST", "address to listen on"},
    {Kind::port, "--port", "VLLM_ROUTER_PORT", "PORT", "port to listen on (0..65535; 0: any)"},
    {Kind::model, "--model", "VLLM_ROUTER_MODELS", "NAME=URL[,URL...]",
     "a model and its replicas; repeatable. Replaces the endpoints of a same-named\n"
     "model from a lower level. Env syntax: NAME=URL,URL;NAME2=URL"},
    {Kind::alias, "--alias", "VLLM_ROUTER_ALIASES", "ALIAS=MODEL",
     "another name for MODEL; repeatable. Env syntax: ALIAS=MODEL;ALIAS2=MODEL2"},
    {Kind::lora, "--lora", "VLLM_ROUTER_LORAS", "ADAPTER=MODEL",
     "a LoRA adapter served by MODEL's replicas; repeatable.\n"
     "Env syntax: ADAPTER=MODEL;ADAPTER2=MODEL2"},
    {Kind::lora_loading, "--lora-loading", "VLLM_ROUTER_LORA_LOADING", "MODEL=PATH_TEMPLATE",
     "LoRA-aware placement with dynamic loading for MODEL's adapters, each loaded from\n"
     "PATH_TEMPLATE with {name} replaced (docs/configuration.md, \"lora\"); repeatable.\n"
     "Env syntax: MODEL=TEMPLATE;MODEL2=TEMPLATE2"},
    {Kind::api_key, "--api-key", "VLLM_ROUTER_API_KEYS", "KEY",
     "accepted client API key; repeatable (env: comma separated).\n"
     "Keys given at a higher level replace the lower level's keys"},
    {Kind::keys_file, "--keys-file", "VLLM_ROUTER_KEYS_FILE", "FILE",
     "tenants' API keys: ids, model scopes, limits (format: docs/tenants.md);\n"
     "re-read when it changes and on SIGHUP"},
    {Kind::rate_limit_redis, "--rate-limit-redis", "VLLM_ROUTER_RATE_LIMIT_REDIS", "HOST:PORT",
     "keep keys' rate-limit counts in this Redis, shared by router replicas"},
    {Kind::hash_key, "--hash-key", "", "",
     "read an API key on standard input, print its SHA-256 for a keys file, exit"},
    {Kind::policy, "--policy", "VLLM_ROUTER_POLICY", "NAME",
     "default load-balancing policy: round_robin, least_requests, power_of_two,\n"
     "session, load_aware or prefix_aware (docs/configuration.md)"},
    {Kind::default_model, "--default-model", "VLLM_ROUTER_DEFAULT_MODEL", "NAME",
     "model (or alias, adapter) used when a request names none"},
    {Kind::max_body_bytes, "--max-body-bytes", "VLLM_ROUTER_MAX_BODY_BYTES", "N",
     "largest accepted request body, bytes"},
    {Kind::connect_timeout_ms, "--connect-timeout-ms", "VLLM_ROUTER_CONNECT_TIMEOUT_MS", "N",
     "upstream connect timeout"},
    {Kind::read_timeout_ms, "--read-timeout-ms", "VLLM_ROUTER_READ_TIMEOUT_MS", "N",
     "longest wait for any upstream byte"},
    {Kind::io, "--io", "VLLM_ROUTER_IO", "MODE",
     "epoll, the only front end (accepted for old command lines)"},
    {Kind::threads, "--threads", "VLLM_ROUTER_THREADS", "N", "event-loop threads (0: one per CPU)"},
    {Kind::max_connections, "--max-connections", "VLLM_ROUTER_MAX_CONNECTIONS", "N",
     "client connection limit, 503 beyond it (0: from the file-descriptor limit)"},
    {Kind::tls_cert, "--tls-cert", "VLLM_ROUTER_TLS_CERT_FILE", "FILE",
     "serve HTTPS: PEM certificate chain (with --tls-key; re-read on SIGHUP)"},
    {Kind::tls_key, "--tls-key", "VLLM_ROUTER_TLS_KEY_FILE", "FILE",
     "PEM private key of --tls-cert"},
    {Kind::log_level, "--log-level", "VLLM_ROUTER_LOG_LEVEL", "LEVEL",
     "error | warn | info | debug"},
    {Kind::log_format, "--log-format", "VLLM_ROUTER_LOG_FORMAT", "FORMAT",
     "text | json: of every log line and of the access log"},
    {Kind::access_log, "--access-log", "VLLM_ROUTER_ACCESS_LOG", "PATH|-|off",
     "one line per finished request to a file (reopened on SIGHUP and SIGUSR1,\n"
     "for rotation), to standard output (-), or off (docs/observability.md)"},
    {Kind::otlp_endpoint, "--otlp-endpoint", "VLLM_ROUTER_OTLP_ENDPOINT", "URL",
     "trace requests (W3C traceparent) and export spans over OTLP/HTTP (protobuf)\n"
     "to URL/v1/traces, e.g. http://otel-collector:4318 (docs/tracing.md); the\n"
     "OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME variables are read below these"},
    {Kind::otlp_sampling, "--otlp-sampling", "VLLM_ROUTER_OTLP_SAMPLING", "RATIO",
     "share of new traces recorded, 0.0..1.0 (default 1.0); a client's traceparent\n"
     "decides for its own trace (its sampled flag)"},
    {Kind::otlp_service_name, "--otlp-service-name", "VLLM_ROUTER_OTLP_SERVICE_NAME", "NAME",
     "service.name of the exported spans (default vllm-router)"},
    {Kind::replica_sync_listen, "--replica-sync-listen", "VLLM_ROUTER_REPLICA_SYNC_LISTEN", "HOST:PORT",
     "replica sync: the UDP address this router receives its peers' in-flight counts\n"
     "and prefix placements on, e.g. 0.0.0.0:7071 (port 0: any free port); router\n"
     "replicas in front of the same engines then route as one (docs/configuration.md,\n"
     "\"replica_sync\"; the shared secret comes from VLLM_ROUTER_REPLICA_SYNC_SECRET)"},
    {Kind::replica_sync_peers, "--replica-sync-peers", "VLLM_ROUTER_REPLICA_SYNC_PEERS", "HOST:PORT[,...]",
     "replica sync: the peers' UDP addresses, comma separated; a name stands for all its\n"
     "addresses, resolved again every resolve_interval_ms (a Kubernetes headless Service\n"
     "names every router pod; this router ignores itself). Needs --replica-sync-listen.\n"
     "Peers given at a higher level replace the lower level's"},
    {Kind::check_config, "--check-config", "", "",
     "validate the configuration, print a summary and exit"},
    {Kind::demo, "--demo", "", "", "start two simulated engines and route to them"},
    {Kind::help, "--help", "", "", "print this help and exit"},
    {Kind::version, "--version", "", "", "print the version and exit"},
};

}  // namespace vllm_router::server
