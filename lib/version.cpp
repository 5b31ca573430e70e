// Run-time library version.
#include "vllm_router/version.h"

namespace vllm_router {

const char* version() noexcept { return VLLM_ROUTER_VERSION_STRING; }

}  // namespace vllm_router
