// vllm-sim HTTP side: options and the server entry point (routes live in server.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lora.h"

namespace vsim {

struct LoraModule {
  std::string name;
  std::string path;  // "root" in /v1/models; the name when not given as NAME=PATH
};

struct Options {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model = "facebook/opt-125m";
  std::vector<std::string> served_names;  // empty: {model}
  std::vector<LoraModule> loras;
  LoraOptions lora;  // --max-lora, --lora-load-ms, --lora-prefill-ms, --enable-runtime-lora, --lora-auto-load
  std::string id;                         // empty: "sim-<port>"
  double ttft_ms = 0;
  double itl_ms = 0;
  int64_t output_tokens = 16;
  int64_t max_model_len = 4096;
  std::string api_key;
  std::string fail = "none";
  int threads = 64;
  int64_t max_num_seqs = 256;       // in-flight requests above this count as "waiting"
  int64_t kv_cache_tokens = 65536;  // capacity behind vllm:kv_cache_usage_perc
  bool prefix_speedup = false;      // shorten TTFT by the prefix-cache hit fraction
  int64_t kv_cache_blocks = -1;     // prefix-cache capacity in 16-token blocks; -1: kv tokens / 16
  // The engine model (off by default: then every request runs at once, as before).
  bool batch_queue = false;         // beyond max_num_seqs running, requests wait (FIFO)
  double prefill_us_per_token = 0;  // prefill cost per uncached prompt token; prefills run one
                                    // at a time per engine (TTFT = queue + prefill wait + cost)
  // Prefill/decode disaggregation (pd.h).
  std::string kv_role = "none";     // none|prefill|decode|both
  std::string kv_secret = "vllm-sim";  // block ids are derived from it: sims that share it trust each other
  bool prefill_stalls_decode = false;  // a streamed token due during a prefill waits for its end
  int backlog = 4096;
  std::string io = "threads";  // "threads" (cpp-httplib, thread per connection) or "epoll"
  std::string tls_cert;        // HTTPS (threads mode): PEM certificate and key files
  std::string tls_key;
};

// Fail modes, also settable at runtime with POST /sim/fail.
enum class FailMode { None, Error500, Error503, Drop, Slow, Hang };
bool parse_fail_mode(const std::string &s, FailMode &out);

/// A Prometheus label value escaped (backslash, quote, newline).
std::string prom_escape(std::string_view s);
const char *fail_mode_name(FailMode m);

// Binds, prints "vllm-sim listening on http://HOST:PORT", serves until SIGTERM/SIGINT.
// Returns the process exit code.
int run_server(const Options &opt);

}  // namespace vsim
