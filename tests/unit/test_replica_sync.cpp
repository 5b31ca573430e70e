// ReplicaSync: two routers in one process exchange real UDP datagrams on 127.0.0.1 (each sync
// driven by hand: send_once / receive_once, injected clocks, no thread, no sleep).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/routing.h"
#include "vllm_router/replica_sync.h"
#include "vllm_router/router.h"
#include "vllm_router/snapshot.h"

using namespace vllm_router;
using namespace vllm_router::testing;

namespace {

RouterConfig fleet_config(std::string policy = "least_requests") {
  RouterConfig c;
  ModelConfig m;
  m.name = "m";
  m.endpoints = {{"http://127.0.0.1:1001", 1, ""}, {"http://127.0.0.1:1002", 1, ""}};
  c.models = {m};
  c.policy = std::move(policy);
  c.policy_options.prefix_affinity_chars = 0;  // no home from the prompt: ties are drawn
  c.policy_options.prefix_chunk_chars = 16;
  return c;
}

std::unique_ptr<ReplicaSync> open_sync(Router& router, std::vector<std::string> peers,
                                       std::shared_ptr<ManualClock> clock, std::string secret = "") {
  ReplicaSyncConfig c;
  c.listen = "127.0.0.1:0";
  c.peers = std::move(peers);
  c.secret = std::move(secret);
  auto s = ReplicaSync::open(router, c, std::move(clock));
  REQUIRE(s.ok());
  return std::move(s).value();
}

// A UDP socket bound to 127.0.0.1 on a free port; its port in `port`.
int loopback_udp(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int free_udp_port() {
  std::uint16_t port = 0;
  ::close(loopback_udp(port));
  return port;
}

std::string at(const ReplicaSync& s) { return "127.0.0.1:" + std::to_string(s.port()); }

// peer_in_flight of each endpoint of model "m", in configuration order.
std::vector<std::int64_t> peer_counts(const Router& r) {
  std::vector<std::int64_t> out;
  for (const auto& st : r.snapshot()->pools.at(0).states) out.push_back(st->peer_in_flight.load());
  return out;
}

}  // namespace

TEST_CASE("replica sync: a peer's in-flight counts join this router's, and leave when it falls silent") {
  auto a = make_router(fleet_config());
  auto b = make_router(fleet_config());
  auto clock_a = std::make_shared<ManualClock>();
  auto clock_b = std::make_shared<ManualClock>();
  auto sync_b = open_sync(*b, {}, clock_b);
  auto sync_a = open_sync(*a, {at(*sync_b)}, clock_a);
  CHECK(peer_counts(*b) == std::vector<std::int64_t>{0, 0});

  // Two requests held on A (least_requests: one per endpoint), then a third.
  const RequestView v = view_of(R"({"model":"m"})");
  auto r1 = a->route(v);
  auto r2 = a->route(v);
  auto r3 = a->route(v);
  REQUIRE((r1.ok() && r2.ok() && r3.ok()));
  CHECK(sync_a->send_once() >= 1);
  CHECK(sync_b->receive_once(2000) >= 1);
  std::vector<std::int64_t> seen = peer_counts(*b);
  CHECK(seen[0] + seen[1] == 3);
  CHECK(sync_b->stats().peers == 1);

  // B's own picks now count A's requests: least_requests sends each of B's (ended at once) to
  // the endpoint A has fewer on (without the peers' counts: a coin toss each, 1 in 256).
  const std::size_t less = seen[0] < seen[1] ? 0 : 1;
  for (int i = 0; i < 8; ++i) {
    auto mine = b->route(v);
    REQUIRE(mine.ok());
    CHECK(mine.value().lease.endpoint().id == b->snapshot()->pools[0].endpoints[less]->id);
    mine.value().lease.complete(Outcome{});
  }

  // Leases end on A: the next datagram says so.
  r1.value().lease.complete(Outcome{});
  r2.value().lease.complete(Outcome{});
  sync_a->send_once();
  sync_b->receive_once(2000);
  seen = peer_counts(*b);
  CHECK(seen[0] + seen[1] == 1);

  // A falls silent: after peer_timeout_ms its counts are taken off.
  clock_b->advance(std::chrono::milliseconds(999));
  sync_b->receive_once(0);
  seen = peer_counts(*b);
  CHECK(seen[0] + seen[1] == 1);
  clock_b->advance(std::chrono::milliseconds(2));
  sync_b->receive_once(0);
  CHECK(peer_counts(*b) == std::vector<std::int64_t>{0, 0});
  CHECK(sync_b->stats().peers == 0);
  r3.value().lease.complete(Outcome{});
}

TEST_CASE("replica sync: prefix_aware learns where a peer placed each prompt") {
  auto a = make_router(fleet_config("prefix_aware"), nullptr, 1);
  auto b = make_router(fleet_config("prefix_aware"), nullptr, 2);
  auto clock = std::make_shared<ManualClock>();
  auto sync_b = open_sync(*b, {}, clock);
  auto sync_a = open_sync(*a, {at(*sync_b)}, clock);

  // Cold prompts on idle endpoints: each router draws among the tied endpoints; B follows A's
  // draw only by learning it (16 prompts: 1 in 65,536 by chance).
  std::vector<std::string> bodies, chosen;
  for (int i = 0; i < 16; ++i) {
    // Distinct from the first chunk on (a shared first chunk would be a match).
    bodies.push_back(R"({"model":"m","prompt":")" + std::to_string(100 + i) +
                     R"(: a prompt shared by nobody else, long enough for a few chunks"})");
  }
  for (const std::string& body : bodies) {
    auto r = a->route(view_of(body));
    REQUIRE(r.ok());
    chosen.push_back(r.value().lease.endpoint().id);
    r.value().lease.complete(Outcome{});
  }
  CHECK(sync_a->send_once() >= 2);  // loads and placements
  CHECK(sync_b->receive_once(2000) >= 2);
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    auto r = b->route(view_of(bodies[i]));
    REQUIRE(r.ok());
    CHECK(r.value().lease.endpoint().id == chosen[i]);
    r.value().lease.complete(Outcome{});
  }
  // Placements already known are not sent again: A repeating its prompts publishes nothing.
  for (const std::string& body : bodies) {
    auto r = a->route(view_of(body));
    REQUIRE(r.ok());
    r.value().lease.complete(Outcome{});
  }
  CHECK(sync_a->send_once() == 1);  // the loads only
}

