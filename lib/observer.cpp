// Observer, ExchangeHost and Transport base-class anchors.
#include "vllm_router/exchange.h"
#include "vllm_router/observer.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

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
