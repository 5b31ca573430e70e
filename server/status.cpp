// The status page's data: rolling windows fed by Observer events, and the /status.json document.
#include "status.h"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "json_writer.h"
#include "status_html.h"  // generated from status.html (server/CMakeLists.txt)
#include "vllm_router/version.h"

namespace vllm_router::server {
namespace {

using detail::append_json_string;

std::int64_t coarse_now_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A JSON number: finite, at most 3 decimals.
void append_number(std::string& out, double v) {
  if (!std::isfinite(v)) v = 0;
  fmt::format_to(std::back_inserter(out), "{}", std::round(v * 1000) / 1000);
}

// `lived_s`: how long the board has been counting (a window younger than its span is not
// divided by the whole span).
void append_window(std::string& out, WindowStats w, double lived_s) {
  w.seconds = std::min(w.seconds, std::max(1.0, lived_s));
  fmt::format_to(std::back_inserter(out), R"({{"requests":{},"errors":{},"error_rate":)", w.requests, w.errors);
  append_number(out, w.requests == 0 ? 0.0 : static_cast<double>(w.errors) / static_cast<double>(w.requests));
  out += R"(,"rps":)";
  append_number(out, w.seconds > 0 ? static_cast<double>(w.requests) / w.seconds : 0.0);
  out += R"(,"latency_ms":)";
  if (w.requests == 0) {
    out += "null}";
    return;
  }
  out += R"({"avg":)";
  append_number(out, w.latency_avg_ms);
  out += R"(,"p50":)";
  append_number(out, w.latency_p50_ms);
  out += R"(,"p95":)";
  append_number(out, w.latency_p95_ms);
  out += "}}";
}

const char* endpoint_state(const EndpointState& st, std::int64_t now_ns) noexcept {
  if (st.ejected_until_ns.load(std::memory_order_relaxed) > now_ns) return "ejected";
  if (!st.active_healthy.load(std::memory_order_relaxed)) return "unhealthy";
  return "healthy";
}

}  // namespace

// ---------------------------------------------------------------- ReadMostlyLock

// Dekker's handshake: a reader counts itself in, then looks for a writer; a writer raises its
// flag, then looks for readers (both sequentially consistent, so one of them sees the other).
void ReadMostlyLock::lock_shared() noexcept {
  for (;;) {
    readers_.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) return;
    readers_.fetch_sub(1, std::memory_order_release);
    while (writer_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
}

void ReadMostlyLock::lock() {
  writers_.lock();
  writer_.store(true, std::memory_order_seq_cst);
  while (readers_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
}

void ReadMostlyLock::unlock() {
  writer_.store(false, std::memory_order_release);
  writers_.unlock();
}

// ---------------------------------------------------------------- RollingWindow

std::size_t RollingWindow::bucket_of(std::uint64_t micros) noexcept {
  if (micros < 1024) return 0;
  // Half-octaves: the position of the top bit and the bit below it.
  const auto level = static_cast<std::size_t>(std::bit_width(micros) - 1);
  const std::size_t half = (micros >> (level - 1)) & 1U;
  const std::size_t h = 2 * level + half - 19;  // 1024 us (level 10, half 0) is bucket 1
  return h < kBuckets ? h : kBuckets - 1;
}

double RollingWindow::bucket_upper_ms(std::size_t bucket) noexcept {
  if (bucket == 0) return 1.024;
  const std::size_t h = bucket + 19;
  const double base = std::ldexp(1.0, static_cast<int>(h / 2));  // microseconds
  return (h % 2 == 0 ? base * 1.5 : base * 2.0) / 1000.0;
}

void RollingWindow::add(std::int64_t now_ms, bool error, std::chrono::nanoseconds latency) noexcept {
  const std::int64_t period = now_ms / (kSlotSeconds * 1000);
  Slot& slot = slots_[static_cast<std::size_t>(period) % kSlots];
  std::int64_t seen = slot.period.load(std::memory_order_acquire);
  if (seen != period) {
    // A new period: the first caller to claim the slot zeroes it (a later one finds it claimed).
    if (seen < period && slot.period.compare_exchange_strong(seen, period, std::memory_order_acq_rel)) {
      slot.requests.store(0, std::memory_order_relaxed);
      slot.errors.store(0, std::memory_order_relaxed);
      slot.latency_us.store(0, std::memory_order_relaxed);
      for (auto& b : slot.histogram) b.store(0, std::memory_order_relaxed);
    } else if (seen > period) {
      return;  // a late report for a period already gone
    }
  }
  const auto micros = static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency.count() / 1000));
  slot.requests.fetch_add(1, std::memory_order_relaxed);
  if (error) slot.errors.fetch_add(1, std::memory_order_relaxed);
  slot.latency_us.fetch_add(micros, std::memory_order_relaxed);
  slot.histogram[bucket_of(micros)].fetch_add(1, std::memory_order_relaxed);
}

WindowStats RollingWindow::stats(std::int64_t now_ms) const noexcept {
  const std::int64_t slot_ms = kSlotSeconds * 1000;
  const std::int64_t period = now_ms / slot_ms;
  WindowStats w;
  // The current slot is partly over: the span is the full earlier slots plus that part.
  w.seconds = static_cast<double>((kSlots - 1) * static_cast<std::size_t>(slot_ms) +
                                  static_cast<std::size_t>(now_ms - period * slot_ms)) / 1000.0;
  std::array<std::uint64_t, kBuckets> histogram{};
  std::uint64_t latency_us = 0;
  for (const Slot& slot : slots_) {
    const std::int64_t p = slot.period.load(std::memory_order_acquire);
    if (p > period || p <= period - static_cast<std::int64_t>(kSlots)) continue;
    w.requests += slot.requests.load(std::memory_order_relaxed);
    w.errors += slot.errors.load(std::memory_order_relaxed);
    latency_us += slot.latency_us.load(std::memory_order_relaxed);
    for (std::size_t b = 0; b < kBuckets; ++b) histogram[b] += slot.histogram[b].load(std::memory_order_relaxed);
  }
  if (w.requests == 0) return w;
  w.latency_avg_ms = static_cast<double>(latency_us) / static_cast<double>(w.requests) / 1000.0;
  std::uint64_t counted = 0;
  for (std::uint64_t c : histogram) counted += c;
  // The q-quantile, linear within its bucket (the last bucket is open: its lower bound).
  const auto quantile = [&](double q) {
    const double rank = q * static_cast<double>(counted);
    double below = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      const auto c = static_cast<double>(histogram[b]);
      if (c > 0 && below + c >= rank) {
        const double lower = b == 0 ? 0.0 : bucket_upper_ms(b - 1);
        if (b == kBuckets - 1) return lower;
        return lower + (bucket_upper_ms(b) - lower) * ((rank - below) / c);
      }
      below += c;
    }
    return bucket_upper_ms(kBuckets - 2);
  };
  w.latency_p50_ms = quantile(0.5);
  w.latency_p95_ms = quantile(0.95);
  return w;
}

