// power_of_two: distribution with equal load, preference for the less loaded, distinct draws.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/fleet.h"
#include "vllm_router/policies/power_of_two.h"
#include "vllm_router/policy.h"

using namespace vllm_router;

namespace {

struct P2Fleet : testing::TestFleet {
  explicit P2Fleet(std::size_t n) : TestFleet(testing::fleet_ids(n, "10.0.0")) {}
};

}  // namespace

TEST_CASE("power_of_two: equal load spreads uniformly") {
  P2Fleet f(4);
  policies::PowerOfTwo p;
  Rng rng(7);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 4};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 40000; ++i) counts[p.pick(ctx, f.candidates)]++;
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(counts[i] > 9400);
    CHECK(counts[i] < 10600);
  }
}

TEST_CASE("power_of_two: the most loaded of n is never picked, two candidates always compare") {
  P2Fleet f(4);
  f.states[2]->in_flight = 10;
  policies::PowerOfTwo p;
  Rng rng(3);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 4};
  for (int i = 0; i < 5000; ++i) CHECK(p.pick(ctx, f.candidates) != 2);  // draws are distinct

  P2Fleet two(2);
  two.states[0]->in_flight = 5;
  for (int i = 0; i < 200; ++i) CHECK(p.pick(ctx, two.candidates) == 1);
  P2Fleet one(1);
  CHECK(p.pick(ctx, one.candidates) == 0);
}

// Mean spread (max - min in flight) over a closed loop of 64 open requests on 8 endpoints, each
// step one random request ends and a new one is placed by `place`.
template <typename Place>
double mean_spread(P2Fleet& f, Place place) {
  Rng work(12);
  std::vector<std::size_t> open;
  for (int i = 0; i < 64; ++i) {
    const std::size_t k = place();
    f.states[k]->in_flight++;
    open.push_back(k);
  }
  double sum = 0;
  const int steps = 20000;
  for (int step = 0; step < steps; ++step) {
    const auto j = static_cast<std::size_t>(work.below(open.size()));
    f.states[open[j]]->in_flight--;
    const std::size_t k = place();
    f.states[k]->in_flight++;
    open[j] = k;
    std::int64_t lo = 1 << 30, hi = 0;
    for (auto& s : f.states) {
      lo = std::min<std::int64_t>(lo, s->in_flight);
      hi = std::max<std::int64_t>(hi, s->in_flight);
    }
    sum += static_cast<double>(hi - lo);
  }
  return sum / steps;
}

TEST_CASE("power_of_two: closed loop keeps in-flight counts much closer than random") {
  policies::PowerOfTwo p;
  Rng rng(11);
  RequestView view;
  P2Fleet f(8);
  PickContext ctx{view, rng, nullptr, 8};
  const double two = mean_spread(f, [&] { return p.pick(ctx, f.candidates); });
  P2Fleet g(8);
  Rng r2(13);
  const double random = mean_spread(g, [&] { return static_cast<std::size_t>(r2.below(8)); });
  MESSAGE("mean spread: power_of_two " << two << ", random " << random);
  CHECK(two < 0.5 * random);
}

TEST_CASE("power_of_two: pick_from_pool draws the usable endpoints only, uniformly") {
  P2Fleet f(8);
  for (std::size_t k = 0; k < 4; ++k) f.states[k]->active_healthy = false;
  policies::PowerOfTwo p;
  Rng rng(21);
  RequestView view;
  PickContext ctx{view, rng, nullptr, 8};
  CandidateFilter filter;
  filter.check_health = true;
  const PoolView pool(f.candidates, filter);
  std::map<std::size_t, int> counts;
  int fallbacks = 0;
  for (int i = 0; i < 40000; ++i) {
    const std::size_t k = p.pick_from_pool(ctx, pool);
    if (k == Policy::kNoPick) {
      ++fallbacks;
      continue;
    }
    CHECK(pool.usable(k));
    counts[k]++;
  }
  CHECK(fallbacks < 5);  // half the pool usable: 32 missed draws in a row are rare
  for (std::size_t k = 4; k < 8; ++k) {
    CHECK(counts[k] > 9400);
    CHECK(counts[k] < 10600);
  }
  // The most loaded usable endpoint is never chosen (the two draws are distinct).
  f.states[6]->in_flight = 10;
  for (int i = 0; i < 5000; ++i) CHECK(p.pick_from_pool(ctx, pool) != 6);
  // One usable endpoint: no pair to compare, left to the list (which has one candidate).
  for (std::size_t k = 4; k < 7; ++k) f.states[k]->active_healthy = false;
  CHECK(p.pick_from_pool(ctx, pool) == Policy::kNoPick);
}

TEST_CASE("power_of_two: with the whole pool usable pick_from_pool draws exactly as pick") {
  P2Fleet f(16);
  for (std::size_t k = 0; k < 16; ++k) f.states[k]->in_flight = static_cast<std::int64_t>(k % 5);
  policies::PowerOfTwo p;
  RequestView view;
  Rng a(9);
  Rng b(9);
  PickContext ca{view, a, nullptr, 16};
  PickContext cb{view, b, nullptr, 16};
  for (int i = 0; i < 1000; ++i) CHECK(p.pick_from_pool(ca, PoolView(f.candidates)) == p.pick(cb, f.candidates));
}
