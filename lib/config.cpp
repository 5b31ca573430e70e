// The configuration document: the router's keys (models, timeouts, policies, health, sources) and
// a host's own keys through its ConfigExtension (the readers are lib/config_reader.h).
#include "vllm_router/config.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config_reader.h"
#include "host_port.h"
#include "vllm_router/endpoint.h"

VLLM_ROUTER_BEGIN_NAMESPACE

struct ConfigField::Impl {
  std::string_view key;
  simdjson::ondemand::value& value;
  const std::string& path;
};

namespace {

using namespace detail::config;  // NOLINT: the readers of lib/config_reader.h

Result<void> parse_endpoint(od::value& value, const std::string& path, EndpointConfig& out) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type == od::json_type::string) return read_into(value, path, out.url);
  if (*type != od::json_type::object) {
    return config_error(
        path, cat("expected a URL string or an object {\"url\", \"weight\", \"api_key\"}, got ",
                  describe(value)));
  }
  bool has_url = false;
  auto r = for_each_field(
      value, path, {"url", "weight", "api_key"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "url") {
          has_url = true;
          return read_into(field, field_path, out.url);
        }
        if (key == "weight") return read_into(field, field_path, 1, out.weight);
        return read_into(field, field_path, out.api_key);
      });
  if (!r) return r;
  if (!has_url) return config_error(key_path(path, "url"), "missing required key");
  return {};
}

Result<void> parse_health_check(od::value& value, const std::string& path, HealthCheckConfig& out) {
  return for_each_field(
      value, path, {"enabled", "path", "interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "enabled") return read_bool(field, field_path, out.enabled);
        if (key == "path") {
          if (auto r = read_into(field, field_path, out.path, true); !r) return r;
          if (out.path.front() != '/') return config_error(field_path, "expected a path starting with '/'");
          return {};
        }
        if (key == "interval_ms") return read_into(field, field_path, 1, out.interval_ms);
        if (key == "timeout_ms") return read_into(field, field_path, 1, out.timeout_ms);
        if (key == "healthy_threshold") return read_into(field, field_path, 1, out.healthy_threshold);
        return read_into(field, field_path, 1, out.unhealthy_threshold);
      });
}

Result<void> parse_outlier(od::value& value, const std::string& path, OutlierConfig& out) {
  return for_each_field(
      value, path, {"enabled", "consecutive_failures", "base_ejection_ms", "max_ejection_ms", "max_ejection_percent"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "enabled") return read_bool(field, field_path, out.enabled);
        if (key == "consecutive_failures") return read_into(field, field_path, 1, out.consecutive_failures);
        if (key == "base_ejection_ms") return read_into(field, field_path, 1, out.base_ejection_ms);
        if (key == "max_ejection_ms") return read_into(field, field_path, 1, out.max_ejection_ms);
        if (auto r = read_into(field, field_path, 0, out.max_ejection_percent); !r) return r;
        if (out.max_ejection_percent > 100) return config_error(field_path, "expected a percentage 0..100");
        return {};
      });
}

Result<void> parse_retry(od::value& value, const std::string& path, RetryConfig& out) {
  return for_each_field(
      value, path, {"on_503", "on_first_byte_timeout", "on_reset", "budget_percent", "min_concurrent"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "on_503") return read_bool(field, field_path, out.on_503);
        if (key == "on_first_byte_timeout") return read_bool(field, field_path, out.on_first_byte_timeout);
        if (key == "on_reset") return read_bool(field, field_path, out.on_reset);
        if (key == "budget_percent") return read_into(field, field_path, 0, out.budget_percent);
        return read_into(field, field_path, 0, out.min_concurrent);
      });
}

