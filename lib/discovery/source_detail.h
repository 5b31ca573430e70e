// Internal helpers shared by the endpoint sources: set comparison, URL hosts (their polling thread
// is the library's Ticker, lib/background.h).
#pragma once

#include <algorithm>

#include <chrono>
#include <string>

#include "../background.h"
#include "vllm_router/endpoint_source.h"

namespace vllm_router::detail {

inline bool same_endpoint(const DiscoveredEndpoint& a, const DiscoveredEndpoint& b) {
  return a.url == b.url && a.models == b.models && a.loras == b.loras && a.api_key == b.api_key &&
         a.weight == b.weight;
}

inline bool same_set(const EndpointSet& a, const EndpointSet& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_endpoint(a[i], b[i])) return false;
  }
  return true;
}

/// Sorts by URL and drops later duplicates, so equal sets compare equal.
inline void normalise_set(EndpointSet& set) {
  std::stable_sort(set.begin(), set.end(),
                   [](const DiscoveredEndpoint& a, const DiscoveredEndpoint& b) { return a.url < b.url; });
  set.erase(std::unique(set.begin(), set.end(),
                        [](const DiscoveredEndpoint& a, const DiscoveredEndpoint& b) { return a.url == b.url; }),
            set.end());
}

/// "host" or "[v6]" for a URL.
inline std::string url_host(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

}  // namespace vllm_router::detail
