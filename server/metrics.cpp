// Prometheus rendering of request counts, latency histograms and endpoint gauges.
#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "process_metrics.h"
#include "vllm_router/version.h"

namespace vllm_router::server {
namespace {

// The duration ladder's finite bounds, in seconds.
constexpr double kDurationLadder[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,
                                      5,     10,    30,   60,    120,  300, 600,  1200, 1800, 3600};
constexpr double kGapLadder[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
                                 0.15,  0.2,    0.3,   0.5,  0.75, 1,    2.5,  5,    10,    30};

std::atomic<std::uint64_t> next_metrics_id{1};

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

std::vector<double> duration_bounds(double longest) {
  std::vector<double> out;
  for (double b : kDurationLadder) {
    out.push_back(b);
    if (b >= 60 && b >= longest) return out;
  }
  if (longest > out.back()) out.push_back(std::ceil(longest));
  return out;
}

std::vector<double> gap_bounds(double longest) {
  std::vector<double> out(std::begin(kGapLadder), std::end(kGapLadder));
  for (double b : duration_bounds(longest)) {
    if (b > out.back()) out.push_back(b);
  }
  return out;
}

double longest_timeout_seconds(const RouterConfig& config, std::uint32_t client_timeout_ms) {
  const TimeoutConfig& t = config.timeouts;
  const std::uint32_t ms = std::max({t.connect_ms, t.write_ms, t.first_byte(), t.idle(), t.total_ms,
                                     config.queue_timeout_ms, client_timeout_ms});
  return static_cast<double>(ms) / 1000.0;
}

void Histogram::observe(double seconds) noexcept {
  // The first bound >= seconds (a bucket counts values up to and including its bound). A scan
  // from the small end: most values sit in the first buckets (an inter-token gap, a queue wait).
  std::size_t i = 0;
  const std::size_t n = bounds_.size();
  while (i < n && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

std::uint64_t Histogram::count() const noexcept {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) n += buckets_[i].load(std::memory_order_relaxed);
  return n;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::uint64_t cumulative = 0;
  const std::string_view comma = labels.empty() ? "" : ",";
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, comma,
                   bounds_[i], cumulative);
  }
  cumulative += buckets_[bounds_.size()].load(std::memory_order_relaxed);
  fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, comma,
                 cumulative);
  // _count is the +Inf bucket as summed here: a scrape during an observe stays consistent.
  const double sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  if (labels.empty()) {
    fmt::format_to(std::back_inserter(out), "{}_sum {}\n{}_count {}\n", name, sum, name, cumulative);
  } else {
    fmt::format_to(std::back_inserter(out), "{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum, name,
                   labels, cumulative);
  }
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
  if (!entry) entry = std::make_unique<Entry>(*this);
  return *entry;
}

Metrics::Metrics(double longest_timeout)
    : id_(next_metrics_id.fetch_add(1, std::memory_order_relaxed)),
      durations_(duration_bounds(longest_timeout)),
      gaps_(gap_bounds(longest_timeout)),
      queue_wait_(durations_) {}

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