Result<void> parse_policy_options(od::value& value, const std::string& path, PolicyOptions& out) {
  return for_each_field(
      value, path,
      {"session_header", "session_load_factor", "session_min_capacity", "prefix_chunk_chars", "prefix_window_chars", "prefix_max_entries", "prefix_load_margin",
       "prefix_affinity_chars", "prefix_home_load_bound", "prefix_replica_affinity",
       "prefix_replica_load_factor",
       "scrape_interval_ms", "scrape_timeout_ms", "scrape_stale_ms"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "session_header") return read_into(field, field_path, out.session_header, true);
        if (key == "session_load_factor") return read_double(field, field_path, 1.0, out.session_load_factor);
        if (key == "session_min_capacity") return read_into(field, field_path, 0, out.session_min_capacity);
        if (key == "prefix_chunk_chars") return read_into(field, field_path, 1, out.prefix_chunk_chars);
        if (key == "prefix_window_chars") return read_into(field, field_path, 1, out.prefix_window_chars);
        if (key == "prefix_max_entries") return read_into(field, field_path, 1, out.prefix_max_entries);
        if (key == "prefix_load_margin") return read_double(field, field_path, 0.0, out.prefix_load_margin);
        if (key == "prefix_affinity_chars") return read_into(field, field_path, 0, out.prefix_affinity_chars);
        if (key == "prefix_home_load_bound") return read_double(field, field_path, 0.0, out.prefix_home_load_bound);
        if (key == "prefix_replica_affinity") return read_bool(field, field_path, out.prefix_replica_affinity);
        if (key == "prefix_replica_load_factor") return read_double(field, field_path, 1.0, out.prefix_replica_load_factor);
        if (key == "scrape_interval_ms") return read_into(field, field_path, 1, out.scrape_interval_ms);
        if (key == "scrape_timeout_ms") return read_into(field, field_path, 1, out.scrape_timeout_ms);
        return read_into(field, field_path, 1, out.scrape_stale_ms);
      });
}

Result<void> parse_endpoints(od::value& field, const std::string& field_path, std::vector<EndpointConfig>& out) {
  std::vector<EndpointConfig> endpoints;
  auto r = for_each_element(field, field_path, "an array of endpoints",
                            [&](od::value& element, const std::string& element_path) -> Result<void> {
                              EndpointConfig endpoint;
                              if (auto er = parse_endpoint(element, element_path, endpoint); !er) return er;
                              endpoints.push_back(std::move(endpoint));
                              return {};
                            });
  if (!r) return r;
  out = std::move(endpoints);
  return {};
}

// "prefill": {"endpoints": [...], "policy": "...", "colocated_fallback": true}
Result<void> parse_prefill(od::value& value, const std::string& path, PrefillConfig& out) {
  return for_each_field(value, path, {"endpoints", "policy", "colocated_fallback"},
                        [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
                          if (key == "policy") return read_into(field, field_path, out.policy);
                          if (key == "colocated_fallback") return read_bool(field, field_path, out.colocated_fallback);
                          return parse_endpoints(field, field_path, out.endpoints);
                        });
}

Result<void> parse_lora(od::value& value, const std::string& path, LoraConfig& out) {
  return for_each_field(
      value, path, {"dynamic_loading", "paths", "path_template", "load_timeout_ms", "replicate_margin"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "dynamic_loading") return read_bool(field, field_path, out.dynamic_loading);
        if (key == "path_template") return read_into(field, field_path, out.path_template, true);
        if (key == "load_timeout_ms") return read_into(field, field_path, 1, out.load_timeout_ms);
        if (key == "replicate_margin") return read_into(field, field_path, 0, out.replicate_margin);
        return for_each_member(field, field_path,
                               [&](std::string_view name, od::value& member, const std::string& member_path) -> Result<void> {
                                 std::string lora_path;
                                 if (auto r = read_into(member, member_path, lora_path, true); !r) return r;
                                 out.paths.emplace(std::string(name), std::move(lora_path));
                                 return {};
                               });
      });
}

