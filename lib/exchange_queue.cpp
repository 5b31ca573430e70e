// ExchangeQueue: summaries copied on the request's thread, read back on the queue's.
//
// A record in the buffer: a Head (the summary as it was, its views' sizes valid and their
// pointers not), the trace attempts the same way, the length of each attempt's endpoint id, then
// every string's bytes in one fixed order (visit()), padded to 8 bytes.
#include "vllm_router/exchange_queue.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Each string is kept to this many bytes (the consumers cut shorter: spans 512, log lines 256):
// a record stays bounded whatever a client sends.
constexpr std::size_t kMaxString = 1024;
constexpr std::uint32_t kNoEndpoint = 0xffffffffu;

static_assert(std::is_trivially_copyable_v<ExchangeSummary>, "a summary is copied as bytes");
static_assert(std::is_trivially_copyable_v<AttemptTrace>, "an attempt is copied as bytes");

struct Head {
  std::uint32_t size;        // the record's bytes, padding included
  std::uint32_t attempts;
  std::uint32_t endpoint;    // the id's length, or kNoEndpoint
  std::uint32_t prefill;     // the same for the prefill endpoint
  std::int64_t end_unix_ns;
  ExchangeSummary summary;
};

// The string views of a summary and of an attempt, in the order their bytes are stored.
template <class F>
void visit(ExchangeSummary& s, F&& f) {
  for (std::string_view* v : {&s.request_id, &s.trace_id, &s.span_id, &s.parent_span_id, &s.trace_state, &s.method,
                              &s.client_address, &s.path, &s.requested_model, &s.model, &s.error, &s.key_id}) {
    f(*v);
  }
}
template <class F>
void visit(AttemptTrace& a, F&& f) {
  for (std::string_view* v : {&a.route_span_id, &a.span_id, &a.model, &a.policy, &a.error, &a.leg}) f(*v);
}

std::uint32_t id_size(const Endpoint* e) {
  return e == nullptr ? kNoEndpoint : static_cast<std::uint32_t>(std::min(e->id.size(), kMaxString));
}

constexpr std::size_t pad8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// Writes the record of `s` into this thread's buffer (kept: no allocation once warm), in one
// pass: the buffer is sized for the longest record `s` could make, each string at its cut.
std::string_view encode(const ExchangeSummary& s, std::int64_t end_unix_ns) {
  constexpr std::size_t kSummaryStrings = 12 + 2, kAttemptStrings = 6 + 1;  // visit()'s and the endpoints
  const std::size_t n = s.trace_attempts.size();
  const std::size_t table = sizeof(Head) + n * (sizeof(AttemptTrace) + sizeof(std::uint32_t));
  const std::size_t bound = table + (kSummaryStrings + n * kAttemptStrings) * kMaxString + 8;
  thread_local std::unique_ptr<char[]> buffer;
  thread_local std::size_t capacity = 0;
  if (bound > capacity) {
    capacity = std::max<std::size_t>(bound, 64 * 1024);
    buffer.reset(new char[capacity]);
  }
  char* const p = buffer.get();
  char* bytes = p + table;
  const auto put = [&](std::string_view& v) {  // cuts the view and copies its bytes
    if (v.size() > kMaxString) v = v.substr(0, kMaxString);
    if (!v.empty()) std::memcpy(bytes, v.data(), v.size());
    bytes += v.size();
  };
  const auto put_id = [&](const Endpoint* e) {
    const std::uint32_t size = id_size(e);
    if (size != kNoEndpoint) {
      std::memcpy(bytes, e->id.data(), size);
      bytes += size;
    }
    return size;
  };
  Head h;
  h.summary = s;
  visit(h.summary, put);
  h.endpoint = put_id(s.endpoint);
  h.prefill = put_id(s.prefill_endpoint);
  char* const attempts = p + sizeof h;
  char* const lengths = attempts + n * sizeof(AttemptTrace);
  for (std::size_t i = 0; i < n; ++i) {
    AttemptTrace c = s.trace_attempts[i];
    visit(c, put);
    const std::uint32_t e = put_id(c.endpoint);
    std::memcpy(attempts + i * sizeof(AttemptTrace), &c, sizeof c);
    std::memcpy(lengths + i * sizeof e, &e, sizeof e);
  }
  const std::size_t size = pad8(static_cast<std::size_t>(bytes - p));
  std::memset(bytes, 0, static_cast<std::size_t>(p + size - bytes));  // the padding
  h.size = static_cast<std::uint32_t>(size);
  h.attempts = static_cast<std::uint32_t>(n);
  h.end_unix_ns = end_unix_ns;
  std::memcpy(p, &h, sizeof h);
  return {p, size};
}

// Endpoint copies by id, kept by the reading thread (ids recur: the fleet's endpoints).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
class Endpoints {
 public:
  // Before a record (never during one: its endpoints stay valid until the consumer returned).
  void trim() {
    if (map_.size() < 4096) return;  // a churning fleet: start again
    map_.clear();
    last_ = nullptr;
  }
  const Endpoint* get(std::string_view id) {
    if (last_ != nullptr && last_->id == id) return last_;  // the usual: the same few recur
    auto it = map_.find(id);
    if (it != map_.end()) return last_ = it->second.get();
    auto e = std::make_unique<Endpoint>();
    e->id.assign(id);
    if (auto url = parse_url(id)) e->url = std::move(url).value();
    last_ = e.get();
    map_.emplace(std::string(id), std::move(e));
    return last_;
  }

