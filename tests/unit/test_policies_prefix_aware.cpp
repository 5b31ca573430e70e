// prefix_aware: chained chunk hashes, longest match, load margin, spread, memory cap, threads.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/fleet.h"
#include "vllm_router/config.h"
#include "vllm_router/policies/prefix_aware.h"
#include "vllm_router/policy.h"

using namespace vllm_router;
using policies::PrefixAware;

namespace {

constexpr std::int64_t kMs = 1000000;

struct PaFleet : testing::TestFleet {
  explicit PaFleet(std::size_t n) : TestFleet(testing::fleet_ids(n, "10.0.3")) {}
};

PolicyOptions opts(std::uint32_t chunk = 64, std::uint32_t max_entries = 65536, double margin = 4.0) {
  PolicyOptions o;
  o.prefix_chunk_chars = chunk;
  o.prefix_max_entries = max_entries;
  o.prefix_load_margin = margin;
  o.scrape_stale_ms = 5000;
  return o;
}

// Deterministic text of `n` characters for `seed` (letters, no JSON quoting needed).
std::string text(std::uint64_t seed, std::size_t n) {
  Rng r(seed);
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + r.below(26)));
  return s;
}

std::size_t pick(const PrefixAware& p, testing::TestFleet& f, PolicyScratch* scratch, std::string_view prompt,
                 Rng& rng, std::int64_t now_ns = 1) {
  RequestView view;
  view.prompt_prefix = prompt;
  PickContext ctx{view, rng, scratch, f.endpoints.size(), now_ns};
  return p.pick(ctx, f.candidates);
}

}  // namespace

TEST_CASE("prefix_aware: chain hashes cover full chunks and diverge where the text does") {
  const std::string a = text(1, 1000);
  std::string b = a;
  b[700] = b[700] == 'x' ? 'y' : 'x';
  const auto ha = PrefixAware::chain_hashes(a, 100);
  const auto hb = PrefixAware::chain_hashes(b, 100);
  REQUIRE(ha.size() == 10);
  REQUIRE(hb.size() == 10);
  for (std::size_t k = 0; k < 7; ++k) CHECK(ha[k] == hb[k]);
  for (std::size_t k = 7; k < 10; ++k) CHECK(ha[k] != hb[k]);  // chained: later chunks differ too
  CHECK(PrefixAware::chain_hashes(a.substr(0, 1050), 100).size() == 10);  // partial chunk left out
  CHECK(PrefixAware::chain_hashes("short", 100).empty());
  // The same chunk at another depth hashes differently (a chain, not a bag of chunks).
  const std::string rep(200, 'z');
  const auto hr = PrefixAware::chain_hashes(rep, 100);
  CHECK(hr[0] != hr[1]);
  // Stable: a fixed value, identical in every process.
  CHECK(PrefixAware::chain_hashes(rep, 100) == hr);
}

TEST_CASE("prefix_aware: prompts sharing a long prefix stick to the endpoint that served it") {
  PaFleet f(4);
  PrefixAware p(opts());
  auto scratch = p.make_scratch(f.raw);
  Rng rng(2);
  const std::string shared = text(2, 2000);
  const std::size_t first = pick(p, f, scratch.get(), shared + text(100, 200), rng);
  f.states[first]->in_flight = 2;  // busier than the others, within the margin of 4
  for (int q = 0; q < 50; ++q) {
    CHECK(pick(p, f, scratch.get(), shared + text(1000 + q, 200), rng) == first);
  }
}

