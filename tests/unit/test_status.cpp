// Status page data: the rolling window (slots, expiry, error rate, latency estimates) and the
// /status.json document StatusBoard renders from Observer events and the routing table.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "status.h"
#include "support/routing.h"

using namespace vllm_router;
using namespace vllm_router::server;
using namespace vllm_router::testing;
using namespace std::chrono_literals;

namespace {

RouterConfig status_config() {
  RouterConfig c;
  ModelConfig a;
  a.name = "org/a\"<b>";  // rendered as data, escaped
  a.aliases = {"a"};
  a.loras = {"a-lora"};
  a.endpoints = {{"http://127.0.0.1:1001", 1, ""}, {"http://127.0.0.1:1002", 2, ""}};
  ModelConfig b;
  b.name = "org/b";
  b.policy = "least_requests";
  b.endpoints = {{"http://127.0.0.1:2001", 1, ""}};
  c.models = {a, b};
  return c;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The JSON object that follows `"id":"<id>"` up to the next endpoint or the end of its list.
std::string endpoint_json(const std::string& doc, const std::string& id) {
  const auto at = doc.find("{\"id\":\"" + id + "\"");
  REQUIRE(at != std::string::npos);
  const auto end = doc.find("{\"id\":", at + 1);
  return doc.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

Outcome outcome(OutcomeKind kind, int status, std::chrono::milliseconds latency) {
  Outcome o;
  o.kind = kind;
  o.status = status;
  o.latency = latency;
  return o;
}

}  // namespace

TEST_CASE("RollingWindow: latency buckets are half-octaves from 1 ms, monotone, bounded") {
  CHECK(RollingWindow::bucket_of(0) == 0);
  CHECK(RollingWindow::bucket_of(1023) == 0);
  CHECK(RollingWindow::bucket_of(1024) == 1);
  CHECK(RollingWindow::bucket_of(~0ULL) == RollingWindow::kBuckets - 1);
  std::size_t last = 0;
  for (std::uint64_t us = 1; us < 100'000'000; us = us * 9 / 8 + 1) {
    const std::size_t b = RollingWindow::bucket_of(us);
    CHECK(b >= last);
    last = b;
    if (b + 1 < RollingWindow::kBuckets) {
      // The value lies within its bucket's bounds.
      CHECK(static_cast<double>(us) / 1000.0 < RollingWindow::bucket_upper_ms(b) + 1e-9);
      if (b > 0) CHECK(static_cast<double>(us) / 1000.0 >= RollingWindow::bucket_upper_ms(b - 1) - 1e-9);
    }
  }
}

TEST_CASE("RollingWindow: counts, error rate and latency of the last minute; older slots expire") {
  RollingWindow w;
  const std::int64_t t0 = 1'000'000;  // any monotonic milliseconds
  CHECK(w.stats(t0).requests == 0);
  for (int i = 0; i < 90; ++i) w.add(t0, false, 10ms);
  for (int i = 0; i < 10; ++i) w.add(t0 + 2'000, true, 200ms);
  WindowStats s = w.stats(t0 + 3'000);
  CHECK(s.requests == 100);
  CHECK(s.errors == 10);
  CHECK(s.latency_avg_ms == doctest::Approx(29.0));
  // 10 ms lies in [9.216, 12.288) ms; 200 ms in [196.6, 262.1) ms.
  CHECK(s.latency_p50_ms >= 9.2);
  CHECK(s.latency_p50_ms <= 12.3);
  CHECK(s.latency_p95_ms >= 196.0);
  CHECK(s.latency_p95_ms <= 262.2);
  CHECK(s.seconds > 55.0);
  CHECK(s.seconds <= 60.0);

  // 30 s later the same requests still count, with new ones in another slot.
  w.add(t0 + 30'000, true, 1ms);
  s = w.stats(t0 + 30'000);
  CHECK(s.requests == 101);
  CHECK(s.errors == 11);
  // A minute after the first slot it has left the window; the 30 s one has not.
  s = w.stats(t0 + 61'000);
  CHECK(s.requests == 1);
  CHECK(s.errors == 1);
  // Its slot is reused by a new period: the old figures are gone, not added to.
  w.add(t0 + 60'000, false, 5ms);
  s = w.stats(t0 + 61'000);
  CHECK(s.requests == 2);
  CHECK(w.stats(t0 + 200'000).requests == 0);
  // A report for a period whose slot was already reused is dropped, not mixed into it.
  w.add(t0, true, 5ms);
  CHECK(w.stats(t0 + 61'000).requests == 2);
}

TEST_CASE("RollingWindow: concurrent adds in one period are all counted") {
  RollingWindow w;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) w.add(5'000, i % 10 == 0, 3ms);
    });
  }
  for (auto& t : threads) t.join();
  const WindowStats s = w.stats(5'000);
  CHECK(s.requests == 40000);
  CHECK(s.errors == 4000);
}

TEST_CASE("StatusBoard: what counts as an error") {
  CHECK(!StatusBoard::outcome_error(outcome(OutcomeKind::success, 200, 1ms)));
  CHECK(!StatusBoard::outcome_error(outcome(OutcomeKind::success, 404, 1ms)));
  CHECK(StatusBoard::outcome_error(outcome(OutcomeKind::success, 503, 1ms)));
  CHECK(StatusBoard::outcome_error(outcome(OutcomeKind::connect_failure, 0, 1ms)));
  CHECK(StatusBoard::outcome_error(outcome(OutcomeKind::timeout, 0, 1ms)));
  CHECK(!StatusBoard::outcome_error(outcome(OutcomeKind::cancelled, 0, 1ms)));
  ExchangeSummary s;
  s.status = 200;
  CHECK(!StatusBoard::exchange_error(s));
  s.status = 429;
  s.end = ExchangeEnd::rejected;
  CHECK(!StatusBoard::exchange_error(s));
  s.status = 502;
  s.end = ExchangeEnd::upstream_error;
  CHECK(StatusBoard::exchange_error(s));
  s.status = 200;  // cut mid-body
  s.end = ExchangeEnd::timeout;
  CHECK(StatusBoard::exchange_error(s));
}

TEST_CASE("StatusBoard::render_json: models, names, endpoint health, load and recent figures") {
  std::int64_t now = 50'000;
  auto board = std::make_shared<StatusBoard>([&] { return now; });
  auto router = make_router(status_config(), board);
  const auto snap = router->snapshot();
  board->set_snapshot_source([&] { return router->snapshot(); });
  const std::string a = "org/a\"<b>";
  const Endpoint& e1 = *snap->pools[0].endpoints[0];
  const Endpoint& e2 = *snap->pools[0].endpoints[1];
  for (int i = 0; i < 8; ++i) board->on_outcome(a, e1, outcome(OutcomeKind::success, 200, 20ms));
  for (int i = 0; i < 2; ++i) board->on_outcome(a, e1, outcome(OutcomeKind::success, 500, 20ms));
  board->on_outcome(a, e2, outcome(OutcomeKind::connect_failure, 0, 1ms));
  ExchangeSummary s;
  s.model = a;
  s.status = 200;
  s.duration = 40ms;
  for (int i = 0; i < 3; ++i) board->on_exchange(s);
  s.model = "";  // unresolved: no entry
  s.requested_model = "made-up";
  board->on_exchange(s);
  CHECK(board->entries() == 3);  // model a, its two endpoints

  // Health by both writers and scraped load, as the control plane writes them.
  EndpointState& st2 = *snap->pools[0].states[1];
  st2.active_healthy.store(false);
  EndpointState& st1 = *snap->pools[0].states[0];
  st1.running.store(3);
  st1.waiting.store(1);
  st1.kv_cache_usage.store(0.25F);
  st1.sampled_ns.store(std::chrono::steady_clock::now().time_since_epoch().count());
  EndpointState& stb = *snap->pools[1].states[0];
  stb.ejected_until_ns.store(std::chrono::steady_clock::now().time_since_epoch().count() + 9'000'000'000LL);
  stb.ejections.store(2);

  now += 1'000;
  StatusContext ctx;
  ctx.uptime_ms = 1234;
  ctx.draining = true;
  ctx.keys = true;
  const std::string doc = board->render_json(*snap, ctx);
  INFO(doc);
  CHECK(doc.front() == '{');
  CHECK(doc.back() == '}');
  CHECK(has(doc, R"("uptime_ms":1234,)"));
  CHECK(has(doc, R"("draining":true,"keys":true,)"));
  CHECK(has(doc, R"("window_seconds":60,)"));
  CHECK(has(doc, R"({"name":"org/a\"<b>","policy":"round_robin","aliases":["a"],"adapters":["a-lora"],)"));
  CHECK(has(doc, R"("endpoints_total":2,"endpoints_healthy":1,"panic":false,"in_flight":0,)"));
  // Rates over the board's age while it is younger than the window (1 s here).
  CHECK(has(doc, R"("recent":{"requests":3,"errors":0,"error_rate":0,"rps":3,"latency_ms":{"avg":40,)"));
  CHECK(has(doc, R"({"name":"org/b","policy":"least_requests","aliases":[],"adapters":[],)"));
  CHECK(has(doc, R"("endpoints_total":1,"endpoints_healthy":0,"panic":true,)"));

  const std::string j1 = endpoint_json(doc, "http://127.0.0.1:1001");
  CHECK(has(j1, R"("state":"healthy","active_healthy":true,"ejected_ms_left":0,)"));
  CHECK(has(j1, R"("load":{"running":3,"waiting":1,"kv_cache_usage":0.25,)"));
  CHECK(has(j1, R"("fresh":true})"));
  CHECK(has(j1, R"("recent":{"requests":10,"errors":2,"error_rate":0.2,"rps":10,"latency_ms":{"avg":20,)"));
  const std::string j2 = endpoint_json(doc, "http://127.0.0.1:1002");
  CHECK(has(j2, R"("weight":2,"state":"unhealthy","active_healthy":false,)"));
  CHECK(has(j2, R"("load":null)"));
  CHECK(has(j2, R"("recent":{"requests":1,"errors":1,"error_rate":1,)"));
  const std::string jb = endpoint_json(doc, "http://127.0.0.1:2001");
  CHECK(has(jb, R"("state":"ejected","active_healthy":true,)"));
  CHECK(has(jb, R"("ejections":2,)"));
  CHECK(has(jb, R"("recent":{"requests":0,"errors":0,"error_rate":0,"rps":0,"latency_ms":null})"));

  // A minute later the recent figures are empty again.
  now += 61'000;
  const std::string later = board->render_json(*snap, ctx);
  CHECK(has(endpoint_json(later, "http://127.0.0.1:1001"), R"("recent":{"requests":0,)"));
  // Once the board is older than the window, rates are over the window's span (55-60 s).
  s.model = a;
  for (int i = 0; i < 57; ++i) board->on_exchange(s);
  const std::string full = board->render_json(*snap, ctx);
  CHECK(has(full, R"("recent":{"requests":57,"errors":0,"error_rate":0,"rps":1,)"));
}

TEST_CASE("StatusBoard: windows of names the routing table dropped are freed") {
  std::int64_t now = 10'000;
  auto board = std::make_shared<StatusBoard>([&] { return now; });
  auto router = make_router(status_config(), board);
  board->set_snapshot_source([&] { return router->snapshot(); });
  const auto snap = router->snapshot();
  const std::string a = "org/a\"<b>";
  board->on_outcome(a, *snap->pools[0].endpoints[0], outcome(OutcomeKind::success, 200, 1ms));
  board->on_outcome(a, *snap->pools[0].endpoints[1], outcome(OutcomeKind::success, 200, 1ms));
  board->on_outcome("org/b", *snap->pools[1].endpoints[0], outcome(OutcomeKind::success, 200, 1ms));
  CHECK(board->entries() == 5);

  // A reload drops org/b and one endpoint of org/a.
  RouterConfig next = status_config();
  next.models[0].endpoints.pop_back();
  next.models.pop_back();
  REQUIRE(router->update(next).ok());
  const std::string doc = board->render_json(*router->snapshot(), StatusContext{});
  CHECK(board->entries() == 2);
  CHECK(!has(doc, "org/b"));
  CHECK(!has(doc, "127.0.0.1:1002"));

  // Without a render, a new name prunes on its way in (memory follows the table).
  REQUIRE(router->update(status_config()).ok());
  const auto again = router->snapshot();
  board->on_outcome("org/b", *again->pools[1].endpoints[0], outcome(OutcomeKind::success, 200, 1ms));
  CHECK(board->entries() == 4);
  RouterConfig only_b = status_config();
  only_b.models.erase(only_b.models.begin());
  only_b.models[0].endpoints.push_back({"http://127.0.0.1:2002", 1, ""});
  REQUIRE(router->update(only_b).ok());
  ExchangeSummary s;
  s.model = "org/b";
  s.status = 200;
  board->on_exchange(s);  // org/b's entry exists: no insert, no prune
  CHECK(board->entries() == 4);
  board->on_outcome("org/b", *router->snapshot()->pools[0].endpoints[1], outcome(OutcomeKind::success, 200, 1ms));
  CHECK(board->entries() == 3);  // org/a and its endpoint went; org/b and its two endpoints
}

TEST_CASE("status page: self-contained HTML that renders data as text") {
  const std::string_view html = status_page_html();
  CHECK(html.substr(0, 15) == "<!DOCTYPE html>");
  CHECK(html.find("status.json") != std::string_view::npos);
  CHECK(html.find("innerHTML") == std::string_view::npos);
  CHECK(html.find("src=") == std::string_view::npos);   // no external scripts or images
  CHECK(html.find("href=") == std::string_view::npos);  // no stylesheets
  CHECK(html.find("textContent") != std::string_view::npos);
}

TEST_CASE("ReadMostlyLock: readers never see a writer's change half done") {
  ReadMostlyLock lock;
  std::uint64_t a = 0;
  std::uint64_t b = 0;  // always equal to a outside the writer's lock
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> torn{0};
  std::atomic<std::uint64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        std::shared_lock<ReadMostlyLock> guard(lock);
        if (a != b) torn.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 20000; ++i) {
    std::unique_lock<ReadMostlyLock> guard(lock);
    ++a;
    ++b;
  }
  while (reads.load() < 1000) std::this_thread::yield();
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(torn.load() == 0);
  CHECK(a == 20000);
}

TEST_CASE("StatusBoard: events from several threads while the table changes and pages render") {
  auto board = std::make_shared<StatusBoard>();
  auto router = make_router(status_config(), board);
  board->set_snapshot_source([&] { return router->snapshot(); });
  RouterConfig fewer = status_config();
  fewer.models.pop_back();
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      ExchangeSummary s;
      s.status = 200;
      while (!stop.load()) {
        const auto snap = router->snapshot();
        for (const Pool& pool : snap->pools) {
          board->on_outcome(pool.model, *pool.endpoints[0], outcome(OutcomeKind::success, 200, 2ms));
          s.model = pool.model;
          board->on_exchange(s);
        }
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    REQUIRE(router->update(i % 2 == 0 ? fewer : status_config()).ok());
    const std::string doc = board->render_json(*router->snapshot(), StatusContext{});
    CHECK(doc.back() == '}');
  }
  stop = true;
  for (auto& t : threads) t.join();
  CHECK(board->entries() <= 5);
}
