// LoRA-aware placement (issue 14): what a Router did, for metrics and benchmarks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Counters of a Router's LoRA-aware placement (all 0 while no model configures `lora`).
struct LoraStats {
  bool enabled = false;           ///< some model of some configuration had `lora`
  std::uint64_t loads = 0;        ///< adapters loaded through POST /v1/load_lora_adapter
  std::uint64_t unloads = 0;      ///< least recently used adapters unloaded to make room
  std::uint64_t load_failures = 0;
  std::uint64_t placed_loaded = 0;  ///< adapter requests sent to a replica that had it loaded
  std::uint64_t placed_load = 0;    ///< route decisions that waited for a load (started or joined)
  std::uint64_t placed_any = 0;     ///< no replica had it, no dynamic loading: any replica
  std::uint64_t loading = 0;        ///< loads in progress now
};

/// Thread-safe.
VLLM_ROUTER_API LoraStats lora_stats(const Router& router);
/// The adapters the router believes the endpoint `endpoint_id` (Endpoint::id) has loaded now,
/// least recently added first; empty when it knows of none. Thread-safe.
VLLM_ROUTER_API std::vector<std::string> lora_loaded(const Router& router, std::string_view endpoint_id);

VLLM_ROUTER_END_NAMESPACE
