// The asynchronous resolver and its TTL cache, against a fake DNS server and a manual clock.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "resolver.h"
#include "support/fake_dns.h"

using namespace vllm_router;
using namespace std::chrono_literals;
using detail::AddressList;
using detail::Resolver;
using detail::ResolverOptions;
using testing::FakeDns;

namespace {

constexpr auto kWait = 10s;  // upper bound for anything that should take milliseconds

std::string to_string(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(sin.sin_port));
  }
  const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
  ::inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(sin6.sin6_port));
}

std::vector<std::string> addresses(const Resolver::Answer& answer) {
  std::vector<std::string> out;
  if (answer.ok()) {
    for (const auto& ss : answer.value()->addresses) out.push_back(to_string(ss));
  }
  return out;
}

// Counts completed queries per host (ResolverOptions::on_query_done), so a test can wait for a
// background refresh to land before it moves the clock.
struct QueryLog {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, int> done;

  bool wait(const std::string& host, int count) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kWait, [&] { return done[host] >= count; });
  }
  int count(const std::string& host) {
    std::lock_guard<std::mutex> lock(mu);
    return done[host];
  }
};

// One lookup: the answer given at once, or the future of the callback's.
struct Lookup {
  std::optional<Resolver::Answer> immediate;
  std::future<Resolver::Answer> later;

  bool was_immediate() const { return immediate.has_value(); }
  Resolver::Answer get() {
    if (immediate) return *immediate;
    REQUIRE(later.wait_for(kWait) == std::future_status::ready);
    return later.get();
  }
};

Lookup lookup(Resolver& resolver, const std::string& host, std::uint16_t port) {
  auto promise = std::make_shared<std::promise<Resolver::Answer>>();
  Lookup out;
  out.later = promise->get_future();
  out.immediate = resolver.lookup(host, port, [promise](Resolver::Answer a) { promise->set_value(std::move(a)); });
  return out;
}

struct Fixture {
  FakeDns dns;
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<QueryLog> log = std::make_shared<QueryLog>();

  ResolverOptions options() {
    ResolverOptions o;
    o.servers = {dns.server()};
    o.on_query_done = [log = log](const std::string& host, const Result<void>&) {
      std::lock_guard<std::mutex> lock(log->mu);
      log->done[host]++;
      log->cv.notify_all();
    };
    return o;
  }
};

}  // namespace

TEST_CASE("resolver: IP literals are parsed without DNS") {
  const auto v4 = detail::parse_ip_literal("10.1.2.3", 8000);
  REQUIRE(v4);
  CHECK(to_string(v4->addresses.at(0)) == "10.1.2.3:8000");
  const auto v6 = detail::parse_ip_literal("::1", 81);
  REQUIRE(v6);
  CHECK(to_string(v6->addresses.at(0)) == "[::1]:81");
  const auto bracketed = detail::parse_ip_literal("[fe80::1%1]", 82);
  REQUIRE(bracketed);
  CHECK(reinterpret_cast<const sockaddr_in6&>(bracketed->addresses.at(0)).sin6_scope_id == 1);
  CHECK_FALSE(detail::parse_ip_literal("api.test", 80));
  CHECK_FALSE(detail::parse_ip_literal("10.1.2", 80));
  CHECK_FALSE(detail::parse_ip_literal("[10.1.2.3]", 80));
  CHECK_FALSE(detail::parse_ip_literal("", 80));
  CHECK_FALSE(detail::parse_ip_literal("fe80::1%", 80));
}

TEST_CASE("resolver: an IP literal answers at once, without a query") {
  Fixture f;
  Resolver resolver(f.options(), f.clock);
  for (const char* host : {"127.0.0.1", "::1", "[::1]"}) {
    auto l = lookup(resolver, host, 9000);
    REQUIRE(l.was_immediate());
    REQUIRE(l.immediate->ok());
    CHECK(l.immediate->value()->addresses.size() == 1);
    CHECK_FALSE(l.immediate->value()->stale);
    CHECK(f.dns.queries(host) == 0);
  }
  CHECK(addresses(*lookup(resolver, "127.0.0.1", 9000).immediate) == std::vector<std::string>{"127.0.0.1:9000"});
}

