// LoRA-aware placement (see lora.h): per-endpoint adapter sets, the gauge parser, the HTTP
// loader and the single-flight loads on a few background threads.
#include "lora.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "json_writer.h"
#include "vllm_router/snapshot.h"

namespace vllm_router::detail {

// ------------------------------------------------------------------ LoraEndpoint

bool LoraEndpoint::has(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
}

std::size_t LoraEndpoint::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

void LoraEndpoint::touch(std::string_view name, std::int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Entry& e : entries_) {
    if (e.name == name) e.used_ns = std::max(e.used_ns, now_ns);
  }
}

std::shared_ptr<const void> LoraEndpoint::use(const std::shared_ptr<LoraEndpoint>& self, std::string_view name,
                                               std::int64_t now_ns) {
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    auto it = std::find_if(self->entries_.begin(), self->entries_.end(), [&](const Entry& e) { return e.name == name; });
    if (it == self->entries_.end()) return nullptr;
    it->used_ns = std::max(it->used_ns, now_ns);
    ++it->users;
  }
  class Hold {
   public:
    Hold(std::shared_ptr<LoraEndpoint> endpoint, std::string_view name) : endpoint_(std::move(endpoint)), name_(name) {}
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { endpoint_->release(name_); }

   private:
    std::shared_ptr<LoraEndpoint> endpoint_;
    std::string name_;
  };
  return std::make_shared<const Hold>(self, name);
}

void LoraEndpoint::release(std::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Entry& e : entries_) {
    if (e.name == name && e.users > 0) --e.users;  // gone or reloaded meanwhile: nothing held
  }
}

void LoraEndpoint::add(std::string_view name, std::int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Entry& e : entries_) {
    if (e.name == name) return;
  }
  entries_.push_back(Entry{std::string(name), now_ns, now_ns});
}

void LoraEndpoint::remove(std::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(entries_, [&](const Entry& e) { return e.name == name; });
}

void LoraEndpoint::replace(std::span<const std::string> names, std::int64_t since_ns, std::int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(entries_, [&](const Entry& e) {
    return e.added_ns < since_ns && std::find(names.begin(), names.end(), e.name) == names.end();
  });
  for (const std::string& name : names) {
    if (std::none_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; })) {
      entries_.push_back(Entry{name, now_ns, now_ns});
    }
  }
}

void LoraEndpoint::set_max_lora(std::int32_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  max_lora_ = n;
}

std::int32_t LoraEndpoint::max_lora() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return max_lora_;
}

std::string LoraEndpoint::lru(std::string_view keep) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Entry* best = nullptr;
  for (const Entry& e : entries_) {
    if (e.name == keep || e.users > 0) continue;
    if (best == nullptr || e.used_ns < best->used_ns) best = &e;
  }
  return best == nullptr ? std::string() : best->name;
}

std::vector<std::string> LoraEndpoint::names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const Entry& e : entries_) out.push_back(e.name);
  return out;
}

// ------------------------------------------------------------------ LoraPool

bool LoraPool::is_adapter(std::string_view name) const {
  return std::binary_search(adapters.begin(), adapters.end(), name, std::less<>());
}

std::string LoraPool::path_of(std::string_view name) const {
  if (const auto it = config.paths.find(std::string(name)); it != config.paths.end()) return it->second;
  if (config.path_template.empty()) return {};
  std::string out = config.path_template;
  for (std::size_t at = out.find("{name}"); at != std::string::npos; at = out.find("{name}", at + name.size())) {
    out.replace(at, 6, name);
  }
  return out;
}

// ------------------------------------------------------------------ the gauge

namespace {

// The value of label `key` in a Prometheus label set `{a="x",b="y"}` (escapes undone).
bool label_value(std::string_view labels, std::string_view key, std::string& out) {
  std::size_t i = 0;
  while (i < labels.size()) {
    while (i < labels.size() && (labels[i] == ',' || labels[i] == ' ' || labels[i] == '{')) ++i;
    const std::size_t eq = labels.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') return false;
    const std::string_view name = labels.substr(i, eq - i);
    std::string value;
    std::size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value.push_back(labels[j] == 'n' ? '\n' : labels[j]);
      } else {
        value.push_back(labels[j]);
      }
    }
    if (j >= labels.size()) return false;
    if (name == key) {
      out = std::move(value);
      return true;
    }
    i = j + 1;
  }
  return false;
}

void split_names(std::string_view list, std::vector<std::string>& out) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty() && std::find(out.begin(), out.end(), name) == out.end()) out.emplace_back(name);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

