// Lease: in-flight accounting and outcome recording for one attempt.
#include "vllm_router/lease.h"

#include "router_impl.h"

VLLM_ROUTER_BEGIN_NAMESPACE

Lease::Lease(std::shared_ptr<const Endpoint> endpoint, std::shared_ptr<EndpointState> state,
             std::string model, std::shared_ptr<Observer> observer,
             std::shared_ptr<OutlierDetector> outlier)
    : Lease(
          [&] {
            auto hooks = std::make_shared<detail::LeaseHooks>();
            hooks->observer = std::move(observer);
            hooks->outlier = std::move(outlier);
            return hooks;
          }(),
          std::move(endpoint), std::move(state), std::make_shared<const std::string>(std::move(model))) {}

Lease::Lease(std::shared_ptr<const detail::LeaseHooks> hooks, std::shared_ptr<const Endpoint> endpoint,
             std::shared_ptr<EndpointState> state, std::shared_ptr<const std::string> model, bool counted)
    : endpoint_(std::move(endpoint)),
      state_(std::move(state)),
      model_(std::move(model)),
      hooks_(std::move(hooks)),
      started_(std::chrono::steady_clock::now()) {
  if (!counted) state_->in_flight.fetch_add(1, std::memory_order_relaxed);
}

Lease::Lease(Lease&& other) noexcept
    : endpoint_(std::move(other.endpoint_)),
      state_(std::move(other.state_)),
      model_(std::move(other.model_)),
      hooks_(std::move(other.hooks_)),
      started_(other.started_) {
  other.state_ = nullptr;
}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    complete(Outcome{});
    endpoint_ = std::move(other.endpoint_);
    state_ = std::move(other.state_);
    model_ = std::move(other.model_);
    hooks_ = std::move(other.hooks_);
    started_ = other.started_;
    other.state_ = nullptr;
  }
  return *this;
}

Lease::~Lease() { complete(Outcome{}); }

void Lease::complete(const Outcome& outcome) noexcept {
  if (state_ == nullptr) return;
  state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  state_->requests.fetch_add(1, std::memory_order_relaxed);
  const bool failed = OutlierDetector::is_failure(outcome);
  if (failed) {
    state_->failures.fetch_add(1, std::memory_order_relaxed);
    state_->consecutive_failures.fetch_add(1, std::memory_order_relaxed);
  } else if (outcome.kind == OutcomeKind::success) {
    state_->consecutive_failures.store(0, std::memory_order_relaxed);
  }
  EndpointState& state = *state_;
  state_ = nullptr;
  if (hooks_ == nullptr) return;
  std::chrono::nanoseconds ejected{0};
  if (hooks_->outlier != nullptr) ejected = hooks_->outlier->record(state, outcome);
  Observer* observer = hooks_->observer.get();
  detail::notify_observer(observer, [&](Observer& o) { o.on_outcome(*model_, *endpoint_, outcome); });
  if (ejected.count() > 0) {
    detail::notify_observer(observer, [&](Observer& o) {
      o.on_ejection(*endpoint_, ejected, state.ejections.load(std::memory_order_relaxed));
    });
  }
  // A place at this endpoint is free: requests waiting for capacity may go now.
  hooks_->admission.notify();
}

VLLM_ROUTER_END_NAMESPACE
