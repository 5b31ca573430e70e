// vllm-sim entry point: command-line parsing, then run_server().
#include <cstdio>
#include <cstdlib>
#include <string>

#include "server.h"

namespace {

const char *kUsage =
    "usage: vllm-sim [options]\n"
    "Simulated vLLM OpenAI-compatible server for tests and benchmarks.\n"
    "\n"
    "  --host ADDR               bind address (default 127.0.0.1)\n"
    "  --port N                  port; 0 picks a free one (default 8000)\n"
    "  --model NAME              model (default facebook/opt-125m); the 'root' in /v1/models\n"
    "  --served-model-name NAME  served name, repeatable; the first is the primary id\n"
    "  --lora NAME[=PATH]        LoRA adapter entry (parent = primary served name), repeatable\n"
    "  --max-lora N              adapters loaded at once (vLLM --max-loras; default: the\n"
    "                            number of --lora entries); a load beyond it is refused\n"
    "  --enable-runtime-lora     serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter\n"
    "                            (vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)\n"
    "  --lora-load-ms N          time one adapter load takes (default 0)\n"
    "  --lora-prefill-ms N       extra TTFT of a request naming an adapter (default 0)\n"
    "  --lora-auto-load          a request naming an unknown adapter loads it first (path = its\n"
    "                            name; its TTFT pays --lora-load-ms), evicting the least\n"
    "                            recently used adapter at --max-lora (vLLM's LoRA resolver)\n"
    "  --id ID                   value of the x-sim-id response header (default sim-<port>)\n"
    "  --ttft-ms N               time to first token in ms (default 0)\n"
    "  --itl-ms N                inter-token latency in ms (default 0)\n"
    "  --output-tokens N         tokens generated when max_tokens is absent (default 16)\n"
    "  --max-model-len N         context length (default 4096)\n"
    "  --api-key KEY             require 'Authorization: Bearer KEY' on /v1/*\n"
    "  --fail MODE               none|error500|error503|drop|slow|hang (default none)\n"
    "  --io threads|epoll        HTTP front end: threads = cpp-httplib, one thread per\n"
    "                            connection (default); epoll = one event-loop thread, streams\n"
    "                            driven by timers, handlers on a small worker pool\n"
    "  --threads N               threads mode: max worker threads = max concurrent connections;\n"
    "                            epoll mode: worker pool size max(4, min(N, 64)) (default 64)\n"
    "  --max-num-seqs N          in-flight requests above N report as waiting (default 256)\n"
    "  --kv-cache-tokens N       KV capacity behind vllm:kv_cache_usage_perc (default 65536)\n"
    "  --prefix-speedup          shorten TTFT by the simulated prefix-cache hit fraction\n"
    "  --kv-cache-blocks N       prefix cache capacity in 16-token blocks, LRU\n"
    "                            (default: --kv-cache-tokens / 16)\n"
    "  --batch-queue             engine model: at most --max-num-seqs requests run, the rest\n"
    "                            wait in a FIFO queue (reported as vllm:num_requests_waiting)\n"
    "  --prefill-us-per-token F  engine model: prefill costs F us per uncached prompt token;\n"
    "                            prefills run one at a time (default 0: free)\n"
    "  --kv-role ROLE            prefill/decode disaggregation: none|prefill|decode|both\n"
    "                            (default none: kv_transfer_params are ignored)\n"
    "  --kv-secret S             derives the KV block ids a prefill issues; a decode accepts\n"
    "                            only ids made with the same secret (default vllm-sim)\n"
    "  --prefill-stalls-decode   engine model: a streamed token due while the engine runs a\n"
    "                            prefill waits for its end (colocated interference)\n"
    "  --backlog N               listen backlog (default 4096)\n"
    "  --tls-cert FILE           serve HTTPS with this PEM certificate (threads mode only;\n"
    "                            with --tls-key; cpp-httplib's SSLServer)\n"
    "  --tls-key FILE            PEM private key of --tls-cert\n"
    "  --help                    this text\n"
    "\n"
    "Per request, headers x-sim-ttft-ms / x-sim-itl-ms override the pacing.\n"
    "Prints 'vllm-sim listening on http://HOST:PORT' (https:// with TLS) once listening.\n";

[[noreturn]] void die(const std::string &msg) {
  std::fprintf(stderr, "vllm-sim: %s\n%s", msg.c_str(), kUsage);
  std::exit(2);
}

long long to_int(const std::string &flag, const std::string &v) {
  char *end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < 0) die("invalid value for " + flag + ": " + v);
  return x;
}