TEST_CASE("prefix_aware: new prefix groups go to the least loaded, so groups spread") {
  PaFleet f(4);
  PolicyOptions o = opts();
  o.prefix_home_load_bound = 0;  // plain least loaded: exactly even (the default allows one more)
  o.prefix_affinity_chars = 0;   // no homes: a group placed off its home would go back there
  PrefixAware p(o);
  auto scratch = p.make_scratch(f.raw);
  Rng rng(3);
  std::map<std::size_t, std::set<int>> groups_on;
  for (int g = 0; g < 16; ++g) {
    const std::size_t k = pick(p, f, scratch.get(), text(10 + g, 2000), rng);
    f.states[k]->in_flight++;  // each group keeps one request open
    groups_on[k].insert(g);
  }
  REQUIRE(groups_on.size() == 4);
  for (auto& [k, gs] : groups_on) CHECK(gs.size() == 4);
  // Every group's next request returns to its endpoint.
  for (auto& [k, gs] : groups_on)
    for (int g : gs) CHECK(pick(p, f, scratch.get(), text(10 + g, 2000) + "more", rng) == k);
}

TEST_CASE("prefix_aware: leaves the best match when its load exceeds the least by the margin") {
  PaFleet f(3);
  PrefixAware p(opts(64, 65536, 4.0));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(4);
  const std::string prompt = text(5, 3000);
  const std::size_t home = pick(p, f, scratch.get(), prompt, rng);
  f.states[home]->in_flight = 4;  // exceeds the least (0) by exactly the margin: still home
  CHECK(pick(p, f, scratch.get(), prompt, rng) == home);
  f.states[home]->in_flight = 5;  // over the margin: load-aware choice
  const std::size_t other = pick(p, f, scratch.get(), prompt, rng);
  CHECK(other != home);
  // The spill is recorded: both now hold the prefix; with the home busy the other one wins.
  f.states[other]->in_flight = 3;
  CHECK(pick(p, f, scratch.get(), prompt, rng) == other);
}

TEST_CASE("prefix_aware: scraped load counts only while fresh") {
  PaFleet f(2);
  PrefixAware p(opts(64, 65536, 4.0));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(5);
  const std::string prompt = text(6, 2000);
  const std::int64_t now = 100000 * kMs;
  const std::size_t home = pick(p, f, scratch.get(), prompt, rng, now);
  f.states[home]->waiting = 10;  // vLLM says: 10 queued (other routers' requests)
  f.states[home]->running = 4;
  f.states[home]->kv_cache_usage = 0.5F;
  f.states[home]->sampled_ns = now - 60000 * kMs;  // a minute old: ignored
  CHECK(pick(p, f, scratch.get(), prompt, rng, now) == home);
  f.states[home]->sampled_ns = now - 1000 * kMs;  // a second old: 10 + 4 x 0.5 over the margin
  CHECK(pick(p, f, scratch.get(), prompt, rng, now) != home);
}

TEST_CASE("prefix_aware: a short shared head (system prompt) does not herd requests") {
  PaFleet f(4);
  PrefixAware p(opts(64));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(6);
  const std::string system = text(7, 128);  // 2 chunks shared by everyone
  std::map<std::size_t, int> counts;
  for (int u = 0; u < 400; ++u) {
    const std::size_t k = pick(p, f, scratch.get(), system + text(5000 + u, 600), rng);
    counts[k]++;
  }
  REQUIRE(counts.size() == 4);
  for (auto& [k, n] : counts) CHECK(n > 60);  // load-aware ties: random spread, ~100 each
}