void Metrics::on_retry(std::string_view model, const Endpoint&, RetryReason reason, unsigned) {
  const auto r = static_cast<std::size_t>(reason);
  if (r < kReasons) find_or_add(client_, model).retries[r].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::on_stream_gap(std::string_view model, const Endpoint&, std::chrono::nanoseconds gap) {
  // Called per chunk: the thread's last model and entry answer without the shared lock (entries
  // are never freed; `id_` keeps another Metrics at the same address from matching). Trivially
  // destructible, so a thread's access needs no initialisation guard; longer names skip it.
  struct Last {
    std::uint64_t owner;
    Client* entry;
    std::size_t size;
    char model[128];
  };
  static thread_local Last last{};
  if (last.owner != id_ || last.size != model.size() || std::memcmp(last.model, model.data(), model.size()) != 0) {
    Client& entry = find_or_add(client_, model);
    if (model.size() > sizeof(last.model)) return entry.gaps.observe(std::chrono::duration<double>(gap).count());
    std::memcpy(last.model, model.data(), model.size());
    last.size = model.size();
    last.entry = &entry;
    last.owner = id_;
  }
  last.entry->gaps.observe(std::chrono::duration<double>(gap).count());
}

void Metrics::on_exchange(const ExchangeSummary& summary) {
  // The resolved model only: a name a client made up never becomes a label value.
  Client& c = find_or_add(client_, summary.model);
  const auto index = static_cast<std::size_t>(summary.status) < kStatuses ? static_cast<std::size_t>(summary.status) : 0;
  c.by_status[index].fetch_add(1, std::memory_order_relaxed);
  c.latency.observe(std::chrono::duration<double>(summary.duration).count());
  if (summary.usage.total() != 0) {
    c.prompt_tokens.fetch_add(summary.usage.prompt, std::memory_order_relaxed);
    c.completion_tokens.fetch_add(summary.usage.completion, std::memory_order_relaxed);
  }
  // A non-streamed answer's first byte comes with its last token: only streams have a TTFT.
  if (summary.stream && summary.ttft.count() != 0) c.ttft.observe(std::chrono::duration<double>(summary.ttft).count());
  if (summary.prefill_endpoint != nullptr) c.prefill.observe(std::chrono::duration<double>(summary.prefill).count());
  if (summary.colocated_fallback) c.pd_fallbacks.fetch_add(1, std::memory_order_relaxed);
  // Requests that reached routing; those that never waited count as zero.
  if (summary.attempts != 0 || summary.queue_wait.count() != 0) {
    queue_wait_.observe(std::chrono::duration<double>(summary.queue_wait).count());
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

// Per-model and per-endpoint histograms (the maps are read under the caller's shared lock).
void Metrics::render_histograms(std::string& out) const {
  const auto per_model = [&](std::string_view name, std::string_view help, auto histogram_of) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    for (const auto& [model, c] : client_) {
      const Histogram& h = histogram_of(*c);
      if (h.count() == 0) continue;
      h.render(out, name, fmt::format("model=\"{}\"", label(model)));
    }
  };
  per_model("vllm_router_request_duration_seconds", "Client request latency, by model.",
            [](const Client& c) -> const Histogram& { return c.latency; });
  per_model("vllm_router_time_to_first_token_seconds",
            "Streamed requests: start to the first event relayed to the client, by model.",
            [](const Client& c) -> const Histogram& { return c.ttft; });
  per_model("vllm_router_inter_token_latency_seconds",
            "Streamed requests: time between relayed chunks (one event each, usually one token), by model.",
            [](const Client& c) -> const Histogram& { return c.gaps; });
  per_model("vllm_router_pd_prefill_seconds",
            "Prefill/decode disaggregation: the prefill leg (its retries included), by model.",
            [](const Client& c) -> const Histogram& { return c.prefill; });
  out += "# HELP vllm_router_pd_fallbacks_total Requests of a disaggregated model that ran colocated on a decode "
         "endpoint because no prefill endpoint could take them, by model.\n# TYPE vllm_router_pd_fallbacks_total counter\n";
  for (const auto& [model, c] : client_) {
    const std::uint64_t n = c->pd_fallbacks.load(std::memory_order_relaxed);
    if (n != 0) fmt::format_to(std::back_inserter(out), "vllm_router_pd_fallbacks_total{{model=\"{}\"}} {}\n", label(model), n);
  }
  out += "# HELP vllm_router_queue_wait_seconds Time routed requests waited for capacity (0 for most).\n";
  out += "# TYPE vllm_router_queue_wait_seconds histogram\n";
  queue_wait_.render(out, "vllm_router_queue_wait_seconds", "");
  const auto per_upstream = [&](std::string_view name, std::string_view help, auto histogram_of) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    for (const auto& [key, up] : upstream_) {
      const Histogram& h = histogram_of(*up);
      if (h.count() == 0) continue;
      const auto sep = key.find('\0');
      h.render(out, name,
               fmt::format("model=\"{}\",endpoint=\"{}\"", label(std::string_view(key).substr(0, sep)),
                           label(std::string_view(key).substr(sep + 1))));
    }
  };
  per_upstream("vllm_router_upstream_ttfb_seconds", "Time to the upstream response head, by model and endpoint.",
               [](const Upstream& u) -> const Histogram& { return u.ttfb; });
  per_upstream("vllm_router_upstream_duration_seconds", "Upstream request latency, by model and endpoint.",
               [](const Upstream& u) -> const Histogram& { return u.latency; });
}

std::string Metrics::render(const Snapshot& snapshot, std::uint32_t queued) const {
  std::string out;
  out.reserve(16384);
  const auto it = std::back_inserter(out);
  out += "# HELP vllm_router_build_info The running version (always 1).\n";
  out += "# TYPE vllm_router_build_info gauge\n";
  fmt::format_to(it, "vllm_router_build_info{{version=\"{}\"}} 1\n", label(vllm_router::version()));
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
    fmt::format_to(it, "vllm_router_tokens_total{{model=\"{}\",kind=\"prompt\"}} {}\n", label(model), p);
    fmt::format_to(it, "vllm_router_tokens_total{{model=\"{}\",kind=\"completion\"}} {}\n", label(model), q);
  }
  out += "# HELP vllm_router_key_requests_total Client requests by API key id and status.\n";
  out += "# TYPE vllm_router_key_requests_total counter\n";
  render_by_status(out, "vllm_router_key_requests_total", "key_id", keys_);
  out += "# HELP vllm_router_key_tokens_total Tokens used by API key id.\n";
  out += "# TYPE vllm_router_key_tokens_total counter\n";
  for (const auto& [id, k] : keys_) {
    fmt::format_to(it, "vllm_router_key_tokens_total{{key_id=\"{}\",kind=\"prompt\"}} {}\n", label(id),
                   k->prompt_tokens.load(std::memory_order_relaxed));
    fmt::format_to(it, "vllm_router_key_tokens_total{{key_id=\"{}\",kind=\"completion\"}} {}\n", label(id),
                   k->completion_tokens.load(std::memory_order_relaxed));
  }
  out += "# HELP vllm_router_retries_total Exchanges that left an endpoint for another, by model and reason.\n";
  out += "# TYPE vllm_router_retries_total counter\n";
  for (const auto& [model, c] : client_) {
    for (std::size_t r = 0; r < kReasons; ++r) {
      const std::uint64_t n = c->retries[r].load(std::memory_order_relaxed);
      if (n != 0) fmt::format_to(it, "vllm_router_retries_total{{model=\"{}\",reason=\"{}\"}} {}\n", label(model), to_string(static_cast<RetryReason>(r)), n);
    }
  }
  out += "# HELP vllm_router_queue_depth Requests waiting for capacity now (every replica of their model full).\n";
  out += "# TYPE vllm_router_queue_depth gauge\n";
  fmt::format_to(it, "vllm_router_queue_depth {}\n", queued);
  render_histograms(out);
  out += "# HELP vllm_router_upstream_requests_total Upstream attempts, by model, endpoint, outcome and status.\n";
  out += "# TYPE vllm_router_upstream_requests_total counter\n";
  for (const auto& [key, up] : upstream_) {
    const auto sep = key.find('\0');
    const std::string model = label(std::string_view(key).substr(0, sep));
    const std::string endpoint = label(std::string_view(key).substr(sep + 1));
    for (std::size_t i = 0; i < up->by_outcome.size(); ++i) {
      const std::uint64_t n = up->by_outcome[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      fmt::format_to(it, "vllm_router_upstream_requests_total{{model=\"{}\",endpoint=\"{}\",outcome=\"{}\",status=\"{}\"}} {}\n",
                     model, endpoint, to_string(static_cast<OutcomeKind>(i / kStatuses)), i % kStatuses, n);
    }
  }
  // Per endpoint of every pool: load, health by both writers, ejections, vLLM's own load.
  const std::int64_t now_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  const auto per_endpoint = [&](std::string_view name, std::string_view type, std::string_view help, auto value_of) {
    fmt::format_to(it, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const Pool& pool : snapshot.pools) {
      for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
        const double v = value_of(*pool.states[i]);
        if (v < 0) continue;  // unknown (never scraped)
        fmt::format_to(it, "{}{{model=\"{}\",endpoint=\"{}\"}} {}\n", name, label(pool.model),
                       label(pool.endpoints[i]->id), v);
      }
    }
  };
  per_endpoint("vllm_router_endpoint_in_flight", "gauge", "Requests open on an endpoint now.",
               [](const EndpointState& st) { return static_cast<double>(st.in_flight.load()); });
  per_endpoint("vllm_router_endpoint_peer_in_flight", "gauge",
               "Requests the router's replica-sync peers report open on an endpoint (0 without replica sync).",
               [](const EndpointState& st) { return static_cast<double>(st.peer_in_flight.load()); });
  per_endpoint("vllm_router_endpoint_healthy", "gauge", "1 when active checks pass and the endpoint is not ejected.",
               [&](const EndpointState& st) { return st.healthy(now_ns) ? 1.0 : 0.0; });
  per_endpoint("vllm_router_endpoint_ejections_total", "counter",
               "Times the outlier detector ejected the endpoint (since it joined the routing table).",
               [](const EndpointState& st) { return static_cast<double>(st.ejections.load()); });
  per_endpoint("vllm_router_endpoint_waiting", "gauge", "vllm:num_requests_waiting as last scraped.",
               [](const EndpointState& st) { return static_cast<double>(st.waiting.load()); });
  per_endpoint("vllm_router_endpoint_running", "gauge", "vllm:num_requests_running as last scraped.",
               [](const EndpointState& st) { return static_cast<double>(st.running.load()); });
  per_endpoint("vllm_router_endpoint_kv_cache_usage", "gauge", "vllm:kv_cache_usage_perc as last scraped (0..1).",
               [](const EndpointState& st) { return static_cast<double>(st.kv_cache_usage.load()); });
  out += "# HELP vllm_router_config_version Version of the routing table in use.\n";
  out += "# TYPE vllm_router_config_version gauge\n";
  fmt::format_to(it, "vllm_router_config_version {}\n", snapshot.version);
  if (connections_) {
    out += "# HELP vllm_router_client_connections Open client connections, by event loop.\n";
    out += "# TYPE vllm_router_client_connections gauge\n";
    const std::vector<std::uint32_t> open = connections_();
    for (std::size_t i = 0; i < open.size(); ++i) {
      fmt::format_to(it, "vllm_router_client_connections{{loop=\"{}\"}} {}\n", i, open[i]);
    }
  }
  if (tls_failures_) {
    out += "# HELP vllm_router_tls_handshake_failures_total TLS handshakes on the listener that failed.\n";
    out += "# TYPE vllm_router_tls_handshake_failures_total counter\n";
    fmt::format_to(it, "vllm_router_tls_handshake_failures_total {}\n", tls_failures_());
  }
  lock.unlock();
  if (const auto process = read_process_stats()) render_process_metrics(out, *process);
  return out;
}

