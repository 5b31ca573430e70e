// Command line, environment and config-file handling of the vllm-router executable.
#include "options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "host_port.h"
#include "http_util.h"
#include "option_flags.h"
#include "vllm_router/endpoint.h"

extern char** environ;  // NOLINT: POSIX

namespace vllm_router::server {
namespace {

constexpr std::uint64_t kU16Max = std::numeric_limits<std::uint16_t>::max();
constexpr std::uint64_t kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

const FlagSpec* find_flag(std::string_view name) {
  if (name == "-h") name = "--help";
  for (const FlagSpec& spec : kFlags) {
    if (spec.flag == name) return &spec;
  }
  return nullptr;
}

Error option_error(std::string_view source, std::string_view what) {
  return Error{Errc::config, fmt::format("{}: {}", source, what), std::string(source)};
}

// Flags and variables may carry stray white space (templated values, line ends).
std::string_view trim(std::string_view text) { return detail::trim(text, " \t\r\n"); }

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    auto at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return parts;
}

Result<std::uint64_t> parse_integer(std::string_view source, std::string_view text,
                                    std::uint64_t min, std::uint64_t max) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty() || value < min ||
      value > max) {
    std::string range = (max == kU32Max || max == kU64Max) ? fmt::format(">= {}", min)
                                                           : fmt::format("{}..{}", min, max);
    if (ec == std::errc{} && end == text.data() + text.size() && !text.empty() && value > max) {
      range = fmt::format("{}..{}", min, max);
    }
    return option_error(source, fmt::format("expected an integer {}, got '{}'", range, text));
  }
  return value;
}

// One level of settings (the environment or the flags); unset fields stay empty.
struct Layer {
  struct Named {  // alias or LoRA adapter -> model, with where it came from
    std::string name;
    std::string model;
    std::string source;
  };
  std::optional<std::string> host;
  std::optional<std::uint16_t> port;
  std::vector<ModelConfig> models;
  std::vector<Named> aliases;
  std::vector<Named> loras;
  std::vector<Named> lora_loading;  // name: the path template
  std::optional<std::vector<std::string>> api_keys;
  std::optional<std::string> keys_file;
  std::optional<std::string> rate_limit_redis;
  std::optional<std::string> policy;
  std::optional<std::string> default_model;
  std::optional<std::uint64_t> max_body_bytes;
  std::optional<std::uint32_t> connect_timeout_ms;
  std::optional<std::uint32_t> read_timeout_ms;
  std::optional<std::uint32_t> threads;
  std::optional<std::uint32_t> max_connections;
  std::optional<std::string> tls_cert_file;
  std::optional<std::string> tls_key_file;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  std::optional<std::string> access_log;
  std::optional<std::string> io;
  std::optional<std::string> otlp_endpoint;
  std::optional<double> otlp_sampling;
  std::optional<std::string> otlp_service_name;
  std::optional<std::string> replica_sync_listen;
  std::optional<std::vector<std::string>> replica_sync_peers;
  std::optional<std::string> replica_sync_secret;  // environment only
};

// "NAME=URL[,URL...]" -> a model with those replicas, appended to `layer.models`.
Result<void> add_model(std::string_view source, std::string_view spec, Layer& layer) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return option_error(source, fmt::format("expected NAME=URL[,URL...], got '{}'", spec));
  }
  std::string_view name = trim(spec.substr(0, eq));
  if (name.empty()) {
    return option_error(source,
                        fmt::format("expected NAME=URL[,URL...], got '{}' (empty name)", spec));
  }
  ModelConfig model;
  model.name = std::string(name);
  for (std::string_view part : split(spec.substr(eq + 1), ',')) {
    std::string_view url = trim(part);
    if (url.empty()) continue;  // tolerate "a=u1,u2," as templated values often end so
    auto parsed = parse_url(url);
    if (!parsed) {
      return option_error(source, fmt::format("{} (model '{}')", parsed.error().message, name));
    }
    model.endpoints.push_back(EndpointConfig{std::string(url), 1, {}});
  }
  if (model.endpoints.empty()) {
    return option_error(source,
                        fmt::format("model '{}' has no URL (expected NAME=URL[,URL...])", name));
  }
  for (const ModelConfig& existing : layer.models) {
    if (existing.name == model.name) {
      return option_error(source, fmt::format("model '{}' is given twice; list its replicas "
                                              "once, comma separated: {}=URL1,URL2",
                                              name, name));
    }
  }
  layer.models.push_back(std::move(model));
  return {};
}

