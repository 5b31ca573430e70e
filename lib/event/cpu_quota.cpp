// How many CPUs this process may use: affinity capped by the cgroup CPU quota.
#include "cpu_quota.h"

#include <sched.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace vllm_router::detail {
namespace {

std::optional<long long> number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<unsigned> ratio(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  const long long cpus = (quota + period - 1) / period;
  return static_cast<unsigned>(cpus > 4096 ? 4096 : cpus);
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

}  // namespace

std::optional<unsigned> cpus_from_cpu_max(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view quota = line.substr(0, space);
  if (quota == "max") return std::nullopt;
  const auto q = number(quota);
  const auto p = number(line.substr(space + 1));
  if (!q || !p) return std::nullopt;
  return ratio(*q, *p);
}

std::optional<unsigned> cpus_from_cfs(std::string_view quota, std::string_view period) {
  const auto q = number(quota);
  const auto p = number(period);
  if (!q || !p) return std::nullopt;
  return ratio(*q, *p);
}

unsigned available_cpus() {
  unsigned n = std::thread::hardware_concurrency();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) n = static_cast<unsigned>(count);
  }
  std::optional<unsigned> quota = cpus_from_cpu_max(read_first_line("/sys/fs/cgroup/cpu.max"));
  if (!quota) {
    quota = cpus_from_cfs(read_first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                          read_first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  }
  if (quota && *quota < n) n = *quota;
  return n == 0 ? 1 : n;
}

}  // namespace vllm_router::detail
