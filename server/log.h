// Minimal leveled logging to stderr for the server (one line per event, timestamped).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <string_view>

namespace vllm_router::server {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

/// Sets the process-wide level (the server is one process; the library itself never logs).
void set_log_level(LogLevel level);
/// Parses "error|warn|info|debug"; false if unknown.
bool parse_log_level(std::string_view text, LogLevel& out);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view message);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  log_line(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace vllm_router::server
