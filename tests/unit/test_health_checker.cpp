// HealthChecker and health-aware routing with a fake transport and an injected clock.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "vllm_router/health_checker.h"
#include "router_impl.h"
#include "vllm_router/router.h"

using namespace vllm_router;
using namespace std::chrono_literals;

namespace {

struct StatusResponse final : UpstreamResponse {
  int code;
  Headers none;
  explicit StatusResponse(int c) : code(c) {}
  int status() const noexcept override { return code; }
  const Headers& headers() const noexcept override { return none; }
  std::optional<std::uint64_t> content_length() const noexcept override { return 0; }
  Result<std::uint64_t> relay(BodySink&) override { return std::uint64_t{0}; }
};

// Answers each endpoint's probes with a status (0: connection refused) and counts them.
struct ProbeTransport final : Transport {
  std::mutex mutex;
  std::map<std::string, int> status;  // by endpoint id; default 200
  std::map<std::string, int> probes;
  std::set<std::string> paths;
  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& ep, const UpstreamRequest& req,
                                                 const AliveCheck&) override {
    std::lock_guard<std::mutex> lock(mutex);
    probes[ep.id]++;
    paths.emplace(req.path);
    const auto it = status.find(ep.id);
    const int code = it == status.end() ? 200 : it->second;
    if (code == 0) return Result<std::unique_ptr<UpstreamResponse>>(Errc::connect_failed, "refused");
    return std::unique_ptr<UpstreamResponse>(std::make_unique<StatusResponse>(code));
  }
};

const std::string kA = "http://127.0.0.1:1001";
const std::string kB = "http://127.0.0.1:1002";
const std::string kC = "http://127.0.0.1:1003";

RouterConfig config(std::vector<std::string> urls) {
  RouterConfig c;
  ModelConfig m;
  m.name = "m";
  for (auto& u : urls) m.endpoints.push_back({u, 1, ""});
  c.models = {m};
  c.health_check.interval_ms = 1000;
  c.health_check.unhealthy_threshold = 2;
  c.health_check.healthy_threshold = 2;
  c.health_check.path = "/health";
  return c;
}

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<ProbeTransport> transport = std::make_shared<ProbeTransport>();
  std::unique_ptr<Router> router;
  explicit Fixture(const RouterConfig& c) {
    clock->advance(1h);
    RouterOptions o;
    o.clock = clock;
    o.seed = 5;
    auto r = Router::create(c, std::move(o));
    REQUIRE(r.ok());
    router = std::move(r).value();
  }
  std::set<std::string> picked(int n = 60) {
    std::set<std::string> out;
    const std::string body = R"({"model":"m"})";
    auto view = parse_request(body);
    for (int i = 0; i < n; ++i) {
      auto route = router->route(view.value());
      REQUIRE(route.ok());
      out.insert(route->lease.endpoint().id);
    }
    return out;
  }
  bool healthy(const std::string& id) {
    auto snap = router->snapshot();
    for (std::size_t i = 0; i < snap->pools[0].endpoints.size(); ++i) {
      if (snap->pools[0].endpoints[i]->id == id) {
        return snap->pools[0].states[i]->healthy(clock->now().time_since_epoch().count());
      }
    }
    FAIL("no such endpoint");
    return false;
  }
};

}  // namespace

TEST_CASE("probes run on their interval; thresholds turn endpoints unhealthy and back") {
  Fixture f(config({kA, kB, kC}));
  HealthChecker checker(*f.router, f.transport, f.clock);
  f.transport->status[kB] = 503;
  CHECK(checker.run_once() == 3);
  CHECK(checker.run_once() == 0);  // not due yet: no sleeping, the clock did not move
  CHECK(f.healthy(kB));            // one failure < unhealthy_threshold
  f.clock->advance(1000ms);
  CHECK(checker.run_once() == 3);
  CHECK_FALSE(f.healthy(kB));
  CHECK(f.picked() == std::set<std::string>{kA, kC});
  CHECK(f.transport->paths == std::set<std::string>{"/health"});

  f.transport->status[kB] = 200;
  f.clock->advance(1000ms);
  checker.run_once();
  CHECK_FALSE(f.healthy(kB));  // one pass < healthy_threshold
  f.clock->advance(1000ms);
  checker.run_once();
  CHECK(f.healthy(kB));
  CHECK(f.picked() == std::set<std::string>{kA, kB, kC});
}

TEST_CASE("an endpoint added while checks run is not used until it passes a probe") {
  Fixture f(config({kA}));
  HealthChecker checker(*f.router, f.transport, f.clock);
  checker.run_once();
  f.transport->status[kB] = 0;  // still loading weights: refused
  REQUIRE(f.router->update(config({kA, kB})).ok());
  CHECK_FALSE(f.healthy(kB));
  CHECK(f.picked() == std::set<std::string>{kA});
  f.transport->status[kB] = 200;
  f.clock->advance(1000ms);
  checker.run_once();
  f.clock->advance(1000ms);
  checker.run_once();
  CHECK(f.healthy(kB));
  CHECK(f.picked() == std::set<std::string>{kA, kB});
}

TEST_CASE("panic mode: with too few healthy endpoints the pool uses them all") {
  Fixture f(config({kA, kB, kC}));
  HealthChecker checker(*f.router, f.transport, f.clock);
  f.transport->status[kA] = 0;
  f.transport->status[kB] = 0;
  checker.run_once();
  f.clock->advance(1000ms);
  checker.run_once();
  CHECK_FALSE(f.healthy(kA));
  CHECK_FALSE(f.healthy(kB));
  // 1 of 3 healthy is below the default 50% threshold: panic, all three are used.
  CHECK(f.picked() == std::set<std::string>{kA, kB, kC});
}

TEST_CASE("a model's max_in_flight_per_endpoint makes full endpoints unavailable") {
  auto c = config({kA, kB});
  c.models[0].max_in_flight_per_endpoint = 1;
  Fixture f(c);
  const std::string body = R"({"model":"m"})";
  auto view = parse_request(body);
  auto r1 = f.router->route(view.value());
  auto r2 = f.router->route(view.value());
  REQUIRE(r1.ok());
  REQUIRE(r2.ok());
  CHECK(r1->lease.endpoint().id != r2->lease.endpoint().id);
  auto r3 = f.router->route(view.value());
  CHECK(r3.code() == Errc::overloaded);
  CHECK(http_status(r3.code()) == 503);
  r1->lease.complete(Outcome{});
  CHECK(f.router->route(view.value()).ok());
}

TEST_CASE("retry budget: at least min_concurrent, then a share of the exchanges running") {
  auto c = config({kA});
  c.retry.min_concurrent = 2;
  c.retry.budget_percent = 10;
  Fixture f(c);
  Router::Impl& impl = detail::RouterAccess::impl(*f.router);
  impl.active_exchanges = 5;
  CHECK(impl.try_acquire_retry(c.retry));
  CHECK(impl.try_acquire_retry(c.retry));
  CHECK_FALSE(impl.try_acquire_retry(c.retry));  // 2 in flight = max(2, 10% of 5)
  impl.active_exchanges = 100;
  CHECK(impl.try_acquire_retry(c.retry));        // 10% of 100 = 10
  impl.release_retry();
  impl.release_retry();
  impl.release_retry();
  impl.active_exchanges = 0;
  CHECK(impl.try_acquire_retry(c.retry));
  impl.release_retry();
}

