// Prometheus rendering of request counts, latency histograms and endpoint gauges.
#include "metrics.h"

#include <fmt/format.h>

namespace vllm_router::server {
namespace {

std::string_view kind_name(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::success: return "success";
    case OutcomeKind::connect_failure: return "connect_failure";
    case OutcomeKind::timeout: return "timeout";
    case OutcomeKind::upstream_closed: return "upstream_closed";
    case OutcomeKind::cancelled: return "cancelled";
    case OutcomeKind::error: return "error";
  }
  return "error";
}

// Prometheus label values escape backslash, quote and newline.
std::string label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// `metric{<label_name>="<key>",status="<status>"} n` for every non-zero count of every entry.
template <class Map>
void render_by_status(std::string& out, std::string_view metric, std::string_view label_name, const Map& entries) {
  for (const auto& [key, entry] : entries) {
    for (std::size_t status = 0; status < entry->by_status.size(); ++status) {
      const std::uint64_t n = entry->by_status[status].load(std::memory_order_relaxed);
      if (n == 0) continue;
      fmt::format_to(std::back_inserter(out), "{}{{{}=\"{}\",status=\"{}\"}} {}\n", metric, label_name, label(key), status, n);
    }
  }
}

}  // namespace

void Histogram::observe(double seconds) noexcept {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    fmt::format_to(std::back_inserter(out), "{}_bucket{{{},le=\"{}\"}} {}\n", name, labels,
                   kBounds[i], cumulative);
  }
  cumulative += buckets_[kBounds.size()].load(std::memory_order_relaxed);
  fmt::format_to(std::back_inserter(out), "{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels,
                 cumulative);
  fmt::format_to(std::back_inserter(out), "{}_sum{{{}}} {}\n", name, labels,
                 static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6);
  fmt::format_to(std::back_inserter(out), "{}_count{{{}}} {}\n", name, labels,
                 count_.load(std::memory_order_relaxed));
}

template <class Entry>
Entry& Metrics::find_or_add(std::map<std::string, std::unique_ptr<Entry>, std::less<>>& map, std::string_view key) {
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const auto it = map.find(key);
    if (it != map.end()) return *it->second;
  }
  std::unique_lock<std::shared_mutex> lock(mutex_);
  auto& entry = map[std::string(key)];
  if (!entry) entry = std::make_unique<Entry>();
  return *entry;
}

void Metrics::on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) {
  thread_local std::string key;  // reused: no allocation once warm
  key.assign(model).push_back('\0');
  key.append(endpoint.id);
  Upstream& up = find_or_add(upstream_, key);
  const auto status = static_cast<std::size_t>(outcome.status) < kStatuses ? static_cast<std::size_t>(outcome.status) : 0;
  up.by_outcome[static_cast<std::size_t>(outcome.kind) * kStatuses + status].fetch_add(1, std::memory_order_relaxed);
  if (outcome.kind == OutcomeKind::success) {
    up.ttfb.observe(std::chrono::duration<double>(outcome.ttfb).count());
    up.latency.observe(std::chrono::duration<double>(outcome.latency).count());
  }
}

void Metrics::on_exchange(const ExchangeSummary& summary) {
  // The resolved model only: a name a client made up never becomes a label value.
  on_response(summary.model, summary.status, std::chrono::duration<double>(summary.duration).count());
  const auto index = static_cast<std::size_t>(summary.status) < kStatuses ? static_cast<std::size_t>(summary.status) : 0;
  if (summary.usage.total() != 0) {
    Client& c = find_or_add(client_, summary.model);
    c.prompt_tokens.fetch_add(summary.usage.prompt, std::memory_order_relaxed);
    c.completion_tokens.fetch_add(summary.usage.completion, std::memory_order_relaxed);
  }
  if (summary.key_id.empty()) return;
  KeyUsage& k = find_or_add(keys_, summary.key_id);
  k.by_status[index].fetch_add(1, std::memory_order_relaxed);
  k.prompt_tokens.fetch_add(summary.usage.prompt, std::memory_order_relaxed);
  k.completion_tokens.fetch_add(summary.usage.completion, std::memory_order_relaxed);
}

