// LoadScraper: Prometheus parsing (old and new names, label sets) and scrape rounds on a fake.
#include <doctest/doctest.h>

#include <functional>
#include <thread>

#include <map>
#include <mutex>
#include <string>

#include "vllm_router/load_scraper.h"
#include "vllm_router/router.h"
#include "vllm_router/snapshot.h"

using namespace vllm_router;

namespace {

struct MetricsResponse final : UpstreamResponse {
  int code = 200;
  std::string body;
  Headers hs;
  int status() const noexcept override { return code; }
  const Headers& headers() const noexcept override { return hs; }
  std::optional<std::uint64_t> content_length() const noexcept override { return body.size(); }
  Result<std::uint64_t> relay(BodySink& sink) override {
    if (!sink.write(body.data(), body.size())) return Result<std::uint64_t>(Errc::cancelled, "gone");
    return std::uint64_t{body.size()};
  }
};

struct MetricsTransport final : Transport {
  std::mutex mutex;
  std::map<std::string, std::string> bodies;  // endpoint id -> /metrics text; absent: refused
  std::map<std::string, int> status;          // endpoint id -> status (default 200)
  std::map<std::string, std::string> paths;   // endpoint id -> last path asked
  std::map<std::string, std::string> keys;    // endpoint id -> api key of the endpoint
  std::function<void(const std::string&)> on_send;  // called with the endpoint id (under the lock)
  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& ep, const UpstreamRequest& req,
                                                 const AliveCheck&) override {
    std::lock_guard<std::mutex> lock(mutex);
    if (on_send) on_send(ep.id);
    paths[ep.id] = std::string(req.method) + " " + std::string(req.path);
    keys[ep.id] = ep.api_key;
    auto it = bodies.find(ep.id);
    if (it == bodies.end()) return Result<std::unique_ptr<UpstreamResponse>>(Errc::connect_failed, "refused");
    auto r = std::make_unique<MetricsResponse>();
    r->body = it->second;
    if (auto s = status.find(ep.id); s != status.end()) r->code = s->second;
    return std::unique_ptr<UpstreamResponse>(std::move(r));
  }
};

const char* kNewMetrics =
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n"
    "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 4.0\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 2.0\n"
    "vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 5.0 1712345678000\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\n"
    "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.75\n"
    "vllm:num_requests_waiting_by_reason{reason=\"x\"} 99\n"
    "vllm:prefix_cache_hits_total{engine=\"0\"} 1234\n";

}  // namespace

TEST_CASE("parse_vllm_load: new names, label sets summed (KV averaged), timestamps, noise") {
  const ScrapedLoad l = parse_vllm_load(kNewMetrics);
  CHECK(l.running == 7);
  CHECK(l.waiting == 7);
  CHECK(l.kv_cache_usage == doctest::Approx(0.5));
}

TEST_CASE("parse_vllm_load: the older KV name, labels with braces and quotes, bad lines") {
  const ScrapedLoad l = parse_vllm_load(
      "vllm:gpu_cache_usage_perc{model_name=\"we}ird \\\"name\\\"\"} 0.9\n"
      "vllm:num_requests_running{model_name=\"a b\"} 2\r\n"
      "vllm:num_requests_waiting{broken 3\n"
      "vllm:num_requests_waiting NaN\n"
      "vllm:num_requests_waiting 1e0\n"
      "   # indented comment\n"
      "vllm:num_requests_waiting\n");
  CHECK(l.kv_cache_usage == doctest::Approx(0.9));
  CHECK(l.running == 2);
  CHECK(l.waiting == 1);
  // Both KV names: the new one wins.
  CHECK(parse_vllm_load("vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n")
            .kv_cache_usage == doctest::Approx(0.1));
  const ScrapedLoad none = parse_vllm_load("# nothing\nother_metric 5\n");
  CHECK(none.waiting == -1);
  CHECK(none.running == -1);
  CHECK(none.kv_cache_usage < 0.0F);
}

TEST_CASE("parse_vllm_load: counts are clamped to 0..2^30, however large the gauge (found by tests/fuzz)") {
  // A value beyond long long once rounded to LLONG_MIN and read as 0: an idle replica.
  CHECK(parse_vllm_load("vllm:num_requests_waiting 1e19\n").waiting == 1 << 30);
  CHECK(parse_vllm_load("vllm:num_requests_running 6e18\nvllm:num_requests_running 6e18\n").running == 1 << 30);
  CHECK(parse_vllm_load("vllm:num_requests_running 1.7e308\nvllm:num_requests_running 1.7e308\n").running ==
        1 << 30);  // the sum overflows to +inf
  CHECK(parse_vllm_load("vllm:num_requests_waiting 1073741823.6\n").waiting == 1 << 30);
  CHECK(parse_vllm_load("vllm:num_requests_waiting -1e19\n").waiting == 0);
  CHECK(parse_vllm_load("vllm:num_requests_waiting 2.5\n").waiting == 3);
}