Result<void> parse_model(od::value& value, const std::string& path, ModelConfig& out) {
  auto parsed = for_each_field(
      value, path,
      {"name", "aliases", "loras", "lora", "policy", "endpoints", "health_check", "max_in_flight_per_endpoint",
       "prefill", "decode"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "name") return read_into(field, field_path, out.name, true);
        if (key == "lora") {
          out.lora.emplace();
          return parse_lora(field, field_path, *out.lora);
        }
        if (key == "health_check") {
          out.health_check.emplace();
          return parse_health_check(field, field_path, *out.health_check);
        }
        if (key == "max_in_flight_per_endpoint") return read_into(field, field_path, 0, out.max_in_flight_per_endpoint);
        if (key == "aliases") return read_string_array(field, field_path, out.aliases);
        if (key == "loras") return read_string_array(field, field_path, out.loras);
        if (key == "policy") return read_into(field, field_path, out.policy);
        if (key == "prefill") {
          out.prefill.emplace();
          return parse_prefill(field, field_path, *out.prefill);
        }
        if (key == "decode") {
          // "decode": {"policy": "..."}: the decode pool is the model's own (`endpoints`).
          return for_each_field(field, field_path, {"policy"},
                                [&](std::string_view, od::value& member, const std::string& member_path) {
                                  return read_into(member, member_path, out.policy);
                                });
        }
        return parse_endpoints(field, field_path, out.endpoints);
      });
  if (!parsed) return parsed;
  if (out.lora) {  // adapters named in lora.paths are adapters of the model
    for (const auto& [name, lora_path] : out.lora->paths) {
      if (std::find(out.loras.begin(), out.loras.end(), name) == out.loras.end()) out.loras.push_back(name);
    }
  }
  return {};
}

Result<void> parse_timeouts(od::value& value, const std::string& path, TimeoutConfig& out) {
  return for_each_field(
      value, path, {"connect_ms", "read_ms", "first_byte_ms", "idle_ms", "total_ms", "write_ms"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "connect_ms") return read_into(field, field_path, 1, out.connect_ms);
        if (key == "read_ms") return read_into(field, field_path, 1, out.read_ms);
        if (key == "first_byte_ms") return read_into(field, field_path, 0, out.first_byte_ms);
        if (key == "idle_ms") return read_into(field, field_path, 0, out.idle_ms);
        if (key == "total_ms") return read_into(field, field_path, 0, out.total_ms);
        return read_into(field, field_path, 1, out.write_ms);
      });
}


Result<void> parse_upstream_tls(od::value& value, const std::string& path, UpstreamTlsConfig& out) {
  return for_each_field(value, path, {"ca_file", "insecure_skip_verify"},
                        [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
                          if (key == "ca_file") return read_into(field, field_path, out.ca_file, true);
                          return read_bool(field, field_path, out.insecure_skip_verify);
                        });
}

Result<void> parse_model_discovery(od::value& value, const std::string& path, ModelDiscoveryConfig& out) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type == od::json_type::boolean) return read_bool(value, path, out.enabled);
  out.enabled = true;  // an object turns it on unless it says "enabled": false
  return for_each_field(
      value, path, {"enabled", "interval_ms", "timeout_ms"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "enabled") return read_bool(field, field_path, out.enabled);
        if (key == "interval_ms") return read_into(field, field_path, 1, out.interval_ms);
        return read_into(field, field_path, 1, out.timeout_ms);
      });
}

// "model_label_names": {"label value": "served name" or ["served name", ...]}.
Result<void> parse_label_names(od::value& value, const std::string& path,
                               std::map<std::string, std::vector<std::string>>& out) {
  return for_each_member(value, path, [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
    auto type = type_of(field, field_path);
    if (!type) return std::move(type).error();
    std::vector<std::string> names;
    if (*type == od::json_type::string) {
      auto name = read_string(field, field_path, true);
      if (!name) return std::move(name).error();
      names.push_back(std::move(name).value());
    } else if (auto r = read_string_array(field, field_path, names); !r) {
      return r;
    }
    if (names.empty()) return config_error(field_path, "expected a served name or a non-empty list of them");
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i].empty()) return config_error(index_path(field_path, i), "expected a non-empty string");
    }
    out[std::string(key)] = std::move(names);
    return {};
  });
}

