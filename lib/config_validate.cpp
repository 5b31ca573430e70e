// validate(): the cross-field rules of a RouterConfig (names unique across models, aliases and
// adapters; endpoints parse and are not listed twice; known policies; the default model exists;
// replica_sync's addresses, ranges and peers only with a listen address).
#include <map>
#include <string>

#include "config_reader.h"
#include "host_port.h"
#include "vllm_router/config.h"
#include "vllm_router/endpoint.h"

VLLM_ROUTER_BEGIN_NAMESPACE

using namespace detail::config;  // NOLINT: the readers' error helpers

namespace {

// The parser checks each key where it is read; these rules hold whatever set the fields (the
// file, VLLM_ROUTER_REPLICA_SYNC_* and flags layered over it, or a program).
Result<void> validate_replica_sync(const ReplicaSyncConfig& sync) {
  if (!sync.listen.empty()) {
    if (auto hp = detail::split_host_port(sync.listen, 0); !hp) return config_error("replica_sync.listen", hp.error().message);
  }
  for (std::size_t i = 0; i < sync.peers.size(); ++i) {
    if (auto hp = detail::split_host_port(sync.peers[i]); !hp) {
      return config_error(index_path("replica_sync.peers", i), hp.error().message);
    }
  }
  if (!sync.peers.empty() && sync.listen.empty()) {
    return config_error("replica_sync.listen",
                        "peers are given but no listen address: set listen to this router's HOST:PORT (e.g. "
                        "\"0.0.0.0:7071\"), or give no peers");
  }
  if (sync.interval_ms < 1 || sync.interval_ms > 10000) {
    return config_error("replica_sync.interval_ms", cat("expected an integer 1..10000, got ", sync.interval_ms));
  }
  if (sync.peer_timeout_ms < sync.interval_ms) {
    return config_error("replica_sync.peer_timeout_ms", cat("expected an integer >= interval_ms (", sync.interval_ms,
                                                            "), got ", sync.peer_timeout_ms));
  }
  if (sync.resolve_interval_ms < 100) {
    return config_error("replica_sync.resolve_interval_ms",
                        cat("expected an integer >= 100, got ", sync.resolve_interval_ms));
  }
  return {};
}

}  // namespace

Result<void> validate(const RouterConfig& config, const std::vector<std::string>& policy_names) {
  auto known_policy = [&](const std::string& name) {
    return std::find(policy_names.begin(), policy_names.end(), name) != policy_names.end();
  };
  auto unknown_policy = [&](const std::string& path, const std::string& name) {
    return config_error(path, cat("unknown policy '", name, "' (known: ", join(policy_names), ")"));
  };
  if (!known_policy(config.policy)) return unknown_policy("policy", config.policy);
  if (config.timeouts.connect_ms < 1) {
    return config_error("timeouts.connect_ms", "expected an integer >= 1, got 0");
  }
  if (config.timeouts.read_ms < 1) {
    return config_error("timeouts.read_ms", "expected an integer >= 1, got 0");
  }
  if (config.timeouts.write_ms < 1) {
    return config_error("timeouts.write_ms", "expected an integer >= 1, got 0");
  }
  if (config.max_attempts < 1)
    return config_error("max_attempts", "expected an integer >= 1, got 0");
  for (std::size_t i = 0; i < config.routes.size(); ++i) {
    const std::string& r = config.routes[i];
    const std::string path = cat("routes[", std::to_string(i), "]");
    if (r == "*") continue;
    if (r.empty() || r[0] != '/' || r.find_first_of("?# \t") != std::string::npos) {
      return config_error(path, cat("expected a path starting with '/' (no query), or \"*\"; got '", r, "'"));
    }
    if (r.find('*') != std::string::npos && r.find('*') != r.size() - 1) {
      return config_error(path, cat("'*' may only end a route (a prefix); got '", r, "'"));
    }
  }

  // Every name a client may send -> the path that declared it.
  std::map<std::string, std::string, std::less<>> names;
  auto claim = [&](const std::string& name, const std::string& path,
                   std::string_view what) -> Result<void> {
    if (name.empty()) return config_error(path, cat(what, " must not be empty"));
    auto [it, inserted] = names.emplace(name, path);
    if (!inserted) {
      return config_error(path, cat("name '", name, "' is already used by ", it->second));
    }
    return {};
  };

  for (std::size_t i = 0; i < config.models.size(); ++i) {
    const ModelConfig& model = config.models[i];
    const std::string path = index_path("models", i);
    if (auto r = claim(model.name, path + ".name", "the model name"); !r) return r;
    for (std::size_t j = 0; j < model.aliases.size(); ++j) {
      if (auto r = claim(model.aliases[j], index_path(path + ".aliases", j), "an alias"); !r)
        return r;
    }
    for (std::size_t j = 0; j < model.loras.size(); ++j) {
      if (auto r = claim(model.loras[j], index_path(path + ".loras", j), "a LoRA adapter name");
          !r) {
        return r;
      }
    }
    if (!model.policy.empty() && !known_policy(model.policy)) {
      return unknown_policy(path + ".policy", model.policy);
    }
    if (model.endpoints.empty()) {
      return config_error(path + ".endpoints",
                          cat("model '", model.name, "' needs at least one endpoint"));
    }
    const auto check_endpoints = [&](const std::vector<EndpointConfig>& endpoints, const std::string& list_path) -> Result<void> {
      std::vector<std::string> ids;
      for (std::size_t j = 0; j < endpoints.size(); ++j) {
        const EndpointConfig& endpoint = endpoints[j];
        const std::string endpoint_path = index_path(list_path, j);
        if (endpoint.url.empty()) {
          return config_error(endpoint_path + ".url", "expected a URL like http://host:port[/prefix], got \"\"");
        }
        auto url = parse_url(endpoint.url);
        if (!url) return config_error(endpoint_path + ".url", url.error().message);
        const std::string id = endpoint_id(url.value());
        for (std::size_t k = 0; k < ids.size(); ++k) {
          if (ids[k] == id) {
            return config_error(endpoint_path + ".url", cat("'", endpoint.url, "' is the same endpoint as ",
                                                            index_path(list_path, k), ".url"));
          }
        }
        ids.push_back(id);
        if (endpoint.weight < 1) return config_error(endpoint_path + ".weight", "expected an integer >= 1, got 0");
      }
      return {};
    };
    if (auto r = check_endpoints(model.endpoints, path + ".endpoints"); !r) return r;
    if (model.prefill) {
      const PrefillConfig& prefill = *model.prefill;
      if (!prefill.policy.empty() && !known_policy(prefill.policy)) {
        return unknown_policy(path + ".prefill.policy", prefill.policy);
      }
      if (prefill.endpoints.empty()) {
        return config_error(path + ".prefill.endpoints",
                            cat("model '", model.name, "' needs at least one prefill endpoint (or no \"prefill\")"));
      }
      if (auto r = check_endpoints(prefill.endpoints, path + ".prefill.endpoints"); !r) return r;
    }
  }

  if (auto r = validate_replica_sync(config.replica_sync); !r) return r;

  if (!config.default_model.empty() && names.find(config.default_model) == names.end()) {
    return config_error("default_model", cat("'", config.default_model,
                                             "' is not a configured model, alias or LoRA adapter"));
  }
  return {};
}


VLLM_ROUTER_END_NAMESPACE
