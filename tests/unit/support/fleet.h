// Test helper: a pool of endpoints with live state and the candidate list policies pick from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/policy.h"

namespace vllm_router::testing {

/// Endpoints (ids and weights as given), one EndpointState each, every endpoint a candidate
/// (slot = position), and the raw pointers make_scratch() takes. Not copyable: the candidates
/// point into it.
struct TestFleet {
  std::vector<Endpoint> endpoints;
  std::vector<std::unique_ptr<EndpointState>> states;
  std::vector<Candidate> candidates;
  std::vector<const Endpoint*> raw;

  explicit TestFleet(const std::vector<std::string>& ids, const std::vector<std::uint32_t>& weights = {})
      : endpoints(ids.size()) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      endpoints[i].id = ids[i];
      if (i < weights.size()) endpoints[i].weight = weights[i];
      states.push_back(std::make_unique<EndpointState>());
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      candidates.push_back(Candidate{&endpoints[i], states[i].get(), i});
      raw.push_back(&endpoints[i]);
    }
  }
  TestFleet(const TestFleet&) = delete;
  TestFleet& operator=(const TestFleet&) = delete;
};

/// "http://<subnet>.<first>:8000", "http://<subnet>.<first+1>:8000", ... (n of them).
inline std::vector<std::string> fleet_ids(std::size_t n, std::string_view subnet, std::size_t first = 1) {
  std::vector<std::string> out;
  for (std::size_t i = first; i < first + n; ++i) {
    out.push_back("http://" + std::string(subnet) + "." + std::to_string(i) + ":8000");
  }
  return out;
}

}  // namespace vllm_router::testing