TEST_CASE("prefix_aware: the index never exceeds prefix_max_entries and forgets the oldest") {
  PaFleet f(4);
  PrefixAware p(opts(64, 100));
  auto scratch = p.make_scratch(f.raw);
  Rng rng(8);
  for (int i = 0; i < 1000; ++i) {
    pick(p, f, scratch.get(), text(20000 + static_cast<std::uint64_t>(i), 640), rng);  // 10 chunks each
    CHECK(PrefixAware::index_size(scratch.get()) <= 100);
  }
  CHECK(PrefixAware::index_size(scratch.get()) == 100);
  // The most recent prompt is still known (sticks under load within the margin)...
  const std::string recent = text(20000 + 999, 640);
  const std::size_t home = pick(p, f, scratch.get(), recent, rng);
  f.states[home]->in_flight = 3;
  CHECK(pick(p, f, scratch.get(), recent, rng) == home);
  f.states[home]->in_flight = 0;
  // ... the first one was forgotten: it goes wherever load says (all equal: spread at random;
  // no home from the prompt's head, which would send it back to the same place by hashing).
  PolicyOptions no_home = opts(64, 100);
  no_home.prefix_affinity_chars = 0;
  PrefixAware fresh(no_home);
  int same = 0;
  for (int rep = 0; rep < 40; ++rep) {
    auto s = fresh.make_scratch(f.raw);
    std::size_t original = 0;
    for (int i = 0; i < 20; ++i) {
      const std::size_t k = pick(fresh, f, s.get(), text(30000 + static_cast<std::uint64_t>(i), 640), rng);
      if (i == 0) original = k;
    }
    if (pick(fresh, f, s.get(), text(30000, 640) + "x", rng) == original) ++same;
  }
  CHECK(same < 25);  // remembered it would be 40; forgotten, about 10 (1 in 4)
  // A zero cap records nothing.
  PrefixAware none(opts(64, 0));
  auto s0 = none.make_scratch(f.raw);
  pick(none, f, s0.get(), recent, rng);
  CHECK(PrefixAware::index_size(s0.get()) == 0);
}

TEST_CASE("prefix_aware: concurrent picks from several threads keep the index consistent") {
  PaFleet f(4);
  PrefixAware p(opts(64, 500));
  auto scratch = p.make_scratch(f.raw);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Rng rng(static_cast<std::uint64_t>(100 + t));
      for (int i = 0; i < 2000; ++i)
        pick(p, f, scratch.get(), text(static_cast<std::uint64_t>(i % 64), 700), rng);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(PrefixAware::index_size(scratch.get()) <= 500);
}

TEST_CASE("prefix_aware: the index carries over to a new table, following endpoints by id") {
  const auto ids = testing::fleet_ids(4, "10.0.3");
  testing::TestFleet before(ids);
  PolicyOptions o = opts();
  o.prefix_home_load_bound = 0;  // exactly two groups per endpoint
  o.prefix_affinity_chars = 0;   // the index alone (a home would take a group back once free)
  PrefixAware p(o);
  auto scratch = p.make_scratch(before.raw);
  Rng rng(5);
  std::map<int, std::string> served_by;  // group -> endpoint id
  for (int g = 0; g < 8; ++g) {
    const std::size_t k = pick(p, before, scratch.get(), text(40 + g, 2000), rng);
    before.states[k]->in_flight++;  // spread the groups: two per endpoint
    served_by[g] = before.endpoints[k].id;
  }
  std::set<std::string> used;
  for (auto& [g, id] : served_by) used.insert(id);
  REQUIRE(used.size() == 4);

  // The new table: the same servers in reverse order, the first one gone, a new one at the end.
  testing::TestFleet after({ids[3], ids[2], ids[1], "http://10.0.3.9:8000"});
  auto carried = p.carry_scratch(after.raw, *scratch, before.raw);
  CHECK(PrefixAware::index_size(p.make_scratch(after.raw).get()) == 0);
  // Only the groups of the endpoint that left are forgotten (6 of 8 groups stay).
  CHECK(PrefixAware::index_size(carried.get()) * 8 == PrefixAware::index_size(scratch.get()) * 6);
  for (auto& [g, id] : served_by) {
    if (id == ids[0]) continue;
    const std::size_t k = pick(p, after, carried.get(), text(40 + g, 2000) + "next turn", rng);
    CHECK(after.endpoints[k].id == id);
  }
}

