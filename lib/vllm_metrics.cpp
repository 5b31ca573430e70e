// parse_vllm_load: vLLM's load gauges from its Prometheus /metrics text (the LoadScraper's parser,
// in a file of its own with no transport or thread dependencies, so tests/fuzz can build it alone).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "vllm_router/load_scraper.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Value of one sample line after the metric name: skips the label set (quotes and escapes
// honoured), then reads the value token. False on a malformed line.
bool sample_value(std::string_view rest, double& value) {
  std::size_t i = 0;
  if (i < rest.size() && rest[i] == '{') {
    bool quoted = false;
    for (++i; i < rest.size(); ++i) {
      const char c = rest[i];
      if (quoted) {
        if (c == '\\') ++i;
        else if (c == '"') quoted = false;
      } else if (c == '"') {
        quoted = true;
      } else if (c == '}') {
        break;
      }
    }
    if (i >= rest.size()) return false;
    ++i;
  }
  while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\t')) ++i;
  std::size_t end = i;
  while (end < rest.size() && rest[end] != ' ' && rest[end] != '\t' && rest[end] != '\r') ++end;
  if (end == i) return false;
  const std::string token(rest.substr(i, end - i));  // strtod needs a terminator
  char* stop = nullptr;
  value = std::strtod(token.c_str(), &stop);
  return stop == token.c_str() + token.size() && std::isfinite(value);
}

struct Sum {
  double total = 0.0;
  int count = 0;
  void add(double v) {
    total += v;
    ++count;
  }
};

// Clamped as a double before rounding: llround of a value beyond long long is unspecified (x86
// gives LLONG_MIN), which read a huge gauge as 0, an idle replica.
std::int32_t to_count(const Sum& s) {
  if (s.count == 0) return -1;
  constexpr double kMax = 1 << 30;
  const double total = s.total > 0.0 ? std::min(s.total, kMax) : 0.0;  // NaN and negatives: 0
  return static_cast<std::int32_t>(std::llround(total));
}

}  // namespace

ScrapedLoad parse_vllm_load(std::string_view text) {
  Sum waiting, running, kv_new, kv_old;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    const std::size_t name_end = line.find_first_of("{ \t");
    if (name_end == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, name_end);
    Sum* target = nullptr;
    if (name == "vllm:num_requests_waiting") target = &waiting;
    else if (name == "vllm:num_requests_running") target = &running;
    else if (name == "vllm:kv_cache_usage_perc") target = &kv_new;
    else if (name == "vllm:gpu_cache_usage_perc") target = &kv_old;
    if (target == nullptr) continue;
    double v = 0.0;
    if (sample_value(line.substr(name_end), v)) target->add(v);
  }
  ScrapedLoad out;
  out.waiting = to_count(waiting);
  out.running = to_count(running);
  const Sum& kv = kv_new.count > 0 ? kv_new : kv_old;
  if (kv.count > 0) {
    out.kv_cache_usage =
        static_cast<float>(std::clamp(kv.total / static_cast<double>(kv.count), 0.0, 1.0));
  }
  return out;
}

VLLM_ROUTER_END_NAMESPACE
