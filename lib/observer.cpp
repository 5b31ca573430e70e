// Observer and Transport base-class anchors.
#include "vllm_router/observer.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

Observer::~Observer() = default;
void Observer::on_outcome(std::string_view, const Endpoint&, const Outcome&) {}
BodySink::~BodySink() = default;
UpstreamResponse::~UpstreamResponse() = default;
Transport::~Transport() = default;

VLLM_ROUTER_END_NAMESPACE