TEST_CASE("resolver: a name resolves asynchronously, then comes from the cache within its TTL") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1", "10.0.0.2"}, {}, 30});
  Resolver resolver(f.options(), f.clock);

  auto first = lookup(resolver, "api.test", 8000);
  CHECK_FALSE(first.was_immediate());
  const auto answer = first.get();
  REQUIRE(answer.ok());
  CHECK(addresses(answer) == std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2:8000"});
  CHECK(f.dns.queries("api.test") == 1);
  CHECK(f.dns.queries("api.test", 28) == 1);  // AAAA asked too, answered with no record

  f.clock->advance(20s);
  auto again = lookup(resolver, "API.test", 8000);  // names are case-insensitive
  REQUIRE(again.was_immediate());
  CHECK(addresses(*again.immediate) == addresses(answer));
  CHECK(again.immediate->value() == answer.value());  // the same shared list, no copy

  // Another port of the same host shares the cache entry.
  auto other_port = lookup(resolver, "api.test", 8001);
  REQUIRE(other_port.was_immediate());
  CHECK(addresses(*other_port.immediate) == std::vector<std::string>{"10.0.0.1:8001", "10.0.0.2:8001"});
  CHECK(f.dns.queries("api.test") == 1);
}

TEST_CASE("resolver: IPv4 addresses come before IPv6 ones") {
  Fixture f;
  f.dns.set("dual.test", {{"10.0.0.7"}, {"fd00::7", "fd00::8"}, 30});
  Resolver resolver(f.options(), f.clock);
  CHECK(addresses(lookup(resolver, "dual.test", 80).get()) ==
        std::vector<std::string>{"10.0.0.7:80", "[fd00::7]:80", "[fd00::8]:80"});
}

TEST_CASE("resolver: after the TTL a new query is made") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1"}, {}, 10});
  Resolver resolver(f.options(), f.clock);
  REQUIRE(lookup(resolver, "api.test", 80).get().ok());
  REQUIRE(f.log->wait("api.test", 1));

  f.dns.set("api.test", {{"10.0.0.9"}, {}, 10});
  f.clock->advance(10s);
  auto expired = lookup(resolver, "api.test", 80);
  CHECK_FALSE(expired.was_immediate());
  CHECK(addresses(expired.get()) == std::vector<std::string>{"10.0.0.9:80"});
  CHECK(f.dns.queries("api.test") == 2);
}

TEST_CASE("resolver: the TTL is clamped to [min_ttl_ms, max_ttl_ms]") {
  Fixture f;
  f.dns.set("short.test", {{"10.0.0.1"}, {}, 1});
  f.dns.set("long.test", {{"10.0.0.2"}, {}, 86400});
  auto options = f.options();
  options.min_ttl_ms = 5000;
  options.max_ttl_ms = 60000;
  Resolver resolver(options, f.clock);
  REQUIRE(lookup(resolver, "short.test", 80).get().ok());
  REQUIRE(lookup(resolver, "long.test", 80).get().ok());
  REQUIRE(f.log->wait("long.test", 1));

  f.clock->advance(4s);  // past the answer's 1 s, inside the 5 s floor
  CHECK(lookup(resolver, "short.test", 80).was_immediate());
  CHECK(f.dns.queries("short.test") == 1);

  f.clock->advance(57s);  // 61 s: past the 60 s ceiling, far inside the answer's day
  auto refreshed = lookup(resolver, "long.test", 80);
  CHECK_FALSE(refreshed.was_immediate());
  CHECK(refreshed.get().ok());
  CHECK(f.dns.queries("long.test") == 2);
}