double to_double(const std::string &flag, const std::string &v) {
  char *end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || x < 0) die("invalid value for " + flag + ": " + v);
  return x;
}

}  // namespace

int main(int argc, char **argv) {
  vsim::Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string val;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      val = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--prefix-speedup") {
      o.prefix_speedup = true;
      continue;
    }
    if (arg == "--enable-runtime-lora") {
      o.lora.runtime = true;
      continue;
    }
    if (arg == "--lora-auto-load") {
      o.lora.auto_load = true;
      continue;
    }
    if (arg == "--batch-queue") {
      o.batch_queue = true;
      continue;
    }
    if (arg == "--prefill-stalls-decode") {
      o.prefill_stalls_decode = true;
      continue;
    }
    auto value = [&]() -> std::string {
      if (has_inline) return val;
      if (i + 1 >= argc) die("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--host") o.host = value();
    else if (arg == "--port") o.port = static_cast<int>(to_int(arg, value()));
    else if (arg == "--model") o.model = value();
    else if (arg == "--served-model-name") o.served_names.push_back(value());
    else if (arg == "--lora") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) o.loras.push_back({v, v});
      else o.loras.push_back({v.substr(0, eq), v.substr(eq + 1)});
    } else if (arg == "--max-lora") o.lora.max_lora = to_int(arg, value());
    else if (arg == "--lora-load-ms") o.lora.load_ms = to_double(arg, value());
    else if (arg == "--lora-prefill-ms") o.lora.prefill_ms = to_double(arg, value());
    else if (arg == "--id") o.id = value();
    else if (arg == "--ttft-ms") o.ttft_ms = to_double(arg, value());
    else if (arg == "--itl-ms") o.itl_ms = to_double(arg, value());
    else if (arg == "--output-tokens") o.output_tokens = to_int(arg, value());
    else if (arg == "--max-model-len") o.max_model_len = to_int(arg, value());
    else if (arg == "--api-key") o.api_key = value();
    else if (arg == "--fail") o.fail = value();
    else if (arg == "--threads") o.threads = static_cast<int>(to_int(arg, value()));
    else if (arg == "--max-num-seqs") o.max_num_seqs = to_int(arg, value());
    else if (arg == "--kv-cache-tokens") o.kv_cache_tokens = to_int(arg, value());
    else if (arg == "--kv-cache-blocks") o.kv_cache_blocks = to_int(arg, value());
    else if (arg == "--prefill-us-per-token") o.prefill_us_per_token = to_double(arg, value());
    else if (arg == "--io") {
      o.io = value();
      if (o.io != "threads" && o.io != "epoll") die("--io must be threads or epoll");
    } else if (arg == "--backlog") o.backlog = static_cast<int>(to_int(arg, value()));
    else if (arg == "--kv-role") o.kv_role = value();
    else if (arg == "--kv-secret") o.kv_secret = value();
    else if (arg == "--tls-cert") o.tls_cert = value();
    else if (arg == "--tls-key") o.tls_key = value();
    else die("unknown option " + arg);
  }
  if (o.port > 65535) die("--port out of range");
  if (o.threads < 1) die("--threads must be at least 1");
  if (o.tls_cert.empty() != o.tls_key.empty()) die("--tls-cert and --tls-key go together");
  if (!o.tls_cert.empty() && o.io == "epoll") die("--tls-cert: HTTPS is served in threads mode only");
  return vsim::run_server(o);
}
