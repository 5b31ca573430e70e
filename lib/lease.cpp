// Lease: in-flight accounting and outcome recording for one attempt.
#include "vllm_router/lease.h"

VLLM_ROUTER_BEGIN_NAMESPACE

Lease::Lease(std::shared_ptr<const Endpoint> endpoint, std::shared_ptr<EndpointState> state,
             std::string model, std::shared_ptr<Observer> observer,
             std::shared_ptr<OutlierDetector> outlier)
    : endpoint_(std::move(endpoint)),
      state_(std::move(state)),
      model_(std::move(model)),
      observer_(std::move(observer)),
      outlier_(std::move(outlier)),
      started_(std::chrono::steady_clock::now()) {
  state_->in_flight.fetch_add(1, std::memory_order_relaxed);
}

Lease::Lease(Lease&& other) noexcept
    : endpoint_(std::move(other.endpoint_)),
      state_(std::move(other.state_)),
      model_(std::move(other.model_)),
      observer_(std::move(other.observer_)),
      outlier_(std::move(other.outlier_)),
      started_(other.started_) {
  other.state_ = nullptr;
}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    complete(Outcome{});
    endpoint_ = std::move(other.endpoint_);
    state_ = std::move(other.state_);
    model_ = std::move(other.model_);
    observer_ = std::move(other.observer_);
    outlier_ = std::move(other.outlier_);
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
  if (outlier_ != nullptr) outlier_->record(*state_, outcome);
  state_ = nullptr;
  if (observer_ != nullptr) {
    try {
      observer_->on_outcome(model_, *endpoint_, outcome);
    } catch (...) {  // observers must not break the data path
    }
  }
}

VLLM_ROUTER_END_NAMESPACE
