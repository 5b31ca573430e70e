// Internal: what the Kubernetes endpoint source reads from the API server (list pages and watch
// event lines), apart from its HTTP client, so tests/fuzz can build and fuzz it alone.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "vllm_router/config.h"
#include "vllm_router/endpoint_source.h"

namespace vllm_router::detail {

/// What the source knows of the watched resource: the endpoints of every object by
/// "namespace/name", and the resourceVersion a watch resumes from.
struct KubernetesObjects {
  std::map<std::string, EndpointSet> objects;
  std::string resource_version;
};

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