// One "discovery" entry. Keys are read first and checked against the entry's type afterwards
// (the type may come last in the object).
Result<void> parse_discovery_entry(od::value& value, const std::string& path, DiscoveryConfig& out) {
  static const std::vector<std::string_view> kCommon = {"type", "model", "api_key", "api_key_file", "weight",
                                                        "discover_models"};
  static const std::vector<std::string_view> kStatic = {"endpoints"};
  static const std::vector<std::string_view> kDns = {"name", "port", "interval_ms"};
  static const std::vector<std::string_view> kKube = {
      "api_url", "namespace", "label_selector", "resource", "port", "model_label", "model_annotation", "role_label",
      "token_path", "ca_path", "resync_ms", "backoff_initial_ms", "backoff_max_ms", "model_label_names",
      "address_type"};
  std::vector<std::string_view> all = kCommon;
  for (const auto* list : {&kStatic, &kDns, &kKube}) {
    for (std::string_view k : *list) {
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
    }
  }
  std::vector<std::string> seen;
  bool port_is_name = false;
  auto r = for_each_field(
      value, path, all,
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        seen.emplace_back(key);
        if (key == "type") {
          if (auto tr = read_into(field, field_path, out.type, true); !tr) return tr;
          if (out.type != "static" && out.type != "dns" && out.type != "kubernetes") {
            return config_error(field_path, cat("expected \"static\", \"dns\" or \"kubernetes\", got \"", out.type, "\""));
          }
          return {};
        }
        if (key == "model") return read_into(field, field_path, out.model);
        if (key == "api_key") return read_into(field, field_path, out.api_key);
        if (key == "api_key_file") return read_into(field, field_path, out.api_key_file, true);
        if (key == "weight") return read_into(field, field_path, 1, out.weight);
        if (key == "discover_models") return parse_model_discovery(field, field_path, out.discover_models);
        if (key == "endpoints") return read_string_array(field, field_path, out.endpoints);
        if (key == "name") return read_into(field, field_path, out.dns_name, true);
        if (key == "interval_ms") return read_into(field, field_path, 1, out.interval_ms);
        if (key == "port") {
          auto pt = type_of(field, field_path);
          if (!pt) return std::move(pt).error();
          if (*pt == od::json_type::string) {
            port_is_name = true;
            return read_into(field, field_path, out.port_name, true);
          }
          auto number = read_integer(field, field_path, 1, 65535);
          if (!number) {
            return config_error(field_path, "expected a port number 1..65535 (or, for kubernetes, a port name)");
          }
          out.port = static_cast<std::uint16_t>(*number);
          return {};
        }
        if (key == "api_url") return read_into(field, field_path, out.api_url, true);
        if (key == "namespace") return read_into(field, field_path, out.namespace_name, true);
        if (key == "label_selector") return read_into(field, field_path, out.label_selector);
        if (key == "resource") {
          if (auto rr = read_into(field, field_path, out.resource, true); !rr) return rr;
          if (out.resource != "endpointslices" && out.resource != "pods") {
            return config_error(field_path, cat("expected \"endpointslices\" or \"pods\", got \"", out.resource, "\""));
          }
          return {};
        }
        if (key == "model_label") return read_into(field, field_path, out.model_label);
        if (key == "role_label") return read_into(field, field_path, out.role_label);
        if (key == "model_annotation") return read_into(field, field_path, out.model_annotation);
        if (key == "model_label_names") return parse_label_names(field, field_path, out.model_label_names);
        if (key == "address_type") {
          if (auto ar = read_into(field, field_path, out.address_type, true); !ar) return ar;
          if (out.address_type != "IPv4" && out.address_type != "IPv6") {
            return config_error(field_path, cat("expected \"IPv4\" or \"IPv6\", got \"", out.address_type, "\""));
          }
          return {};
        }
        if (key == "token_path") return read_into(field, field_path, out.token_path, true);
        if (key == "ca_path") return read_into(field, field_path, out.ca_path, true);
        if (key == "resync_ms") return read_into(field, field_path, 1, out.resync_ms);
        if (key == "backoff_initial_ms") return read_into(field, field_path, 1, out.backoff_initial_ms);
        return read_into(field, field_path, 1, out.backoff_max_ms);
      });
  if (!r) return r;
  if (out.type.empty()) return config_error(key_path(path, "type"), "missing required key");
  const auto& own = out.type == "static" ? kStatic : out.type == "dns" ? kDns : kKube;
  for (const std::string& key : seen) {
    if (std::find(kCommon.begin(), kCommon.end(), key) != kCommon.end()) continue;
    if (std::find(own.begin(), own.end(), key) == own.end()) {
      return config_error(key_path(path, key), cat("not a key of a \"", out.type, "\" source (its keys: ",
                                                   join(kCommon), ", ", join(own), ")"));
    }
  }
  auto has = [&](std::string_view key) { return std::find(seen.begin(), seen.end(), key) != seen.end(); };
  if (out.type == "static") {
    if (out.endpoints.empty()) return config_error(key_path(path, "endpoints"), "expected at least one URL");
    for (std::size_t i = 0; i < out.endpoints.size(); ++i) {
      if (auto url = parse_url(out.endpoints[i]); !url) {
        return config_error(index_path(key_path(path, "endpoints"), i), url.error().message);
      }
    }
  } else if (out.type == "dns") {
    if (!has("name")) return config_error(key_path(path, "name"), "missing required key");
    if (!has("port")) return config_error(key_path(path, "port"), "missing required key");
    if (port_is_name) return config_error(key_path(path, "port"), "expected a port number 1..65535");
  } else {
    if (!has("port")) return config_error(key_path(path, "port"), "missing required key (a port number or name)");
    if (!out.api_url.empty()) {
      if (out.api_url.rfind("http://", 0) != 0 && out.api_url.rfind("https://", 0) != 0) {
        return config_error(key_path(path, "api_url"), cat("expected an http:// or https:// URL, got \"", out.api_url, "\""));
      }
    }
  }
  return {};
}

