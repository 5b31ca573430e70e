// Rate limiters: per-key sliding one-minute windows for requests and tokens, and concurrent
// places; in process (LocalLimits), or with the windows in Redis shared by router replicas.
#include "rate_limit.h"

#include <algorithm>
#include <cmath>

VLLM_ROUTER_BEGIN_NAMESPACE
RateLimiter::~RateLimiter() = default;
VLLM_ROUTER_END_NAMESPACE

namespace vllm_router::detail {

namespace {

constexpr std::int64_t kWindowMs = 60000;

// Milliseconds from `now_ms` until prev * (1 - f) + cur + need <= limit, where f is the
// fraction of the current window gone (and at the next window start prev becomes cur).
std::int64_t wait_ms(double prev, double cur, double limit, double need, std::int64_t now_ms) {
  const std::int64_t into = now_ms % kWindowMs;
  if (cur + need <= limit) {
    if (prev <= 0) return 0;
    const double f = 1.0 - (limit - cur - need) / prev;
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(std::ceil(f * kWindowMs)) - into);
  }
  const double f = cur > 0 ? std::max(0.0, 1.0 - (limit - need) / cur) : 0.0;
  return (kWindowMs - into) + static_cast<std::int64_t>(std::ceil(f * kWindowMs));
}

std::chrono::seconds to_retry_after(std::int64_t ms) {
  return std::chrono::seconds(std::max<std::int64_t>(1, (ms + 999) / 1000));
}

}  // namespace

double window_weight(std::int64_t now_ms) noexcept {
  return 1.0 - static_cast<double>(now_ms % kWindowMs) / static_cast<double>(kWindowMs);
}

std::int64_t window_of(std::int64_t now_ms) noexcept { return now_ms / kWindowMs; }

LimitDecision window_decision(const ApiKey& key, const WindowCounts& c, std::int64_t now_ms) {
  const double w = window_weight(now_ms);
  LimitDecision d;
  if (key.rpm != 0 && static_cast<double>(c.prev_requests) * w + static_cast<double>(c.requests) + 1.0 > key.rpm) {
    d.allowed = false;
    d.reason = "rpm";
    d.retry_after = to_retry_after(wait_ms(static_cast<double>(c.prev_requests), static_cast<double>(c.requests),
                                           key.rpm, 1.0, now_ms));
  } else if (key.tpm != 0 &&
             static_cast<double>(c.prev_tokens) * w + static_cast<double>(c.tokens) >= static_cast<double>(key.tpm)) {
    d.allowed = false;
    d.reason = "tpm";
    d.retry_after = to_retry_after(wait_ms(static_cast<double>(c.prev_tokens), static_cast<double>(c.tokens),
                                           static_cast<double>(key.tpm) - 1.0, 0.0, now_ms));
  }
  return d;
}

LocalLimits::Counts& LocalLimits::counts(const std::string& id, std::int64_t now_ms) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) it = by_id_.emplace(id, Counts{}).first;
  roll(it->second, now_ms);
  return it->second;
}

LocalLimits::Counts& LocalLimits::counts(const ApiKey& key, std::int64_t now_ms) {
  if (auto hit = by_address_.find(&key); hit != by_address_.end() && hit->second->first == key.id) {
    roll(hit->second->second, now_ms);
    return hit->second->second;
  }
  // Addresses of replaced tables pile up: start over when they outnumber the ids.
  if (by_address_.size() > 2 * by_id_.size() + 64) by_address_.clear();
  auto it = by_id_.find(key.id);
  if (it == by_id_.end()) it = by_id_.emplace(key.id, Counts{}).first;
  by_address_[&key] = &*it;
  roll(it->second, now_ms);
  return it->second;
}

void LocalLimits::roll(Counts& c, std::int64_t now_ms) {
  const std::int64_t window = window_of(now_ms);
  if (window != c.window) {
    const bool next = window == c.window + 1;
    c.w.prev_requests = next ? c.w.requests : 0;
    c.w.prev_tokens = next ? c.w.tokens : 0;
    c.w.requests = 0;
    c.w.tokens = 0;
    c.window = window;
  }
}

bool LocalLimits::take_place(const ApiKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_id_.find(key.id);
  if (it == by_id_.end()) it = by_id_.emplace(key.id, Counts{}).first;
  if (key.max_concurrent != 0 && it->second.in_flight >= key.max_concurrent) return false;
  ++it->second.in_flight;
  return true;
}

void LocalLimits::free_place(const ApiKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_id_.find(key.id);
  if (it != by_id_.end() && it->second.in_flight > 0) --it->second.in_flight;
}

LimitDecision LocalLimits::check_and_count(const ApiKey& key, std::int64_t now_ms, bool check) {
  std::lock_guard<std::mutex> lock(mutex_);
  Counts& c = counts(key.id, now_ms);
  LimitDecision d = check ? window_decision(key, c.w, now_ms) : LimitDecision{};
  if (d.allowed) ++c.w.requests;
  return d;
}

LimitDecision LocalLimits::admit(const ApiKey& key, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  Counts& c = counts(key, now_ms);
  if (key.max_concurrent != 0 && c.in_flight >= key.max_concurrent) return concurrency_refused();
  LimitDecision d = window_decision(key, c.w, now_ms);
  if (d.allowed) {
    ++c.w.requests;
    ++c.in_flight;
  }
  return d;
}

void LocalLimits::finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund) {
  std::lock_guard<std::mutex> lock(mutex_);
  Counts& c = counts(key, now_ms);
  if (c.in_flight > 0) --c.in_flight;
  c.w.tokens += tokens;
  if (refund && c.w.requests > 0) --c.w.requests;
}

LimitDecision concurrency_refused() { return LimitDecision{false, "concurrency", std::chrono::seconds(1)}; }

namespace {

class LocalRateLimiter final : public RateLimiter {
 public:
  bool admit(const ApiKey& key, std::int64_t now_ms, LimitDecision& decision, const std::function<Done()>&) override {
    decision = key.limited() ? limits_.admit(key, now_ms) : LimitDecision{};
    return true;
  }
  void finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund) override {
    if (key.limited()) limits_.finish(key, tokens, now_ms, refund);
  }

 private:
  LocalLimits limits_;
};

}  // namespace
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE
std::shared_ptr<RateLimiter> make_local_rate_limiter() { return std::make_shared<detail::LocalRateLimiter>(); }

VLLM_ROUTER_END_NAMESPACE
