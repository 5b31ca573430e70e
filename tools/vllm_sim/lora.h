// vllm-sim: LoRA adapters as vLLM serves them: static (--lora), loaded and unloaded at runtime
// (POST /v1/load_lora_adapter, /v1/unload_lora_adapter with --enable-runtime-lora), a bound of
// --max-lora resident adapters, the vllm:lora_requests_info gauge, and the simulated costs
// (a load takes --lora-load-ms; an adapter request's prefill costs --lora-prefill-ms more).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace vsim {

struct LoraOptions {
  int64_t max_lora = 0;          // resident adapters; 0: the number of --lora entries (at least 1)
  double load_ms = 0;            // time one load takes (the load request answers after it)
  double prefill_ms = 0;         // extra TTFT of a request that names an adapter
  bool runtime = false;          // --enable-runtime-lora (vLLM: VLLM_ALLOW_RUNTIME_LORA_UPDATING)
  bool auto_load = false;        // a request naming an unknown adapter loads it first (path =
                                 // name; vLLM's LoRA resolver plugins), evicting the LRU adapter
};

// The adapters one engine has loaded, in least-recently-used order. Thread-safe.
class LoraRegistry {
 public:
  struct Adapter {
    std::string name;
    std::string path;
  };
  struct Answer {
    int status = 200;
    std::string body;          // JSON error, or vLLM's plain-text success line
    bool json = true;
  };

  void init(const LoraOptions &opt, const std::vector<Adapter> &statics);
  const LoraOptions &options() const { return opt_; }
  int64_t max_lora() const { return max_lora_; }

  bool has(std::string_view name) const;
  // Marks `name` used now (LRU order). False when it is not loaded.
  bool touch(std::string_view name);
  // Auto-load (LoraOptions::auto_load): loads `name` if it is not loaded, evicting the LRU
  // adapter at max_lora. True when a load happened (the caller pays load_ms).
  bool auto_load(std::string_view name);

  // The runtime API (bodies as vLLM's LoadLoRAAdapterRequest / UnloadLoRAAdapterRequest).
  // Load sleeps load_ms before it answers (the engine reads the weights).
  Answer load(std::string_view body);
  Answer unload(std::string_view body);

  std::vector<Adapter> list() const;  // in load order (as vLLM lists lora_requests)

  // The requests running/waiting per adapter (for the gauge).
  void begin(const std::string &name, bool waiting);
  void started(const std::string &name);  // waiting -> running
  void end(const std::string &name, bool waiting);
  // The vllm:lora_requests_info lines (HELP, TYPE, one sample) or "" when LoRA is off.
  std::string gauge_text() const;
  // {"loaded":[...],"max_lora":N,"loads":N,"unloads":N,"auto_loads":N,"rejected_loads":N}
  std::string stats_json() const;
  void reset_counters();

 private:
  Answer do_load(const std::string &name, const std::string &path);
  LoraOptions opt_;
  int64_t max_lora_ = 1;
  bool enabled_ = false;  // any --lora, or runtime loading, or auto-load
  mutable std::mutex mu_;
  std::vector<Adapter> loaded_;          // load order
  std::list<std::string> lru_;           // front: least recently used
  std::map<std::string, int64_t> running_, waiting_;
  int64_t loads_ = 0, unloads_ = 0, auto_loads_ = 0, rejected_ = 0;
};

}  // namespace vsim
