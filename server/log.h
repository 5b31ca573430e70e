// Minimal leveled logging to stderr for the server (one line per event, timestamped), as text or
// as one JSON object per line.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace vllm_router::server {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };
enum class LogFormat { text, json };

/// Sets the process-wide level (the server is one process; the library itself never logs).
void set_log_level(LogLevel level);
/// Parses "error|warn|info|debug"; false if unknown.
bool parse_log_level(std::string_view text, LogLevel& out);
/// Sets the process-wide format of log lines (and of the access log).
void set_log_format(LogFormat format);
LogFormat log_format();
/// Parses "text|json"; false if unknown.
bool parse_log_format(std::string_view text, LogFormat& out);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view message);

/// Appends `s` as a JSON string (quoted; control characters, quotes, backslashes and bytes that
/// are not valid UTF-8 escaped, so a client's bytes cannot break or forge a line): the library's
/// detail::append_json_string (lib/json_writer.h), which its error bodies use too.
void append_json_string(std::string& out, std::string_view s);
/// Appends `unix_ms` as ISO-8601 UTC with milliseconds: 2026-12-06T10:00:00.123Z.
void append_utc_time(std::string& out, std::int64_t unix_ms);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  log_line(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace vllm_router::server
