// session: stickiness, stable hashing across processes, spread, minimal movement, bounded load.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policies/hash_detail.h"
#include "support/fleet.h"
#include "vllm_router/policies/session.h"
#include "vllm_router/policy.h"

using namespace vllm_router;

namespace {

struct SessionFleet : testing::TestFleet {
  explicit SessionFleet(const std::vector<std::string>& endpoint_ids) : TestFleet(endpoint_ids) {}
};

std::vector<std::string> ids(int n, int first = 1) {
  return testing::fleet_ids(static_cast<std::size_t>(n), "10.0.2", static_cast<std::size_t>(first));
}

// The bound alone (no minimum capacity), unless a test asks for one.
PolicyOptions opts(double factor = 1.25, std::uint32_t min_capacity = 0) {
  PolicyOptions o;
  o.session_load_factor = factor;
  o.session_min_capacity = min_capacity;
  return o;
}

// Endpoint id chosen for `key` (no load).
std::string owner(const policies::Session& p, SessionFleet& f, PolicyScratch* scratch,
                  const std::string& key, Rng& rng) {
  RequestView view;
  view.session_key = key;
  PickContext ctx{view, rng, scratch, f.endpoints.size()};
  return f.candidates[p.pick(ctx, f.candidates)].endpoint->id;
}

}  // namespace

TEST_CASE("session: hashes are fixed values (same in every process and build)") {
  using policies::detail::fnv1a64;
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ull);
  CHECK(policies::detail::stable_hash("user-42") == policies::detail::mix64(fnv1a64("user-42")));
}

TEST_CASE("session: a key always lands on the same endpoint, in any router instance") {
  SessionFleet f(ids(5));
  policies::Session a(opts()), b(opts());
  auto sa = a.make_scratch(f.raw);
  // A second "process": its own policy and ring, candidates listed in another order.
  SessionFleet g(ids(5));
  std::reverse(g.raw.begin(), g.raw.end());
  std::vector<Candidate> reversed;
  for (std::size_t i = 0; i < g.raw.size(); ++i) {
    const std::size_t orig = g.raw.size() - 1 - i;
    reversed.push_back(Candidate{&g.endpoints[orig], g.states[orig].get(), i});
  }
  auto sb = b.make_scratch(g.raw);
  Rng rng(1);
  for (int k = 0; k < 500; ++k) {
    const std::string key = "session-" + std::to_string(k);
    const std::string first = owner(a, f, sa.get(), key, rng);
    for (int rep = 0; rep < 3; ++rep) CHECK(owner(a, f, sa.get(), key, rng) == first);
    RequestView view;
    view.session_key = key;
    PickContext ctx{view, rng, sb.get(), 5};
    CHECK(reversed[b.pick(ctx, reversed)].endpoint->id == first);
    // Without scratch the policy builds the same ring from the candidates.
    CHECK(owner(a, f, nullptr, key, rng) == first);
  }
}

TEST_CASE("session: keys spread evenly over endpoints") {
  SessionFleet f(ids(5));
  policies::Session p(opts());
  auto scratch = p.make_scratch(f.raw);
  Rng rng(2);
  std::map<std::string, int> counts;
  for (int k = 0; k < 20000; ++k) counts[owner(p, f, scratch.get(), "u" + std::to_string(k), rng)]++;
  REQUIRE(counts.size() == 5);
  for (auto& [id, n] : counts) {
    CHECK(n > 2800);  // 4000 expected; 160 virtual nodes keep shares within ~+-15 %
    CHECK(n < 5200);
  }
}

TEST_CASE("session: removing or adding a replica moves only the keys it loses or gains") {
  policies::Session p(opts());
  Rng rng(3);
  SessionFleet five(ids(5));
  auto s5 = p.make_scratch(five.raw);
  std::map<std::string, std::string> before;
  for (int k = 0; k < 5000; ++k) {
    const std::string key = "k" + std::to_string(k);
    before[key] = owner(p, five, s5.get(), key, rng);
  }
  // Remove the third replica: a new pool (new snapshot) of four.
  std::vector<std::string> four_ids = ids(5);
  const std::string removed = four_ids[2];
  four_ids.erase(four_ids.begin() + 2);
  SessionFleet four(four_ids);
  auto s4 = p.make_scratch(four.raw);
  int moved = 0;
  for (auto& [key, id] : before) {
    const std::string now = owner(p, four, s4.get(), key, rng);
    if (id != removed) CHECK(now == id);
    if (now != id) ++moved;
  }
  CHECK(moved > 0);
  CHECK(moved < 5000 * 0.3);
  // Add a sixth replica: only keys that now go to it move (about 1/6).
  SessionFleet six(ids(6));
  auto s6 = p.make_scratch(six.raw);
  moved = 0;
  for (auto& [key, id] : before) {
    const std::string now = owner(p, six, s6.get(), key, rng);
    if (now != id) {
      ++moved;
      CHECK(now == six.endpoints[5].id);
    }
  }
  CHECK(moved > 5000 / 6 / 2);
  CHECK(moved < 5000 / 6 * 3 / 2);
}

