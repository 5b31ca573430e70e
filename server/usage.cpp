// --help of the vllm-router executable, from the flag table and the defaults.
#include <fmt/format.h>

#include <string>

#include "app_config.h"
#include "option_flags.h"
#include "options.h"

namespace vllm_router::server {

std::string usage() {
  const AppConfig defaults;
  auto default_of = [&](Kind kind) -> std::string {
    switch (kind) {
      case Kind::host:
        return defaults.host;
      case Kind::port:
        return std::to_string(defaults.port);
      case Kind::policy:
        return defaults.router.policy;
      case Kind::max_body_bytes:
        return std::to_string(defaults.max_body_bytes);
      case Kind::connect_timeout_ms:
        return std::to_string(defaults.router.timeouts.connect_ms);
      case Kind::read_timeout_ms:
        return std::to_string(defaults.router.timeouts.read_ms);
      case Kind::threads:
        return std::to_string(defaults.threads);
      case Kind::max_connections:
        return std::to_string(defaults.max_connections);
      case Kind::log_level:
        return defaults.log_level;
      case Kind::log_format:
        return defaults.log_format;
      case Kind::access_log:
        return defaults.access_log;
      case Kind::io:
        return defaults.io;
      case Kind::otlp_endpoint:
        return "none (tracing off: traceparent passes through untouched)";
      case Kind::otlp_sampling:
        return "1.0";
      case Kind::otlp_service_name:
        return defaults.otlp.service_name;
      case Kind::replica_sync_listen:
        return "none (replica sync off)";
      case Kind::api_key:
        return "none (no authentication)";
      case Kind::model:
        return "none";
      case Kind::config:
        return "none";
      case Kind::default_model:
        return "none (requests without a model get 400)";
      case Kind::tls_cert:
      case Kind::tls_key:
        return "none (plain HTTP)";
      default:
        return "";
    }
  };
  std::string text =
      "vllm-router: an OpenAI-compatible router for fleets of vLLM servers.\n"
      "\n"
      "Usage:\n"
      "  vllm-router [--config FILE] [--model NAME=URL[,URL...]]... [options]\n"
      "  vllm-router --check-config [options]\n"
      "  vllm-router --demo\n"
      "\n"
      "Settings come from the config file, then VLLM_ROUTER_* environment variables, then flags;\n"
      "a later level overrides an earlier one (flags > env > file). A model named at a higher\n"
      "level replaces the endpoints of the same-named model; API key lists replace each other.\n"
      "Flags accept both --flag VALUE and --flag=VALUE. Empty variables count as unset.\n"
      "\n"
      "Options:\n";
  for (const FlagSpec& spec : kFlags) {
    std::string head =
        spec.arg.empty() ? std::string(spec.flag) : fmt::format("{} {}", spec.flag, spec.arg);
    if (spec.kind == Kind::help) head = "-h, --help";
    std::string help(spec.help);
    for (auto at = help.find('\n'); at != std::string::npos; at = help.find('\n', at + 1)) {
      help.insert(at + 1, "      ");
    }
    text += fmt::format("  {}\n      {}\n", head, help);
    std::string def = default_of(spec.kind);
    if (!spec.env.empty()) text += fmt::format("      env: {}\n", spec.env);
    if (!def.empty()) text += fmt::format("      default: {}\n", def);
  }
  text +=
      "\n"
      "Environment only (secrets stay out of command lines):\n"
      "  Redis password of --rate-limit-redis\n"
      "      env: VLLM_ROUTER_REDIS_PASSWORD\n"
      "  Replica sync's shared key: datagrams signed with HMAC-SHA256, unsigned or forged\n"
      "  ones dropped (default: none, unsigned: only on a trusted network)\n"
      "      env: VLLM_ROUTER_REPLICA_SYNC_SECRET\n"
      "\n"
      "Examples:\n"
      "  vllm-router --port 8080 \\\n"
      "      --model meta-llama/Llama-2-7b-chat-hf=http://10.0.0.7:8000,http://10.0.0.8:8000 \\\n"
      "      --alias llama-7b=meta-llama/Llama-2-7b-chat-hf --policy least_requests\n"
      "\n"
      "  VLLM_ROUTER_MODELS='llama=http://10.0.0.7:8000;qwen=http://10.0.0.9:8000' \\\n"
      "  VLLM_ROUTER_API_KEYS=key1,key2 vllm-router --config /etc/vllm-router/config.json\n"
      "\n"
      "See docs/configuration.md for the config file format.\n";
  return text;
}

}  // namespace vllm_router::server
