// libFuzzer targets for what the router reads from its control plane: vLLM's Prometheus /metrics
// text (-DFUZZ_METRICS, lib/vllm_metrics.cpp) and the Kubernetes API's list pages, objects and
// watch event lines (-DFUZZ_KUBE_WATCH, lib/discovery/kubernetes_parse.cpp). Beyond "no crash,
// no sanitizer report", each checks the parser's own promises on every input.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#if defined(FUZZ_METRICS)
#include "vllm_router/load_scraper.h"
#elif defined(FUZZ_KUBE_WATCH)
#include "discovery/kubernetes_parse.h"
#include "discovery/source_detail.h"
#endif

using namespace vllm_router;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

#if defined(FUZZ_METRICS)
constexpr std::int32_t kMaxCount = 1 << 30;

bool same(const ScrapedLoad& a, const ScrapedLoad& b) {
  return a.waiting == b.waiting && a.running == b.running && a.kv_cache_usage == b.kv_cache_usage;
}

void check_ranges(const ScrapedLoad& load) {
  require(load.waiting == -1 || (load.waiting >= 0 && load.waiting <= kMaxCount));
  require(load.running == -1 || (load.running >= 0 && load.running <= kMaxCount));
  require(load.kv_cache_usage == -1.0F || (load.kv_cache_usage >= 0.0F && load.kv_cache_usage <= 1.0F));
}

std::string crlf(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}
#endif

#if defined(FUZZ_KUBE_WATCH)
// What every endpoint built from an object must look like, whatever the object said.
void check_endpoints(const EndpointSet& set, const DiscoveryConfig& config) {
  for (const DiscoveredEndpoint& e : set) {
    const std::string prefix = config.scheme + "://";
    require(e.url.compare(0, prefix.size(), prefix) == 0);
    const std::size_t colon = e.url.rfind(':');
    require(colon != std::string::npos && colon > prefix.size());
    const std::string port = e.url.substr(colon + 1);
    require(!port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos);
    const long number = std::strtol(port.c_str(), nullptr, 10);
    require(number > 0 && number < 65536);
    if (config.port_name.empty()) require(number == config.port);
    require(e.api_key == config.api_key && e.weight == config.weight && e.loras.empty());
    for (std::size_t i = 0; i < e.models.size(); ++i) {
      require(!e.models[i].empty());
      for (std::size_t j = 0; j < i; ++j) require(e.models[i] != e.models[j]);
    }
  }
}

EndpointSet plain(const detail::KubernetesEndpoints& endpoints) {
  EndpointSet out;
  for (const auto& e : endpoints) {
    require(!e.target.empty());
    out.push_back(e.endpoint);
  }
  return out;
}

void check_cache(const detail::KubernetesObjects& cache, const DiscoveryConfig& config) {
  for (const auto& [key, endpoints] : cache.objects) {
    require(key.find('/') != std::string::npos);
    check_endpoints(plain(endpoints), config);
  }
  // The flattened set: one endpoint per URL, each one some object listed.
  const EndpointSet flat = detail::flatten_kubernetes(cache);
  check_endpoints(flat, config);
  for (std::size_t i = 1; i < flat.size(); ++i) require(flat[i - 1].url < flat[i].url);
}

bool same_cache(const detail::KubernetesObjects& a, const detail::KubernetesObjects& b) {
  if (a.resource_version != b.resource_version || a.objects.size() != b.objects.size()) return false;
  for (auto i = a.objects.begin(), j = b.objects.begin(); i != a.objects.end(); ++i, ++j) {
    if (i->first != j->first || !detail::same_set(plain(i->second), plain(j->second))) return false;
  }
  return true;
}

// Replays a watch stream the way KubernetesSource::watch reads it: one event per line, blank
// lines skipped, stopping at an ERROR event.
detail::KubernetesObjects replay(std::string_view stream, const DiscoveryConfig& config) {
  detail::KubernetesObjects cache;
  while (!stream.empty()) {
    const std::size_t nl = stream.find('\n');
    const std::string_view line = stream.substr(0, nl);
    stream = nl == std::string_view::npos ? std::string_view() : stream.substr(nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    const detail::KubernetesObjects before = cache;
    bool gone = false;
    const bool changed = detail::apply_kubernetes_watch_event(line, config, cache, gone);
    check_cache(cache, config);
    if (gone) {
      require(!changed && same_cache(before, cache));  // an ERROR event changes nothing
      break;
    }
    if (!changed) require(before.objects.size() == cache.objects.size());
    // Every event is idempotent: the same line again leaves the cache as it is.
    detail::KubernetesObjects again = cache;
    bool gone_again = false;
    require(detail::apply_kubernetes_watch_event(line, config, again, gone_again) == changed && !gone_again);
    require(same_cache(again, cache));
  }
  return cache;
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
#if defined(FUZZ_METRICS)
  const ScrapedLoad load = parse_vllm_load(input);
  check_ranges(load);
  // Pure: the same text reads the same; CRLF line ends, comments and other metrics change nothing.
  require(same(parse_vllm_load(input), load));
  require(same(parse_vllm_load(crlf(input)), load));
  const std::string noise =
      "\n# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_swapped 7\nvllm:num_requests_running_total 9\n";
  require(same(parse_vllm_load(input + noise), load));
  // A lone sample reads as its value, rounded and clamped to 0..2^30 (the first token of the
  // input as the value).
  const std::string token = input.substr(0, input.find_first_of(" \t\r\n"));
  char* stop = nullptr;
  const double v = std::strtod(token.c_str(), &stop);
  if (!token.empty() && stop == token.c_str() + token.size() && std::isfinite(v)) {
    const ScrapedLoad lone = parse_vllm_load("vllm:num_requests_waiting{model_name=\"m\"} " + token + "\n");
    const std::int32_t expected =
        v <= 0.0 ? 0 : v >= kMaxCount ? kMaxCount : static_cast<std::int32_t>(std::llround(v));
    require(lone.waiting == expected && lone.running == -1 && lone.kv_cache_usage == -1.0F);
  }
#elif defined(FUZZ_KUBE_WATCH)
  // The first byte picks the source's configuration, the rest is a watch stream (one event per
  // line), and also a whole list page and a single object.
  DiscoveryConfig config;
  config.type = "kubernetes";
  config.port = 8000;
  config.api_key = "key";
  config.weight = 3;
  const unsigned knobs = size > 0 ? data[0] : 0;
  if ((knobs & 1) != 0) config.resource = "pods";
  if ((knobs & 2) != 0) config.port_name = "http";
  if ((knobs & 4) != 0) config.model_annotation.clear();
  if ((knobs & 8) != 0) config.model_label.clear();
  if ((knobs & 16) != 0) config.scheme = "https";
  if ((knobs & 32) != 0) config.address_type = (knobs & 64) != 0 ? "IPv6" : "IPv4";
  if ((knobs & 128) != 0) config.model_label_names["m"] = {"org/m", "m2"};
  const std::string_view rest = size > 0 ? std::string_view(input).substr(1) : std::string_view();

  const detail::KubernetesObjects watched = replay(rest, config);
  require(same_cache(replay(rest, config), watched));  // deterministic

  detail::KubernetesObjects listed;
  std::string cont = "unset";
  if (detail::read_kubernetes_list_page(rest, config, listed, cont)) {
    check_cache(listed, config);
  } else {
    require(listed.objects.empty() && listed.resource_version.empty() && cont == "unset");
  }
  auto object = kubernetes_object_endpoints(rest, config);
  if (object) check_endpoints(*object, config);
#else
#error "define FUZZ_METRICS or FUZZ_KUBE_WATCH"
#endif
  return 0;
}
