// vllm-sim: LoRA adapters (see lora.h). Answers and errors follow vLLM's serving_models.py:
// load {lora_name, lora_path} -> 200 text "Success: LoRA adapter 'X' added successfully.";
// missing field -> 400 InvalidUserInput; already loaded -> 400 InvalidUserInput; a path that
// does not exist -> 404 NotFoundError ("No adapter found for ..."); unload of an unknown name
// -> 404 NotFoundError "The lora adapter 'X' cannot be found.".
#include "lora.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "engine.h"
#include "server.h"

namespace vsim {

namespace {

LoraRegistry::Answer error(int status, std::string_view type, std::string_view msg) {
  return {status, error_json(status, type, msg), true};
}

// Reads the string fields `a` (and `b`) of a JSON object body; false when it is not an object.
bool read_fields(std::string_view body, const char *a, std::string &va, const char *b, std::string &vb) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) return false;
  std::string_view s;
  if (doc[a].get_string().get(s) == simdjson::SUCCESS) va.assign(s);
  if (b != nullptr && doc[b].get_string().get(s) == simdjson::SUCCESS) vb.assign(s);
  return true;
}

}  // namespace

void LoraRegistry::init(const LoraOptions &opt, const std::vector<Adapter> &statics) {
  std::lock_guard<std::mutex> lk(mu_);
  opt_ = opt;
  max_lora_ = opt.max_lora > 0 ? opt.max_lora : std::max<int64_t>(1, static_cast<int64_t>(statics.size()));
  enabled_ = !statics.empty() || opt.runtime || opt.auto_load;
  for (auto &a : statics) {
    loaded_.push_back(a);
    lru_.push_back(a.name);
  }
}

bool LoraRegistry::has(std::string_view name) const {
  std::lock_guard<std::mutex> lk(mu_);
  return std::any_of(loaded_.begin(), loaded_.end(), [&](const Adapter &a) { return a.name == name; });
}

bool LoraRegistry::touch(std::string_view name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = std::find(lru_.begin(), lru_.end(), name);
  if (it == lru_.end()) return false;
  lru_.splice(lru_.end(), lru_, it);
  return true;
}

bool LoraRegistry::auto_load(std::string_view name) {
  if (!opt_.auto_load || name.empty()) return false;
  std::lock_guard<std::mutex> lk(mu_);
  if (std::find(lru_.begin(), lru_.end(), name) != lru_.end()) return false;
  while (static_cast<int64_t>(loaded_.size()) >= max_lora_ && !lru_.empty()) {
    const std::string victim = lru_.front();
    lru_.pop_front();
    std::erase_if(loaded_, [&](const Adapter &a) { return a.name == victim; });
    ++unloads_;
  }
  loaded_.push_back({std::string(name), std::string(name)});
  lru_.emplace_back(name);
  ++auto_loads_;
  return true;
}

LoraRegistry::Answer LoraRegistry::do_load(const std::string &name, const std::string &path) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (std::find(lru_.begin(), lru_.end(), name) != lru_.end()) {
      ++rejected_;
      return error(400, "InvalidUserInput", fmt::format("The lora adapter '{}' has already been loaded.", name));
    }
  }
  // A path starting with "missing" stands for one that does not exist (the test seam for a
  // failed load); vLLM answers 404 when no adapter is found at the path.
  if (path.rfind("missing", 0) == 0 || path.rfind("/missing", 0) == 0) {
    std::lock_guard<std::mutex> lk(mu_);
    ++rejected_;
    return error(404, "NotFoundError",
                 fmt::format("Loading lora {} failed: No adapter found for {}", name, path));
  }
  if (opt_.load_ms > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(opt_.load_ms * 1000.0)));
  std::lock_guard<std::mutex> lk(mu_);
  if (std::find(lru_.begin(), lru_.end(), name) != lru_.end()) {  // a concurrent load won
    ++rejected_;
    return error(400, "InvalidUserInput", fmt::format("The lora adapter '{}' has already been loaded.", name));
  }
  // vLLM itself accepts more adapters than max_loras and evicts from its cache; the sim refuses
  // instead, so a router that overfills a replica is seen (README: "LoRA").
  if (static_cast<int64_t>(loaded_.size()) >= max_lora_) {
    ++rejected_;
    return error(400, "BadRequestError",
                 fmt::format("Cannot load lora adapter '{}': {} adapters are loaded (max_loras {}); "
                             "unload one first.",
                             name, loaded_.size(), max_lora_));
  }
  loaded_.push_back({name, path});
  lru_.push_back(name);
  ++loads_;
  return {200, fmt::format("Success: LoRA adapter '{}' added successfully.", name), false};
}