TEST_CASE("prefix_aware: a carried index keeps the most recent entries under a smaller cap") {
  testing::TestFleet f(testing::fleet_ids(2, "10.0.4"));
  PrefixAware big(opts(64, 1000));
  auto scratch = big.make_scratch(f.raw);
  Rng rng(6);
  for (int g = 0; g < 10; ++g) pick(big, f, scratch.get(), text(70 + g, 640), rng);  // 10 chunks each
  REQUIRE(PrefixAware::index_size(scratch.get()) == 100);
  PrefixAware small(opts(64, 30));
  auto carried = small.carry_scratch(f.raw, *scratch, f.raw);
  CHECK(PrefixAware::index_size(carried.get()) == 30);
  // The newest group survived whole: its endpoint keeps it even when busier than the other
  // (within the load margin), and the full match records no new entry.
  const std::size_t served = pick(big, f, scratch.get(), text(79, 640) + "y", rng);
  f.states[served]->in_flight = 2;
  CHECK(pick(small, f, carried.get(), text(79, 640) + "x", rng) == served);
  CHECK(PrefixAware::index_size(carried.get()) == 30);
}

namespace {

// An agentic conversation's prompt at turn `turn`: a shared tool prompt, then its own growing
// history (the messages array's raw JSON, as the router sees it).
std::string conversation(const std::string& tools, int id, int turn) {
  std::string s = "[{\"role\":\"system\",\"content\":\"" + tools + "\"}";
  for (int t = 0; t <= turn; ++t) {
    s += ",{\"role\":\"user\",\"content\":\"" + text(static_cast<std::uint64_t>(id * 100 + t), 300) + "\"}";
  }
  return s + "]";
}

// Conversations kept on one endpoint for all their turns, and conversations per endpoint.
struct Placement {
  int sticky = 0;
  std::map<std::size_t, int> per_endpoint;
};

Placement run_conversations(const PolicyOptions& o, bool with_user) {
  PaFleet f(4);
  PrefixAware p(o);
  auto scratch = p.make_scratch(f.raw);
  Rng rng(11);
  const std::string tools = text(999, 4500);  // a system prompt with tool schemas: over 4 KiB
  constexpr int kConversations = 40, kTurns = 10;
  std::vector<std::set<std::size_t>> served(kConversations);
  for (int turn = 0; turn < kTurns; ++turn) {  // the agents run concurrently: a turn each in flight
    std::vector<std::size_t> running;
    for (int c = 0; c < kConversations; ++c) {
      const std::string prompt = conversation(tools, c, turn);
      RequestView view;
      view.prompt_prefix = prompt;
      if (with_user) view.session_key = "conversation-" + std::to_string(c);
      PickContext ctx{view, rng, scratch.get(), f.endpoints.size(), 1};
      const std::size_t k = p.pick(ctx, f.candidates);
      served[static_cast<std::size_t>(c)].insert(k);
      f.states[k]->in_flight++;
      running.push_back(k);
    }
    for (std::size_t k : running) f.states[k]->in_flight--;  // the turn's answers come back
  }
  Placement out;
  for (const auto& s : served) {
    out.sticky += s.size() == 1 ? 1 : 0;
    for (std::size_t e : s) ++out.per_endpoint[e];
  }
  return out;
}

}  // namespace

TEST_CASE("prefix_aware: agentic conversations (shared tool prompt, growing turns) stay on one engine each and spread") {
  PolicyOptions o = opts(256);
  for (const bool with_user : {true, false}) {
    CAPTURE(with_user);
    const Placement got = run_conversations(o, with_user);
    CHECK(got.sticky == 40);
    REQUIRE(got.per_endpoint.size() == 4);
    for (const auto& [endpoint, n] : got.per_endpoint) CHECK(n >= 4);
  }
  // The defect this guards: with only the first 4 KiB hashed every turn of every conversation
  // looks the same (the tool prompt), so conversations do not stay anywhere in particular.
  o.prefix_window_chars = 4096;
  CHECK(run_conversations(o, false).sticky < 40);
}

