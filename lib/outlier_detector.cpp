// Passive outlier ejection with doubling back-off and a cap on the ejected share.
#include "vllm_router/outlier_detector.h"

#include <algorithm>

VLLM_ROUTER_BEGIN_NAMESPACE

OutlierDetector::OutlierDetector(OutlierConfig config, std::shared_ptr<const Clock> clock)
    : config_(std::move(config)), clock_(std::move(clock)) {}

bool OutlierDetector::is_failure(const Outcome& o) noexcept {
  switch (o.kind) {
    case OutcomeKind::connect_failure:
    case OutcomeKind::timeout:
    case OutcomeKind::upstream_closed:
      return true;
    case OutcomeKind::cancelled:
      return false;
    case OutcomeKind::success:
    case OutcomeKind::error:
      return o.status >= 500;
  }
  return false;
}

void OutlierDetector::set_endpoint_count(std::size_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  endpoints_ = count;
}

void OutlierDetector::configure(const OutlierConfig& config) {
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = config;
}

void OutlierDetector::prune(std::int64_t now) const {
  ejected_.erase(std::remove_if(ejected_.begin(), ejected_.end(),
                                [now](const auto& e) { return e.second <= now; }),
                 ejected_.end());
}

std::size_t OutlierDetector::ejected() const {
  std::lock_guard<std::mutex> lock(mutex_);
  prune(now_ns());
  return ejected_.size();
}

std::chrono::nanoseconds OutlierDetector::record(EndpointState& state, const Outcome& outcome) {
  if (outcome.kind == OutcomeKind::cancelled) return {};
  const std::int64_t now = now_ns();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!config_.enabled) return {};
  const std::int64_t until = state.ejected_until_ns.load(std::memory_order_relaxed);
  if (!is_failure(outcome)) {
    // Healthy long enough after its last ejection: forget the back-off history.
    const std::int64_t forget_after = static_cast<std::int64_t>(config_.max_ejection_ms) * 1'000'000;
    if (until != 0 && now - until > forget_after) state.ejections.store(0, std::memory_order_relaxed);
    return {};
  }
  if (until > now) return {};  // already ejected (a straggler from before the ejection)
  if (state.consecutive_failures.load(std::memory_order_relaxed) < config_.consecutive_failures) return {};
  prune(now);
  const std::size_t cap = std::max<std::size_t>(1, endpoints_ * config_.max_ejection_percent / 100);
  if (config_.max_ejection_percent == 0 || ejected_.size() >= cap) return {};
  const std::uint32_t n = state.ejections.fetch_add(1, std::memory_order_relaxed) + 1;
  std::int64_t backoff_ms = config_.base_ejection_ms;
  for (std::uint32_t i = 1; i < n && backoff_ms < config_.max_ejection_ms; ++i) backoff_ms *= 2;
  backoff_ms = std::min<std::int64_t>(backoff_ms, config_.max_ejection_ms);
  const std::int64_t new_until = now + backoff_ms * 1'000'000;
  state.ejected_until_ns.store(new_until, std::memory_order_relaxed);
  state.consecutive_failures.store(0, std::memory_order_relaxed);
  ejected_.emplace_back(&state, new_until);
  return std::chrono::milliseconds(backoff_ms);
}

VLLM_ROUTER_END_NAMESPACE