// "replica_sync": {"listen": "HOST:PORT", "peers": ["HOST:PORT", ...], "interval_ms", ...}. Each
// address is checked here, where its path is known; validate() checks the cross-field rules.
Result<void> parse_replica_sync(od::value& value, const std::string& path, ReplicaSyncConfig& out) {
  return for_each_field(
      value, path, {"listen", "peers", "interval_ms", "peer_timeout_ms", "resolve_interval_ms", "secret"},
      [&](std::string_view key, od::value& field, const std::string& field_path) -> Result<void> {
        if (key == "listen") {
          if (auto r = read_into(field, field_path, out.listen); !r) return r;
          if (out.listen.empty()) return {};  // off
          if (auto hp = detail::split_host_port(out.listen, 0); !hp) return config_error(field_path, hp.error().message);
          return {};
        }
        if (key == "peers") {
          if (auto r = read_string_array(field, field_path, out.peers); !r) return r;
          for (std::size_t i = 0; i < out.peers.size(); ++i) {
            if (auto hp = detail::split_host_port(out.peers[i]); !hp) {
              return config_error(index_path(field_path, i), hp.error().message);
            }
          }
          return {};
        }
        if (key == "interval_ms") {
          auto n = read_integer(field, field_path, 1, 10000);
          if (!n) return std::move(n).error();
          out.interval_ms = static_cast<std::uint32_t>(*n);
          return {};
        }
        if (key == "peer_timeout_ms") return read_into(field, field_path, 1, out.peer_timeout_ms);
        if (key == "resolve_interval_ms") return read_into(field, field_path, 100, out.resolve_interval_ms);
        return read_into(field, field_path, out.secret);
      });
}