TEST_CASE("prefix_aware: ties are broken by the session key, the same way in every router") {
  PaFleet f(4);
  PrefixAware a(opts()), b(opts());
  auto sa = a.make_scratch(f.raw);
  auto sb = b.make_scratch(f.raw);
  Rng ra(1), rb(2);  // different random streams: the key alone decides
  std::set<std::size_t> used;
  for (int u = 0; u < 32; ++u) {
    const std::string prompt = text(static_cast<std::uint64_t>(5000 + u), 640);
    RequestView view;
    view.prompt_prefix = prompt;
    view.session_key = "user-" + std::to_string(u);
    PickContext ca{view, ra, sa.get(), 4, 1}, cb{view, rb, sb.get(), 4, 1};
    const std::size_t x = a.pick(ca, f.candidates);
    CHECK(x == b.pick(cb, f.candidates));
    used.insert(x);
  }
  CHECK(used.size() == 4);
}

namespace {

std::size_t pick_keyed(const PrefixAware& p, testing::TestFleet& f, PolicyScratch* scratch, std::string_view prompt,
                       std::string_view user, Rng& rng, std::int64_t now_ns = 1) {
  RequestView view;
  view.prompt_prefix = prompt;
  view.session_key = std::string(user);
  PickContext ctx{view, rng, scratch, f.endpoints.size(), now_ns};
  return p.pick(ctx, f.candidates);
}

}  // namespace

TEST_CASE("prefix_aware: two router replicas send a cold prefix and a session to the same endpoint") {
  // Two routers: each its own policy instance, index, in-flight counts and random stream, in
  // front of the same four engines.
  const auto ids = testing::fleet_ids(4, "10.0.5");
  testing::TestFleet fa(ids), fb(ids);
  PrefixAware a(opts()), b(opts());
  auto sa = a.make_scratch(fa.raw);
  auto sb = b.make_scratch(fb.raw);
  Rng ra(1), rb(2);
  std::set<std::size_t> used;
  for (int g = 0; g < 32; ++g) {
    CAPTURE(g);
    const std::string group = text(static_cast<std::uint64_t>(600 + g), 2000);
    // The group's first request reaches router A, its second router B (which never saw it).
    const std::size_t x = pick(a, fa, sa.get(), group + text(1, 100), ra);
    CHECK(pick(b, fb, sb.get(), group + text(2, 100), rb) == x);
    used.insert(x);
    // A conversation: turn 1 through A, turn 2 through B.
    const std::string user = "conversation-" + std::to_string(g);
    const std::string turn1 = text(static_cast<std::uint64_t>(700 + g), 900);
    const std::size_t y = pick_keyed(a, fa, sa.get(), turn1, user, ra);
    CHECK(pick_keyed(b, fb, sb.get(), turn1 + text(3, 400), user, rb) == y);
  }
  CHECK(used.size() == 4);  // homes spread over the engines
}