TEST_CASE("resolver: with zero TTLs nothing is remembered, yet each query's waiters are answered") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1"}, {}, 0});
  auto options = f.options();
  options.min_ttl_ms = 0;
  options.negative_ttl_ms = 0;
  Resolver resolver(options, f.clock);
  for (int i = 1; i <= 2; ++i) {
    auto l = lookup(resolver, "api.test", 80);
    CHECK_FALSE(l.was_immediate());
    CHECK(addresses(l.get()) == std::vector<std::string>{"10.0.0.1:80"});
    REQUIRE(f.log->wait("api.test", i));
    auto missing = lookup(resolver, "missing.test", 80);
    CHECK_FALSE(missing.was_immediate());
    CHECK(missing.get().code() == Errc::connect_failed);
    REQUIRE(f.log->wait("missing.test", i));
  }
  CHECK(f.dns.queries("api.test") == 2);
  CHECK(f.dns.queries("missing.test") == 2);
}

TEST_CASE("resolver: entries dead for good are swept as the cache grows") {
  Fixture f;
  auto options = f.options();
  options.negative_ttl_ms = 1000;
  Resolver resolver(options, f.clock);
  for (int i = 0; i < 64; ++i) {
    const std::string host = "n" + std::to_string(i) + ".test";
    CHECK(lookup(resolver, host, 80).get().code() == Errc::connect_failed);
    REQUIRE(f.log->wait(host, 1));
  }
  CHECK(resolver.cached_hosts() == 64);
  f.clock->advance(2s);  // every failure forgotten
  f.dns.set("new.test", {{"10.0.0.1"}, {}, 30});
  CHECK(lookup(resolver, "new.test", 80).get().ok());
  CHECK(resolver.cached_hosts() == 1);
}

TEST_CASE("resolver: a hit in the last 10% of its TTL is served and refreshed in the background") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1"}, {}, 10});
  Resolver resolver(f.options(), f.clock);
  REQUIRE(lookup(resolver, "api.test", 80).get().ok());
  REQUIRE(f.log->wait("api.test", 1));

  f.clock->advance(8900ms);  // 89%: a plain hit
  CHECK(lookup(resolver, "api.test", 80).was_immediate());
  f.clock->advance(200ms);  // 91%: a hit that also starts a refresh
  f.dns.set("api.test", {{"10.0.0.2"}, {}, 10});
  auto hit = lookup(resolver, "api.test", 80);
  REQUIRE(hit.was_immediate());
  CHECK(addresses(*hit.immediate) == std::vector<std::string>{"10.0.0.1:80"});
  REQUIRE(f.log->wait("api.test", 2));
  CHECK(f.dns.queries("api.test") == 2);

  // Past the first answer's expiry, inside the refreshed one: a hit with the new address.
  f.clock->advance(1500ms);
  auto after = lookup(resolver, "api.test", 80);
  REQUIRE(after.was_immediate());
  CHECK(addresses(*after.immediate) == std::vector<std::string>{"10.0.0.2:80"});
  CHECK(f.dns.queries("api.test") == 2);
}

TEST_CASE("resolver: concurrent lookups of one name make one query") {
  Fixture f;
  f.dns.set("busy.test", {{"10.0.0.3"}, {}, 30});
  Resolver resolver(f.options(), f.clock);
  constexpr int kThreads = 8;
  std::vector<Lookup> lookups(kThreads);
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      arrived.fetch_add(1);
      while (arrived.load() < kThreads) std::this_thread::yield();  // start together
      lookups[static_cast<std::size_t>(i)] = lookup(resolver, "busy.test", 80);
    });
  }
  for (auto& t : threads) t.join();
  for (auto& l : lookups) CHECK(addresses(l.get()) == std::vector<std::string>{"10.0.0.3:80"});
  CHECK(f.dns.queries("busy.test") == 1);
}