// The keys of the router's part of a document.
const std::vector<std::string_view> kRouterKeys = {
    "policy", "default_model", "timeouts", "max_attempts", "max_idle_connections", "models", "retry",
    "health_check", "outlier_detection", "panic_threshold_percent", "policy_options", "queue_max",
    "queue_timeout_ms", "discovery", "dns_servers", "routes", "admin_routes", "upstream_tls", "replica_sync"};

Result<void> parse_router_key(std::string_view key, od::value& field, const std::string& path, RouterConfig& router) {
  if (key == "policy") return read_into(field, path, router.policy, true);
  if (key == "default_model") return read_into(field, path, router.default_model);
  if (key == "timeouts") return parse_timeouts(field, path, router.timeouts);
  if (key == "max_attempts") return read_into(field, path, 1, router.max_attempts);
  if (key == "max_idle_connections") return read_into(field, path, 0, router.max_idle_connections);
  if (key == "retry") return parse_retry(field, path, router.retry);
  if (key == "health_check") return parse_health_check(field, path, router.health_check);
  if (key == "outlier_detection") return parse_outlier(field, path, router.outlier_detection);
  if (key == "policy_options") return parse_policy_options(field, path, router.policy_options);
  if (key == "panic_threshold_percent") {
    if (auto r = read_into(field, path, 0, router.panic_threshold_percent); !r) return r;
    if (router.panic_threshold_percent > 100) return config_error(path, "expected a percentage 0..100");
    return {};
  }
  if (key == "dns_servers") return read_string_array(field, path, router.dns_servers);
  if (key == "upstream_tls") return parse_upstream_tls(field, path, router.upstream_tls);
  if (key == "replica_sync") return parse_replica_sync(field, path, router.replica_sync);
  if (key == "routes") return read_string_array(field, path, router.routes);
  if (key == "admin_routes") return read_string_array(field, path, router.admin_routes);
  if (key == "queue_max") return read_into(field, path, 0, router.queue_max);
  if (key == "queue_timeout_ms") return read_into(field, path, 1, router.queue_timeout_ms);
  if (key == "discovery") {
    // Replaces the base's list as a whole.
    std::vector<DiscoveryConfig> sources;
    auto dr = for_each_element(field, path, "an array of endpoint sources",
                               [&](od::value& element, const std::string& element_path) -> Result<void> {
                                 DiscoveryConfig source;
                                 if (auto sr = parse_discovery_entry(element, element_path, source); !sr) return sr;
                                 sources.push_back(std::move(source));
                                 return {};
                               });
    if (!dr) return dr;
    router.discovery = std::move(sources);
    return {};
  }
  // "models": replaces the base's list as a whole.
  std::vector<ModelConfig> models;
  auto r = for_each_element(field, path, "an array of models",
                            [&](od::value& element, const std::string& element_path) -> Result<void> {
                              ModelConfig model;
                              if (auto mr = parse_model(element, element_path, model); !mr) return mr;
                              models.push_back(std::move(model));
                              return {};
                            });
  if (!r) return r;
  router.models = std::move(models);
  return {};
}

Result<void> parse_document(od::value& root, RouterConfig& router, const ConfigExtension* extension) {
  std::vector<std::string_view> keys = kRouterKeys;
  if (extension != nullptr) keys.insert(keys.end(), extension->keys.begin(), extension->keys.end());
  return for_each_field(root, "", keys, [&](std::string_view key, od::value& field, const std::string& path) -> Result<void> {
    if (std::find(kRouterKeys.begin(), kRouterKeys.end(), key) != kRouterKeys.end()) {
      return parse_router_key(key, field, path, router);
    }
    ConfigField::Impl impl{key, field, path};
    ConfigField handle(impl);
    return extension->read(handle);
  });
}

}  // namespace