TEST_CASE("session: an unavailable replica's keys go to the next one and come back") {
  SessionFleet f(ids(4));
  policies::Session p(opts());
  auto scratch = p.make_scratch(f.raw);
  Rng rng(4);
  std::string key;
  for (int k = 0;; ++k) {  // a key owned by endpoint 1
    key = "s" + std::to_string(k);
    if (owner(p, f, scratch.get(), key, rng) == f.endpoints[1].id) break;
  }
  RequestView view;
  view.session_key = key;
  PickContext ctx{view, rng, scratch.get(), 4};
  std::vector<Candidate> without = {f.candidates[0], f.candidates[2], f.candidates[3]};
  const std::string fallback = without[p.pick(ctx, without)].endpoint->id;
  CHECK(fallback != f.endpoints[1].id);
  for (int i = 0; i < 10; ++i) CHECK(without[p.pick(ctx, without)].endpoint->id == fallback);
  CHECK(f.candidates[p.pick(ctx, f.candidates)].endpoint->id == f.endpoints[1].id);
}

TEST_CASE("session: bounded load caps a hot session at c x average, pure hashing does not") {
  const double c = 1.25;
  SessionFleet f(ids(4));
  policies::Session p(opts(c));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(5);
  RequestView view;
  view.session_key = "the-hot-one";
  PickContext ctx{view, rng, scratch.get(), 4};
  const std::size_t home = p.pick(ctx, f.candidates);
  std::int64_t total = 0;
  for (int i = 0; i < 200; ++i) {  // 200 concurrent requests of one session, none finishing
    const std::size_t k = p.pick(ctx, f.candidates);
    if (i == 0) CHECK(k == home);
    f.states[k]->in_flight++;
    ++total;
    const auto cap = static_cast<std::int64_t>(std::ceil(c * static_cast<double>(total) / 4.0));
    for (auto& s : f.states) CHECK(s->in_flight <= cap);
  }
  // The home replica filled up to the bound (ceil(1.25 x 200 / 4) = 63), the rest spilled on.
  CHECK(f.states[home]->in_flight == 63);
  for (auto& s : f.states) CHECK(s->in_flight >= 1);

  // session_load_factor <= 1 turns the bound off: plain consistent hashing.
  SessionFleet g(ids(4));
  policies::Session pure(opts(1.0));
  auto s2 = pure.make_scratch(g.raw);
  PickContext ctx2{view, rng, s2.get(), 4};
  const std::size_t h2 = pure.pick(ctx2, g.candidates);
  for (int i = 0; i < 50; ++i) {
    const std::size_t k = pure.pick(ctx2, g.candidates);
    CHECK(k == h2);
    g.states[k]->in_flight++;
  }
}

TEST_CASE("session: without a key requests spread (power of two)") {
  SessionFleet f(ids(4));
  policies::Session p(opts());
  auto scratch = p.make_scratch(f.raw);
  Rng rng(6);
  RequestView view;
  PickContext ctx{view, rng, scratch.get(), 4};
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 4000; ++i) counts[p.pick(ctx, f.candidates)]++;
  CHECK(counts.size() == 4);
  for (auto& [k, n] : counts) CHECK(n > 800);
}

TEST_CASE("session: below session_min_capacity in flight a session never leaves its replica") {
  SessionFleet f(ids(4));
  policies::Session p(opts(1.25, 16));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(5);
  RequestView view;
  view.session_key = "a-chatty-user";
  PickContext ctx{view, rng, scratch.get(), 4};
  const std::size_t home = p.pick(ctx, f.candidates);
  for (int i = 0; i < 16; ++i) {  // the bound alone would spill after ceil(1.25 x i / 4)
    CHECK(p.pick(ctx, f.candidates) == home);
    f.states[home]->in_flight++;
  }
  CHECK(p.pick(ctx, f.candidates) != home);  // 16 in flight, the fleet idle: now it spills
}