TEST_CASE("replica sync: with a secret, unsigned, forged and foreign datagrams are rejected") {
  auto a = make_router(fleet_config());
  auto b = make_router(fleet_config());
  auto clock = std::make_shared<ManualClock>();
  auto sync_b = open_sync(*b, {}, clock, "shared-secret");
  const RequestView v = view_of(R"({"model":"m"})");
  auto held = a->route(v);
  REQUIRE(held.ok());

  SUBCASE("another key") {
    auto sync_a = open_sync(*a, {at(*sync_b)}, clock, "other-secret");
    sync_a->send_once();
  }
  SUBCASE("no key") {
    auto sync_a = open_sync(*a, {at(*sync_b)}, clock);
    sync_a->send_once();
  }
  SUBCASE("not a datagram of ours") {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(sync_b->port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string junk = "VRS2\x01\x00\x01\x00 not a well-formed load";
    CHECK(::sendto(fd, junk.data(), junk.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) > 0);
    ::close(fd);
  }
  CHECK(sync_b->receive_once(2000) == 0);
  CHECK(sync_b->stats().datagrams_rejected >= 1);
  CHECK(peer_counts(*b) == std::vector<std::int64_t>{0, 0});
  held.value().lease.complete(Outcome{});
}

namespace {

// A UDP socket on 127.0.0.1 standing in for a peer: it records what a sync sends it, and sends
// recorded datagrams on (an attacker on the path, replaying).
struct Tap {
  int fd = -1;
  std::uint16_t port = 0;
  Tap() { fd = loopback_udp(port); }
  ~Tap() { ::close(fd); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  std::string record() const {
    pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 2000) == 1);
    char buffer[2048];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    REQUIRE(n > 0);
    return std::string(buffer, static_cast<std::size_t>(n));
  }
  void send_to(const ReplicaSync& s, const std::string& d) const {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(s.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(d.size()));
  }
};

}  // namespace

