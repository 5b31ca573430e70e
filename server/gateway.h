// Gateway: the cpp-httplib server that exposes a Router as an OpenAI-compatible endpoint.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "metrics.h"
#include "vllm_router/config.h"
#include "vllm_router/result.h"
#include "vllm_router/router.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace vllm_router::server {

/// Owns the HTTP server, the Router and the metrics. bind() then run() on one thread; stop()
/// from any thread (signal handling thread included).
class Gateway {
 public:
  /// Builds the Router from `config` (Errc::config on a bad configuration).
  static Result<std::unique_ptr<Gateway>> create(const GatewayConfig& config);
  ~Gateway();

  /// Binds the listening socket (port 0 picks a free port) and returns the bound port.
  Result<int> bind();
  /// Serves until stop(). Returns false if the server failed.
  bool run();
  /// Stops accepting and returns from run() once open connections end.
  void stop();

  Router& router() { return *router_; }
  const std::shared_ptr<Metrics>& metrics() const { return metrics_; }

 private:
  Gateway(GatewayConfig config, std::unique_ptr<Router> router, std::shared_ptr<Metrics> metrics);
  void install_routes();
  void handle_forward(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req) const;
  void reply_error(httplib::Response& res, const Error& error, std::string_view model,
                   std::chrono::steady_clock::time_point started);

  GatewayConfig config_;
  std::unique_ptr<Router> router_;
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<int> listen_fd_{-1};
  std::int64_t created_ = 0;  // unix seconds, for /v1/models
};

}  // namespace vllm_router::server
