// Leveled stderr logging with ISO-8601 UTC timestamps.
#include "log.h"

#include <cstdio>
#include <ctime>
#include <sys/time.h>

namespace vllm_router::server {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool parse_log_level(std::string_view text, LogLevel& out) {
  if (text == "error") out = LogLevel::error;
  else if (text == "warn") out = LogLevel::warn;
  else if (text == "info") out = LogLevel::info;
  else if (text == "debug") out = LogLevel::debug;
  else return false;
  return true;
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void log_line(LogLevel level, std::string_view message) {
  static constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  std::tm tm{};
  ::gmtime_r(&tv.tv_sec, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  const std::string line = fmt::format("{}.{:03d}Z {} {}\n", stamp, static_cast<int>(tv.tv_usec / 1000),
                                       kNames[static_cast<int>(level)], message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace vllm_router::server