TEST_CASE("replica sync: with a secret, a recorded datagram is accepted once, and not when old") {
  auto a = make_router(fleet_config());
  auto b = make_router(fleet_config());
  auto clock_a = std::make_shared<ManualClock>();
  auto clock_b = std::make_shared<ManualClock>();
  Tap tap;
  auto sync_b = open_sync(*b, {}, clock_b, "k");
  auto sync_a = open_sync(*a, {tap.address()}, clock_a, "k");
  const auto sum = [&] {
    const std::vector<std::int64_t> c = peer_counts(*b);
    return c[0] + c[1];
  };
  const RequestView v = view_of(R"({"model":"m"})");
  auto held = a->route(v);
  REQUIRE(held.ok());
  REQUIRE(sync_a->send_once() == 1);
  const std::string busy = tap.record();  // A: one request in flight

  tap.send_to(*sync_b, busy);
  CHECK(sync_b->receive_once(2000) == 1);
  CHECK(sum() == 1);
  tap.send_to(*sync_b, busy);  // the same datagram again
  CHECK(sync_b->receive_once(2000) == 0);
  CHECK(sync_b->stats().datagrams_replayed == 1);

  // The request ends; A says so. Replaying the old datagram must not bring the count back.
  held.value().lease.complete(Outcome{});
  REQUIRE(sync_a->send_once() == 1);
  tap.send_to(*sync_b, tap.record());
  CHECK(sync_b->receive_once(2000) == 1);
  CHECK(sum() == 0);
  tap.send_to(*sync_b, busy);
  CHECK(sync_b->receive_once(2000) == 0);
  CHECK(sum() == 0);
  CHECK(sync_b->stats().datagrams_replayed == 2);

  // UDP may reorder: two new datagrams arriving the wrong way round are both taken.
  REQUIRE(sync_a->send_once() == 1);
  const std::string first = tap.record();
  REQUIRE(sync_a->send_once() == 1);
  tap.send_to(*sync_b, tap.record());
  tap.send_to(*sync_b, first);
  CHECK(sync_b->receive_once(2000) == 2);  // loopback: both queued before sendto returned

  // A datagram never seen, but sent over 10 s ago on B's clock (recorded, held back): dropped.
  // Each sync reads the wall clock once, at its open (A's a little after B's: milliseconds, or
  // more on a loaded machine), so B's clock moves well past the limit, not 1 ms past it.
  REQUIRE(sync_a->send_once() == 1);
  const std::string late = tap.record();
  clock_b->advance(std::chrono::milliseconds(10000 + 20000));
  tap.send_to(*sync_b, late);
  CHECK(sync_b->receive_once(2000) == 0);
  CHECK(sync_b->stats().datagrams_replayed == 3);
  CHECK(sync_b->stats().datagrams_rejected == 0);
}

