// Router tests: resolution, picking, update (forwarding is in test_forward.cpp).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
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

namespace {

// Counts picks by endpoint and remembers the last PickEvent.
struct PickLog final : Observer {
  std::mutex mutex;
  std::map<std::string, int> picks;
  PickEvent last;
  void on_pick(std::string_view, const Endpoint& ep, const PickEvent& e) override {
    std::lock_guard<std::mutex> lock(mutex);
    picks[ep.id]++;
    last = e;
  }
};

RouterConfig pool_of(std::size_t n, const std::string& policy) {
  RouterConfig c;
  c.policy = policy;
  ModelConfig m;
  m.name = "m";
  for (std::size_t i = 0; i < n; ++i) m.endpoints.push_back({"http://127.0.0.1:" + std::to_string(4001 + i), 1, ""});
  c.models = {m};
  return c;
}

struct RouteFixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<PickLog> log = std::make_shared<PickLog>();
  std::unique_ptr<Router> router;
  std::vector<std::string> bodies;
  std::vector<RequestView> views;  // 64 session keys, so that session spreads too
  RequestView view;
  explicit RouteFixture(const RouterConfig& c) {
    for (int i = 0; i < 64; ++i) bodies.push_back(R"({"model":"m","user":"u)" + std::to_string(i) + R"("})");
    for (const auto& b : bodies) views.push_back(view_of(b));
    view = views[0];
    clock->advance(std::chrono::hours(1));
    RouterOptions o;
    o.clock = clock;
    o.observer = log;
    o.seed = 7;
    auto r = Router::create(c, std::move(o));
    REQUIRE(r.ok());
    router = std::move(r).value();
  }
  EndpointState& state(std::size_t slot) { return *router->snapshot()->pools[0].states[slot]; }
  const std::string& id(std::size_t slot) { return router->snapshot()->pools[0].endpoints[slot]->id; }
  std::int64_t now() const { return clock->now().time_since_epoch().count(); }
  // Endpoints picked over `n` routes (each lease completed at once).
  std::set<std::string> picked(int n = 200, std::span<const std::string_view> exclude = {}) {
    std::set<std::string> out;
    for (int i = 0; i < n; ++i) {
      auto r = router->route(views[static_cast<std::size_t>(i) % views.size()], exclude);
      REQUIRE(r.ok());
      out.insert(r->lease.endpoint().id);
      r->lease.complete(Outcome{});
    }
    return out;
  }
};

const char* const kAllPolicies[] = {"round_robin", "least_requests", "power_of_two", "session", "load_aware",
                                    "prefix_aware"};

}  // namespace

TEST_CASE("route: panic mode follows health writes and ejection ends at once (cached healthy count)") {
  for (const char* policy : kAllPolicies) {
    CAPTURE(policy);
    RouteFixture f(pool_of(4, policy));
    CHECK(f.picked().size() >= 2);
    // Two of four unhealthy: 50 % healthy is not below the threshold; only the two are used.
    f.state(0).active_healthy.store(false);
    f.state(1).ejected_until_ns.store(f.now() + 1000);
    CHECK(f.picked() == std::set<std::string>{f.id(2), f.id(3)});
    CHECK_FALSE(f.log->last.panic);
    CHECK(f.log->last.candidates == 2);
    // A third one down: panic, every endpoint is used again.
    f.state(2).ejected_until_ns.store(f.now() + 500);
    CHECK(f.picked(400).size() == 4);
    CHECK(f.log->last.panic);
    CHECK(f.log->last.candidates == 4);
    // Endpoint 2's ejection ends (time only, no write): out of panic, 2 and 3 serve.
    f.clock->advance(std::chrono::nanoseconds(500));
    CHECK(f.picked() == std::set<std::string>{f.id(2), f.id(3)});
    CHECK_FALSE(f.log->last.panic);
    // Endpoint 1's ends too: three serve.
    f.clock->advance(std::chrono::nanoseconds(500));
    CHECK(f.picked(400) == std::set<std::string>{f.id(1), f.id(2), f.id(3)});
    CHECK(f.log->last.candidates == 3);
    // And the probe passes again: all four.
    f.state(0).active_healthy.store(true);
    CHECK(f.picked(400).size() == 4);
    CHECK(f.log->last.candidates == 4);
  }
}

TEST_CASE("route: excluded endpoints are never picked, by every policy, at any pool size") {
  for (const char* policy : kAllPolicies) {
    for (const std::size_t n : {std::size_t{3}, std::size_t{100}}) {
      CAPTURE(policy);
      CAPTURE(n);
      RouteFixture f(pool_of(n, policy));
      const std::string a = f.id(0);
      const std::string b = f.id(n - 1);
      const std::vector<std::string_view> exclude = {a, "http://127.0.0.1:1", b, a};  // unknown, twice
      const auto got = f.picked(300, exclude);
      CHECK(got.count(a) == 0);
      CHECK(got.count(b) == 0);
      CHECK(f.log->last.candidates == n - 2);
      // Everything excluded: no endpoint.
      std::vector<std::string> all_ids;
      for (std::size_t i = 0; i < n; ++i) all_ids.push_back(f.id(i));
      const std::vector<std::string_view> everything(all_ids.begin(), all_ids.end());
      CHECK(f.router->route(f.view, everything).code() == Errc::no_endpoint);
      // With an endpoint unhealthy as well (no panic at 99 of 100).
      if (n < 100) continue;
      f.state(1).active_healthy.store(false);
      const auto got2 = f.picked(300, exclude);
      CHECK(got2.count(a) == 0);
      CHECK(got2.count(b) == 0);
      CHECK(got2.count(f.id(1)) == 0);
      CHECK(f.log->last.candidates == n - 3);
    }
  }
}

