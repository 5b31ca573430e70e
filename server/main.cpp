// vllm-router: the OpenAI-compatible gateway executable.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <functional>
#include <thread>

#include "demo.h"
#include "event_server.h"
#include "gateway.h"
#include "log.h"
#include "options.h"
#include "vllm_router/version.h"

using namespace vllm_router;
using namespace vllm_router::server;

namespace {

// Waits for SIGINT/SIGTERM (blocked in every thread) on a dedicated thread, then calls `stop`.
void start_signal_thread(std::function<void()> stop) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  std::thread([set, stop = std::move(stop)]() mutable {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) {
      log(LogLevel::info, "received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      stop();
    }
  }).detach();
}

// Raises the soft file-descriptor limit to the hard one; returns the new soft limit.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_options(args, current_environment());
  if (!parsed) {
    std::fprintf(stderr, "vllm-router: %s\nRun 'vllm-router --help' for usage.\n", parsed.error().message.c_str());
    return 2;
  }
  ServerOptions& options = parsed.value();
  if (options.help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (options.version) {
    std::printf("vllm-router %s\n", vllm_router::version());
    return 0;
  }
  LogLevel level = LogLevel::info;
  if (parse_log_level(options.config.log_level, level)) set_log_level(level);

  Demo demo;
  if (options.demo) {
    if (auto r = demo.start(options.config.router); !r) {
      std::fprintf(stderr, "vllm-router: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  if (options.config.router.models.empty()) {
    std::fprintf(stderr,
                 "vllm-router: no models configured: pass --model NAME=URL, set VLLM_ROUTER_MODELS, "
                 "use --config FILE, or try --demo\n");
    return 2;
  }
  GatewayConfig& config = options.config;
  if (config.max_connections == 0) {
    // Two descriptors per proxied connection, and a reserve for idle upstream sockets and logs.
    const rlim_t fds = raise_fd_limit();
    config.max_connections = static_cast<std::uint32_t>(fds > 256 ? (fds - 128) / 2 : 64);
  } else {
    raise_fd_limit();
  }
  if (config.io == "threads" && config.threads == 0) config.threads = 256;
  auto gateway = Gateway::create(config);
  if (!gateway) {
    const Error& e = gateway.error();
    std::fprintf(stderr, "vllm-router: invalid configuration: %s%s%s\n", e.message.c_str(),
                 e.param.empty() ? "" : " (field: ", e.param.empty() ? "" : (e.param + ")").c_str());
    return 2;
  }
  if (options.check_config) {
    const auto& cfg = options.config.router;
    std::printf("configuration OK: %zu model(s), policy %s\n", cfg.models.size(), cfg.policy.c_str());
    for (const auto& m : cfg.models) {
      std::printf("  %s: %zu endpoint(s)%s\n", m.name.c_str(), m.endpoints.size(),
                  m.aliases.empty() ? "" : " (+aliases)");
    }
    return 0;
  }
  std::unique_ptr<EventServer> events;
  if (config.io == "epoll") {
    events = std::make_unique<EventServer>(config, gateway.value()->router(), gateway.value()->metrics());
  }
  auto port = events ? events->bind() : gateway.value()->bind();
  if (!port) {
    std::fprintf(stderr, "vllm-router: %s\n", port.error().message.c_str());
    return 1;
  }
  const std::string host = options.config.host == "0.0.0.0" ? "127.0.0.1" : options.config.host;
  const std::string base = "http://" + host + ":" + std::to_string(port.value());
  std::printf("vllm-router listening on %s\n", base.c_str());
  if (options.demo) std::fputs(demo.instructions(base).c_str(), stdout);
  std::fflush(stdout);
  log(LogLevel::info, "vllm-router {} serving {} model(s) on {}:{} ({} io, {} threads, at most {} connections)",
      vllm_router::version(), config.router.models.size(), config.host, port.value(), config.io,
      config.threads == 0 ? std::thread::hardware_concurrency() : config.threads, config.max_connections);
  bool ok = true;
  if (events) {
    const auto grace = std::chrono::milliseconds(config.drain_timeout_ms);
    start_signal_thread([&events, grace] { events->stop(grace); });
    events->run();
  } else {
    start_signal_thread([&gateway] { gateway.value()->stop(); });
    ok = gateway.value()->run();
  }
  log(LogLevel::info, "stopped");
  return ok ? 0 : 1;
}