 private:
  std::unordered_map<std::string, std::unique_ptr<Endpoint>, StringHash, std::equal_to<>> map_;
  const Endpoint* last_ = nullptr;  // the last one found
};

}  // namespace

struct ExchangeQueue::Impl {
  Consumer consumer;
  ExchangeQueueOptions options;

  std::mutex mutex;
  std::condition_variable wake;     // the thread: a batch waits, a flush, the end
  std::condition_variable drained;  // flush(): a round ended
  std::string active;               // records, under mutex
  std::size_t active_count = 0;     // under mutex
  std::uint64_t queued = 0;         // records ever accepted, under mutex
  std::uint64_t done = 0;           // records ever handed on, under mutex
  bool flush_wanted = false;        // under mutex
  bool stopping = false;            // under mutex
  std::atomic<std::uint64_t> dropped{0};

  std::string taken;                  // the thread's
  std::vector<AttemptTrace> attempts;  // the thread's
  Endpoints endpoints;                 // the thread's
  std::thread thread;

  void replay(const std::string& records) {
    std::size_t at = 0;
    while (at < records.size()) {
      Head h;
      std::memcpy(&h, records.data() + at, sizeof h);
      const char* p = records.data() + at + sizeof h;
      attempts.resize(h.attempts);
      if (h.attempts != 0) std::memcpy(attempts.data(), p, h.attempts * sizeof(AttemptTrace));
      p += h.attempts * sizeof(AttemptTrace);
      const char* lengths = p;
      p += h.attempts * sizeof(std::uint32_t);
      const auto get = [&](std::string_view& v) {
        v = std::string_view(p, v.size());
        p += v.size();
      };
      const auto endpoint = [&](std::uint32_t n) -> const Endpoint* {
        if (n == kNoEndpoint) return nullptr;
        const Endpoint* e = endpoints.get(std::string_view(p, n));
        p += n;
        return e;
      };
      ExchangeSummary& s = h.summary;
      endpoints.trim();
      visit(s, get);
      s.endpoint = endpoint(h.endpoint);
      s.prefill_endpoint = endpoint(h.prefill);
      for (std::size_t i = 0; i < h.attempts; ++i) {
        AttemptTrace& a = attempts[i];
        visit(a, get);
        std::uint32_t n;
        std::memcpy(&n, lengths + i * sizeof n, sizeof n);
        a.endpoint = endpoint(n);
      }
      s.trace_attempts = std::span<const AttemptTrace>(attempts.data(), attempts.size());
      try {
        consumer(s, h.end_unix_ns);
      } catch (...) {
        // As an Observer's: a consumer's exception ends nothing.
      }
      at += h.size;
    }
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      wake.wait_for(lock, options.interval,
                    [&] { return stopping || flush_wanted || active_count >= options.batch; });
      const bool stop = stopping;
      flush_wanted = false;  // this round answers every flush() that asked before it
      std::swap(active, taken);
      const std::size_t n = active_count;
      active_count = 0;
      lock.unlock();
      if (n != 0) replay(taken);
      taken.clear();
      if (taken.capacity() > (std::size_t{1} << 24)) std::string().swap(taken);  // after a burst
      lock.lock();
      done += n;
      drained.notify_all();
      if (stop && active_count == 0) return;
    }
  }
};

ExchangeQueue::ExchangeQueue(Consumer consumer, ExchangeQueueOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.batch == 0) options.batch = 1;
  if (options.interval.count() <= 0) options.interval = std::chrono::milliseconds(1);
  impl_->consumer = std::move(consumer);
  impl_->options = options;
  Impl* raw = impl_.get();
  impl_->thread = std::thread([raw] { raw->run(); });
}

ExchangeQueue::~ExchangeQueue() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  impl_->thread.join();
}

bool ExchangeQueue::push(const ExchangeSummary& summary) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  const std::string_view record = encode(summary, now);
  Impl& m = *impl_;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (m.active.size() + record.size() > m.options.capacity_bytes && m.active_count != 0) {
      m.dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    m.active.append(record);
    ++m.active_count;
    ++m.queued;
    wake = m.active_count == m.options.batch;  // else the thread comes at its interval
  }
  if (wake) m.wake.notify_one();
  return true;
}

void ExchangeQueue::flush() {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mutex);
  const std::uint64_t target = m.queued;
  if (m.done >= target) return;
  m.flush_wanted = true;
  m.wake.notify_one();
  m.drained.wait(lock, [&] { return m.done >= target; });
}

ExchangeQueueStats ExchangeQueue::stats() const noexcept {
  ExchangeQueueStats s;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    s.handled = impl_->done;
  }
  s.dropped = impl_->dropped.load(std::memory_order_relaxed);
  return s;
}

VLLM_ROUTER_END_NAMESPACE
