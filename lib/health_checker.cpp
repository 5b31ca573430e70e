// Active health checking: periodic GET probes with pass/fail thresholds, on a bounded pool.
#include "vllm_router/health_checker.h"

#include <map>
#include <set>
#include <vector>

#include "background.h"
#include "router_impl.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Discards a probe's body (only the status matters).
struct DiscardSink final : BodySink {
  bool write(const char*, std::size_t) override { return true; }
};

}  // namespace

struct HealthChecker::Impl {
  Impl(Router& r, std::shared_ptr<Transport> t, std::shared_ptr<const Clock> c)
      : router(r), transport(std::move(t)), clock(std::move(c)), pool(kMaxParallel) {}

  struct Track {
    std::int64_t next_ns = 0;
    std::uint32_t passes = 0;
    std::uint32_t failures = 0;
  };
  Router& router;
  std::shared_ptr<Transport> transport;
  std::shared_ptr<const Clock> clock;
  std::mutex mutex;  // guards tracks (run_once is not reentrant)
  std::map<std::string, Track> tracks;
  detail::WorkerPool pool;
  detail::Ticker ticker;
};

HealthChecker::HealthChecker(Router& router, std::shared_ptr<Transport> transport, std::shared_ptr<const Clock> clock)
    : impl_(std::make_unique<Impl>(router, std::move(transport), std::move(clock))) {
  detail::RouterAccess::impl(router).health_checkers.fetch_add(1);
}

HealthChecker::~HealthChecker() {
  stop();
  detail::RouterAccess::impl(impl_->router).health_checkers.fetch_sub(1);
}

std::size_t HealthChecker::run_once() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  const auto snap = m.router.snapshot();
  const std::int64_t now = m.clock->now().time_since_epoch().count();

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
      Impl::Track& t = m.tracks[ep.id];
      if (t.next_ns > now) continue;
      t.next_ns = now + static_cast<std::int64_t>(pool.health_check.interval_ms) * 1'000'000;
      probes.push_back(Probe{&ep, pool.states[i].get(), &pool.health_check});
    }
  }
  // Forget endpoints that left the table.
  for (auto it = m.tracks.begin(); it != m.tracks.end();) {
    it = seen.count(it->first) != 0 ? std::next(it) : m.tracks.erase(it);
  }

  m.pool.run(probes.size(), [&m, &probes](std::size_t i) {
    Probe& p = probes[i];
    UpstreamRequest req;
    req.method = "GET";
    req.path = p.config->path;
    req.timeout_ms = p.config->timeout_ms;
    auto response = m.transport->send(*p.endpoint, req, {});
    if (!response) return;
    DiscardSink sink;
    p.passed = response.value()->status() == 200 && response.value()->relay(sink).ok();
  });

  for (const Probe& p : probes) {
    Impl::Track& t = m.tracks[p.endpoint->id];
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
  impl_->ticker.start([this] {
    do {
      run_once();
    } while (impl_->ticker.wait(std::chrono::milliseconds(100)));
  });
}

void HealthChecker::stop() { impl_->ticker.stop(); }

VLLM_ROUTER_END_NAMESPACE
