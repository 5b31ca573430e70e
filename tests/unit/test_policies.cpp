// Distribution tests for the built-in policies.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <vector>

#include "support/fleet.h"
#include "vllm_router/policies/least_requests.h"
#include "vllm_router/policies/round_robin.h"

using namespace vllm_router;

namespace {

// Endpoints "e0", "e1", ... with these weights.
struct Fleet : testing::TestFleet {
  explicit Fleet(const std::vector<std::uint32_t>& weights) : TestFleet(ids(weights.size()), weights) {}
  static std::vector<std::string> ids(std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back("e" + std::to_string(i));
    return out;
  }
};

}  // namespace

TEST_CASE("round_robin spreads evenly with equal weights") {
  Fleet f({1, 1, 1});
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 3};
  std::vector<std::size_t> seq;
  for (int i = 0; i < 9; ++i) seq.push_back(rr.pick(ctx, f.candidates));
  std::map<std::size_t, int> counts;
  for (auto s : seq) counts[s]++;
  CHECK(counts[0] == 3);
  CHECK(counts[1] == 3);
  CHECK(counts[2] == 3);
  for (std::size_t i = 1; i < seq.size(); ++i) CHECK(seq[i] != seq[i - 1]);
}

TEST_CASE("round_robin honours weights smoothly (nginx sequence for 5,1,1)") {
  Fleet f({5, 1, 1});
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 3};
  std::vector<std::size_t> seq;
  for (int i = 0; i < 7; ++i) seq.push_back(rr.pick(ctx, f.candidates));
  // nginx's documented smooth sequence: a a b a c a a
  CHECK(seq == std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0});
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 7000; ++i) counts[rr.pick(ctx, f.candidates)]++;
  CHECK(counts[0] == 5000);
  CHECK(counts[1] == 1000);
  CHECK(counts[2] == 1000);
}

TEST_CASE("round_robin skips candidates filtered out of the pool") {
  Fleet f({1, 1, 1});
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 3};
  std::vector<Candidate> two = {f.candidates[0], f.candidates[2]};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 100; ++i) counts[two[rr.pick(ctx, two)].slot]++;
  CHECK(counts[0] == 50);
  CHECK(counts[2] == 50);
  CHECK(counts.count(1) == 0);
}

TEST_CASE("least_requests picks the least loaded") {
  Fleet f({1, 1, 1});
  f.states[0]->in_flight = 5;
  f.states[1]->in_flight = 2;
  f.states[2]->in_flight = 7;
  policies::LeastRequests lr;
  Rng rng(7);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 3};
  for (int i = 0; i < 50; ++i) CHECK(lr.pick(ctx, f.candidates) == 1);
}

TEST_CASE("least_requests breaks ties uniformly at random") {
  Fleet f({1, 1, 1, 1});
  f.states[3]->in_flight = 1;
  policies::LeastRequests lr;
  Rng rng(42);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 4};
  std::map<std::size_t, int> counts;
  const int n = 30000;
  for (int i = 0; i < n; ++i) counts[lr.pick(ctx, f.candidates)]++;
  CHECK(counts.count(3) == 0);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(counts[i] > n / 3 - 600);  // ~7 standard deviations of a binomial(30000, 1/3)
    CHECK(counts[i] < n / 3 + 600);
  }
}

TEST_CASE("registry lists built-ins and rejects unknown names") {
  auto reg = PolicyRegistry::with_builtins();
  CHECK(reg.contains("round_robin"));
  CHECK(reg.contains("least_requests"));
  auto bad = reg.create("nope");
  CHECK(bad.code() == Errc::config);
  CHECK(bad.error().message.find("round_robin") != std::string::npos);
  auto ok = reg.create("least_requests");
  REQUIRE(ok.ok());
  CHECK(ok.value()->name() == "least_requests");
}

