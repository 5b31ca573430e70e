// Router tests: resolution, picking, update (forwarding is in test_forward.cpp).
#include <doctest/doctest.h>

#include <mutex>
#include <set>
#include <vector>

#include "support/routing.h"
#include "vllm_router/router.h"

using namespace vllm_router;
using namespace vllm_router::testing;

namespace {

RouterConfig two_models() {
  RouterConfig c;
  ModelConfig a;
  a.name = "org/a";
  a.aliases = {"a"};
  a.loras = {"a-lora"};
  a.endpoints = {{"http://127.0.0.1:1001", 1, ""}, {"http://127.0.0.1:1002", 1, ""},
                 {"http://127.0.0.1:1003", 1, ""}};
  ModelConfig b;
  b.name = "org/b";
  b.policy = "least_requests";
  b.endpoints = {{"http://127.0.0.1:2001", 1, ""}};
  c.models = {a, b};
  return c;
}

}  // namespace

TEST_CASE("route resolves names to their pool and round-robins across replicas") {
  auto router = make_router(two_models());
  std::map<std::string, int> counts;
  for (int i = 0; i < 30; ++i) {
    auto route = router->route(view_of(R"({"model":"org/a"})"));
    REQUIRE(route.ok());
    counts[route->lease.endpoint().id]++;
  }
  CHECK(counts.size() == 3);
  for (auto& [id, n] : counts) CHECK(n == 10);
  auto b = router->route(view_of(R"({"model":"org/b"})"));
  REQUIRE(b.ok());
  CHECK(b->lease.endpoint().id == "http://127.0.0.1:2001");
  CHECK(b->pool->policy->name() == "least_requests");
}

TEST_CASE("route errors: unknown model names it, missing model without default") {
  auto router = make_router(two_models());
  auto unknown = router->route(view_of(R"({"model":"nope"})"));
  CHECK(unknown.code() == Errc::unknown_model);
  CHECK(unknown.error().message.find("`nope`") != std::string::npos);
  CHECK(http_status(unknown.code()) == 404);
  CHECK(router->route(view_of(R"({"prompt":"x"})")).code() == Errc::missing_model);
}

TEST_CASE("update swaps the table, keeps live state, and rejects a bad config") {
  auto router = make_router(two_models());
  auto before = router->snapshot();
  auto held = router->route(view_of(R"({"model":"org/b"})"));
  REQUIRE(held.ok());
  RouterConfig next = two_models();
  next.models.pop_back();
  ModelConfig c;
  c.name = "org/c";
  c.endpoints = {{"http://127.0.0.1:2001", 1, ""}};  // same server as org/b
  next.models.push_back(c);
  REQUIRE(router->update(next).ok());
  auto after = router->snapshot();
  CHECK(after->version > before->version);
  CHECK(router->route(view_of(R"({"model":"org/b"})")).code() == Errc::unknown_model);
  // The server's in-flight count carried over to the new table.
  CHECK(after->pools[1].states[0]->in_flight == 1);
  held->lease.complete(Outcome{});
  CHECK(after->pools[1].states[0]->in_flight == 0);

  RouterConfig bad = two_models();
  bad.models[1].endpoints[0].url = "ftp://x";
  CHECK(router->update(bad).code() == Errc::config);
  CHECK(router->snapshot()->version == after->version);
}

TEST_CASE("update carries prefix_aware's index to the new table, following endpoints by id") {
  RouterConfig c;
  c.policy = "prefix_aware";
  ModelConfig m;
  m.name = "org/p";
  m.endpoints = {{"http://127.0.0.1:3001", 1, ""}, {"http://127.0.0.1:3002", 1, ""}, {"http://127.0.0.1:3003", 1, ""}};
  c.models = {m};
  auto router = make_router(c);
  const auto prompt = [](int g) {
    std::string s;
    for (int i = 0; i < 120; ++i) s += "group " + std::to_string(g) + " line " + std::to_string(i) + ". ";
    return s;
  };
  const auto body = [&](int g, std::string_view tail) {
    return R"({"model":"org/p","prompt":")" + prompt(g) + std::string(tail) + R"("})";
  };
  // Three prompt groups; each first request stays open, so the groups spread over the servers.
  std::vector<Route> held;
  std::vector<std::string> served;
  for (int g = 0; g < 3; ++g) {
    const std::string b = body(g, "");
    auto r = router->route(view_of(b));
    REQUIRE(r.ok());
    served.push_back(r->lease.endpoint().id);
    held.push_back(std::move(r.value()));
  }
  REQUIRE(std::set<std::string>(served.begin(), served.end()).size() == 3);
  for (auto& h : held) h.lease.complete(Outcome{});

  // A reload lists the same servers in another order (slots move): each group still goes home.
  RouterConfig next = c;
  std::swap(next.models[0].endpoints[0], next.models[0].endpoints[2]);
  REQUIRE(router->update(next).ok());
  for (int g = 0; g < 3; ++g) {
    const std::string b = body(g, " and a follow-up");
    auto r = router->route(view_of(b));
    REQUIRE(r.ok());
    CHECK(r->lease.endpoint().id == served[static_cast<std::size_t>(g)]);
    r->lease.complete(Outcome{});
  }
}
