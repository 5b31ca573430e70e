// The process_* metrics of the Prometheus client libraries (CPU, memory, descriptors, start
// time), read from /proc at each scrape.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vllm_router::server {

/// What the standard process collector reports.
struct ProcessStats {
  double cpu_seconds = 0;          ///< user + system CPU time
  double start_time_seconds = 0;   ///< since the Unix epoch
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;       ///< the soft RLIMIT_NOFILE
};

/// The fields of /proc/PID/stat's text (proc(5): the name in parentheses may hold spaces and
/// parentheses, so the fields are counted from the last ')'); `boot_time` is /proc/stat's btime.
/// Fills cpu, start time, resident and virtual size; nullopt when the text is malformed.
std::optional<ProcessStats> parse_proc_stat(std::string_view text, long ticks_per_second, long page_size,
                                            double boot_time);
/// The `btime` line of /proc/stat (the boot time, seconds since the epoch); nullopt without it.
std::optional<double> parse_boot_time(std::string_view proc_stat);
/// This process's figures from `proc_dir` (/proc/self in production); nullopt when it cannot
/// be read (no /proc).
std::optional<ProcessStats> read_process_stats(const std::string& proc_dir = "/proc/self",
                                               const std::string& proc_stat = "/proc/stat");
/// The six process_* families in the text format.
void render_process_metrics(std::string& out, const ProcessStats& stats);

}  // namespace vllm_router::server