TEST_CASE("session: an engine that reports a waiting queue is full, whatever session_min_capacity says") {
  // The shape: engines batching 8, a floor of 16: 13 sessions on one engine queue 5 of
  // them, and the floor alone would never move one.
  SessionFleet f(ids(4));
  PolicyOptions o = opts(1.25, 16);
  o.scrape_stale_ms = 2000;
  policies::Session p(o);
  auto scratch = p.make_scratch(f.raw);
  Rng rng(5);
  RequestView view;
  view.session_key = "a-chatty-user";
  const std::int64_t now = 10'000'000'000;
  PickContext ctx{view, rng, scratch.get(), 4, now};
  const std::size_t home = p.pick(ctx, f.candidates);
  f.states[home]->in_flight = 13;
  f.states[home]->sampled_ns = now - 500'000'000;  // fresh
  f.states[home]->waiting = 0;
  CHECK(p.pick(ctx, f.candidates) == home);  // running 13, nothing queued: the floor holds
  CHECK(p.pick_from_pool(ctx, PoolView(f.candidates)) == f.candidates[home].slot);
  f.states[home]->waiting = 5;
  const std::size_t moved = p.pick(ctx, f.candidates);
  CHECK(moved != home);
  CHECK(p.pick_from_pool(ctx, PoolView(f.candidates)) == f.candidates[moved].slot);
  // The next one on the ring also queues: passed over too.
  f.states[moved]->sampled_ns = now;
  f.states[moved]->waiting = 1;
  const std::size_t third = p.pick(ctx, f.candidates);
  CHECK(third != home);
  CHECK(third != moved);
  // A stale scrape says nothing: the floor holds again.
  f.states[home]->sampled_ns = now - 5'000'000'000;
  CHECK(p.pick(ctx, f.candidates) == home);
}

TEST_CASE("session: pick_from_pool picks what pick picks over the usable candidates") {
  for (const double factor : {1.0, 1.25}) {
    for (const std::uint32_t min_capacity : {0u, 16u}) {
      CAPTURE(factor);
      CAPTURE(min_capacity);
      SessionFleet f(ids(12));
      policies::Session p(opts(factor, min_capacity));
      auto scratch = p.make_scratch(f.raw);
      // Uneven loads, so that the bound sends some keys past their home.
      for (std::size_t k = 0; k < 12; ++k) f.states[k]->in_flight = static_cast<std::int64_t>((k * 7) % 5 + (k == 3 ? 30 : 0));
      const std::size_t tried[] = {2, 9};
      CandidateFilter filter;
      filter.excluded = tried;
      const PoolView pool(f.candidates, filter);
      std::vector<Candidate> usable;
      for (const auto& c : f.candidates) {
        if (c.slot != 2 && c.slot != 9) usable.push_back(c);
      }
      Rng rng(4);
      int on_hot = 0;
      for (int k = 0; k < 2000; ++k) {
        RequestView view;
        view.session_key = "key-" + std::to_string(k);
        PickContext ctx{view, rng, scratch.get(), 12};
        const std::size_t fast = p.pick_from_pool(ctx, pool);
        REQUIRE(fast != Policy::kNoPick);
        CHECK(fast == usable[p.pick(ctx, usable)].slot);
        CHECK(fast != 2);
        CHECK(fast != 9);
        on_hot += fast == 3 ? 1 : 0;
      }
      // Endpoint 3 (31 in flight) is over any bound here; pure hashing still sends its keys.
      if (factor > 1.0) CHECK(on_hot == 0);
      if (factor <= 1.0) CHECK(on_hot > 0);
    }
  }
}

TEST_CASE("session: pick_from_pool leaves the choice to pick without its ring") {
  SessionFleet f(ids(4));
  policies::Session p(opts());
  Rng rng(4);
  RequestView view;
  view.session_key = "k";
  PickContext ctx{view, rng, nullptr, 4};
  CHECK(p.pick_from_pool(ctx, PoolView(f.candidates)) == Policy::kNoPick);
}