TEST_CASE("resolver: NXDOMAIN is an error, remembered for negative_ttl_ms") {
  Fixture f;
  auto options = f.options();
  options.negative_ttl_ms = 5000;
  Resolver resolver(options, f.clock);

  auto first = lookup(resolver, "missing.test", 80);
  CHECK_FALSE(first.was_immediate());
  const auto error = first.get();
  REQUIRE_FALSE(error.ok());
  CHECK(error.code() == Errc::connect_failed);
  CHECK(error.error().message.find("cannot resolve missing.test: ") == 0);
  REQUIRE(f.log->wait("missing.test", 1));

  f.clock->advance(4s);
  auto remembered = lookup(resolver, "missing.test", 80);
  REQUIRE(remembered.was_immediate());
  CHECK(remembered.immediate->code() == Errc::connect_failed);
  CHECK(f.dns.queries("missing.test") == 1);

  f.clock->advance(2s);  // past the negative TTL: asked again, and now it exists
  f.dns.set("missing.test", {{"10.0.0.4"}, {}, 30});
  auto retried = lookup(resolver, "missing.test", 80);
  CHECK_FALSE(retried.was_immediate());
  CHECK(addresses(retried.get()) == std::vector<std::string>{"10.0.0.4:80"});
  CHECK(f.dns.queries("missing.test") == 2);
}

TEST_CASE("resolver: a stale answer is served while the server does not answer") {
  Fixture f;
  f.dns.set("flaky.test", {{"10.0.0.5"}, {}, 1});
  auto options = f.options();
  // c-ares times out in real time: short tries keep the test short (each silent refresh costs
  // 200 + 400 ms), two of them keep a loaded machine from failing the first answer.
  options.timeout_ms = 200;
  options.tries = 2;
  options.negative_ttl_ms = 1000;
  options.stale_ms = 5000;
  Resolver resolver(options, f.clock);
  REQUIRE(lookup(resolver, "flaky.test", 80).get().ok());
  REQUIRE(f.log->wait("flaky.test", 1));

  f.dns.set_silent("flaky.test", true);
  f.clock->advance(1500ms);  // expired: the refresh times out, the waiter gets the old answer
  auto refresh = lookup(resolver, "flaky.test", 80);
  CHECK_FALSE(refresh.was_immediate());
  const auto stale = refresh.get();
  REQUIRE(stale.ok());
  CHECK(stale.value()->stale);
  CHECK(addresses(stale) == std::vector<std::string>{"10.0.0.5:80"});
  REQUIRE(f.log->wait("flaky.test", 2));

  // The failure is remembered: the stale answer comes at once, with no new query.
  const int asked = f.dns.queries("flaky.test");
  auto remembered = lookup(resolver, "flaky.test", 80);
  REQUIRE(remembered.was_immediate());
  REQUIRE(remembered.immediate->ok());
  CHECK(remembered.immediate->value()->stale);
  CHECK(f.dns.queries("flaky.test") == asked);

  // Beyond stale_ms past the expiry the error comes through.
  f.clock->advance(5s);
  auto too_old = lookup(resolver, "flaky.test", 80);
  CHECK_FALSE(too_old.was_immediate());
  const auto failed = too_old.get();
  CHECK(failed.code() == Errc::connect_failed);
  CHECK(failed.error().message.find("cannot resolve flaky.test: ") == 0);

  // Answers again: fresh, not stale.
  REQUIRE(f.log->wait("flaky.test", 3));
  f.dns.set_silent("flaky.test", false);
  f.clock->advance(2s);
  const auto back = lookup(resolver, "flaky.test", 80).get();
  REQUIRE(back.ok());
  CHECK_FALSE(back.value()->stale);
}

TEST_CASE("resolver: a name that no longer exists is not served stale") {
  Fixture f;
  f.dns.set("gone.test", {{"10.0.0.6"}, {}, 1});
  Resolver resolver(f.options(), f.clock);
  REQUIRE(lookup(resolver, "gone.test", 80).get().ok());
  REQUIRE(f.log->wait("gone.test", 1));
  f.dns.remove("gone.test");
  f.clock->advance(1500ms);
  CHECK(lookup(resolver, "gone.test", 80).get().code() == Errc::connect_failed);
}