// ---------------------------------------------------------------- StatusBoard

StatusBoard::StatusBoard(std::function<std::int64_t()> now_ms)
    : now_ms_(now_ms ? std::move(now_ms) : std::function<std::int64_t()>(coarse_now_ms)), started_ms_(now_ms_()) {}

bool StatusBoard::exchange_error(const ExchangeSummary& s) noexcept {
  return s.status >= 500 || s.end == ExchangeEnd::upstream_error || s.end == ExchangeEnd::timeout;
}

bool StatusBoard::outcome_error(const Outcome& o) noexcept {
  switch (o.kind) {
    case OutcomeKind::success: return o.status >= 500;
    case OutcomeKind::cancelled: return false;  // the client's doing, not the replica's
    default: return true;
  }
}

void StatusBoard::on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) {
  const std::int64_t now = now_ms_();
  const bool error = outcome_error(outcome);
  {
    std::shared_lock<ReadMostlyLock> lock(mutex_);
    if (const auto m = models_.find(model); m != models_.end()) {
      if (const auto e = m->second->endpoints.find(endpoint.id); e != m->second->endpoints.end()) {
        e->second->add(now, error, outcome.latency);
        return;
      }
    }
  }
  std::unique_lock<ReadMostlyLock> lock(mutex_);
  prune_on_insert();
  auto& entry = models_[std::string(model)];
  if (!entry) entry = std::make_unique<ModelEntry>();
  auto& window = entry->endpoints[endpoint.id];
  if (!window) window = std::make_unique<RollingWindow>();
  window->add(now, error, outcome.latency);
}