ScrapedLora parse_vllm_lora(std::string_view text) {
  // vLLM writes one sample per change, its value the time of the change: the newest wins.
  ScrapedLora out;
  double newest = -std::numeric_limits<double>::infinity();
  constexpr std::string_view kName = "vllm:lora_requests_info{";
  for (std::size_t at = text.find(kName); at != std::string_view::npos; at = text.find(kName, at + 1)) {
    if (at != 0 && text[at - 1] != '\n') continue;
    const std::size_t end_of_line = text.find('\n', at);
    const std::string_view line = text.substr(at + kName.size() - 1, end_of_line == std::string_view::npos
                                                                         ? std::string_view::npos
                                                                         : end_of_line - at - kName.size() + 1);
    const std::size_t close = line.rfind('}');
    if (close == std::string_view::npos) continue;
    const std::string_view labels = line.substr(0, close + 1);
    const std::string value_text(line.substr(close + 1));
    char* stop = nullptr;
    const double value = std::strtod(value_text.c_str(), &stop);
    if (stop == value_text.c_str() || !std::isfinite(value) || value < newest) continue;
    std::string max_lora, running, waiting;
    if (!label_value(labels, "max_lora", max_lora)) continue;
    newest = value;
    const long n = std::strtol(max_lora.c_str(), nullptr, 10);
    out.max_lora = n > 0 && n < (1L << 20) ? static_cast<std::int32_t>(n) : -1;
    out.adapters.clear();
    if (label_value(labels, "running_lora_adapters", running)) split_names(running, out.adapters);
    if (label_value(labels, "waiting_lora_adapters", waiting)) split_names(waiting, out.adapters);
  }
  return out;
}

// ------------------------------------------------------------------ the HTTP loader

namespace {

class DrainSink final : public BodySink {
 public:
  bool write(const char* data, std::size_t size) override {
    if (body.size() < 4096) body.append(data, std::min<std::size_t>(size, 4096 - body.size()));
    return true;
  }
  std::string body;
};

class HttpLoraLoader final : public LoraLoader {
 public:
  HttpLoraLoader(std::shared_ptr<Transport> transport, const std::atomic<bool>* stopping)
      : transport_(std::move(transport)), stopping_(stopping) {}

  Result<void> load(const Endpoint& endpoint, std::string_view name, std::string_view path,
                    std::uint32_t timeout_ms) override {
    std::string body = "{\"lora_name\":";
    append_json_string(body, name);
    body += ",\"lora_path\":";
    append_json_string(body, path);
    body += '}';
    int status = 0;
    std::string answer;
    if (auto r = post(endpoint, "/v1/load_lora_adapter", body, timeout_ms, status, answer); !r) return r;
    if (status == 200) return {};
    if (status == 400 && answer.find("already been loaded") != std::string::npos) return {};
    const std::string what = "loading LoRA adapter `" + std::string(name) + "` on " + endpoint.id + " failed (" +
                             std::to_string(status) + "): " + answer.substr(0, 512);
    return Error{status == 404 ? Errc::unknown_model : Errc::no_endpoint, what, "model"};
  }

  Result<void> unload(const Endpoint& endpoint, std::string_view name, std::uint32_t timeout_ms) override {
    std::string body = "{\"lora_name\":";
    append_json_string(body, name);
    body += '}';
    int status = 0;
    std::string answer;
    if (auto r = post(endpoint, "/v1/unload_lora_adapter", body, timeout_ms, status, answer); !r) return r;
    if (status == 200 || status == 404) return {};  // 404: already gone
    return Error{Errc::no_endpoint, "unloading LoRA adapter `" + std::string(name) + "` on " + endpoint.id +
                                        " failed (" + std::to_string(status) + ")",
                 "model"};
  }

 private:
  Result<void> post(const Endpoint& endpoint, std::string_view path, const std::string& body,
                    std::uint32_t timeout_ms, int& status, std::string& answer) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    const AliveCheck alive = [this, deadline] {
      return (stopping_ == nullptr || !stopping_->load(std::memory_order_relaxed)) &&
             std::chrono::steady_clock::now() < deadline;
    };
    static const Headers kHeaders{{"Content-Type", "application/json"}};
    UpstreamRequest request;
    request.method = "POST";
    request.path = path;
    request.headers = &kHeaders;
    request.body = body;
    request.timeout_ms = timeout_ms;
    auto response = transport_->send(endpoint, request, alive);
    if (!response) {
      Error e = response.error();
      e.message = "LoRA call " + std::string(path) + " to " + endpoint.id + ": " + e.message;
      if (e.code != Errc::timeout) e.code = Errc::no_endpoint;
      return e;
    }
    DrainSink sink;
    (void)response.value()->relay(sink);
    status = response.value()->status();
    answer = std::move(sink.body);
    return {};
  }

