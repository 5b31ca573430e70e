// load_aware: in-flight plus fresh scraped load; stale samples ignored; ties random; weights.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policies/load_detail.h"
#include "support/fleet.h"
#include "vllm_router/policies/load_aware.h"
#include "vllm_router/policy.h"

using namespace vllm_router;

namespace {

constexpr std::int64_t kMs = 1000000;

struct LaFleet : testing::TestFleet {
  explicit LaFleet(std::size_t n) : TestFleet(testing::fleet_ids(n, "10.0.1")) {}
  void scraped(std::size_t i, int waiting, int running, float kv, std::int64_t at_ns) {
    states[i]->waiting = waiting;
    states[i]->running = running;
    states[i]->kv_cache_usage = kv;
    states[i]->sampled_ns = at_ns;
  }
  // A scrape as the LoadScraper writes it: with this router's in-flight count at that time.
  void scraped_with(std::size_t i, int waiting, int running, std::int64_t own_at_scrape, std::int64_t at_ns) {
    scraped(i, waiting, running, 0.0F, at_ns);
    states[i]->sampled_in_flight = own_at_scrape;
  }
  double score(std::size_t i, std::int64_t now_ns) const {
    return policies::detail::load_score(*states[i], 1, now_ns, 5000);
  }
};

PolicyOptions opts() {
  PolicyOptions o;
  o.scrape_stale_ms = 5000;
  return o;
}

}  // namespace

TEST_CASE("load_aware: fewest in flight when nothing was scraped") {
  LaFleet f(3);
  f.states[0]->in_flight = 3;
  f.states[1]->in_flight = 1;
  f.states[2]->in_flight = 2;
  policies::LoadAware p(opts());
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 3, 100 * kMs};
  for (int i = 0; i < 100; ++i) CHECK(p.pick(ctx, f.candidates) == 1);
}

TEST_CASE("load_aware: a fresh waiting queue and KV usage count, a stale sample does not") {
  LaFleet f(2);
  policies::LoadAware p(opts());
  Rng rng(2);
  RequestView view;
  const std::int64_t now = 10000 * kMs;
  PickContext ctx{view, rng, nullptr, 2, now};
  // e0: idle here, but vLLM reports 6 waiting (other routers' load); e1: 2 in flight here.
  f.scraped(0, 6, 8, 0.5F, now - 100 * kMs);
  f.states[1]->in_flight = 2;
  f.scraped(1, 0, 2, 0.1F, now - 100 * kMs);
  CHECK(p.pick(ctx, f.candidates) == 1);
  // The same sample 6 s old (stale_ms 5000) is ignored: in flight decides.
  f.scraped(0, 6, 8, 0.5F, now - 6000 * kMs);
  CHECK(p.pick(ctx, f.candidates) == 0);
  // Never scraped (sampled_ns 0) is ignored too.
  f.scraped(0, 6, 8, 0.5F, 0);
  CHECK(p.pick(ctx, f.candidates) == 0);
  // KV usage breaks an otherwise equal load: 0.9 full loses to 0.1.
  f.states[1]->in_flight = 0;
  f.scraped(0, 0, 1, 0.9F, now);
  f.scraped(1, 0, 1, 0.1F, now);
  for (int i = 0; i < 50; ++i) CHECK(p.pick(ctx, f.candidates) == 1);
}

TEST_CASE("load_aware: ties are broken uniformly at random") {
  LaFleet f(4);
  policies::LoadAware p(opts());
  Rng rng(5);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 4, 1};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 40000; ++i) counts[p.pick(ctx, f.candidates)]++;
  REQUIRE(counts.size() == 4);
  for (auto& [k, n] : counts) {
    CHECK(n > 9400);
    CHECK(n < 10600);
  }
}

TEST_CASE("load_aware: load is divided by weight") {
  LaFleet f(2);
  f.endpoints[0].weight = 3;
  f.states[0]->in_flight = 4;  // 4/3 per unit
  f.states[1]->in_flight = 2;  // 2/1
  policies::LoadAware p(opts());
  Rng rng(9);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 2, 1};
  CHECK(p.pick(ctx, f.candidates) == 0);
  // The same with the pool's scratch (its weights by slot), through both paths.
  auto scratch = p.make_scratch(f.raw);
  PickContext with{view, rng, scratch.get(), 2, 1};
  CHECK(p.pick(with, f.candidates) == 0);
  CHECK(p.pick_from_pool(with, PoolView(f.candidates)) == 0);
  f.states[0]->in_flight = 7;  // 7/3 > 2/1
  CHECK(p.pick(with, f.candidates) == 1);
  CHECK(p.pick_from_pool(with, PoolView(f.candidates)) == 1);
}

TEST_CASE("load_aware: pick_from_pool scores only the usable endpoints, like pick over them") {
  LaFleet f(6);
  const std::int64_t now = 100000 * kMs;
  for (std::size_t k = 0; k < 6; ++k) f.states[k]->in_flight = static_cast<std::int64_t>(3 + k);
  f.scraped(4, 0, 1, 0.0F, now - 10 * kMs);  // fresh, idle: score 7 (in flight only)
  f.states[0]->in_flight = 1;                 // the least loaded, but already tried
  policies::LoadAware p(opts());
  Rng rng(8);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 6, now};
  const std::size_t tried[] = {0};
  CandidateFilter filter;
  filter.excluded = tried;
  const PoolView pool(f.candidates, filter);
  std::vector<Candidate> rest(f.candidates.begin() + 1, f.candidates.end());
  for (int i = 0; i < 20; ++i) {
    CHECK(p.pick_from_pool(ctx, pool) == 1);
    CHECK(rest[p.pick(ctx, rest)].slot == 1);
  }
  // A fresh scrape of a long queue moves the choice off endpoint 1 (4 in flight + 10 waiting).
  f.scraped(1, 10, 1, 0.5F, now - 10 * kMs);
  CHECK(p.pick_from_pool(ctx, pool) == 2);
  CHECK(rest[p.pick(ctx, rest)].slot == 2);
}

TEST_CASE("load score: other routers' requests in the scrape are not added") {
  // Three routers in front of one engine: the engine runs 5 (2 of them this router's) and
  // queues 1 when scraped at t0; this router has 1 in flight now.
  LaFleet f(1);
  const std::int64_t t0 = 10000 * kMs;
  f.states[0]->in_flight = 1;
  f.scraped_with(0, 1, 5, 2, t0);
  // This router's own in-flight + the engine's waiting (see load_detail.h for why).
  CHECK(f.score(0, t0 + 100 * kMs) == doctest::Approx(1.0 + 1.0));
}