TEST_CASE("replica sync: the same key signs and verifies; a router listed among its peers ignores itself") {
  auto a = make_router(fleet_config());
  auto b = make_router(fleet_config());
  auto clock = std::make_shared<ManualClock>();
  auto sync_b = open_sync(*b, {}, clock, "k");
  auto sync_a = open_sync(*a, {at(*sync_b)}, clock, "k");
  const RequestView v = view_of(R"({"model":"m"})");
  auto held = a->route(v);
  REQUIRE(held.ok());
  sync_a->send_once();
  CHECK(sync_b->receive_once(2000) == 1);
  std::vector<std::int64_t> seen = peer_counts(*b);
  CHECK(seen[0] + seen[1] == 1);

  // A router listed among its own peers (a headless Service names every replica): it hears
  // itself and counts nothing.
  auto c = make_router(fleet_config());
  auto held_c = c->route(v);
  REQUIRE(held_c.ok());
  ReplicaSyncConfig loop;
  loop.listen = "127.0.0.1:" + std::to_string(free_udp_port());
  loop.peers = {loop.listen};
  loop.secret = "k";
  auto looped = ReplicaSync::open(*c, loop, clock);
  REQUIRE(looped.ok());
  CHECK(looped.value()->send_once() == 1);
  CHECK(looped.value()->receive_once(2000) == 0);
  const ReplicaSyncStats st = looped.value()->stats();
  CHECK(st.datagrams_rejected == 0);
  CHECK(st.peers == 0);
  CHECK(peer_counts(*c) == std::vector<std::int64_t>{0, 0});
  held_c.value().lease.complete(Outcome{});
  held.value().lease.complete(Outcome{});
}

TEST_CASE("replica sync: a dual-stack listen address ([::]) exchanges with IPv4 peers") {
  auto a = make_router(fleet_config());
  auto b = make_router(fleet_config());
  auto clock = std::make_shared<ManualClock>();
  const std::string v4 = "127.0.0.1:" + std::to_string(free_udp_port());
  const int dual_port = free_udp_port();
  ReplicaSyncConfig dual_config;
  dual_config.listen = "[::]:" + std::to_string(dual_port);
  dual_config.peers = {v4};  // an IPv4 peer of the IPv6 socket: sent to as ::ffff:127.0.0.1
  auto dual = ReplicaSync::open(*b, dual_config, clock);
  REQUIRE(dual.ok());
  ReplicaSyncConfig v4_config;
  v4_config.listen = v4;
  v4_config.peers = {"127.0.0.1:" + std::to_string(dual_port)};
  auto plain = ReplicaSync::open(*a, v4_config, clock);
  REQUIRE(plain.ok());

  const RequestView v = view_of(R"({"model":"m"})");
  auto held_a = a->route(v);
  auto held_b = b->route(v);
  REQUIRE((held_a.ok() && held_b.ok()));
  CHECK(plain.value()->send_once() == 1);
  CHECK(dual.value()->receive_once(2000) == 1);
  std::vector<std::int64_t> seen = peer_counts(*b);
  CHECK(seen[0] + seen[1] == 1);
  CHECK(dual.value()->send_once() == 1);
  CHECK(plain.value()->receive_once(2000) == 1);
  seen = peer_counts(*a);
  CHECK(seen[0] + seen[1] == 1);
  held_a.value().lease.complete(Outcome{});
  held_b.value().lease.complete(Outcome{});
}

TEST_CASE("replica sync: running, a placement goes out at once, not at the next interval") {
  auto a = make_router(fleet_config("prefix_aware"));
  auto b = make_router(fleet_config("prefix_aware"));
  ReplicaSyncConfig config;
  config.listen = "127.0.0.1:0";
  config.interval_ms = 10000;  // loads once at start, then not within this test
  config.peer_timeout_ms = 20000;
  auto sync_b = ReplicaSync::open(*b, config, nullptr);
  REQUIRE(sync_b.ok());
  config.peers = {at(*sync_b.value())};
  auto sync_a = ReplicaSync::open(*a, config, nullptr);
  REQUIRE(sync_a.ok());
  sync_b.value()->start();
  sync_a.value()->start();
  const auto arrived = [&](auto done) {  // waits for a datagram's effect, at most 5 s
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    return done();
  };
  CHECK(arrived([&] { return sync_b.value()->stats().peers == 1; }));  // the first round's loads
  CHECK(sync_b.value()->stats().placements_received == 0);
  auto r = a->route(view_of(R"({"model":"m","prompt":"a cold prompt of three chunks, here it is"})"));
  REQUIRE(r.ok());
  r.value().lease.complete(Outcome{});
  CHECK(arrived([&] { return sync_b.value()->stats().placements_received >= 2; }));
  sync_a.value()->stop();
  sync_b.value()->stop();
}