void Metrics::on_response(std::string_view model, int status, double seconds) {
  Client& c = find_or_add(client_, model);
  const auto index = static_cast<std::size_t>(status) < kStatuses ? static_cast<std::size_t>(status) : 0;
  c.by_status[index].fetch_add(1, std::memory_order_relaxed);
  c.latency.observe(seconds);
}

std::string Metrics::render(const Snapshot& snapshot) const {
  std::string out;
  out.reserve(4096);
  std::shared_lock<std::shared_mutex> lock(mutex_);
  out += "# HELP vllm_router_requests_total Client requests answered, by model and status.\n";
  out += "# TYPE vllm_router_requests_total counter\n";
  render_by_status(out, "vllm_router_requests_total", "model", client_);
  out += "# HELP vllm_router_tokens_total Tokens of answered requests (from usage; estimated for streams without it), by model.\n";
  out += "# TYPE vllm_router_tokens_total counter\n";
  for (const auto& [model, c] : client_) {
    const std::uint64_t p = c->prompt_tokens.load(std::memory_order_relaxed);
    const std::uint64_t q = c->completion_tokens.load(std::memory_order_relaxed);
    if (p + q == 0) continue;
    fmt::format_to(std::back_inserter(out), "vllm_router_tokens_total{{model=\"{}\",kind=\"prompt\"}} {}\n", label(model), p);
    fmt::format_to(std::back_inserter(out), "vllm_router_tokens_total{{model=\"{}\",kind=\"completion\"}} {}\n", label(model), q);
  }
  out += "# HELP vllm_router_key_requests_total Client requests by API key id and status.\n";
  out += "# TYPE vllm_router_key_requests_total counter\n";
  render_by_status(out, "vllm_router_key_requests_total", "key_id", keys_);
  out += "# HELP vllm_router_key_tokens_total Tokens used by API key id.\n";
  out += "# TYPE vllm_router_key_tokens_total counter\n";
  for (const auto& [id, k] : keys_) {
    fmt::format_to(std::back_inserter(out), "vllm_router_key_tokens_total{{key_id=\"{}\",kind=\"prompt\"}} {}\n", label(id),
                   k->prompt_tokens.load(std::memory_order_relaxed));
    fmt::format_to(std::back_inserter(out), "vllm_router_key_tokens_total{{key_id=\"{}\",kind=\"completion\"}} {}\n",
                   label(id), k->completion_tokens.load(std::memory_order_relaxed));
  }
  out += "# HELP vllm_router_request_duration_seconds Client request latency, by model.\n";
  out += "# TYPE vllm_router_request_duration_seconds histogram\n";
  for (const auto& [model, c] : client_) {
    c->latency.render(out, "vllm_router_request_duration_seconds",
                      fmt::format("model=\"{}\"", label(model)));
  }
  out += "# HELP vllm_router_upstream_requests_total Upstream attempts, by model, endpoint, outcome and status.\n";
  out += "# TYPE vllm_router_upstream_requests_total counter\n";
  for (const auto& [key, up] : upstream_) {
    const auto sep = key.find('\0');
    const std::string model = label(std::string_view(key).substr(0, sep));
    const std::string endpoint = label(std::string_view(key).substr(sep + 1));
    for (std::size_t i = 0; i < up->by_outcome.size(); ++i) {
      const std::uint64_t n = up->by_outcome[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      fmt::format_to(std::back_inserter(out),
                     "vllm_router_upstream_requests_total{{model=\"{}\",endpoint=\"{}\",outcome=\"{}\",status=\"{}\"}} {}\n",
                     model, endpoint, kind_name(static_cast<OutcomeKind>(i / kStatuses)), i % kStatuses, n);
    }
  }
  out += "# HELP vllm_router_upstream_ttfb_seconds Time to the upstream response head, by model and endpoint.\n";
  out += "# TYPE vllm_router_upstream_ttfb_seconds histogram\n";
  for (const auto& [key, up] : upstream_) {
    const auto sep = key.find('\0');
    up->ttfb.render(out, "vllm_router_upstream_ttfb_seconds",
                    fmt::format("model=\"{}\",endpoint=\"{}\"", label(std::string_view(key).substr(0, sep)),
                                label(std::string_view(key).substr(sep + 1))));
  }
  out += "# HELP vllm_router_upstream_duration_seconds Upstream request latency, by model and endpoint.\n";
  out += "# TYPE vllm_router_upstream_duration_seconds histogram\n";
  for (const auto& [key, up] : upstream_) {
    const auto sep = key.find('\0');
    up->latency.render(out, "vllm_router_upstream_duration_seconds",
                       fmt::format("model=\"{}\",endpoint=\"{}\"", label(std::string_view(key).substr(0, sep)),
                                   label(std::string_view(key).substr(sep + 1))));
  }
  out += "# HELP vllm_router_endpoint_in_flight Requests open on an endpoint now.\n";
  out += "# TYPE vllm_router_endpoint_in_flight gauge\n";
  for (const Pool& pool : snapshot.pools) {
    for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
      fmt::format_to(std::back_inserter(out), "vllm_router_endpoint_in_flight{{model=\"{}\",endpoint=\"{}\"}} {}\n",
                     label(pool.model), label(pool.endpoints[i]->id), pool.states[i]->in_flight.load());
    }
  }
  // Health by both writers and vLLM's own load as last scraped, per endpoint.
  const std::int64_t now_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  const auto gauge = [&](std::string_view name, std::string_view help, auto value_of) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
    for (const Pool& pool : snapshot.pools) {
      for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
        const double v = value_of(*pool.states[i]);
        if (v < 0) continue;  // unknown (never scraped)
        fmt::format_to(std::back_inserter(out), "{}{{model=\"{}\",endpoint=\"{}\"}} {}\n", name,
                       label(pool.model), label(pool.endpoints[i]->id), v);
      }
    }
  };
  gauge("vllm_router_endpoint_healthy", "1 when active checks pass and the endpoint is not ejected.",
        [&](const EndpointState& st) { return st.healthy(now_ns) ? 1.0 : 0.0; });
  gauge("vllm_router_endpoint_ejections", "Times the outlier detector ejected the endpoint.",
        [](const EndpointState& st) { return static_cast<double>(st.ejections.load()); });
  gauge("vllm_router_endpoint_waiting", "vllm:num_requests_waiting as last scraped.",
        [](const EndpointState& st) { return static_cast<double>(st.waiting.load()); });
  gauge("vllm_router_endpoint_running", "vllm:num_requests_running as last scraped.",
        [](const EndpointState& st) { return static_cast<double>(st.running.load()); });
  gauge("vllm_router_endpoint_kv_cache_usage", "vllm:kv_cache_usage_perc as last scraped (0..1).",
        [](const EndpointState& st) { return static_cast<double>(st.kv_cache_usage.load()); });
  out += "# HELP vllm_router_config_version Version of the routing table in use.\n";
  out += "# TYPE vllm_router_config_version gauge\n";
  fmt::format_to(std::back_inserter(out), "vllm_router_config_version {}\n", snapshot.version);
  if (connections_) {
    out += "# HELP vllm_router_client_connections Open client connections, by event loop.\n";
    out += "# TYPE vllm_router_client_connections gauge\n";
    const std::vector<std::uint32_t> open = connections_();
    for (std::size_t i = 0; i < open.size(); ++i) {
      fmt::format_to(std::back_inserter(out), "vllm_router_client_connections{{loop=\"{}\"}} {}\n", i, open[i]);
    }
  }
  if (tls_failures_) {
    out += "# HELP vllm_router_tls_handshake_failures_total TLS handshakes on the listener that failed.\n";
    out += "# TYPE vllm_router_tls_handshake_failures_total counter\n";
    fmt::format_to(std::back_inserter(out), "vllm_router_tls_handshake_failures_total {}\n", tls_failures_());
  }
  return out;
}

}  // namespace vllm_router::server