// The exporter's counters in the Prometheus text format.
std::string trace_metrics(const OtlpStats& s) {
  return fmt::format(
      "# HELP vllm_router_trace_spans_total Spans of sampled requests: exported (the collector took them), "
      "dropped (the export queue was full), failed (the collector could not be reached or refused them).\n"
      "# TYPE vllm_router_trace_spans_total counter\n"
      "vllm_router_trace_spans_total{{result=\"exported\"}} {}\n"
      "vllm_router_trace_spans_total{{result=\"dropped\"}} {}\n"
      "vllm_router_trace_spans_total{{result=\"failed\"}} {}\n",
      s.exported, s.dropped, s.failed);
}

std::string exchange_queue_metrics(const ExchangeQueueStats& s) {
  return fmt::format(
      "# HELP vllm_router_observe_queue_dropped_total Finished requests whose access-log line and spans were "
      "dropped: the queue to the thread that makes them was full.\n"
      "# TYPE vllm_router_observe_queue_dropped_total counter\n"
      "vllm_router_observe_queue_dropped_total {}\n",
      s.dropped);
}

// Replica sync's counters in the Prometheus text format.
std::string replica_sync_metrics(const ReplicaSyncStats& s) {
  return fmt::format(
      "# HELP vllm_router_replica_sync_peers Router replicas heard from within replica_sync.peer_timeout_ms.\n"
      "# TYPE vllm_router_replica_sync_peers gauge\n"
      "vllm_router_replica_sync_peers {}\n"
      "# HELP vllm_router_replica_sync_datagrams_total Replica sync datagrams: sent to peers, received (accepted) "
      "from peers, rejected (malformed, unsigned or forged), replayed (signed, but seen before or sent over 10 s "
      "from now: a replay, or clocks apart).\n"
      "# TYPE vllm_router_replica_sync_datagrams_total counter\n"
      "vllm_router_replica_sync_datagrams_total{{result=\"sent\"}} {}\n"
      "vllm_router_replica_sync_datagrams_total{{result=\"received\"}} {}\n"
      "vllm_router_replica_sync_datagrams_total{{result=\"rejected\"}} {}\n"
      "vllm_router_replica_sync_datagrams_total{{result=\"replayed\"}} {}\n"
      "# HELP vllm_router_replica_sync_send_errors_total Datagrams a peer address could not be sent.\n"
      "# TYPE vllm_router_replica_sync_send_errors_total counter\n"
      "vllm_router_replica_sync_send_errors_total {}\n"
      "# HELP vllm_router_replica_sync_placements_total Prefix placements (chain hashes) sent to and received from peers.\n"
      "# TYPE vllm_router_replica_sync_placements_total counter\n"
      "vllm_router_replica_sync_placements_total{{direction=\"sent\"}} {}\n"
      "vllm_router_replica_sync_placements_total{{direction=\"received\"}} {}\n"
      "# HELP vllm_router_replica_sync_placements_dropped_total Prefix placements not sent: sending fell behind.\n"
      "# TYPE vllm_router_replica_sync_placements_dropped_total counter\n"
      "vllm_router_replica_sync_placements_dropped_total {}\n",
      s.peers, s.datagrams_sent, s.datagrams_received, s.datagrams_rejected, s.datagrams_replayed, s.send_errors, s.placements_sent,
      s.placements_received, s.placements_dropped);
}

}  // namespace vllm_router::server