TEST_CASE("replica sync: a placement sent at once counts its request in flight until the next loads") {
  auto a = make_router(fleet_config("prefix_aware"));
  auto b = make_router(fleet_config("prefix_aware"));
  auto clock = std::make_shared<ManualClock>();
  auto sync_b = open_sync(*b, {}, clock);
  auto sync_a = open_sync(*a, {at(*sync_b)}, clock);
  // Receives until `hashes` chain hashes have arrived in all (each receive waits up to 2 s).
  const auto receive_hashes = [&](std::uint64_t hashes) {
    for (int i = 0; i < 20 && sync_b->stats().placements_received < hashes; ++i) sync_b->receive_once(2000);
    REQUIRE(sync_b->stats().placements_received == hashes);
  };
  // In flight on A by endpoint, as B should count them.
  std::vector<Lease*> held;
  const auto on_a = [&] {
    std::vector<std::int64_t> out(2, 0);
    for (Lease* l : held) out[l->endpoint().id == a->snapshot()->pools[0].endpoints[0]->id ? 0 : 1] += 1;
    return out;
  };
  CHECK(sync_a->send_once() == 1);  // loads: nothing in flight
  CHECK(sync_b->receive_once(2000) == 1);
  CHECK(peer_counts(*b) == std::vector<std::int64_t>{0, 0});

  // Three cold prompts, held in flight, placed in one round of placements alone: 2 chunks, 200
  // chunks (more than one datagram holds, about 170: sent in two), 2 chunks. Three requests.
  std::string long_prompt;
  for (int i = 0; long_prompt.size() < 200 * 16; ++i) long_prompt += "chunk " + std::to_string(1000 + i) + " text. ";
  long_prompt.resize(200 * 16);
  auto r1 = a->route(view_of(R"({"model":"m","prompt":"a cold prompt of three chunks, here it is"})"));
  auto r2 = a->route(view_of(R"({"model":"m","prompt":")" + long_prompt + R"("})"));
  auto r3 = a->route(view_of(R"({"model":"m","prompt":"one more cold prompt, two chunks long"})"));
  REQUIRE((r1.ok() && r2.ok() && r3.ok()));
  held = {&r1.value().lease, &r2.value().lease, &r3.value().lease};
  CHECK(sync_a->send_placements_once() == 3);
  receive_hashes(204);
  CHECK(peer_counts(*b) == on_a());

  // A's next loads replace those counts: the requests ended, nothing is left over.
  for (Lease* l : held) l->complete(Outcome{});
  held.clear();
  CHECK(sync_a->send_once() == 1);
  CHECK(sync_b->receive_once(2000) == 1);
  CHECK(peer_counts(*b) == std::vector<std::int64_t>{0, 0});

  // Placements sent with the loads are not counted again: the loads already hold the request.
  auto r4 = a->route(view_of(R"({"model":"m","prompt":"another cold prompt, also of chunks"})"));
  REQUIRE(r4.ok());
  held = {&r4.value().lease};
  CHECK(sync_a->send_once() == 2);
  receive_hashes(206);
  CHECK(peer_counts(*b) == on_a());
  r4.value().lease.complete(Outcome{});
}

TEST_CASE("replica sync: a bad listen address is a configuration error") {
  auto a = make_router(fleet_config());
  ReplicaSyncConfig c;
  for (const char* listen : {"", "127.0.0.1", "127.0.0.1:99999", "nohost.invalid.:7071", "[::1:7071"}) {
    CAPTURE(listen);
    c.listen = listen;
    auto s = ReplicaSync::open(*a, c, nullptr);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Errc::config);
  }
}