TEST_CASE("prefix_aware: a home is abandoned over its bound") {
  PaFleet f(4);
  Rng rng(9);
  const std::string prompt = text(800, 1000);
  SUBCASE("a home from the prompt's head: prefix_home_load_bound") {
    PolicyOptions o1 = opts();
    o1.prefix_home_load_bound = 1;
    PrefixAware p(o1);
    const std::size_t home = pick(p, f, p.make_scratch(f.raw).get(), prompt, rng);
    f.states[home]->in_flight = 1;  // within the bound: still home (for every router)
    CHECK(pick(p, f, p.make_scratch(f.raw).get(), prompt, rng) == home);
    f.states[home]->in_flight = 2;  // over it: the least loaded
    CHECK(pick(p, f, p.make_scratch(f.raw).get(), prompt, rng) != home);
    PolicyOptions o = opts();
    o.prefix_home_load_bound = 0;  // plain least loaded
    PrefixAware strict(o);
    f.states[home]->in_flight = 1;
    CHECK(pick(strict, f, strict.make_scratch(f.raw).get(), prompt, rng) != home);
    f.states[home]->in_flight = 0;
    CHECK(pick(strict, f, strict.make_scratch(f.raw).get(), prompt, rng) == home);  // ties: the home
  }
  SUBCASE("a session's home: session's capacity bound") {
    PrefixAware p(opts());  // session_min_capacity 16, session_load_factor 1.25
    const std::size_t home = pick_keyed(p, f, p.make_scratch(f.raw).get(), prompt, "u", rng);
    f.states[home]->in_flight = 15;  // below session_min_capacity: a session stays home
    CHECK(pick_keyed(p, f, p.make_scratch(f.raw).get(), prompt, "u", rng) == home);
    f.states[home]->in_flight = 16;  // at the floor and above 1.25 x the average
    CHECK(pick_keyed(p, f, p.make_scratch(f.raw).get(), prompt, "u", rng) != home);
    // The engine reports queued requests (a fresh scrape): full at its real batch size.
    const std::int64_t now = 1000 * kMs;
    f.states[home]->in_flight = 1;
    f.states[home]->waiting = 2;
    f.states[home]->sampled_ns = now - 100 * kMs;
    CHECK(pick_keyed(p, f, p.make_scratch(f.raw).get(), prompt, "u", rng, now) != home);
    f.states[home]->waiting = 0;
    CHECK(pick_keyed(p, f, p.make_scratch(f.raw).get(), prompt, "u", rng, now) == home);
  }
}

TEST_CASE("prefix_aware: requests with random heads still go to the least loaded") {
  PaFleet f(4);
  PrefixAware p(opts());  // default home bound: 0.5
  auto scratch = p.make_scratch(f.raw);
  Rng rng(10);
  f.states[0]->in_flight = 2;
  f.states[2]->in_flight = 3;
  f.states[3]->in_flight = 2;
  for (int q = 0; q < 100; ++q) {  // their homes are everywhere; only slot 1 is within the bound
    CHECK(pick(p, f, scratch.get(), text(static_cast<std::uint64_t>(900 + q), 700), rng) == 1);
  }
  // Equal loads: spread by their homes.
  for (auto& st : f.states) st->in_flight = 0;
  std::map<std::size_t, int> counts;
  for (int q = 0; q < 400; ++q) counts[pick(p, f, scratch.get(), text(static_cast<std::uint64_t>(2000 + q), 700), rng)]++;
  REQUIRE(counts.size() == 4);
  for (auto& [k, c] : counts) CHECK(c > 60);
}