void StatusBoard::on_exchange(const ExchangeSummary& s) {
  if (s.model.empty()) return;  // unresolved: a name a client made up never becomes an entry
  const std::int64_t now = now_ms_();
  const bool error = exchange_error(s);
  {
    std::shared_lock<ReadMostlyLock> lock(mutex_);
    if (const auto m = models_.find(s.model); m != models_.end()) {
      m->second->client.add(now, error, s.duration);
      return;
    }
  }
  std::unique_lock<ReadMostlyLock> lock(mutex_);
  prune_on_insert();
  auto& entry = models_[std::string(s.model)];
  if (!entry) entry = std::make_unique<ModelEntry>();
  entry->client.add(now, error, s.duration);
}

namespace {

// Whether `snapshot` lists `model` (and `endpoint` in it, unless empty).
bool listed(const Snapshot& snapshot, std::string_view model, std::string_view endpoint) {
  for (const Pool& pool : snapshot.pools) {
    if (pool.model != model) continue;
    if (endpoint.empty()) return true;
    for (const auto& ep : pool.endpoints) {
      if (ep->id == endpoint) return true;
    }
  }
  return false;
}

}  // namespace

void StatusBoard::set_snapshot_source(std::function<std::shared_ptr<const Snapshot>()> source) {
  std::unique_lock<ReadMostlyLock> lock(mutex_);
  snapshot_source_ = std::move(source);
}

bool StatusBoard::stale_locked(const Snapshot& snapshot) const {
  for (const auto& [model, entry] : models_) {
    if (!listed(snapshot, model, {})) return true;
    for (const auto& [id, window] : entry->endpoints) {
      if (!listed(snapshot, model, id)) return true;
    }
  }
  return false;
}

void StatusBoard::prune_locked(const Snapshot& snapshot) {
  for (auto m = models_.begin(); m != models_.end();) {
    if (!listed(snapshot, m->first, {})) {
      m = models_.erase(m);
      continue;
    }
    auto& eps = m->second->endpoints;
    for (auto e = eps.begin(); e != eps.end();) e = listed(snapshot, m->first, e->first) ? std::next(e) : eps.erase(e);
    ++m;
  }
}

void StatusBoard::prune_on_insert() {
  // A new name (rare: once per model and endpoint): drop those the table no longer lists, so
  // memory follows the table even when nobody looks at the page (discovery churns endpoints).
  if (!snapshot_source_) return;
  if (const auto snapshot = snapshot_source_()) prune_locked(*snapshot);
}

std::size_t StatusBoard::entries() const {
  std::shared_lock<ReadMostlyLock> lock(mutex_);
  std::size_t n = models_.size();
  for (const auto& [model, entry] : models_) n += entry->endpoints.size();
  return n;
}

void StatusBoard::prune(const Snapshot& snapshot) {
  {
    std::shared_lock<ReadMostlyLock> lock(mutex_);
    if (!stale_locked(snapshot)) return;
  }
  std::unique_lock<ReadMostlyLock> lock(mutex_);
  prune_locked(snapshot);
}

