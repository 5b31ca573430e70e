// vllm_router_lora_* (docs/metrics.md): the Router's LoRA-aware placement counters.
#pragma once

#include <string>

#include "vllm_router/router.h"

namespace vllm_router::server {

/// Appends the LoRA counters to a Prometheus page; nothing while no model configures `lora`.
void render_lora_metrics(const Router& router, std::string& out);

}  // namespace vllm_router::server