TEST_CASE("prefix_aware: the home's options are read from policy_options and checked") {
  const PolicyOptions defaults;
  CHECK(defaults.prefix_affinity_chars == 256u);
  CHECK(defaults.prefix_home_load_bound == doctest::Approx(0.5));
  auto parsed = parse_router_config(R"({"policy_options": {"prefix_affinity_chars": 512, "prefix_home_load_bound": 0.5}})");
  REQUIRE(parsed.ok());
  CHECK(parsed->policy_options.prefix_affinity_chars == 512u);
  CHECK(parsed->policy_options.prefix_home_load_bound == doctest::Approx(0.5));
  auto negative = parse_router_config(R"({"policy_options": {"prefix_home_load_bound": -1}})");
  REQUIRE_FALSE(negative.ok());
  CHECK(negative.error().param == "policy_options.prefix_home_load_bound");
  auto bad = parse_router_config(R"({"policy_options": {"prefix_affinity_chars": "256"}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().param == "policy_options.prefix_affinity_chars");
}

TEST_CASE("prefix_aware: agent sessions through two routers stay on their homes, not on the tool prompt's engine") {
  // 40 agents share a 4.5 KB tool prompt; their turns alternate between two routers (each its
  // own index and in-flight counts). Following the tool prompt's match would herd them onto the
  // engine that served it first; the session key keeps each on its home, in both routers.
  const auto ids = testing::fleet_ids(4, "10.0.6");
  testing::TestFleet fa(ids), fb(ids);
  PrefixAware a(opts(256)), b(opts(256));
  auto sa = a.make_scratch(fa.raw);
  auto sb = b.make_scratch(fb.raw);
  Rng ra(3), rb(4);
  const std::string tools = text(998, 4500);
  constexpr int kConversations = 40, kTurns = 6;
  std::vector<std::set<std::size_t>> served(kConversations);
  for (int turn = 0; turn < kTurns; ++turn) {
    std::vector<std::pair<testing::TestFleet*, std::size_t>> running;
    for (int c = 0; c < kConversations; ++c) {
      const bool via_a = (c + turn) % 2 == 0;
      auto& f = via_a ? fa : fb;
      const std::size_t k = pick_keyed(via_a ? a : b, f, via_a ? sa.get() : sb.get(), conversation(tools, c, turn),
                                       "agent-" + std::to_string(c), via_a ? ra : rb);
      served[static_cast<std::size_t>(c)].insert(k);
      f.states[k]->in_flight++;
      running.emplace_back(&f, k);
    }
    for (auto& [f, k] : running) f->states[k]->in_flight--;
  }
  std::map<std::size_t, int> per_endpoint;
  int sticky = 0;
  for (const auto& s : served) {
    sticky += s.size() == 1 ? 1 : 0;
    for (std::size_t e : s) ++per_endpoint[e];
  }
  CHECK(sticky == kConversations);
  REQUIRE(per_endpoint.size() == 4);
  for (const auto& [e, n] : per_endpoint) CHECK(n <= 20);  // hashing spreads them (10 on average)
}

namespace {

// A cold head's home and the next endpoint of its rendezvous order (from a router that sees
// nothing else, with the default rule: the home is over its bound with 10 in flight).
std::pair<std::size_t, std::size_t> home_and_second(const std::vector<std::string>& ids, const std::string& prompt,
                                                    std::int64_t now) {
  testing::TestFleet idle(ids);
  PrefixAware probe(opts());
  Rng rng(1);
  const std::size_t home = pick(probe, idle, probe.make_scratch(idle.raw).get(), prompt, rng, now);
  idle.states[home]->in_flight = 10;
  const std::size_t second = pick(probe, idle, probe.make_scratch(idle.raw).get(), prompt, rng, now);
  return {home, second};
}

}  // namespace

TEST_CASE("prefix_aware: prefix_replica_affinity keeps a cold head home below the bounded load and spills it along its rendezvous order") {
  const auto ids = testing::fleet_ids(4, "10.0.7");
  PolicyOptions on = opts();  // prefix_home_load_bound 0.5; prefix_replica_load_factor 1.25
  on.prefix_replica_affinity = true;
  PrefixAware rule(on);
  PrefixAware off(opts());
  Rng rng(11);
  const std::int64_t now = 5000 * kMs;
  std::set<std::size_t> spilled_to;
  for (int g = 0; g < 16; ++g) {
    CAPTURE(g);
    const std::string prompt = text(static_cast<std::uint64_t>(1300 + g), 1000);
    const auto [home, second] = home_and_second(ids, prompt, now);
    REQUIRE(second != home);
    testing::TestFleet f(ids);  // one router, no scrape: its share is 1
    // The home runs 1, the others 0: the average is 0.25, the bound 1.25 x 0.25 + 1 = 1.31:
    // home. The default rule (0.5 over the least loaded) leaves it.
    f.states[home]->in_flight = 1;
    CHECK(pick(rule, f, rule.make_scratch(f.raw).get(), prompt, rng, now) == home);
    CHECK(pick(off, f, off.make_scratch(f.raw).get(), prompt, rng, now) != home);
    // The home runs 2 (bound 1.625): the next of the head's order takes it, although it runs
    // one more than the two least loaded (the default rule picks one of those).
    f.states[home]->in_flight = 2;
    f.states[second]->in_flight = 1;
    const std::size_t x = pick(rule, f, rule.make_scratch(f.raw).get(), prompt, rng, now);
    CHECK(x == second);
    CHECK(pick(off, f, off.make_scratch(f.raw).get(), prompt, rng, now) != second);
    spilled_to.insert(x);
  }
  CHECK(spilled_to.size() >= 3);  // the spills follow each prefix's order, spread
}

TEST_CASE("prefix_aware: prefix_replica_affinity scales this router's requests by its share of the engines' (from the scrapes)") {
  // Two routers in front of the same four engines, each with its own index and in-flight
  // counts; the scrapes show each engine running 3 requests while each router had 1 there
  // (the third router is elsewhere): each router's share is a third.
  const auto ids = testing::fleet_ids(4, "10.0.8");
  testing::TestFleet fa(ids), fb(ids), lone(ids);
  PolicyOptions on = opts();
  on.prefix_replica_affinity = true;
  PrefixAware a(on), b(on), one(on);
  auto sa = a.make_scratch(fa.raw);
  auto sb = b.make_scratch(fb.raw);
  auto s1 = one.make_scratch(lone.raw);
  Rng ra(21), rb(22), r1(23);
  std::int64_t now = 5000 * kMs;
  const auto scrape = [&](testing::TestFleet& f, int running, int own) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      f.states[i]->running = running;
      f.states[i]->waiting = 0;
      f.states[i]->sampled_in_flight = own;
      f.states[i]->sampled_ns = now - 50 * kMs;
    }
  };
  int spilled = 0;
  for (int g = 0; g < 16; ++g) {
    CAPTURE(g);
    now += 200 * kMs;  // a new scrape for each group: every sample counts once
    scrape(fa, 3, 1);
    scrape(fb, 3, 1);
    scrape(lone, 1, 1);  // a lone router: the engines run its requests only
    const std::string prompt = text(static_cast<std::uint64_t>(1500 + g), 1000);
    const auto [home, second] = home_and_second(ids, prompt, now);
    for (testing::TestFleet* f : {&fa, &fb, &lone}) {
      for (std::size_t i = 0; i < ids.size(); ++i) f->states[i]->in_flight = i == home ? 1 : 0;
    }
    // This router's 1 request on the home is 3 of the fleet's (average 0.75, bound 1.94):
    // both replicas spill the head to the same next home. The lone router's 1 is 1 (bound
    // 1.31): home.
    const std::size_t x = pick(a, fa, sa.get(), prompt + text(1, 100), ra, now);
    CHECK(x == second);
    CHECK(pick(b, fb, sb.get(), prompt + text(2, 100), rb, now) == x);
    CHECK(pick(one, lone, s1.get(), prompt + text(3, 100), r1, now) == home);
    spilled += x == second ? 1 : 0;
  }
  CHECK(spilled == 16);
}

TEST_CASE("prefix_aware: one router (nothing else in the scrape) keeps the small cold bound") {
  PaFleet f(4);
  PrefixAware p(opts());
  Rng rng(13);
  const std::int64_t now = 5000 * kMs;
  const std::string prompt = text(1400, 1000);
  const std::size_t home = pick(p, f, p.make_scratch(f.raw).get(), prompt, rng, now);
  for (std::size_t i = 0; i < 4; ++i) {
    f.states[i]->in_flight = i == home ? 2 : 0;
    f.states[i]->running = static_cast<std::int32_t>(f.states[i]->in_flight.load());
    f.states[i]->waiting = 0;
    f.states[i]->sampled_in_flight = f.states[i]->in_flight.load();
    f.states[i]->sampled_ns = now - 50 * kMs;
  }
  // The scrape holds only this router's requests: 2 over the least is over the 0.5 bound.
  CHECK(pick(p, f, p.make_scratch(f.raw).get(), prompt, rng, now) != home);
}
