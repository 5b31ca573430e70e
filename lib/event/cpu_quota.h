// Internal: how many CPUs this process may use (affinity and the cgroup's CPU quota), to size
// the event loops when `threads` is 0.
#pragma once

#include <optional>
#include <string_view>

namespace vllm_router::detail {

/// CPUs a cgroup v2 `cpu.max` line ("QUOTA PERIOD" or "max PERIOD") allows, rounded up:
/// "150000 100000" -> 2. nullopt for "max" (no quota) or a line that is not one.
std::optional<unsigned> cpus_from_cpu_max(std::string_view line);

/// The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: none).
std::optional<unsigned> cpus_from_cfs(std::string_view quota, std::string_view period);

/// The CPUs this process may run on (sched_getaffinity), capped by its cgroup's quota
/// (/sys/fs/cgroup/cpu.max, else cgroup v1's cpu.cfs_*): in a container with a CPU limit, the
/// limit rather than the node's CPU count. At least 1.
unsigned available_cpus();

}  // namespace vllm_router::detail