std::string StatusBoard::render_json(const Snapshot& snapshot, const StatusContext& context) {
  prune(snapshot);
  const std::int64_t now = now_ms_();
  const double lived_s = static_cast<double>(now - started_ms_) / 1000.0;
  const std::int64_t now_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  const std::int64_t wall_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::uint32_t panic_percent = snapshot.config ? snapshot.config->panic_threshold_percent : 50;
  const std::uint32_t stale_ms = snapshot.config ? snapshot.config->policy_options.scrape_stale_ms : 5000;

  std::string out;
  out.reserve(1024 + 512 * snapshot.pools.size());
  out += R"({"version":)";
  append_json_string(out, version());
  fmt::format_to(std::back_inserter(out),
                 R"(,"uptime_ms":{},"time_unix_ms":{},"draining":{},"keys":{},"config_version":{},"window_seconds":{},"models":[)",
                 context.uptime_ms, wall_ms, context.draining, context.keys, snapshot.version,
                 RollingWindow::kSpanSeconds);
  std::shared_lock<ReadMostlyLock> lock(mutex_);
  for (std::size_t p = 0; p < snapshot.pools.size(); ++p) {
    const Pool& pool = snapshot.pools[p];
    if (p != 0) out += ',';
    out += R"({"name":)";
    append_json_string(out, pool.model);
    out += R"(,"policy":)";
    append_json_string(out, pool.policy ? pool.policy->name() : std::string_view("?"));
    if (pool.prefill_role) out += R"(,"role":"prefill")";  // a model's prefill pool (docs/disaggregation.md)
    for (const NameKind kind : {NameKind::alias, NameKind::lora}) {
      out += kind == NameKind::alias ? R"(,"aliases":[)" : R"(,"adapters":[)";
      bool first = true;
      for (const CatalogEntry& e : snapshot.catalog.entries()) {
        if (e.pool != p || e.kind != kind) continue;
        if (!first) out += ',';
        first = false;
        append_json_string(out, e.name);
      }
      out += ']';
    }
    std::size_t healthy = 0;
    std::int64_t in_flight = 0;
    for (const auto& st : pool.states) {
      healthy += st->healthy(now_ns) ? 1 : 0;
      in_flight += st->in_flight.load(std::memory_order_relaxed);
    }
    const std::size_t size = pool.endpoints.size();
    const bool panic = size != 0 && (healthy == 0 || healthy * 100 < std::size_t{panic_percent} * size);
    fmt::format_to(std::back_inserter(out),
                   R"(,"health_checks":{},"endpoints_total":{},"endpoints_healthy":{},"panic":{},"in_flight":{},"recent":)",
                   pool.health_check.enabled, size, healthy, panic, in_flight);
    const auto entry = models_.find(pool.model);
    append_window(out, entry != models_.end() ? entry->second->client.stats(now) : WindowStats{}, lived_s);
    out += R"(,"endpoints":[)";
    for (std::size_t i = 0; i < size; ++i) {
      const Endpoint& ep = *pool.endpoints[i];
      const EndpointState& st = *pool.states[i];
      if (i != 0) out += ',';
      out += R"({"id":)";
      append_json_string(out, ep.id);
      const std::int64_t ejected_until = st.ejected_until_ns.load(std::memory_order_relaxed);
      fmt::format_to(std::back_inserter(out),
                     R"(,"weight":{},"state":"{}","active_healthy":{},"ejected_ms_left":{},"ejections":{},"in_flight":{},"requests_total":{},"failures_total":{},"consecutive_failures":{},"load":)",
                     ep.weight, endpoint_state(st, now_ns), st.active_healthy.load(std::memory_order_relaxed),
                     ejected_until > now_ns ? (ejected_until - now_ns) / 1000000 : 0,
                     st.ejections.load(std::memory_order_relaxed), st.in_flight.load(std::memory_order_relaxed),
                     st.requests.load(std::memory_order_relaxed), st.failures.load(std::memory_order_relaxed),
                     st.consecutive_failures.load(std::memory_order_relaxed));
      const LoadSample load = st.sample();
      if (load.sampled_ns == 0) {
        out += "null";
      } else {
        const std::int64_t age_ms = (now_ns - load.sampled_ns) / 1000000;
        fmt::format_to(std::back_inserter(out), R"({{"running":{},"waiting":{},"kv_cache_usage":)", load.running,
                       load.waiting);
        append_number(out, load.kv_cache_usage);
        fmt::format_to(std::back_inserter(out), R"(,"age_ms":{},"fresh":{}}})", age_ms,
                       age_ms <= static_cast<std::int64_t>(stale_ms));
      }
      out += R"(,"recent":)";
      WindowStats w;
      if (entry != models_.end()) {
        if (const auto e = entry->second->endpoints.find(ep.id); e != entry->second->endpoints.end()) {
          w = e->second->stats(now);
        }
      }
      append_window(out, w, lived_s);
      out += '}';
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

std::string_view status_page_html() noexcept { return kStatusPageHtml; }

}  // namespace vllm_router::server
