// Test helper: a Router from a config (the test fails if the config is refused) and a parsed
// request view.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string_view>

#include "vllm_router/router.h"

namespace vllm_router::testing {

inline std::unique_ptr<Router> make_router(const RouterConfig& c, std::shared_ptr<Observer> observer = nullptr,
                                           std::uint64_t seed = 99) {
  RouterOptions o;
  o.observer = std::move(observer);
  o.seed = seed;
  auto r = Router::create(c, std::move(o));
  REQUIRE(r.ok());
  return std::move(r).value();
}

/// The view of `body` (which must outlive it).
inline RequestView view_of(std::string_view body) {
  auto v = parse_request(body);
  REQUIRE(v.ok());
  return v.value();
}

}  // namespace vllm_router::testing