LoraRegistry::Answer LoraRegistry::load(std::string_view body) {
  std::string name, path;
  if (!read_fields(body, "lora_name", name, "lora_path", path))
    return error(400, "BadRequestError", "The request body must be a JSON object.");
  if (name.empty() || path.empty())
    return error(400, "InvalidUserInput", "Both 'lora_name' and 'lora_path' must be provided.");
  return do_load(name, path);
}

LoraRegistry::Answer LoraRegistry::unload(std::string_view body) {
  std::string name, unused;
  if (!read_fields(body, "lora_name", name, nullptr, unused))
    return error(400, "BadRequestError", "The request body must be a JSON object.");
  if (name.empty())
    return error(400, "InvalidUserInput", "either 'lora_name' and 'lora_int_id' needs to be provided.");
  std::lock_guard<std::mutex> lk(mu_);
  auto it = std::find(lru_.begin(), lru_.end(), name);
  if (it == lru_.end())
    return error(404, "NotFoundError", fmt::format("The lora adapter '{}' cannot be found.", name));
  lru_.erase(it);
  std::erase_if(loaded_, [&](const Adapter &a) { return a.name == name; });
  ++unloads_;
  return {200, fmt::format("Success: LoRA adapter '{}' removed successfully.", name), false};
}

std::vector<LoraRegistry::Adapter> LoraRegistry::list() const {
  std::lock_guard<std::mutex> lk(mu_);
  return loaded_;
}

void LoraRegistry::begin(const std::string &name, bool waiting) {
  std::lock_guard<std::mutex> lk(mu_);
  (waiting ? waiting_ : running_)[name]++;
}

void LoraRegistry::started(const std::string &name) {
  std::lock_guard<std::mutex> lk(mu_);
  if (auto it = waiting_.find(name); it != waiting_.end() && --it->second <= 0) waiting_.erase(it);
  running_[name]++;
}

void LoraRegistry::end(const std::string &name, bool waiting) {
  std::lock_guard<std::mutex> lk(mu_);
  auto &m = waiting ? waiting_ : running_;
  if (auto it = m.find(name); it != m.end() && --it->second <= 0) m.erase(it);
}

std::string LoraRegistry::gauge_text() const {
  if (!enabled_) return {};
  std::string running, waiting;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto &[name, n] : running_) {
      if (!running.empty()) running += ',';
      running += name;
    }
    for (auto &[name, n] : waiting_) {
      if (!waiting.empty()) waiting += ',';
      waiting += name;
    }
  }
  // vLLM's value is the time of the sample; its labels list the adapters of running and waiting
  // requests (comma-separated) and max_lora.
  return fmt::format(
      "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
      "# TYPE vllm:lora_requests_info gauge\n"
      "vllm:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\"}} {:.1f}\n",
      max_lora_, prom_escape(running), prom_escape(waiting), static_cast<double>(std::time(nullptr)));
}

std::string LoraRegistry::stats_json() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string out = "{\"loaded\":[";
  bool first = true;
  for (auto &name : lru_) {  // least recently used first
    if (!first) out += ',';
    first = false;
    out += '"';
    append_json_escaped(out, name);
    out += '"';
  }
  fmt::format_to(std::back_inserter(out),
                 "],\"max_lora\":{},\"loads\":{},\"unloads\":{},\"auto_loads\":{},\"rejected_loads\":{}}}",
                 max_lora_, loads_, unloads_, auto_loads_, rejected_);
  return out;
}

void LoraRegistry::reset_counters() {
  std::lock_guard<std::mutex> lk(mu_);
  loads_ = unloads_ = auto_loads_ = rejected_ = 0;
}

}  // namespace vsim
