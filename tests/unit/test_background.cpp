// The control plane's background helpers: the bounded worker pool (probes) and the Ticker.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "background.h"

using vllm_router::detail::Ticker;
using vllm_router::detail::WorkerPool;

TEST_CASE("worker pool: every item runs once, never more than the bound at a time, threads kept") {
  WorkerPool pool(8);
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::vector<std::atomic<int>> runs(200);
  for (int round = 0; round < 3; ++round) {
    pool.run(runs.size(), [&](std::size_t i) {
      const int now = ++running;
      int seen = peak.load();
      while (now > seen && !peak.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // blocking work, like a probe
      runs[i]++;
      --running;
    });
  }
  for (auto& r : runs) CHECK(r == 3);
  CHECK(peak <= 8);
  CHECK(peak >= 2);               // it did run in parallel
  CHECK(pool.threads() == 7);     // the caller is the eighth; the same threads every round
  pool.run(0, [](std::size_t) { FAIL("no items, no calls"); });
}

TEST_CASE("ticker: wait returns early on wake and false on stop") {
  Ticker ticker;
  std::atomic<int> rounds{0};
  ticker.start([&] {
    do {
      ++rounds;
    } while (ticker.wait(std::chrono::hours(1)));
  });
  while (rounds.load() == 0) std::this_thread::yield();
  ticker.wake();
  while (rounds.load() < 2) std::this_thread::yield();
  ticker.stop();  // returns: the hour-long wait ended at once
  CHECK(rounds == 2);
  CHECK_FALSE(ticker.running());
}
