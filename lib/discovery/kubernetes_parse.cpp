// What the Kubernetes endpoint source reads from the API server: EndpointSlice and Pod objects,
// list pages and watch event lines (simdjson only; the HTTP client stays in kubernetes_source.cpp).
#include "kubernetes_parse.h"

#include <simdjson.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "../http_util.h"
#include "source_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

namespace dom = simdjson::dom;

// simdjson copies the text into a padded buffer: an empty view may have no data (memcpy from
// nullptr is undefined even for 0 bytes), and is not JSON anyway.
bool parse_json(dom::parser& parser, std::string_view text, dom::element& out) {
  return !text.empty() && parser.parse(text.data(), text.size()).get(out) == simdjson::SUCCESS;
}

// A string member, or empty (missing members and wrong types read as empty).
template <class E>
std::string_view str(E&& e, const char* key) {
  std::string_view v;
  if (e[key].get_string().get(v) != simdjson::SUCCESS) return {};
  return v;
}

std::vector<std::string> split_names(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view part = detail::trim(text.substr(0, comma), " ");
    if (!part.empty() && std::find(out.begin(), out.end(), part) == out.end()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

// Served names from the object's annotation (comma separated, exact names), else its label
// (mapped through model_label_names: a label value cannot hold "org/model").
template <class E>
std::vector<std::string> names_of(E&& metadata, const DiscoveryConfig& config) {
  if (!config.model_annotation.empty()) {
    std::string_view v;
    if (metadata["annotations"][config.model_annotation].get_string().get(v) == simdjson::SUCCESS) {
      auto names = split_names(v);
      if (!names.empty()) return names;
    }
  }
  if (!config.model_label.empty()) {
    std::string_view v;
    if (metadata["labels"][config.model_label].get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
      if (auto it = config.model_label_names.find(std::string(v)); it != config.model_label_names.end()) {
        return it->second;
      }
      return {std::string(v)};
    }
  }
  return {};
}

// The prefill/decode role from the object's `role_label` label ("" when absent).
template <class E>
std::string role_of(E&& metadata, const DiscoveryConfig& config) {
  std::string_view v;
  if (config.role_label.empty() || metadata["labels"][config.role_label].get_string().get(v) != simdjson::SUCCESS) {
    return {};
  }
  return std::string(v);
}

detail::KubernetesEndpoint make_endpoint(std::string_view address, std::uint16_t port,
                                         const std::vector<std::string>& names, const DiscoveryConfig& config) {
  detail::KubernetesEndpoint out;
  out.endpoint = DiscoveredEndpoint{
      config.scheme + "://" + detail::url_host(std::string(address)) + ":" + std::to_string(port), names, {},
      config.api_key, config.weight, ""};
  out.ipv6 = address.find(':') != std::string_view::npos;
  out.target = out.endpoint.url;
  return out;
}

detail::KubernetesEndpoints slice_endpoints(dom::element slice, const DiscoveryConfig& config) {
  detail::KubernetesEndpoints out;
  // FQDN slices list names, not addresses; a family the source was not asked for is skipped.
  const std::string_view family = str(slice, "addressType");
  if (family == "FQDN") return out;
  if (!config.address_type.empty() && !family.empty() && family != config.address_type) return out;
  std::uint16_t port = config.port;
  if (!config.port_name.empty()) {
    port = 0;
    dom::array ports;
    if (slice["ports"].get_array().get(ports) == simdjson::SUCCESS) {
      for (dom::element p : ports) {
        std::int64_t number = 0;
        if (str(p, "name") == config.port_name && p["port"].get_int64().get(number) == simdjson::SUCCESS &&
            number > 0 && number < 65536) {
          port = static_cast<std::uint16_t>(number);
        }
      }
    }
  }
  if (port == 0) return out;  // the slice does not expose the named port
  const auto names = names_of(slice["metadata"], config);
  const std::string role = role_of(slice["metadata"], config);
  dom::array endpoints;
  if (slice["endpoints"].get_array().get(endpoints) != simdjson::SUCCESS) return out;
  for (dom::element e : endpoints) {
    // conditions.ready: absent (unknown) counts as ready, as the API documents for consumers.
    // Not ready but serving and terminating: a fallback while nothing else is ready.
    bool ready = true;
    if (e["conditions"]["ready"].get_bool().get(ready) != simdjson::SUCCESS) ready = true;
    bool serving = false;
    bool terminating = false;
    if (!ready) {
      if (e["conditions"]["serving"].get_bool().get(serving) != simdjson::SUCCESS) serving = false;
      if (e["conditions"]["terminating"].get_bool().get(terminating) != simdjson::SUCCESS) terminating = false;
      if (!serving || !terminating) continue;
    }
    dom::array addresses;
    if (e["addresses"].get_array().get(addresses) != simdjson::SUCCESS) continue;
    for (dom::element a : addresses) {
      std::string_view address;
      if (a.get_string().get(address) == simdjson::SUCCESS && !address.empty()) {
        auto endpoint = make_endpoint(address, port, names, config);
        endpoint.endpoint.role = role;
        endpoint.ready = ready;
        const std::string_view uid = str(e["targetRef"], "uid");
        const std::string_view target = str(e["targetRef"], "name");
        // The pod and port: two slices of one dual-stack Service list the pod once per family.
        if (!uid.empty()) {
          endpoint.target = "uid:" + std::string(uid) + ":" + std::to_string(port);
        } else if (!target.empty()) {
          endpoint.target = std::string(str(e["targetRef"], "namespace")) + "/" + std::string(target) + ":" +
                            std::to_string(port);
        }
        out.push_back(std::move(endpoint));
        break;  // the addresses of one endpoint are fungible: one is enough
      }
    }
  }
  return out;
}

detail::KubernetesEndpoints pod_endpoints(dom::element pod, const DiscoveryConfig& config) {
  detail::KubernetesEndpoints out;
  dom::element metadata;
  if (pod["metadata"].get(metadata) != simdjson::SUCCESS) return out;
  // A terminating pod still Ready serves the requests it has: a fallback only.
  const bool terminating = !str(metadata, "deletionTimestamp").empty();
  dom::element status;
  if (pod["status"].get(status) != simdjson::SUCCESS) return out;
  const std::string_view ip = str(status, "podIP");
  if (ip.empty() || str(status, "phase") != "Running") return out;
  bool ready = false;
  dom::array conditions;
  if (status["conditions"].get_array().get(conditions) == simdjson::SUCCESS) {
    for (dom::element c : conditions) {
      if (str(c, "type") == "Ready") ready = str(c, "status") == "True";
    }
  }
  if (!ready) return out;
  std::uint16_t port = config.port;
  if (!config.port_name.empty()) {
    port = 0;
    dom::array containers;
    if (pod["spec"]["containers"].get_array().get(containers) == simdjson::SUCCESS) {
      for (dom::element c : containers) {
        dom::array ports;
        if (c["ports"].get_array().get(ports) != simdjson::SUCCESS) continue;
        for (dom::element p : ports) {
          std::int64_t number = 0;
          if (port == 0 && str(p, "name") == config.port_name &&
              p["containerPort"].get_int64().get(number) == simdjson::SUCCESS && number > 0 && number < 65536) {
            port = static_cast<std::uint16_t>(number);
          }
        }
      }
    }
  }
  if (port == 0) return out;
  // podIPs: one per family on a dual-stack pod (podIP is the first); address_type picks one.
  std::string_view address = ip;
  if (!config.address_type.empty()) {
    address = {};
    dom::array ips;
    if (status["podIPs"].get_array().get(ips) == simdjson::SUCCESS) {
      for (dom::element i : ips) {
        const std::string_view a = str(i, "ip");
        const bool v6 = a.find(':') != std::string_view::npos;
        if (address.empty() && !a.empty() && v6 == (config.address_type == "IPv6")) address = a;
      }
    } else if ((ip.find(':') != std::string_view::npos) == (config.address_type == "IPv6")) {
      address = ip;
    }
    if (address.empty()) return out;
  }
  auto endpoint = make_endpoint(address, port, names_of(metadata, config), config);
  endpoint.endpoint.role = role_of(metadata, config);
  endpoint.ready = !terminating;
  endpoint.target = "pod:" + std::string(str(metadata, "namespace")) + "/" + std::string(str(metadata, "name")) +
                    ":" + std::to_string(port);
  out.push_back(std::move(endpoint));
  return out;
}

detail::KubernetesEndpoints object_endpoints(dom::element object, const DiscoveryConfig& config) {
  return config.resource == "pods" ? pod_endpoints(object, config) : slice_endpoints(object, config);
}

std::string object_key(dom::element object) {
  return std::string(str(object["metadata"], "namespace")) + "/" +
         std::string(str(object["metadata"], "name"));
}

}  // namespace

Result<EndpointSet> kubernetes_object_endpoints(std::string_view object_json, const DiscoveryConfig& config) {
  dom::parser parser;
  dom::element object;
  if (!parse_json(parser, object_json, object)) {
    return Error{Errc::invalid_argument, "not a JSON object", ""};
  }
  detail::KubernetesObjects one;
  one.objects.emplace(object_key(object), object_endpoints(object, config));
  return detail::flatten_kubernetes(one);
}

VLLM_ROUTER_END_NAMESPACE

namespace vllm_router::detail {

EndpointSet flatten_kubernetes(const KubernetesObjects& objects) {
  // One endpoint per pod: the IPv4 address of a dual-stack pod, the ready one of duplicates.
  std::map<std::string, const KubernetesEndpoint*> by_target;
  for (const auto& [key, endpoints] : objects.objects) {
    for (const KubernetesEndpoint& e : endpoints) {
      auto [it, added] = by_target.emplace(e.target, &e);
      if (added) continue;
      const KubernetesEndpoint& have = *it->second;
      if (std::tie(e.ready, have.ipv6) > std::tie(have.ready, e.ipv6)) it->second = &e;
    }
  }
  // A model (set of names) with a ready endpoint uses only those; one with none, its serving
  // but terminating ones.
  std::set<std::vector<std::string>> has_ready;
  for (const auto& [target, e] : by_target) {
    if (e->ready) has_ready.insert(e->endpoint.models);
  }
  EndpointSet set;
  for (const auto& [target, e] : by_target) {
    if (e->ready || has_ready.count(e->endpoint.models) == 0) set.push_back(e->endpoint);
  }
  normalise_set(set);
  return set;
}

bool read_kubernetes_list_page(std::string_view body, const DiscoveryConfig& config, KubernetesObjects& into,
                               std::string& cont) {
  dom::parser parser;
  dom::element doc;
  if (!parse_json(parser, body, doc)) return false;
  into.resource_version = std::string(str(doc["metadata"], "resourceVersion"));
  dom::array items;
  if (doc["items"].get_array().get(items) == simdjson::SUCCESS) {
    for (dom::element item : items) into.objects[object_key(item)] = object_endpoints(item, config);
  }
  cont = std::string(str(doc["metadata"], "continue"));
  return true;
}

bool apply_kubernetes_watch_event(std::string_view line, const DiscoveryConfig& config, KubernetesObjects& cache,
                                  bool& gone) {
  dom::parser parser;
  dom::element event;
  if (!parse_json(parser, line, event)) return false;
  const std::string_view type = str(event, "type");
  dom::element object;
  if (event["object"].get(object) != simdjson::SUCCESS) return false;
  if (type == "ERROR") {
    gone = true;
    return false;
  }
  const std::string_view rv = str(object["metadata"], "resourceVersion");
  if (!rv.empty()) cache.resource_version = std::string(rv);
  if (type == "ADDED" || type == "MODIFIED") {
    cache.objects[object_key(object)] = object_endpoints(object, config);
    return true;
  }
  if (type == "DELETED") {
    cache.objects.erase(object_key(object));
    return true;
  }
  return false;  // BOOKMARK: only the resourceVersion moves
}

}  // namespace vllm_router::detail
