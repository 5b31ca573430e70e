// vllm-router: the OpenAI-compatible gateway executable: parses options and runs the App.
#include <signal.h>

#include <cstdio>

#include "app.h"
#include "vllm_router/version.h"

using namespace vllm_router;
using namespace vllm_router::server;

int main(int argc, char** argv) {
  const sigset_t signals = blocked_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_options(args, current_environment());
  if (!parsed) {
    std::fprintf(stderr, "vllm-router: %s\nRun 'vllm-router --help' for usage.\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (parsed->hash_key) {
    // The key arrives on standard input so it stays out of shell history and `ps`.
    std::string key;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) key.append(buf, n);
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (key.empty()) {
      std::fputs("vllm-router: --hash-key: no key on standard input\n", stderr);
      return 2;
    }
    std::printf("%s\n", vllm_router::sha256_hex(key).c_str());
    return 0;
  }
  if (parsed->version) {
    std::printf("vllm-router %s\n", vllm_router::version());
    return 0;
  }
  const bool check_config = parsed->check_config;
  int exit_code = 0;
  auto app = App::create(std::move(parsed).value(), std::move(args), exit_code);
  if (!app) {
    std::fprintf(stderr, "vllm-router: %s\n", app.error().message.c_str());
    return exit_code;
  }
  if (check_config) {
    std::fputs(app.value()->summary().c_str(), stdout);
    return 0;
  }
  return app.value()->run();
}