// "NAME=MODEL" -> an alias or adapter entry.
Result<void> add_named(std::string_view source, std::string_view spec, std::string_view what,
                       std::vector<Layer::Named>& out) {
  auto eq = spec.find('=');
  std::string_view name = eq == std::string_view::npos ? spec : trim(spec.substr(0, eq));
  std::string_view model = eq == std::string_view::npos ? "" : trim(spec.substr(eq + 1));
  if (eq == std::string_view::npos || name.empty() || model.empty()) {
    return option_error(source, fmt::format("expected {}=MODEL, got '{}'", what, spec));
  }
  out.push_back(Layer::Named{std::string(name), std::string(model), std::string(source)});
  return {};
}

// Applies one setting given by `source` (a flag or a variable) to the layer. `from_env` selects
// the list syntax of the variables (';' between models, ',' between API keys).
Result<void> apply_setting(const FlagSpec& spec, std::string_view source, std::string_view value,
                           bool from_env, Layer& layer) {
  auto number = [&](std::uint64_t min, std::uint64_t max) {
    return parse_integer(source, value, min, max);
  };
  switch (spec.kind) {
    case Kind::host:
      if (value.empty()) return option_error(source, "expected a host name or address, got ''");
      layer.host = std::string(value);
      return {};
    case Kind::port: {
      auto n = number(0, kU16Max);
      if (!n) return std::move(n).error();
      layer.port = static_cast<std::uint16_t>(*n);
      return {};
    }
    case Kind::model:
      if (!from_env) return add_model(source, value, layer);
      for (std::string_view item : split(value, ';')) {
        if (trim(item).empty()) continue;
        if (auto r = add_model(source, trim(item), layer); !r) return r;
      }
      return {};
    case Kind::alias:
    case Kind::lora: {
      auto& out = spec.kind == Kind::alias ? layer.aliases : layer.loras;
      std::string_view what = spec.kind == Kind::alias ? "ALIAS" : "ADAPTER";
      if (!from_env) return add_named(source, value, what, out);
      for (std::string_view item : split(value, ';')) {
        if (trim(item).empty()) continue;
        if (auto r = add_named(source, trim(item), what, out); !r) return r;
      }
      return {};
    }
    case Kind::lora_loading:
      for (std::string_view item : from_env ? split(value, ';') : std::vector<std::string_view>{value}) {
        if (trim(item).empty() && from_env) continue;
        const auto eq = item.find('=');
        const std::string_view model = eq == std::string_view::npos ? "" : trim(item.substr(0, eq));
        const std::string_view path = eq == std::string_view::npos ? "" : trim(item.substr(eq + 1));
        if (model.empty() || path.empty()) {
          return option_error(source, fmt::format("expected MODEL=PATH_TEMPLATE, got '{}'", item));
        }
        layer.lora_loading.push_back(Layer::Named{std::string(path), std::string(model), std::string(source)});
      }
      return {};
    case Kind::api_key:
      if (!layer.api_keys) layer.api_keys.emplace();
      if (!from_env) {
        if (value.empty()) return option_error(source, "expected a non-empty key");
        layer.api_keys->emplace_back(value);
        return {};
      }
      for (std::string_view key : split(value, ',')) {
        if (!trim(key).empty()) layer.api_keys->emplace_back(trim(key));
      }
      // A list of blanks would replace the file's keys with none: authentication off.
      if (layer.api_keys->empty()) return option_error(source, "no key in the list (unset it to keep the file's keys)");
      return {};
    case Kind::keys_file:
      layer.keys_file = std::string(value);
      return {};
    case Kind::rate_limit_redis:
      if (auto r = parse_host_port(value); !r) return option_error(source, r.error().message);
      layer.rate_limit_redis = std::string(value);
      return {};
    case Kind::policy:
      if (value.empty()) return option_error(source, "expected a policy name, got ''");
      layer.policy = std::string(value);
      return {};
    case Kind::default_model:
      layer.default_model = std::string(value);
      return {};
    case Kind::max_body_bytes: {
      auto n = number(1, kU64Max);
      if (!n) return std::move(n).error();
      layer.max_body_bytes = *n;
      return {};
    }
    case Kind::connect_timeout_ms:
    case Kind::read_timeout_ms:
    case Kind::threads:
    case Kind::max_connections: {
      auto n = number(spec.kind == Kind::max_connections || spec.kind == Kind::threads ? 0 : 1, kU32Max);
      if (!n) return std::move(n).error();
      auto v = static_cast<std::uint32_t>(*n);
      if (spec.kind == Kind::connect_timeout_ms) layer.connect_timeout_ms = v;
      if (spec.kind == Kind::read_timeout_ms) layer.read_timeout_ms = v;
      if (spec.kind == Kind::threads) layer.threads = v;
      if (spec.kind == Kind::max_connections) layer.max_connections = v;
      return {};
    }
    case Kind::tls_cert:
    case Kind::tls_key:
      if (value.empty()) return option_error(source, "expected a file name, got ''");
      (spec.kind == Kind::tls_cert ? layer.tls_cert_file : layer.tls_key_file) = std::string(value);
      return {};
    case Kind::io:
      if (value == "threads") {
        return option_error(source, "the thread-per-connection front end was removed; the event loop "
                                    "(epoll) is the only one: drop this setting");
      }
      if (value != "epoll") return option_error(source, fmt::format("expected epoll, got '{}'", value));
      layer.io = std::string(value);
      return {};
    case Kind::log_level:
      if (value != "error" && value != "warn" && value != "info" && value != "debug") {
        return option_error(
            source, fmt::format("expected one of error, warn, info, debug, got '{}'", value));
      }
      layer.log_level = std::string(value);
      return {};
    case Kind::log_format:
      if (value != "text" && value != "json") {
        return option_error(source, fmt::format("expected text or json, got '{}'", value));
      }
      layer.log_format = std::string(value);
      return {};
    case Kind::access_log:
      if (value.empty()) return option_error(source, "expected a file path, - (standard output) or off");
      layer.access_log = std::string(value);
      return {};
    case Kind::otlp_endpoint:
      if (auto url = parse_url(value); !url) return option_error(source, url.error().message);
      layer.otlp_endpoint = std::string(value);
      return {};
    case Kind::otlp_sampling: {
      double ratio = -1;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ratio);
      if (ec != std::errc{} || end != value.data() + value.size() || !(ratio >= 0.0 && ratio <= 1.0)) {
        return option_error(source, fmt::format("expected a number 0.0..1.0, got '{}'", value));
      }
      layer.otlp_sampling = ratio;
      return {};
    }
    case Kind::otlp_service_name:
      if (value.empty()) return option_error(source, "expected a service name, got ''");
      layer.otlp_service_name = std::string(value);
      return {};
    case Kind::replica_sync_listen: {
      const std::string_view listen = trim(value);
      if (auto hp = detail::split_host_port(listen, 0); !hp) return option_error(source, hp.error().message);
      layer.replica_sync_listen = std::string(listen);
      return {};
    }
    case Kind::replica_sync_peers:
      // Repeated flags add to the list; the list replaces a lower level's peers as a whole.
      if (!layer.replica_sync_peers) layer.replica_sync_peers.emplace();
      for (std::string_view item : split(value, ',')) {
        const std::string_view peer = trim(item);
        if (peer.empty()) continue;  // "a:1,b:1," as templated values often end so
        if (auto hp = detail::split_host_port(peer); !hp) return option_error(source, hp.error().message);
        layer.replica_sync_peers->emplace_back(peer);
      }
      if (layer.replica_sync_peers->empty()) return option_error(source, "expected HOST:PORT[,HOST:PORT...], got no peer");
      return {};
    case Kind::config:
    case Kind::check_config:
    case Kind::hash_key:
    case Kind::demo:
    case Kind::help:
    case Kind::version:
      return {};  // handled by parse_options itself
  }
  return {};
}

