// Leveled stderr logging with ISO-8601 UTC timestamps, as text or JSON lines.
#include "log.h"

#include <sys/time.h>

#include <cstdio>
#include <ctime>

#include "json_writer.h"

namespace vllm_router::server {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::atomic<int> g_format{static_cast<int>(LogFormat::text)};
constexpr const char* kLevelNames[] = {"error", "warn", "info", "debug"};
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
void set_log_format(LogFormat format) { g_format.store(static_cast<int>(format)); }
LogFormat log_format() { return static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)); }

bool parse_log_level(std::string_view text, LogLevel& out) {
  if (text == "error") out = LogLevel::error;
  else if (text == "warn") out = LogLevel::warn;
  else if (text == "info") out = LogLevel::info;
  else if (text == "debug") out = LogLevel::debug;
  else return false;
  return true;
}

bool parse_log_format(std::string_view text, LogFormat& out) {
  if (text == "text") out = LogFormat::text;
  else if (text == "json") out = LogFormat::json;
  else return false;
  return true;
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void append_json_string(std::string& out, std::string_view s) { detail::append_json_string(out, s); }

void append_utc_time(std::string& out, std::int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char stamp[40];
  const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  out.append(stamp, n);
  fmt::format_to(std::back_inserter(out), ".{:03d}Z", static_cast<int>(unix_ms % 1000));
}

void log_line(LogLevel level, std::string_view message) {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  const std::int64_t unix_ms = static_cast<std::int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
  std::string line;
  line.reserve(message.size() + 64);
  if (log_format() == LogFormat::json) {
    line += "{\"time\":\"";
    append_utc_time(line, unix_ms);
    line += "\",\"level\":\"";
    line += kLevelNames[static_cast<int>(level)];
    line += "\",\"msg\":";
    append_json_string(line, message);
    line += "}\n";
  } else {
    append_utc_time(line, unix_ms);
    line.push_back(' ');
    line += kLevelNames[static_cast<int>(level)];
    line.push_back(' ');
    line.append(message);
    line.push_back('\n');
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace vllm_router::server
