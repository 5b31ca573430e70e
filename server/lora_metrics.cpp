// vllm_router_lora_*: LoraStats as Prometheus counters (no adapter names: bounded labels).
#include "lora_metrics.h"

#include <fmt/format.h>

#include "vllm_router/lora.h"

namespace vllm_router::server {

void render_lora_metrics(const Router& router, std::string& out) {
  const LoraStats s = lora_stats(router);
  if (!s.enabled) return;
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP vllm_router_lora_loads_total LoRA adapters loaded on a replica by the router.\n"
                 "# TYPE vllm_router_lora_loads_total counter\nvllm_router_lora_loads_total {}\n"
                 "# HELP vllm_router_lora_unloads_total LoRA adapters unloaded to make room (least recently used).\n"
                 "# TYPE vllm_router_lora_unloads_total counter\nvllm_router_lora_unloads_total {}\n"
                 "# HELP vllm_router_lora_load_failures_total LoRA adapter loads that failed.\n"
                 "# TYPE vllm_router_lora_load_failures_total counter\nvllm_router_lora_load_failures_total {}\n"
                 "# HELP vllm_router_lora_loading LoRA adapter loads in progress.\n"
                 "# TYPE vllm_router_lora_loading gauge\nvllm_router_lora_loading {}\n"
                 "# HELP vllm_router_lora_placement_total Placements of adapter requests: on a replica with it "
                 "loaded, waiting for a load, or on any replica.\n"
                 "# TYPE vllm_router_lora_placement_total counter\n"
                 "vllm_router_lora_placement_total{{result=\"loaded\"}} {}\n"
                 "vllm_router_lora_placement_total{{result=\"load\"}} {}\n"
                 "vllm_router_lora_placement_total{{result=\"any\"}} {}\n",
                 s.loads, s.unloads, s.load_failures, s.loading, s.placed_loaded, s.placed_load, s.placed_any);
}

}  // namespace vllm_router::server
