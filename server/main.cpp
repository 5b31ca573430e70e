// vllm-router: the OpenAI-compatible gateway executable.
#include <signal.h>

#include <cstdio>
#include <thread>

#include "demo.h"
#include "gateway.h"
#include "log.h"
#include "options.h"
#include "vllm_router/version.h"

using namespace vllm_router;
using namespace vllm_router::server;

namespace {

// Blocks SIGINT/SIGTERM in every thread and waits for them on a dedicated one.
void start_signal_thread(Gateway& gateway) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  std::thread([set, &gateway]() mutable {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) {
      log(LogLevel::info, "received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      gateway.stop();
    }
  }).detach();
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
  auto gateway = Gateway::create(options.config);
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
  auto port = gateway.value()->bind();
  if (!port) {
    std::fprintf(stderr, "vllm-router: %s\n", port.error().message.c_str());
    return 1;
  }
  const std::string host = options.config.host == "0.0.0.0" ? "127.0.0.1" : options.config.host;
  const std::string base = "http://" + host + ":" + std::to_string(port.value());
  std::printf("vllm-router listening on %s\n", base.c_str());
  if (options.demo) std::fputs(demo.instructions(base).c_str(), stdout);
  std::fflush(stdout);
  log(LogLevel::info, "vllm-router {} serving {} model(s) on {}:{} with {} threads", vllm_router::version(),
      options.config.router.models.size(), options.config.host, port.value(), options.config.threads);
  start_signal_thread(*gateway.value());
  const bool ok = gateway.value()->run();
  log(LogLevel::info, "stopped");
  return ok ? 0 : 1;
}
