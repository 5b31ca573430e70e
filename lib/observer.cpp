// Observer, ExchangeHost and Transport base-class anchors; the names of the observer's enums.
#include "vllm_router/exchange.h"
#include "vllm_router/observer.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

std::string_view to_string(OutcomeKind kind) noexcept {
  switch (kind) {
    case OutcomeKind::success: return "success";
    case OutcomeKind::connect_failure: return "connect_failure";
    case OutcomeKind::timeout: return "timeout";
    case OutcomeKind::upstream_closed: return "upstream_closed";
    case OutcomeKind::cancelled: return "cancelled";
    case OutcomeKind::error: return "error";
  }
  return "error";
}

std::string_view to_string(RetryReason reason) noexcept {
  switch (reason) {
    case RetryReason::connect_failure: return "connect_failure";
    case RetryReason::connect_timeout: return "connect_timeout";
    case RetryReason::status_503: return "status_503";
    case RetryReason::first_byte_timeout: return "first_byte_timeout";
    case RetryReason::reset: return "reset";
  }
  return "reset";
}

std::string_view to_string(ExchangeEnd end) noexcept {
  switch (end) {
    case ExchangeEnd::ok: return "ok";
    case ExchangeEnd::rejected: return "rejected";
    case ExchangeEnd::upstream_error: return "upstream_error";
    case ExchangeEnd::timeout: return "timeout";
    case ExchangeEnd::cancelled: return "cancelled";
  }
  return "rejected";
}

Observer::~Observer() = default;
void Observer::on_outcome(std::string_view, const Endpoint&, const Outcome&) {}
void Observer::on_pick(std::string_view, const Endpoint&, const PickEvent&) {}
void Observer::on_retry(std::string_view, const Endpoint&, RetryReason, unsigned) {}
void Observer::on_ejection(const Endpoint&, std::chrono::nanoseconds, std::uint32_t) {}
void Observer::on_exchange(const ExchangeSummary&) {}
void Observer::on_stream_gap(std::string_view, const Endpoint&, std::chrono::nanoseconds) {}
ExchangeHost::~ExchangeHost() = default;
BodySink::~BodySink() = default;
UpstreamResponse::~UpstreamResponse() = default;
Transport::~Transport() = default;

VLLM_ROUTER_END_NAMESPACE