ModelConfig* find_model(AppConfig& config, std::string_view name) {
  for (ModelConfig& model : config.router.models) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

// Scalars and models of a layer over `config`. Aliases and adapters are attached later, once
// every level's models are known.
void merge_layer(const Layer& layer, AppConfig& config) {
  if (layer.host) config.host = *layer.host;
  if (layer.port) config.port = *layer.port;
  if (layer.api_keys) config.api_keys = *layer.api_keys;
  if (layer.keys_file) config.keys_file = *layer.keys_file;
  if (layer.rate_limit_redis) {
    config.rate_limit.backend = "redis";
    config.rate_limit.redis = *layer.rate_limit_redis;
  }
  if (layer.policy) config.router.policy = *layer.policy;
  if (layer.default_model) config.router.default_model = *layer.default_model;
  if (layer.max_body_bytes) config.max_body_bytes = *layer.max_body_bytes;
  if (layer.connect_timeout_ms) config.router.timeouts.connect_ms = *layer.connect_timeout_ms;
  if (layer.read_timeout_ms) config.router.timeouts.read_ms = *layer.read_timeout_ms;
  if (layer.threads) config.threads = *layer.threads;
  if (layer.max_connections) config.max_connections = *layer.max_connections;
  if (layer.tls_cert_file) config.tls_cert_file = *layer.tls_cert_file;
  if (layer.tls_key_file) config.tls_key_file = *layer.tls_key_file;
  if (layer.log_level) config.log_level = *layer.log_level;
  if (layer.log_format) config.log_format = *layer.log_format;
  if (layer.access_log) config.access_log = *layer.access_log;
  if (layer.io) config.io = *layer.io;
  if (layer.otlp_endpoint) config.otlp.endpoint = *layer.otlp_endpoint;
  if (layer.otlp_sampling) config.otlp.sampling = *layer.otlp_sampling;
  if (layer.otlp_service_name) config.otlp.service_name = *layer.otlp_service_name;
  if (layer.replica_sync_listen) config.router.replica_sync.listen = *layer.replica_sync_listen;
  if (layer.replica_sync_peers) config.router.replica_sync.peers = *layer.replica_sync_peers;
  if (layer.replica_sync_secret) config.router.replica_sync.secret = *layer.replica_sync_secret;
  for (const ModelConfig& model : layer.models) {
    // A same-named model keeps its aliases, adapters and policy; only the replicas change.
    if (ModelConfig* existing = find_model(config, model.name)) {
      existing->endpoints = model.endpoints;
    } else {
      config.router.models.push_back(model);
    }
  }
}

Result<void> attach_names(const std::vector<Layer::Named>& names, bool lora,
                          AppConfig& config) {
  for (const Layer::Named& named : names) {
    ModelConfig* model = find_model(config, named.model);
    if (model == nullptr) {
      return option_error(named.source,
                          fmt::format("{} '{}' refers to unknown model '{}'",
                                      lora ? "LoRA adapter" : "alias", named.name, named.model));
    }
    auto& list = lora ? model->loras : model->aliases;
    if (std::find(list.begin(), list.end(), named.name) == list.end()) list.push_back(named.name);
  }
  return {};
}

Result<std::string> read_file(const std::string& path, std::string_view source) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return option_error(source, fmt::format("cannot open config file '{}': {}", path,
                                            err != 0 ? std::strerror(err) : "unknown error"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return option_error(source, fmt::format("cannot read config file '{}'", path));
  return text.str();
}

// OpenTelemetry's standard exporter variables (as the OpenTelemetry Operator and SDKs set them):
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full
// .../v1/traces URL), OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER(_ARG), OTEL_SDK_DISABLED, and
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, which must be http/protobuf (the one implemented).
Result<void> apply_otel_environment(const Environment& env, Layer& layer) {
  auto get = [&](const char* name) -> std::string_view {
    auto it = env.find(name);
    return it == env.end() ? std::string_view() : std::string_view(it->second);
  };
  if (get("OTEL_SDK_DISABLED") == "true") return {};
  for (const char* name : {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"}) {
    const std::string_view protocol = get(name);
    if (!protocol.empty()) {
      if (protocol != "http/protobuf") {
        return option_error(name, fmt::format("'{}' is not supported: the exporter speaks http/protobuf", protocol));
      }
      break;  // the traces variable wins over the general one
    }
  }
  if (const std::string_view traces = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); !traces.empty()) {
    constexpr std::string_view kPath = "/v1/traces";
    std::string_view base = traces;
    if (base.size() < kPath.size() || base.substr(base.size() - kPath.size()) != kPath) {
      return option_error("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                          fmt::format("expected a URL ending in /v1/traces, got '{}'", traces));
    }
    base.remove_suffix(kPath.size());
    if (auto url = parse_url(base); !url) return option_error("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.error().message);
    layer.otlp_endpoint = std::string(base);
  } else if (const std::string_view endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT"); !endpoint.empty()) {
    std::string_view base = endpoint;
    while (!base.empty() && base.back() == '/') base.remove_suffix(1);
    if (auto url = parse_url(base); !url) return option_error("OTEL_EXPORTER_OTLP_ENDPOINT", url.error().message);
    layer.otlp_endpoint = std::string(base);
  }
  if (const std::string_view name = get("OTEL_SERVICE_NAME"); !name.empty()) layer.otlp_service_name = std::string(name);
  const std::string_view sampler = get("OTEL_TRACES_SAMPLER");
  if (sampler.empty()) return {};
  // The router's sampling is parent based: a client's traceparent decides for its trace.
  if (sampler == "always_on" || sampler == "parentbased_always_on") {
    layer.otlp_sampling = 1.0;
  } else if (sampler == "always_off" || sampler == "parentbased_always_off") {
    layer.otlp_sampling = 0.0;
  } else if (sampler == "traceidratio" || sampler == "parentbased_traceidratio") {
    const std::string_view arg = get("OTEL_TRACES_SAMPLER_ARG");
    double ratio = 1.0;  // the specification's default
    if (!arg.empty()) {
      const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ratio);
      if (ec != std::errc{} || end != arg.data() + arg.size() || !(ratio >= 0.0 && ratio <= 1.0)) {
        return option_error("OTEL_TRACES_SAMPLER_ARG", fmt::format("expected a number 0.0..1.0, got '{}'", arg));
      }
    }
    layer.otlp_sampling = ratio;
  } else {
    return option_error("OTEL_TRACES_SAMPLER",
                        fmt::format("'{}' is not supported (always_on, always_off, traceidratio and their "
                                    "parentbased_ forms are)",
                                    sampler));
  }
  return {};
}

}  // namespace

Environment current_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    auto eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return env;
}

// `args` are the arguments after the program name (argv + 1 .. argv + argc).
Result<ProgramOptions> parse_options(const std::vector<std::string>& args, const Environment& env) {
  ProgramOptions options;

  // 1. Split the command line into (flag, value) pairs; syntax errors only.
  std::vector<std::pair<const FlagSpec*, std::string>> flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      return Error{Errc::config, fmt::format("unexpected argument '{}' (see --help)", arg),
                   std::string(arg)};
    }
    auto eq = arg.find('=');
    std::string_view name = arg.substr(0, eq);
    const FlagSpec* spec = arg.starts_with("--") || arg == "-h" ? find_flag(name) : nullptr;
    if (spec == nullptr) {
      return Error{Errc::config, fmt::format("unknown flag '{}' (see --help)", name),
                   std::string(name)};
    }
    if (spec->arg.empty()) {
      if (eq != std::string_view::npos) return option_error(spec->flag, "takes no value");
      flags.emplace_back(spec, std::string());
    } else if (eq != std::string_view::npos) {
      flags.emplace_back(spec, std::string(arg.substr(eq + 1)));
    } else if (i + 1 < args.size()) {
      flags.emplace_back(spec, args[++i]);
    } else {
      return option_error(spec->flag,
                          fmt::format("missing value (expected {} {})", spec->flag, spec->arg));
    }
  }
  for (const auto& [spec, value] : flags) {
    if (spec->kind == Kind::help) options.help = true;
    if (spec->kind == Kind::version) options.version = true;
    if (spec->kind == Kind::check_config) options.check_config = true;
    if (spec->kind == Kind::demo) options.demo = true;
    if (spec->kind == Kind::hash_key) options.hash_key = true;
    if (spec->kind == Kind::config) options.config_path = value;
  }
  // --help and --version work whatever the environment and config file hold.
  if (options.help || options.version || options.hash_key) return options;

  // 2. The config file: --config, else VLLM_ROUTER_CONFIG.
  std::string_view config_source = "--config";
  if (options.config_path.empty()) {
    auto it = env.find("VLLM_ROUTER_CONFIG");
    if (it != env.end() && !it->second.empty()) {
      options.config_path = it->second;
      config_source = "VLLM_ROUTER_CONFIG";
    }
  }
  if (!options.config_path.empty()) {
    auto text = read_file(options.config_path, config_source);
    if (!text) return std::move(text).error();
    auto parsed = parse_app_config(*text, options.config);
    if (!parsed) {
      Error error = std::move(parsed).error();
      error.message = fmt::format("{}: {}", options.config_path, error.message);
      return error;
    }
    options.config = std::move(parsed).value();
  }

  // 3. Environment, then flags. Empty variables count as unset (charts often render "").
  // OpenTelemetry's own variables come first: ours, then flags, override them.
  Layer env_layer;
  if (auto r = apply_otel_environment(env, env_layer); !r) return r.error();
  for (const FlagSpec& spec : kFlags) {
    if (spec.env.empty() || spec.kind == Kind::config) continue;
    auto it = env.find(std::string(spec.env));
    if (it == env.end() || it->second.empty()) continue;
    if (auto r = apply_setting(spec, spec.env, it->second, true, env_layer); !r) return r.error();
  }
  // Secrets stay out of command lines: the replica sync's key has a variable and no flag.
  if (auto it = env.find("VLLM_ROUTER_REPLICA_SYNC_SECRET"); it != env.end() && !it->second.empty()) {
    env_layer.replica_sync_secret = it->second;
  }
  Layer flag_layer;
  for (const auto& [spec, value] : flags) {
    if (auto r = apply_setting(*spec, spec->flag, value, false, flag_layer); !r) return r.error();
  }
  merge_layer(env_layer, options.config);
  merge_layer(flag_layer, options.config);
  for (const Layer* layer : {&env_layer, &flag_layer}) {
    if (auto r = attach_names(layer->aliases, false, options.config); !r) return r.error();
    if (auto r = attach_names(layer->loras, true, options.config); !r) return r.error();
    for (const Layer::Named& named : layer->lora_loading) {
      ModelConfig* model = find_model(options.config, named.model);
      if (model == nullptr) {
        return option_error(named.source, fmt::format("--lora-loading refers to unknown model '{}'", named.model));
      }
      if (!model->lora) model->lora.emplace();
      model->lora->dynamic_loading = true;
      model->lora->path_template = named.name;
    }
  }
  // Each level may give one of the pair; together they must give both.
  const AppConfig& c = options.config;
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    const bool cert = !c.tls_cert_file.empty();
    return Error{Errc::config,
                 fmt::format("{} is set but {} is not: TLS needs both the certificate and its key ({}, {} or the "
                             "config file's {})",
                             cert ? "tls_cert_file" : "tls_key_file", cert ? "tls_key_file" : "tls_cert_file",
                             cert ? "--tls-key" : "--tls-cert",
                             cert ? "VLLM_ROUTER_TLS_KEY_FILE" : "VLLM_ROUTER_TLS_CERT_FILE",
                             cert ? "tls_key_file" : "tls_cert_file"),
                 cert ? "tls_key_file" : "tls_cert_file"};
  }
  return options;
}

}  // namespace vllm_router::server
