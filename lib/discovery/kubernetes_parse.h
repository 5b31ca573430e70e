// Internal: what the Kubernetes endpoint source reads from the API server (list pages and watch
// event lines), apart from its HTTP client, so tests/fuzz can build and fuzz it alone.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "vllm_router/config.h"
#include "vllm_router/endpoint_source.h"

namespace vllm_router::detail {

/// One address an object lists, with what choosing among them needs.
struct KubernetesEndpoint {
  DiscoveredEndpoint endpoint;
  std::string target;  ///< the pod and port behind it (a slice's targetRef, else the URL): one each
  bool ipv6 = false;
  bool ready = true;   ///< false: serving but terminating (used only while its model has no ready one)
};
using KubernetesEndpoints = std::vector<KubernetesEndpoint>;

/// What the source knows of the watched resource: the endpoints of every object by
/// "namespace/name", and the resourceVersion a watch resumes from.
struct KubernetesObjects {
  std::map<std::string, KubernetesEndpoints> objects;
  std::string resource_version;
};

/// The endpoint set the objects describe: one endpoint per pod (dual-stack slices list a pod
/// once per family: the IPv4 address is kept unless `config.address_type` chose), and for each
/// model (set of served names) its ready endpoints, or, when it has none, its serving but
/// terminating ones (what kube-proxy falls back to). Sorted by URL.
EndpointSet flatten_kubernetes(const KubernetesObjects& objects);

/// Reads one page of a list response into `into`: its items by key (a later page's item replaces
/// an earlier one of the same key) and its metadata.resourceVersion; `cont` gets
/// metadata.continue (empty on the last page). False when the body is not JSON (`into` untouched).
bool read_kubernetes_list_page(std::string_view body, const DiscoveryConfig& config, KubernetesObjects& into,
                               std::string& cont);

/// Applies one watch event line ({"type":...,"object":{...}}) to `cache`. ADDED/MODIFIED set the
/// object's endpoints, DELETED drops it (both return true: the set may have changed); any other
/// type with an object (BOOKMARK) only moves the resourceVersion (false). An ERROR event sets
/// `gone` (the caller relists) and changes nothing; a line that is not JSON or has no object is
/// ignored (false).
bool apply_kubernetes_watch_event(std::string_view line, const DiscoveryConfig& config, KubernetesObjects& cache,
                                  bool& gone);

}  // namespace vllm_router::detail
