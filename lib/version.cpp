// Run-time library version.
#include "vllm_router/version.h"

VLLM_ROUTER_BEGIN_NAMESPACE

const char* version() noexcept { return VLLM_ROUTER_VERSION_STRING; }

VLLM_ROUTER_END_NAMESPACE
