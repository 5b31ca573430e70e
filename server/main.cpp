// vllm-router: the OpenAI-compatible gateway executable.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

#include "demo.h"
#include "event_server.h"
#include "gateway.h"
#include "log.h"
#include "options.h"
#include "vllm_router/endpoint_source.h"
#include "vllm_router/health_checker.h"
#include "vllm_router/load_scraper.h"
#include "vllm_router/version.h"

using namespace vllm_router;
using namespace vllm_router::server;

namespace {

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// Waits for signals (blocked in every thread) on a dedicated thread: SIGHUP calls `reload`,
// SIGINT/SIGTERM call `stop` once.
void start_signal_thread(std::function<void()> stop, std::function<void()> reload) {
  std::thread([stop = std::move(stop), reload = std::move(reload)] {
    const sigset_t set = handled_signals();
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        log(LogLevel::info, "received SIGHUP, reloading the configuration");
        reload();
        continue;
      }
      log(LogLevel::info, "received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      stop();
      return;
    }
  }).detach();
}

// Calls `reload` whenever `path` changes from `last` (mtime or size), checking every second.
// `last` is taken when the file was read, so an edit made while the server starts is not missed.
void start_config_watch(const std::string& path, struct stat last, std::function<void()> reload) {
  std::thread([path, last, reload = std::move(reload)]() mutable {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      struct stat now{};
      if (::stat(path.c_str(), &now) != 0) continue;
      if (now.st_mtim.tv_sec != last.st_mtim.tv_sec || now.st_mtim.tv_nsec != last.st_mtim.tv_nsec ||
          now.st_size != last.st_size) {
        last = now;
        log(LogLevel::info, "{} changed, reloading the configuration", path);
        reload();
      }
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
  const sigset_t signals = handled_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_options(args, current_environment());
  if (!parsed) {
    std::fprintf(stderr, "vllm-router: %s\nRun 'vllm-router --help' for usage.\n", parsed.error().message.c_str());
    return 2;
  }
  ServerOptions& options = parsed.value();
  struct stat config_stat{};  // the config file as read, for watch_config
  if (!options.config_path.empty()) ::stat(options.config_path.c_str(), &config_stat);
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
  std::vector<ModelConfig> demo_models;  // re-added on reload: they come from no file or flag
  if (options.demo) {
    const std::size_t before = options.config.router.models.size();
    auto r = demo.start(options.config.router);
    demo_models.assign(options.config.router.models.begin() + static_cast<std::ptrdiff_t>(before),
                       options.config.router.models.end());
    if (!r) {
      std::fprintf(stderr, "vllm-router: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  if (options.config.router.models.empty() && options.config.discovery.empty()) {
    std::fprintf(stderr,
                 "vllm-router: no models configured: pass --model NAME=URL, set VLLM_ROUTER_MODELS, "
                 "use --config FILE (models or discovery), or try --demo\n");
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
  // With discovery, configured models may list no endpoints yet: start from what is usable.
  const RouterConfig static_router = config.router;
  if (!config.discovery.empty()) config.router = compose_router_config(static_router, {});
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
    for (std::size_t i = 0; i < options.config.discovery.size(); ++i) {
      std::printf("  discovery[%zu]: %s source\n", i, options.config.discovery[i].type.c_str());
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
  Router& router = gateway.value()->router();
  std::unique_ptr<Discovery> discovery;
  if (!config.discovery.empty()) {
    discovery = std::make_unique<Discovery>(router, static_router);
    for (std::size_t i = 0; i < config.discovery.size(); ++i) {
      auto source = make_endpoint_source(config.discovery[i]);
      if (!source) {
        std::fprintf(stderr, "vllm-router: discovery[%zu]: %s\n", i, source.error().message.c_str());
        return 2;
      }
      log(LogLevel::info, "discovery[{}]: {}", i, source.value()->describe());
      discovery->add_source(std::move(source).value());
    }
  }
  // Routing configuration reloads in place (models, endpoints, policies, timeouts, health);
  // listener settings (host, port, io, threads, keys, limits) need a restart.
  std::mutex reload_mutex;
  const auto reload = [&args, &demo_models, &router, &reload_mutex, &discovery] {
    std::lock_guard<std::mutex> lock(reload_mutex);
    auto again = parse_options(args, current_environment());
    if (!again) {
      log(LogLevel::error, "reload rejected, keeping the current configuration: {}", again.error().message);
      return;
    }
    RouterConfig next = again.value().config.router;
    next.models.insert(next.models.end(), demo_models.begin(), demo_models.end());
    // With discovery the discovered endpoints are merged over the new static part (the
    // "discovery" list itself is read at start only).
    if (auto r = discovery ? discovery->set_static(next) : router.update(next); !r) {
      log(LogLevel::error, "reload rejected, keeping the current configuration: {}{}{}", r.error().message,
          r.error().param.empty() ? "" : " (field: ", r.error().param.empty() ? "" : r.error().param + ")");
      return;
    }
    log(LogLevel::info, "configuration reloaded: {} model(s), routing table version {}", next.models.size(),
        router.snapshot()->version);
  };
  if (config.watch_config && !options.config_path.empty()) {
    start_config_watch(options.config_path, config_stat, reload);
  }

  // Active health checks run beside the data path on their own thread.
  HttpTransportOptions probe_options;
  probe_options.max_idle_per_endpoint = 2;
  HealthChecker health(router, make_http_transport(probe_options), std::make_shared<SteadyClock>());
  health.start();
  // vLLM's own load (waiting, running, KV usage) for load- and prefix-aware policies and /metrics.
  const SteadyClock scrape_clock;
  LoadScraper scraper(router, make_http_transport(probe_options), scrape_clock, config.router.policy_options);
  scraper.start();
  if (discovery) {
    discovery->start([](const Error& e) { log(LogLevel::warn, "discovery: {}", e.message); });
  }

  bool ok = true;
  if (events) {
    const auto grace = std::chrono::milliseconds(config.drain_timeout_ms);
    start_signal_thread([&events, grace] { events->stop(grace); }, reload);
    events->run();
  } else {
    start_signal_thread([&gateway] { gateway.value()->stop(); }, reload);
    ok = gateway.value()->run();
  }
  if (discovery) discovery->stop();
  scraper.stop();
  health.stop();
  log(LogLevel::info, "stopped");
  return ok ? 0 : 1;
}