TEST_CASE("route: with max_in_flight_per_endpoint the fast paths skip full endpoints and count candidates") {
  for (const char* policy : kAllPolicies) {
    CAPTURE(policy);
    auto c = pool_of(50, policy);
    c.models[0].max_in_flight_per_endpoint = 2;
    RouteFixture f(c);
    std::vector<Route> held;
    for (int i = 0; i < 100; ++i) {  // fills every endpoint to its limit
      std::size_t open = 0;
      for (std::size_t k = 0; k < 50; ++k) open += f.state(k).in_flight < 2 ? 1 : 0;
      auto r = f.router->route(f.views[static_cast<std::size_t>(i) % f.views.size()]);
      REQUIRE(r.ok());
      CHECK(f.log->last.candidates == open);
      held.push_back(std::move(r.value()));
    }
    for (std::size_t i = 0; i < 50; ++i) CHECK(f.state(i).in_flight == 2);
    CHECK(f.router->route(f.view).code() == Errc::overloaded);
    held[7].lease.complete(Outcome{});
    auto r = f.router->route(f.view);
    REQUIRE(r.ok());
    CHECK(r->lease.endpoint().id == held[7].lease.endpoint().id);
    CHECK(f.log->last.candidates == 1);
  }
}

TEST_CASE("route: two threads that both saw an endpoint's last place cannot both take it") {
  // Found by the integration suite as two requests overlapping behind a cap of 1. A policy that
  // waits until both threads are inside pick() (both passed the in-flight filter with the place
  // free) makes the race certain: one lease, one `overloaded`.
  struct Meet final : Policy {
    std::string_view name() const noexcept override { return "meet"; }
    std::size_t pick(const PickContext&, std::span<const Candidate>) const override {
      std::unique_lock<std::mutex> lock(m);
      ++arrived;
      cv.notify_all();
      cv.wait(lock, [&] { return arrived >= 2; });
      return 0;
    }
    mutable std::mutex m;
    mutable std::condition_variable cv;
    mutable int arrived = 0;
  };
  auto meet = std::make_shared<const Meet>();
  auto c = pool_of(1, "meet");
  c.models[0].max_in_flight_per_endpoint = 1;
  RouterOptions o;
  o.policies.add("meet", [meet] { return meet; });
  auto made = Router::create(c, std::move(o));
  REQUIRE(made.ok());
  Router& router = *made.value();
  const std::string body = R"({"model":"m"})";
  const RequestView view = view_of(body);
  Result<Route> results[2] = {Result<Route>(Errc::internal, "", ""), Result<Route>(Errc::internal, "", "")};
  std::thread a([&] { results[0] = router.route(view); });
  std::thread b([&] { results[1] = router.route(view); });
  a.join();
  b.join();
  CHECK(results[0].ok() != results[1].ok());
  const Result<Route>& lost = results[0].ok() ? results[1] : results[0];
  CHECK(lost.code() == Errc::overloaded);
  CHECK(router.snapshot()->pools[0].states[0]->in_flight.load() == 1);
}

TEST_CASE("route: a policy with only pick() gets the candidate list") {
  // Always the last candidate: shows which list the router built.
  struct Last final : Policy {
    std::string_view name() const noexcept override { return "last"; }
    std::size_t pick(const PickContext&, std::span<const Candidate> c) const override { return c.size() - 1; }
  };
  auto c = pool_of(5, "last");
  RouterOptions o;
  o.seed = 3;
  o.policies.add("last", [] { return std::make_shared<const Last>(); });
  auto router = Router::create(c, std::move(o));
  REQUIRE(router.ok());
  const std::string body = R"({"model":"m"})";
  const RequestView view = view_of(body);
  const auto snap = router.value()->snapshot();
  CHECK(router.value()->route(view)->lease.endpoint().id == snap->pools[0].endpoints[4]->id);
  const std::vector<std::string_view> exclude = {snap->pools[0].endpoints[4]->id};
  CHECK(router.value()->route(view, exclude)->lease.endpoint().id == snap->pools[0].endpoints[3]->id);
}

TEST_CASE("route: concurrent routes while health flags flip (the cached count stays consistent)") {
  for (const char* policy : kAllPolicies) {
    CAPTURE(policy);
    RouteFixture f(pool_of(16, policy));
    f.state(0).active_healthy.store(false);  // down for the whole test: never picked
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::thread flipper([&] {
      for (int i = 0; !stop.load(); ++i) f.state(1 + static_cast<std::size_t>(i % 3)).active_healthy.store(i % 2 == 0);
    });
    std::vector<std::thread> routers;
    const std::string down = f.id(0);
    for (int t = 0; t < 3; ++t) {
      routers.emplace_back([&, t] {
        for (int i = 0; i < 3000; ++i) {
          auto r = f.router->route(f.views[static_cast<std::size_t>(t * 7 + i) % f.views.size()]);
          if (!r.ok() || r->lease.endpoint().id == down) bad.fetch_add(1);
        }
      });
    }
    for (auto& th : routers) th.join();
    stop.store(true);
    flipper.join();
    CHECK(bad.load() == 0);
  }
}

TEST_CASE("the observer's enums have one set of names, the ones metrics, logs and spans show") {
  CHECK(to_string(OutcomeKind::upstream_closed) == "upstream_closed");
  CHECK(to_string(RetryReason::status_503) == "status_503");
  CHECK(to_string(RetryReason::first_byte_timeout) == "first_byte_timeout");
  CHECK(to_string(ExchangeEnd::upstream_error) == "upstream_error");
  CHECK(to_string(ExchangeEnd::cancelled) == "cancelled");
  CHECK(to_string(static_cast<ExchangeEnd>(200)) == "rejected");  // never an empty label
}
