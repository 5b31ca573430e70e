// OutlierDetector with an injected clock: ejection, doubling back-off, re-admission, cap.
#include <doctest/doctest.h>

#include <chrono>

#include "vllm_router/outlier_detector.h"

using namespace vllm_router;
using namespace std::chrono_literals;

namespace {

Outcome failure() {
  Outcome o;
  o.kind = OutcomeKind::connect_failure;
  return o;
}

Outcome ok() {
  Outcome o;
  o.kind = OutcomeKind::success;
  o.status = 200;
  return o;
}

// What a Lease does: bump the counters, then report.
void attempt(OutlierDetector& d, EndpointState& s, const Outcome& o) {
  if (OutlierDetector::is_failure(o)) {
    s.consecutive_failures.fetch_add(1);
  } else {
    s.consecutive_failures.store(0);
  }
  d.record(s, o);
}

std::int64_t ns(const ManualClock& c) { return c.now().time_since_epoch().count(); }

OutlierConfig config() {
  OutlierConfig c;
  c.consecutive_failures = 3;
  c.base_ejection_ms = 1000;
  c.max_ejection_ms = 5000;
  c.max_ejection_percent = 50;
  return c;
}

}  // namespace

TEST_CASE("a flapping endpoint is ejected with a growing back-off and re-admitted") {
  auto clock = std::make_shared<ManualClock>();
  clock->advance(1h);
  OutlierDetector d(config(), clock);
  d.set_endpoint_count(2);
  EndpointState s;
  std::vector<std::chrono::milliseconds> backoffs;
  for (int round = 0; round < 5; ++round) {
    attempt(d, s, failure());
    attempt(d, s, failure());
    CHECK(s.healthy(ns(*clock)));  // two failures: not yet
    attempt(d, s, failure());
    REQUIRE_FALSE(s.healthy(ns(*clock)));
    const auto until = std::chrono::nanoseconds(s.ejected_until_ns.load() - ns(*clock));
    backoffs.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(until));
    clock->advance(until - 1ms);
    CHECK_FALSE(s.healthy(ns(*clock)));
    clock->advance(1ms);
    CHECK(s.healthy(ns(*clock)));  // re-admitted when the back-off ends
  }
  CHECK(backoffs == std::vector<std::chrono::milliseconds>{1000ms, 2000ms, 4000ms, 5000ms, 5000ms});
  CHECK(s.ejections == 5u);
}

TEST_CASE("successes reset the count; a long healthy spell forgets the back-off") {
  auto clock = std::make_shared<ManualClock>();
  clock->advance(1h);
  OutlierDetector d(config(), clock);
  d.set_endpoint_count(2);
  EndpointState s;
  for (int i = 0; i < 10; ++i) {
    attempt(d, s, failure());
    attempt(d, s, failure());
    attempt(d, s, ok());
  }
  CHECK(s.healthy(ns(*clock)));
  CHECK(s.ejections == 0u);
  for (int i = 0; i < 3; ++i) attempt(d, s, failure());
  CHECK(s.ejections == 1u);
  clock->advance(1000ms + 5001ms);
  attempt(d, s, ok());
  CHECK(s.ejections == 0u);
}

TEST_CASE("cancelled attempts and 4xx are not failures; 5xx and timeouts are") {
  Outcome o;
  o.kind = OutcomeKind::cancelled;
  CHECK_FALSE(OutlierDetector::is_failure(o));
  o.kind = OutcomeKind::success;
  o.status = 404;
  CHECK_FALSE(OutlierDetector::is_failure(o));
  o.status = 503;
  CHECK(OutlierDetector::is_failure(o));
  o.kind = OutcomeKind::timeout;
  o.status = 0;
  CHECK(OutlierDetector::is_failure(o));
}

TEST_CASE("no more than max_ejection_percent of the endpoints are ejected at once") {
  auto clock = std::make_shared<ManualClock>();
  clock->advance(1h);
  OutlierDetector d(config(), clock);
  d.set_endpoint_count(4);  // 50% -> 2
  EndpointState s[4];
  for (auto& st : s) {
    for (int i = 0; i < 3; ++i) attempt(d, st, failure());
  }
  int ejected = 0;
  for (auto& st : s) ejected += st.healthy(ns(*clock)) ? 0 : 1;
  CHECK(ejected == 2);
  CHECK(d.ejected() == 2);
  clock->advance(1001ms);
  CHECK(d.ejected() == 0);
}

TEST_CASE("disabled detection never ejects") {
  auto clock = std::make_shared<ManualClock>();
  auto c = config();
  c.enabled = false;
  OutlierDetector d(c, clock);
  d.set_endpoint_count(1);
  EndpointState s;
  for (int i = 0; i < 10; ++i) attempt(d, s, failure());
  CHECK(s.healthy(ns(*clock)));
}