TEST_CASE("round_robin: pick_from_pool and pick share one cursor over nginx's sequence") {
  Fleet f({5, 1, 1});
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 3};
  const PoolView pool(f.candidates);
  std::vector<std::size_t> seq;
  for (int i = 0; i < 7; ++i) seq.push_back(i % 2 == 0 ? rr.pick_from_pool(ctx, pool) : rr.pick(ctx, f.candidates));
  CHECK(seq == std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0});
}

TEST_CASE("round_robin: pick_from_pool skips unusable endpoints and keeps the others' shares") {
  Fleet f({5, 1, 1});
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 3};
  const std::size_t tried[] = {1};
  CandidateFilter filter;
  filter.excluded = tried;
  const PoolView pool(f.candidates, filter);
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 6000; ++i) counts[rr.pick_from_pool(ctx, pool)]++;
  CHECK(counts[0] == 5000);
  CHECK(counts[2] == 1000);
  CHECK(counts.count(1) == 0);
  // The same through pick() over the list without endpoint 1.
  std::vector<Candidate> two = {f.candidates[0], f.candidates[2]};
  counts.clear();
  for (int i = 0; i < 6000; ++i) counts[two[rr.pick(ctx, two)].slot]++;
  CHECK(counts[0] == 5000);
  CHECK(counts[2] == 1000);
  // Nothing usable: no choice (the router then reports the pool unavailable).
  const std::size_t all[] = {0, 1, 2};
  filter.excluded = all;
  CHECK(rr.pick_from_pool(ctx, PoolView(f.candidates, filter)) == Policy::kNoPick);
  // Without its scratch there is no cursor: no choice either.
  PickContext bare{view, rng, nullptr, 3};
  CHECK(rr.pick_from_pool(bare, PoolView(f.candidates)) == Policy::kNoPick);
}

TEST_CASE("round_robin: a period too long to keep runs nginx's loop over the candidates") {
  Fleet f({65536, 1});  // a period of 65,537 picks
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 2};
  CHECK(rr.pick_from_pool(ctx, PoolView(f.candidates)) == Policy::kNoPick);
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 65537; ++i) counts[rr.pick(ctx, f.candidates)]++;
  CHECK(counts[0] == 65536);
  CHECK(counts[1] == 1);
}

TEST_CASE("least_requests: pick_from_pool chooses among the usable endpoints like pick") {
  Fleet f({1, 1, 1, 1});
  f.states[0]->in_flight = 5;
  f.states[1]->in_flight = 2;
  f.states[2]->in_flight = 7;
  f.states[3]->in_flight = 2;
  policies::LeastRequests lr;
  Rng rng(7);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 4};
  const std::size_t tried[] = {1};
  CandidateFilter filter;
  filter.excluded = tried;
  for (int i = 0; i < 50; ++i) CHECK(lr.pick_from_pool(ctx, PoolView(f.candidates, filter)) == 3);
  // Ties among the usable ones are uniform.
  for (auto& s : f.states) s->in_flight = 0;
  std::map<std::size_t, int> counts;
  const int n = 30000;
  for (int i = 0; i < n; ++i) counts[lr.pick_from_pool(ctx, PoolView(f.candidates, filter))]++;
  CHECK(counts.count(1) == 0);
  for (const std::size_t k : {0, 2, 3}) {
    CHECK(counts[k] > n / 3 - 600);
    CHECK(counts[k] < n / 3 + 600);
  }
  const std::size_t all[] = {0, 1, 2, 3};
  filter.excluded = all;
  CHECK(lr.pick_from_pool(ctx, PoolView(f.candidates, filter)) == Policy::kNoPick);
}

TEST_CASE("round_robin: light candidates among heavy weights do not make a pick walk the whole period") {
  Fleet f({1000, 1000, 1, 1});  // a period of 2,002 with one turn each for endpoints 2 and 3
  policies::RoundRobin rr;
  auto scratch = rr.make_scratch(f.raw);
  Rng rng(1);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 4};
  std::vector<Candidate> light = {f.candidates[2], f.candidates[3]};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 100; ++i) counts[light[rr.pick(ctx, light)].slot]++;
  CHECK(counts[2] == 50);
  CHECK(counts[3] == 50);
}
