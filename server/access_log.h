// AccessLog: one line per finished request, written off the data path.
//
// The caller (in vllm-router, the thread of the ExchangeQueue the request's loop hands its summary
// to) formats the line straight from the summary into a buffer of its own (no allocation once
// warm) and appends it to the shared batch under a short lock; a writer thread writes each batch
// with one system call (no write on the data path). When
// the sink cannot keep up the buffer fills and further lines are dropped and counted: a request
// never waits for the log. reopen() (SIGHUP, SIGUSR1) makes the writer reopen the file, for
// log rotation.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "log.h"
#include "vllm_router/observer.h"
#include "vllm_router/result.h"

namespace vllm_router::server {

struct AccessLogOptions {
  std::string path;               ///< a file (appended to), or "-" for standard output
  LogFormat format = LogFormat::text;
  std::size_t capacity = 4096;    ///< lines waiting for the writer at most; more are dropped
  /// The writer writes what waits this often, or sooner when a quarter of `capacity` waits (no
  /// wake-up per request).
  std::chrono::milliseconds flush_interval{100};
};

/// Appends the line (with its newline) AccessLog::write queues for `s` ended at `unix_ms`, in
/// `format` (exposed for tests).
void format_access_line(std::string& out, const ExchangeSummary& s, std::int64_t unix_ms, LogFormat format);

class AccessLog {
 public:
  /// Writes a batch of formatted lines; false: it failed (the lines are counted as dropped).
  using Sink = std::function<bool(std::string_view)>;

  /// Opens the file (or standard output) and starts the writer.
  static Result<std::unique_ptr<AccessLog>> open(AccessLogOptions options);
  /// With a sink of the caller's instead of a file (tests).
  AccessLog(AccessLogOptions options, Sink sink);
  ~AccessLog();  // writes what is buffered, then stops the writer
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  /// Queues the line of a finished request; never blocks on the sink.
  void write(const ExchangeSummary& summary);
  /// The same for a request that ended at `unix_ms` (ExchangeQueue's consumer: the line's time
  /// is the request's end, not the moment it is formatted).
  void write(const ExchangeSummary& summary, std::int64_t unix_ms);
  /// The writer reopens the file before its next batch (rotation). Errors are logged; the old
  /// file stays in use.
  void reopen();
  /// Blocks until every line queued before the call was handed to the sink (tests, shutdown).
  void flush();

  std::uint64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
  /// Prometheus lines for the counters (appended to /metrics).
  void render_metrics(std::string& out) const;

 private:
  struct Buffer {
    std::string bytes;     // the lines, formatted
    std::size_t used = 0;  // lines in `bytes`
  };
  void run();
  bool open_file();  // on the writer thread or before it starts

  AccessLogOptions options_;
  Sink sink_;
  int fd_ = -1;
  bool own_fd_ = false;
  bool file_ = false;  // writing to options_.path (not a caller's sink)
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  Buffer active_;   // filled by requests, under mutex_
  Buffer writing_;  // the writer's, outside the lock
  std::uint64_t queued_ = 0;   // records ever queued (under mutex_)
  std::uint64_t handled_ = 0;  // records ever handed to the sink or dropped there (under mutex_)
  std::size_t wake_at_ = 1;    // records waiting that wake the writer before its interval
  bool flush_wanted_ = false;  // under mutex_
  bool stop_ = false;
  std::atomic<bool> reopen_{false};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::thread writer_;
};

}  // namespace vllm_router::server