TEST_CASE("resolver: a slow name does not hold up other names; destruction cancels it") {
  Fixture f;
  f.dns.set("slow.test", {{"10.0.0.8"}, {}, 30, 2000ms});
  f.dns.set("fast.test", {{"10.0.0.9"}, {}, 30});
  auto options = f.options();
  options.timeout_ms = 5000;
  auto resolver = std::make_unique<Resolver>(options, f.clock);

  auto slow = lookup(*resolver, "slow.test", 80);
  REQUIRE_FALSE(slow.was_immediate());
  REQUIRE(f.dns.wait_queries("slow.test", 1, kWait));  // the slow query is in flight
  const auto started = std::chrono::steady_clock::now();
  auto fast = lookup(*resolver, "fast.test", 80);
  CHECK(addresses(fast.get()) == std::vector<std::string>{"10.0.0.9:80"});
  MESSAGE("fast.test answered in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()
          << " ms while slow.test was pending");
  CHECK(slow.later.wait_for(0s) == std::future_status::timeout);  // still waiting for its 2 s

  resolver.reset();  // the pending lookup is answered, cancelled, before the destructor returns
  REQUIRE(slow.later.wait_for(0s) == std::future_status::ready);
  CHECK(slow.later.get().code() == Errc::cancelled);
}

TEST_CASE("resolver: localhost resolves (from /etc/hosts or as loopback)") {
  Fixture f;
  Resolver resolver(f.options(), f.clock);
  const auto answer = lookup(resolver, "localhost", 8000).get();
  REQUIRE(answer.ok());
  REQUIRE_FALSE(answer.value()->addresses.empty());
  CHECK(addresses(answer).front() == "127.0.0.1:8000");
}

TEST_CASE("resolver: resolve_blocking waits for the answer, up to its timeout") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1"}, {}, 30});
  f.dns.set("mute.test", {{"10.0.0.2"}, {}, 30});
  f.dns.set_silent("mute.test", true);
  auto options = f.options();
  options.timeout_ms = 5000;
  Resolver resolver(options, f.clock);

  CHECK(addresses(resolver.resolve_blocking("api.test", 80, kWait)) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(addresses(resolver.resolve_blocking("::1", 80, kWait)) == std::vector<std::string>{"[::1]:80"});
  const auto timed_out = resolver.resolve_blocking("mute.test", 80, 50ms);
  CHECK(timed_out.code() == Errc::connect_failed);
  CHECK(timed_out.error().message == "cannot resolve mute.test: no answer within 50 ms");
}

TEST_CASE("resolver: a callback may look up again; resolve_blocking there is refused") {
  Fixture f;
  f.dns.set("api.test", {{"10.0.0.1"}, {}, 30});
  Resolver resolver(f.options(), f.clock);
  std::promise<std::pair<bool, Errc>> inner;
  auto ready = resolver.lookup("api.test", 80, [&](Resolver::Answer) {
    const bool cached = resolver.lookup("api.test", 81, nullptr).has_value();
    inner.set_value({cached, resolver.resolve_blocking("other.test", 80, kWait).code()});
  });
  REQUIRE_FALSE(ready);
  auto result = inner.get_future();
  REQUIRE(result.wait_for(kWait) == std::future_status::ready);
  const auto [cached, blocking] = result.get();
  CHECK(cached);
  CHECK(blocking == Errc::connect_failed);
}

TEST_CASE("resolver: a malformed server list is an initialisation error") {
  auto clock = std::make_shared<ManualClock>();
  ResolverOptions options;
  options.servers = {"not-an-address"};
  Resolver resolver(options, clock);
  REQUIRE(resolver.init_error());
  auto answer = resolver.lookup("api.test", 80, nullptr);
  REQUIRE(answer);
  CHECK(answer->code() == Errc::config);
  CHECK(resolver.lookup("10.0.0.1", 80, nullptr)->ok());  // literals need no DNS
}
