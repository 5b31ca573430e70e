// App: the vllm-router process: owns the Router, the Server (the library's data plane), the
// metrics, the control plane (health checks, load scraping, discovery), reload and signals.
#pragma once

#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "access_log.h"
#include "demo.h"
#include "metrics.h"
#include "options.h"
#include "status.h"
#include "vllm_router/endpoint_source.h"
#include "vllm_router/health_checker.h"
#include "vllm_router/load_scraper.h"
#include "vllm_router/replica_sync.h"
#include "vllm_router/router.h"
#include "vllm_router/server.h"
#include "vllm_router/tracing.h"

namespace vllm_router::server {

/// The signals the App handles (SIGINT, SIGTERM, SIGHUP): main blocks them in every thread
/// before anything starts, and App::run waits for them on one thread.
sigset_t blocked_signals();

class App {
 public:
  /// Builds everything from parsed options (`args` are kept to re-read them on reload) and
  /// binds the listener. Errors name what is wrong; `exit_code` says how main should exit.
  static Result<std::unique_ptr<App>> create(ProgramOptions options, std::vector<std::string> args, int& exit_code);
  ~App();

  /// --check-config: the summary line(s) of what was configured.
  std::string summary() const;
  /// Serves until SIGTERM/SIGINT (graceful drain), reloading on SIGHUP or a watched file change.
  /// Returns the process exit code.
  int run();
  /// Re-reads file, environment and flags and applies the routing part; a bad config is logged
  /// and ignored.
  void reload();

  std::uint16_t port() const noexcept { return server_->port(); }

 private:
  App() = default;
  void watch_files();
  void reload_keys(const std::string& path);  // under reload_mutex_
  void reload_tls();                          // under reload_mutex_

  ProgramOptions options_;
  std::vector<std::string> args_;
  // file_stamp() of each watched file as last read: the config file (watch_config), the keys
  // file, the TLS certificate and key (one stamp for the pair).
  std::string config_stamp_;
  std::string keys_stamp_;
  std::string tls_stamp_;
  Demo demo_;
  std::vector<ModelConfig> demo_models_;  // re-added on reload: they come from no file or flag
  RouterConfig static_router_;            // the configured models, before discovery
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<AccessLog> access_log_;  // null: off
  std::shared_ptr<StatusBoard> status_;   // the status page's recent figures (/status.json)
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::shared_ptr<OtlpExporter> tracer_;  // null: tracing off
  std::shared_ptr<ExchangeQueue> queue_;  // the access log's and tracer_'s work; null: both off
  std::unique_ptr<Router> router_;
  std::unique_ptr<Discovery> discovery_;
  std::unique_ptr<HealthChecker> health_;
  std::unique_ptr<LoadScraper> scraper_;
  std::unique_ptr<ReplicaSync> sync_;  // null: replica sync off
  std::unique_ptr<vllm_router::Server> server_;
  std::mutex reload_mutex_;
  std::thread watcher_;
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace vllm_router::server
