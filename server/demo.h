// --demo: starts simulated vLLM engines (vllm-sim) as child processes and configures routes to them.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/result.h"

namespace vllm_router::server {

/// Child engines of the demo; killed (SIGTERM, then waited for) on destruction.
class Demo {
 public:
  Demo() = default;
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;
  ~Demo();

  /// Finds vllm-sim (next to this executable, in ../tools/, or on PATH), starts one engine per
  /// demo model on a free loopback port and adds the models to `config`.
  Result<void> start(RouterConfig& config);
  /// The curl lines that try the gateway at `base_url`.
  std::string instructions(const std::string& base_url) const;

 private:
  std::vector<pid_t> children_;
};

}  // namespace vllm_router::server
