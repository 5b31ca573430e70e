// process_* metrics from /proc (the names and meanings of the Prometheus client libraries).
#include "process_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

namespace vllm_router::server {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The next whitespace-separated token of `text` from `pos`.
std::string_view next_token(std::string_view text, std::size_t& pos) {
  while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n')) ++pos;
  const std::size_t start = pos;
  while (pos < text.size() && text[pos] != ' ' && text[pos] != '\t' && text[pos] != '\n') ++pos;
  return text.substr(start, pos - start);
}

template <class T>
bool to_number(std::string_view token, T& out) {
  if (token.empty()) return false;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), out);
  return ec == std::errc() && end == token.data() + token.size();
}

// Entries of a /proc/PID/fd directory (the descriptor reading it included, as client_golang).
std::optional<std::uint64_t> count_fds(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return std::nullopt;
  std::uint64_t n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// The soft "Max open files" of /proc/PID/limits; 0 when unlimited or unreadable.
std::uint64_t max_open_files(std::string_view limits) {
  constexpr std::string_view kName = "Max open files";
  const std::size_t at = limits.find(kName);
  if (at == std::string_view::npos) return 0;
  std::size_t pos = at + kName.size();
  std::uint64_t soft = 0;
  return to_number(next_token(limits, pos), soft) ? soft : 0;
}

}  // namespace

std::optional<ProcessStats> parse_proc_stat(std::string_view text, long ticks_per_second, long page_size,
                                            double boot_time) {
  const std::size_t close = text.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0 || page_size <= 0) return std::nullopt;
  // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15,
  // starttime 22, vsize 23 (bytes), rss 24 (pages).
  std::size_t pos = close + 1;
  std::uint64_t utime = 0, stime = 0, start = 0, vsize = 0;
  std::int64_t rss = 0;
  for (int field = 3; field <= 24; ++field) {
    const std::string_view token = next_token(text, pos);
    if (token.empty()) return std::nullopt;
    bool ok = true;
    switch (field) {
      case 14: ok = to_number(token, utime); break;
      case 15: ok = to_number(token, stime); break;
      case 22: ok = to_number(token, start); break;
      case 23: ok = to_number(token, vsize); break;
      case 24: ok = to_number(token, rss); break;
      default: break;
    }
    if (!ok) return std::nullopt;
  }
  ProcessStats s;
  const auto ticks = static_cast<double>(ticks_per_second);
  s.cpu_seconds = static_cast<double>(utime + stime) / ticks;
  s.start_time_seconds = boot_time + static_cast<double>(start) / ticks;
  s.virtual_bytes = vsize;
  s.resident_bytes = rss > 0 ? static_cast<std::uint64_t>(rss) * static_cast<std::uint64_t>(page_size) : 0;
  return s;
}

std::optional<double> parse_boot_time(std::string_view proc_stat) {
  std::size_t at = 0;
  while (at < proc_stat.size()) {
    const std::size_t end = std::min(proc_stat.find('\n', at), proc_stat.size());
    const std::string_view line = proc_stat.substr(at, end - at);
    if (line.substr(0, 6) == "btime ") {
      std::size_t pos = 6;
      std::uint64_t v = 0;
      if (to_number(next_token(line, pos), v)) return static_cast<double>(v);
      return std::nullopt;
    }
    at = end + 1;
  }
  return std::nullopt;
}

std::optional<ProcessStats> read_process_stats(const std::string& proc_dir, const std::string& proc_stat) {
  static const std::optional<double> boot = parse_boot_time(read_file(proc_stat));  // fixed while up
  if (!boot) return std::nullopt;
  auto s = parse_proc_stat(read_file(proc_dir + "/stat"), ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), *boot);
  if (!s) return std::nullopt;
  s->open_fds = count_fds(proc_dir + "/fd").value_or(0);
  s->max_fds = max_open_files(read_file(proc_dir + "/limits"));
  return s;
}

void render_process_metrics(std::string& out, const ProcessStats& s) {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                 "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
                 s.cpu_seconds);
  fmt::format_to(it,
                 "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                 "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
                 s.resident_bytes);
  fmt::format_to(it,
                 "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                 "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes {}\n",
                 s.virtual_bytes);
  fmt::format_to(it,
                 "# HELP process_open_fds Number of open file descriptors.\n"
                 "# TYPE process_open_fds gauge\nprocess_open_fds {}\n",
                 s.open_fds);
  if (s.max_fds != 0) {
    fmt::format_to(it,
                   "# HELP process_max_fds Maximum number of open file descriptors.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds {}\n",
                   s.max_fds);
  }
  fmt::format_to(it,
                 "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                 "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:.2f}\n",
                 s.start_time_seconds);
}

}  // namespace vllm_router::server
