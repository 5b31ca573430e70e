// Policy base classes and the per-Router policy registry.
#include "vllm_router/policy.h"

#include "vllm_router/policies/least_requests.h"
#include "vllm_router/policies/load_aware.h"
#include "vllm_router/policies/power_of_two.h"
#include "vllm_router/policies/prefix_aware.h"
#include "vllm_router/policies/session.h"
#include "vllm_router/policies/round_robin.h"

VLLM_ROUTER_BEGIN_NAMESPACE

PolicyScratch::~PolicyScratch() = default;
Policy::~Policy() = default;

std::size_t Policy::pick_from_pool(const PickContext&, const PoolView&) const { return kNoPick; }

std::unique_ptr<PolicyScratch> Policy::make_scratch(std::span<const Endpoint* const>) const {
  return nullptr;
}

std::unique_ptr<PolicyScratch> Policy::carry_scratch(std::span<const Endpoint* const> pool, const PolicyScratch&,
                                                     std::span<const Endpoint* const>) const {
  return make_scratch(pool);
}

PolicyRegistry PolicyRegistry::with_builtins() {
  PolicyRegistry registry;
  registry.add("round_robin", [] { return std::make_shared<policies::RoundRobin>(); });
  registry.add("least_requests", [] { return std::make_shared<policies::LeastRequests>(); });
  registry.add("power_of_two", [] { return std::make_shared<policies::PowerOfTwo>(); });
  registry.add_with_options("session", [](const PolicyOptions& o) {
    return std::make_shared<policies::Session>(o);
  });
  registry.add_with_options("load_aware", [](const PolicyOptions& o) {
    return std::make_shared<policies::LoadAware>(o);
  });
  registry.add_with_options("prefix_aware", [](const PolicyOptions& o) {
    return std::make_shared<policies::PrefixAware>(o);
  });
  return registry;
}

void PolicyRegistry::add(std::string name, Factory factory) {
  factories_[std::move(name)] = [f = std::move(factory)](const PolicyOptions&) { return f(); };
}

void PolicyRegistry::add_with_options(std::string name, OptionsFactory factory) {
  factories_[std::move(name)] = std::move(factory);
}

Result<std::shared_ptr<const Policy>> PolicyRegistry::create(std::string_view name,
                                                             const PolicyOptions& options) const {
  const auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [n, f] : factories_) known += (known.empty() ? "" : ", ") + n;
    return Result<std::shared_ptr<const Policy>>(
        Errc::config, "unknown policy '" + std::string(name) + "' (known: " + known + ")",
        "policy");
  }
  return it->second(options);
}

bool PolicyRegistry::contains(std::string_view name) const {
  return factories_.find(name) != factories_.end();
}

std::vector<std::string> PolicyRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : factories_) out.push_back(n);
  return out;
}

VLLM_ROUTER_END_NAMESPACE