TEST_CASE("LoadScraper: one round writes every endpoint's load and time; failures age out") {
  auto t = std::make_shared<MetricsTransport>();
  RouterConfig c;
  ModelConfig a;
  a.name = "m";
  a.endpoints = {{"http://127.0.0.1:7001", 1, "key-1"}, {"http://127.0.0.1:7002", 1, ""},
                 {"http://127.0.0.1:7003", 1, ""}, {"http://127.0.0.1:7004", 1, ""}};
  ModelConfig b;  // a second model on the same first server: scraped once
  b.name = "m2";
  b.endpoints = {{"http://127.0.0.1:7001", 1, "key-1"}};
  c.models = {a, b};
  RouterOptions o;
  auto created = Router::create(c, std::move(o));
  REQUIRE(created.ok());
  auto router = std::move(created).value();
  const auto snap = router->snapshot();
  const Pool& pool = snap->pools.at(0);
  REQUIRE(pool.endpoints.size() == 4);
  const std::string e1 = pool.endpoints[0]->id, e2 = pool.endpoints[1]->id,
                    e3 = pool.endpoints[2]->id, e4 = pool.endpoints[3]->id;
  t->bodies[e1] = kNewMetrics;
  t->bodies[e2] = "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 0.5\n";
  t->bodies[e3] = "error";
  t->status[e3] = 500;
  // e4 refuses connections.

  auto clock_ptr = std::make_shared<ManualClock>();
  ManualClock& clock = *clock_ptr;
  clock.advance(std::chrono::seconds(100));
  PolicyOptions po;
  po.scrape_timeout_ms = 200;
  LoadScraper scraper(*router, t, clock_ptr, po);
  const ScrapeStats st = scraper.scrape_once();
  CHECK(st.endpoints == 4);
  CHECK(st.succeeded == 2);
  CHECK(st.failed == 2);
  CHECK(scraper.rounds() == 1);
  CHECK(t->paths[e1] == "GET /metrics");
  CHECK(t->keys[e1] == "key-1");

  const LoadSample s1 = pool.states[0]->sample();
  CHECK(s1.running == 7);
  CHECK(s1.waiting == 7);
  CHECK(s1.kv_cache_usage == doctest::Approx(0.5));
  CHECK(s1.sampled_ns == 100'000'000'000);
  const LoadSample s2 = pool.states[1]->sample();
  CHECK(s2.running == 1);
  CHECK(s2.waiting == 0);
  CHECK(s2.kv_cache_usage == doctest::Approx(0.5));
  for (std::size_t i : {2u, 3u}) {  // failed: nothing written
    const LoadSample s = pool.states[i]->sample();
    CHECK(s.sampled_ns == 0);
    CHECK(s.waiting == -1);
  }

  // Next round: e1 now fails; its old sample stays as it was (and ages out in the policies).
  clock.advance(std::chrono::seconds(1));
  t->bodies.erase(e1);
  t->bodies[e2] = "vllm:num_requests_running 2\nvllm:num_requests_waiting 3\n";
  scraper.scrape_once();
  CHECK(pool.states[0]->sample().sampled_ns == 100'000'000'000);
  CHECK(pool.states[1]->sample().sampled_ns == 101'000'000'000);
  CHECK(pool.states[1]->sample().waiting == 3);
  CHECK(pool.states[1]->sample().kv_cache_usage < 0.0F);  // absent now: unknown
}

TEST_CASE("LoadScraper: start/stop run rounds on a thread and stop promptly") {
  auto t = std::make_shared<MetricsTransport>();
  RouterConfig c;
  ModelConfig a;
  a.name = "m";
  a.endpoints = {{"http://127.0.0.1:7101", 1, ""}};
  c.models = {a};
  RouterOptions o;
  auto router = std::move(Router::create(c, std::move(o))).value();
  t->bodies[router->snapshot()->pools[0].endpoints[0]->id] = "vllm:num_requests_waiting 4\n";
  auto clock = std::make_shared<SteadyClock>();
  PolicyOptions po;
  po.scrape_interval_ms = 5;
  LoadScraper scraper(*router, t, clock, po);
  scraper.start();
  scraper.start();  // no-op
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (scraper.rounds() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  scraper.stop();
  scraper.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK(scraper.rounds() >= 3);
  CHECK(router->snapshot()->pools[0].states[0]->sample().waiting == 4);
}

TEST_CASE("LoadScraper: a sample records this router's in-flight count at the scrape (the larger around the GET)") {
  auto t = std::make_shared<MetricsTransport>();
  RouterConfig c;
  ModelConfig a;
  a.name = "m";
  a.endpoints = {{"http://127.0.0.1:7101", 1, ""}, {"http://127.0.0.1:7102", 1, ""}, {"http://127.0.0.1:7103", 1, ""}};
  c.models = {a};
  auto created = Router::create(c, RouterOptions{});
  REQUIRE(created.ok());
  auto router = std::move(created).value();
  const auto snap = router->snapshot();
  const Pool& pool = snap->pools.at(0);
  REQUIRE(pool.endpoints.size() == 3);
  for (const auto& ep : pool.endpoints) t->bodies[ep->id] = "vllm:num_requests_running 5\nvllm:num_requests_waiting 1\n";
  t->bodies.erase(pool.endpoints[2]->id);  // refused: nothing recorded
  pool.states[0]->in_flight = 2;
  pool.states[1]->in_flight = 4;
  pool.states[2]->in_flight = 1;
  // A request of this router ends on the second endpoint while its /metrics is read.
  const std::string second = pool.endpoints[1]->id;
  EndpointState* second_state = pool.states[1].get();
  t->on_send = [&](const std::string& id) {
    if (id == second) second_state->in_flight = 3;
  };
  auto clock = std::make_shared<ManualClock>();
  clock->advance(std::chrono::seconds(10));
  LoadScraper scraper(*router, t, clock, PolicyOptions{});
  CHECK(scraper.scrape_once().succeeded == 2);
  CHECK(pool.states[0]->sample().sampled_in_flight == 2);
  CHECK(pool.states[1]->sample().sampled_in_flight == 4);  // 4 before, 3 after: the larger
  CHECK(pool.states[2]->sample().sampled_in_flight == -1);
  CHECK(pool.states[0]->sample().running == 5);
}