std::string_view ConfigField::key() const noexcept { return impl_.key; }
Result<void> ConfigField::read(std::string& out, bool non_empty) { return read_into(impl_.value, impl_.path, out, non_empty); }
Result<void> ConfigField::read(bool& out) { return read_bool(impl_.value, impl_.path, out); }
Result<void> ConfigField::read(std::uint16_t& out, std::uint16_t min) { return read_into(impl_.value, impl_.path, min, out); }
Result<void> ConfigField::read(std::uint32_t& out, std::uint32_t min) { return read_into(impl_.value, impl_.path, min, out); }
Result<void> ConfigField::read(std::uint64_t& out, std::uint64_t min) { return read_into(impl_.value, impl_.path, min, out); }
Result<void> ConfigField::read(std::vector<std::string>& out) { return read_string_array(impl_.value, impl_.path, out); }
Result<void> ConfigField::read(double& out, double min, double max) {
  const std::string got = describe(impl_.value);
  double v = 0;
  if (auto r = read_double(impl_.value, impl_.path, min, v); !r || !(v <= max)) {
    char lo[32];
    char hi[32];
    const auto l = std::to_chars(lo, lo + sizeof lo, min);
    const auto h = std::to_chars(hi, hi + sizeof hi, max);
    return config_error(impl_.path, cat("expected a number ", std::string_view(lo, static_cast<std::size_t>(l.ptr - lo)),
                                        "..", std::string_view(hi, static_cast<std::size_t>(h.ptr - hi)), ", got ", got));
  }
  out = v;
  return {};
}

Result<void> ConfigField::read_object(std::span<const std::string_view> keys,
                                      const std::function<Result<void>(ConfigField& member)>& read) {
  const std::vector<std::string_view> accepted(keys.begin(), keys.end());
  return for_each_field(impl_.value, impl_.path, accepted,
                        [&](std::string_view key, od::value& value, const std::string& path) -> Result<void> {
                          ConfigField::Impl impl{key, value, path};
                          ConfigField member(impl);
                          return read(member);
                        });
}

Result<void> ConfigField::read_choice(std::string& out, std::span<const std::string_view> choices) {
  std::string value;
  if (auto r = read_into(impl_.value, impl_.path, value, true); !r) return r;
  if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
    std::string expected;
    for (std::string_view c : choices) expected += (expected.empty() ? "\"" : ", \"") + std::string(c) + "\"";
    return config_error(impl_.path, cat("expected one of ", expected, ", got \"", value, "\""));
  }
  out = std::move(value);
  return {};
}

Result<RouterConfig> parse_router_config(std::string_view json, RouterConfig base, const ConfigExtension* extension) {
  simdjson::padded_string padded(json);
  od::parser parser;
  od::document document;
  if (auto code = parser.iterate(padded).get(document); code != simdjson::SUCCESS) {
    return json_error(code, "");
  }
  od::json_type type{};
  if (auto code = document.type().get(type); code != simdjson::SUCCESS) return json_error(code, "");
  if (type != od::json_type::object) {
    // A scalar document cannot be read as a value; describe it from its raw token instead.
    std::string_view raw;
    if (type == od::json_type::array) {
      raw = "an array";
    } else if (document.raw_json_token().get(raw) != simdjson::SUCCESS) {
      raw = "invalid JSON";
    }
    raw = trim(raw);
    if (raw.size() > kMaxShown) raw = raw.substr(0, kMaxShown);
    return config_error("", cat("expected a JSON object at the top level, got ", raw));
  }
  od::value root;
  if (auto code = document.get_value().get(root); code != simdjson::SUCCESS) {
    return json_error(code, "");
  }
  if (auto r = parse_document(root, base, extension); !r) return r.error();
  // simdjson 3.0 has no document::at_end(); current_location() reports OUT_OF_BOUNDS at the end.
  if (document.current_location().error() != simdjson::OUT_OF_BOUNDS) {
    return config_error("", "invalid JSON: unexpected content after the top-level object");
  }
  return base;
}

VLLM_ROUTER_END_NAMESPACE
