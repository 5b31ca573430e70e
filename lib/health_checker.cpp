// Active health checking: periodic GET probes with pass/fail thresholds.
#include "vllm_router/health_checker.h"

#include <set>
#include <vector>

#include "router_impl.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Discards a probe's body (only the status matters).
struct DiscardSink final : BodySink {
  bool write(const char*, std::size_t) override { return true; }
};

}  // namespace

HealthChecker::HealthChecker(Router& router, std::shared_ptr<Transport> transport,
                             std::shared_ptr<const Clock> clock)
    : router_(router), transport_(std::move(transport)), clock_(std::move(clock)) {
  detail::RouterAccess::impl(router_).health_checkers.fetch_add(1);
}

HealthChecker::~HealthChecker() {
  stop();
  detail::RouterAccess::impl(router_).health_checkers.fetch_sub(1);
}

std::size_t HealthChecker::run_once() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto snap = router_.snapshot();
  const std::int64_t now = clock_->now().time_since_epoch().count();

  struct Probe {
    const Endpoint* endpoint;
    EndpointState* state;
    const HealthCheckConfig* config;
    bool passed = false;
  };
  std::vector<Probe> probes;
  std::set<std::string> seen;
  for (const Pool& pool : snap->pools) {
    if (!pool.health_check.enabled) continue;
    for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
      const Endpoint& ep = *pool.endpoints[i];
      if (!seen.insert(ep.id).second) continue;  // listed by several models: probe once
      Track& t = tracks_[ep.id];
      if (t.next_ns > now) continue;
      t.next_ns = now + static_cast<std::int64_t>(pool.health_check.interval_ms) * 1'000'000;
      probes.push_back(Probe{&ep, pool.states[i].get(), &pool.health_check});
    }
  }
  // Forget endpoints that left the table.
  for (auto it = tracks_.begin(); it != tracks_.end();) {
    it = seen.count(it->first) != 0 ? std::next(it) : tracks_.erase(it);
  }

  const auto probe = [this](Probe& p) {
    UpstreamRequest req;
    req.method = "GET";
    req.path = p.config->path;
    req.timeout_ms = p.config->timeout_ms;
    auto response = transport_->send(*p.endpoint, req, {});
    if (!response) return;
    DiscardSink sink;
    p.passed = response.value()->status() == 200 && response.value()->relay(sink).ok();
  };
  std::vector<std::thread> threads;
  threads.reserve(probes.size());
  for (std::size_t i = 1; i < probes.size(); ++i) threads.emplace_back(probe, std::ref(probes[i]));
  if (!probes.empty()) probe(probes[0]);
  for (auto& t : threads) t.join();

  for (const Probe& p : probes) {
    Track& t = tracks_[p.endpoint->id];
    if (p.passed) {
      t.failures = 0;
      if (++t.passes >= p.config->healthy_threshold) p.state->active_healthy.store(true);
    } else {
      t.passes = 0;
      if (++t.failures >= p.config->unhealthy_threshold) p.state->active_healthy.store(false);
    }
  }
  return probes.size();
}

void HealthChecker::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(wake_mutex_);
    while (!stopping_) {
      lock.unlock();
      run_once();
      lock.lock();
      wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
    }
  });
}

void HealthChecker::stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

VLLM_ROUTER_END_NAMESPACE