  std::shared_ptr<Transport> transport_;
  const std::atomic<bool>* stopping_;
};

}  // namespace

std::shared_ptr<LoraLoader> make_http_lora_loader(std::shared_ptr<Transport> transport,
                                                  const std::atomic<bool>* stopping) {
  return std::make_shared<HttpLoraLoader>(std::move(transport), stopping);
}

// ------------------------------------------------------------------ LoraManager

LoraManager::LoraManager(std::shared_ptr<LoraLoader> loader, std::shared_ptr<const Clock> clock,
                         std::function<void()> wake)
    : loader_(std::move(loader)), clock_(std::move(clock)), wake_(std::move(wake)) {}

LoraManager::~LoraManager() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
    jobs_.clear();
  }
  jobs_changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

std::int64_t LoraManager::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_->now().time_since_epoch()).count();
}

std::shared_ptr<LoraEndpoint> LoraManager::endpoint(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = endpoints_[id];
  if (!slot) slot = std::make_shared<LoraEndpoint>();
  return slot;
}

void LoraManager::set_loader(std::shared_ptr<LoraLoader> loader) {
  std::lock_guard<std::mutex> lock(mutex_);
  loader_ = std::move(loader);
}

std::size_t LoraManager::loading() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(flights_.begin(), flights_.end(), [](const auto& f) { return f.second.running; }));
}

Result<bool> LoraManager::ensure_loaded(const Pool& pool, const LoraPool& lora, std::string_view adapter,
                                        std::span<const Candidate> candidates) {
  std::string key = pool.model + "\n" + std::string(adapter);
  const std::int64_t now = now_ns();
  std::unique_lock<std::mutex> lock(mutex_);
  Flight& flight = flights_[key];
  if (flight.running) return false;
  if (flight.failed_at_ns != 0 && now - flight.failed_at_ns < kFailureHoldNs) return flight.error;
  std::string path = lora.path_of(adapter);
  if (path.empty()) {
    return Error{Errc::no_endpoint,
                 "LoRA adapter `" + std::string(adapter) + "` is loaded on no replica of model `" + pool.model +
                     "` and has no path to load it from (lora.paths or lora.path_template)",
                 "model"};
  }
  if (candidates.empty()) return Error{Errc::no_endpoint, "no endpoint available for model `" + pool.model + "`", "model"};
  // The least loaded candidate (router in flight + vLLM's waiting) among those with a free
  // adapter place (loads on their way count as taken); when none has one, the least loaded of
  // all (it unloads its least recently used adapter). Ties: the most free places, the lowest slot.
  const Candidate* best = nullptr;
  std::int64_t best_load = 0;
  std::int64_t best_free = 0;
  for (const Candidate& c : candidates) {
    const std::int64_t load = c.state->in_flight.load(std::memory_order_relaxed) +
                              std::max<std::int32_t>(0, c.state->waiting.load(std::memory_order_relaxed));
    const LoraEndpoint& le = *lora.slots[c.slot];
    const std::int32_t max = le.max_lora();
    const std::int64_t taken = static_cast<std::int64_t>(le.count()) + le.pending.load(std::memory_order_relaxed);
    const std::int64_t free_places = max < 0 ? 1 : std::max<std::int64_t>(0, max - taken);
    bool better = true;
    if (best != nullptr && (free_places > 0) != (best_free > 0)) better = free_places > 0;
    else if (best != nullptr) better = load < best_load || (load == best_load && free_places > best_free);
    if (better) {
      best = &c;
      best_load = load;
      best_free = free_places;
    }
  }
  lora.slots[best->slot]->pending.fetch_add(1, std::memory_order_relaxed);
  flight.running = true;
  flight.failed_at_ns = 0;
  Job job{std::move(key), pool.endpoints[best->slot], lora.slots[best->slot], std::string(adapter), std::move(path),
          lora.config.load_timeout_ms};
  jobs_.push_back(std::move(job));
  if (idle_ == 0 && threads_.size() < kMaxThreads) {
    threads_.emplace_back([this] { worker(); });
  } else {
    jobs_changed_.notify_one();
  }
  return true;
}

void LoraManager::worker() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ++idle_;
    jobs_changed_.wait(lock, [this] { return stopping_.load() || !jobs_.empty(); });
    --idle_;
    if (stopping_.load()) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    run(std::move(job));
    lock.lock();
  }
}

