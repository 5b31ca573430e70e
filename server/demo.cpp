// Demo mode: two simulated engines, two models, and the curl lines that try them.
#include "demo.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

namespace vllm_router::server {
namespace {

struct DemoModel {
  const char* name;
  const char* alias;
};
constexpr DemoModel kModels[] = {
    {"meta-llama/Llama-2-7B-chat-hf", "llama-2-7b"},
    {"TheBloke/Llama-2-13B-chat-GPTQ", "llama-2-13b"},
};

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string find_sim() {
  char self[PATH_MAX] = {};
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<std::size_t>(n));
    dir.erase(dir.rfind('/'));
    for (const char* rel : {"/vllm-sim", "/../tools/vllm-sim", "/../bin/vllm-sim"}) {
      if (executable(dir + rel)) return dir + rel;
    }
  }
  if (const char* path = std::getenv("PATH")) {
    std::string p(path);
    std::size_t start = 0;
    while (start <= p.size()) {
      const auto end = p.find(':', start);
      const std::string candidate = p.substr(start, end - start) + "/vllm-sim";
      if (executable(candidate)) return candidate;
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  return {};
}

}  // namespace

Demo::~Demo() {
  for (pid_t pid : children_) ::kill(pid, SIGTERM);
  for (pid_t pid : children_) ::waitpid(pid, nullptr, 0);
}

Result<void> Demo::start(RouterConfig& config) {
  const std::string sim = find_sim();
  if (sim.empty()) {
    return Result<void>(Errc::config, "--demo needs the vllm-sim executable next to vllm-router or on PATH");
  }
  for (const DemoModel& m : kModels) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return Result<void>(Errc::internal, "pipe failed");
    const pid_t pid = ::fork();
    if (pid < 0) return Result<void>(Errc::internal, "fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::dup2(pipefd[1], STDOUT_FILENO);
      ::execl(sim.c_str(), sim.c_str(), "--host", "127.0.0.1", "--port", "0", "--model", m.name,
              "--ttft-ms", "80", "--itl-ms", "25", "--output-tokens", "24", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    ::close(pipefd[1]);
    children_.push_back(pid);
    std::string line;
    char c = 0;
    while (line.size() < 512 && ::read(pipefd[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(pipefd[0]);
    const auto at = line.find("http://");
    if (at == std::string::npos) {
      return Result<void>(Errc::internal, "vllm-sim did not start (" + sim + "): '" + line + "'");
    }
    ModelConfig model;
    model.name = m.name;
    model.aliases.emplace_back(m.alias);
    model.endpoints.push_back(EndpointConfig{line.substr(at), 1, {}});
    config.models.push_back(std::move(model));
  }
  return {};
}

std::string Demo::instructions(const std::string& base) const {
  return fmt::format(
      "\nvllm-router demo: two simulated vLLM engines behind {base}\n"
      "Try:\n"
      "  curl {base}/v1/models\n"
      "  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "    -d '{{\"model\":\"{m1}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n"
      "  curl -N {base}/v1/completions -H 'Content-Type: application/json' \\\n"
      "    -d '{{\"model\":\"{m2}\",\"prompt\":\"San Francisco is a\",\"max_tokens\":12,\"stream\":true}}'\n"
      "  curl {base}/metrics\n"
      "  open {base}/status in a browser (the status page)\n"
      "Stop with Ctrl-C.\n",
      fmt::arg("base", base), fmt::arg("m1", kModels[0].name), fmt::arg("m2", kModels[1].name));
}

}  // namespace vllm_router::server
