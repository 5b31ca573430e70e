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