void LoraManager::run(Job job) {
  std::shared_ptr<LoraLoader> loader;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    loader = loader_;
  }
  Result<void> result = Error{Errc::no_endpoint, "no LoRA loader", "model"};
  if (loader) {
    {
      // At max_lora: unload the least recently used adapters until this load and the others on
      // their way here fit (vLLM would evict from its cache on its own; making room here keeps
      // what the router believes loaded true). One endpoint's unload decisions one at a time;
      // the loads themselves run in parallel.
      std::lock_guard<std::mutex> one_at_a_time(job.state->load_mutex);
      const std::int32_t max = job.state->max_lora();
      while (max > 0 && static_cast<std::int64_t>(job.state->count()) + job.state->pending.load() > max) {
        const std::string victim = job.state->lru(job.adapter);
        if (victim.empty()) break;
        if (auto r = loader->unload(*job.endpoint, victim, job.timeout_ms); !r) break;
        job.state->remove(victim);
        counters.unloads.fetch_add(1, std::memory_order_relaxed);
      }
    }
    result = loader->load(*job.endpoint, job.adapter, job.path, job.timeout_ms);
    if (result) job.state->add(job.adapter, now_ns());
  }
  const std::int64_t now = now_ns();
  job.state->pending.fetch_sub(1, std::memory_order_relaxed);
  if (result) {
    counters.loads.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters.load_failures.fetch_add(1, std::memory_order_relaxed);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Flight& flight = flights_[job.key];
    flight.running = false;
    if (!result) {
      flight.failed_at_ns = now == 0 ? 1 : now;
      flight.error = result.error();
    }
  }
  if (wake_) wake_();
}

// ------------------------------------------------------------------ placement

Result<std::span<const Candidate>> place_lora(LoraManager& manager, const Pool& pool, const LoraPool& lora,
                                              std::string_view adapter, std::span<const Candidate> candidates) {
  thread_local std::vector<Candidate> with;  // grown to the largest pool seen, kept
  with.clear();
  for (const Candidate& c : candidates) {
    if (lora.slots[c.slot]->has(adapter)) with.push_back(c);
  }
  if (!with.empty()) {
    manager.counters.placed_loaded.fetch_add(1, std::memory_order_relaxed);
    if (lora.config.dynamic_loading && lora.config.replicate_margin > 0 && with.size() < candidates.size()) {
      // A hot adapter: every replica with it is busier than one without it by the margin: load
      // it there too (in the background; this request goes where it is loaded now).
      auto load_of = [](const Candidate& c) {
        return c.state->in_flight.load(std::memory_order_relaxed) +
               std::max<std::int32_t>(0, c.state->waiting.load(std::memory_order_relaxed));
      };
      std::int64_t least_with = std::numeric_limits<std::int64_t>::max();
      for (const Candidate& c : with) least_with = std::min(least_with, load_of(c));
      thread_local std::vector<Candidate> without;
      without.clear();
      std::int64_t least_without = std::numeric_limits<std::int64_t>::max();
      for (const Candidate& c : candidates) {
        if (std::find_if(with.begin(), with.end(), [&](const Candidate& w) { return w.slot == c.slot; }) != with.end()) continue;
        // Only into a free place (max_lora known, loads on their way counted): replicating by
        // unloading another adapter made the fleet thrash (bench/fleet/RESULTS.md, issue 14).
        const LoraEndpoint& le = *lora.slots[c.slot];
        const std::int32_t max = le.max_lora();
        if (max < 0 || static_cast<std::int64_t>(le.count()) + le.pending.load(std::memory_order_relaxed) >= max) continue;
        without.push_back(c);
        least_without = std::min(least_without, load_of(c));
      }
      if (!without.empty() && least_with >= least_without + static_cast<std::int64_t>(lora.config.replicate_margin)) {
        (void)manager.ensure_loaded(pool, lora, adapter, without);  // joined or held: nothing to do
      }
    }
    return std::span<const Candidate>(with);
  }
  if (!lora.config.dynamic_loading) {
    manager.counters.placed_any.fetch_add(1, std::memory_order_relaxed);
    return candidates;
  }
  auto started = manager.ensure_loaded(pool, lora, adapter, candidates);
  if (!started) return started.error();
  manager.counters.placed_load.fetch_add(1, std::memory_order_relaxed);
  // param "lora": the exchange names the load if the wait times out (lib/exchange.cpp).
  return Error{Errc::overloaded, "waiting for LoRA adapter `" + std::string(adapter) + "` to load", "lora"};
}

}  // namespace vllm_router::detail
