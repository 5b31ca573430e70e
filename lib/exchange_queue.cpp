// ExchangeQueue: summaries copied on the request's thread, read back on the queue's.
//
// A record in the buffer: a Head (the summary as it was, its views' sizes valid and their
// pointers not), the trace attempts the same way, the length of each attempt's endpoint id, then
// every string's bytes in one fixed order (visit_summary(), visit_attempt()), padded to 8
// bytes. push() writes a record straight into the shared buffer, under its lock.
#include "vllm_router/exchange_queue.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "byte_buffer.h"
#include "string_map.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

// Each string is kept to this many bytes (the consumers cut shorter: spans 512, log lines 256):
// a record stays bounded whatever a client sends.
constexpr std::size_t kMaxString = 1024;
constexpr std::uint32_t kNoEndpoint = 0xffffffffu;

static_assert(std::is_trivially_copyable_v<ExchangeSummary>, "a summary is copied as bytes");
static_assert(std::is_trivially_copyable_v<AttemptTrace>, "an attempt is copied as bytes");

struct Head {  // built in place: records start 8-byte aligned
  std::uint32_t size;        // the record's bytes, padding included
  std::uint32_t attempts;
  std::uint32_t endpoint;    // the id's length, or kNoEndpoint
  std::uint32_t prefill;     // the same for the prefill endpoint
  std::int64_t end_unix_ns;
  ExchangeSummary summary;
};
static_assert(alignof(Head) <= 8 && alignof(AttemptTrace) <= 8 && sizeof(Head) % 8 == 0 && sizeof(AttemptTrace) % 8 == 0,
              "records padded to 8 bytes keep every head and attempt aligned");

// The string views of a summary and of an attempt, in the order their bytes are stored
// (S: ExchangeSummary or const ExchangeSummary; A the same for AttemptTrace). Spelled out, not a
// loop over their addresses: this runs twice per request on the loop.
template <class S, class F>
void visit_summary(S& s, F&& f) {
  f(s.request_id);
  f(s.trace_id);
  f(s.span_id);
  f(s.parent_span_id);
  f(s.trace_state);
  f(s.method);
  f(s.client_address);
  f(s.path);
  f(s.requested_model);
  f(s.model);
  f(s.error);
  f(s.key_id);
}
template <class A, class F>
void visit_attempt(A& a, F&& f) {
  f(a.route_span_id);
  f(a.span_id);
  f(a.model);
  f(a.policy);
  f(a.error);
  f(a.leg);
}

std::uint32_t id_size(const Endpoint* e) {
  return e == nullptr ? kNoEndpoint : static_cast<std::uint32_t>(std::min(e->id.size(), kMaxString));
}

constexpr std::size_t pad8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// Copies `n` bytes with at most two fixed-size moves when `n` <= 32 (the usual: ids, names,
// addresses), with memcpy above: short calls to memcpy cost more than the bytes.
inline void copy_bytes(char* d, const char* s, std::size_t n) noexcept {
  if (n > 32) {
    std::memcpy(d, s, n);
  } else if (n >= 16) {
    std::memcpy(d, s, 16);
    std::memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(d, s, 8);
    std::memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(d, s, 4);
    std::memcpy(d + n - 4, s + n - 4, 4);
  } else if (n != 0) {
    d[0] = s[0];
    d[n / 2] = s[n / 2];
    d[n - 1] = s[n - 1];
  }
}

// The bytes a record of `s` takes (its strings at their cut), padding included.
std::size_t record_size(const ExchangeSummary& s) {
  std::size_t n = sizeof(Head) + s.trace_attempts.size() * (sizeof(AttemptTrace) + sizeof(std::uint32_t));
  const auto add = [&](std::string_view v) { n += std::min(v.size(), kMaxString); };
  const auto add_id = [&](const Endpoint* e) {
    if (e != nullptr) n += std::min(e->id.size(), kMaxString);
  };
  visit_summary(s, add);
  add_id(s.endpoint);
  add_id(s.prefill_endpoint);
  for (const AttemptTrace& a : s.trace_attempts) {
    visit_attempt(a, add);
    add_id(a.endpoint);
  }
  return pad8(n);
}

// Writes the record of `s` at `p`, `size` bytes (record_size(s)), in one pass: the head and the
// attempts are built where they go (the buffer is 8-byte aligned, records are padded to 8).
void encode(char* const p, std::size_t size, const ExchangeSummary& s, std::int64_t end_unix_ns) {
  const std::size_t n = s.trace_attempts.size();
  char* bytes = p + sizeof(Head) + n * (sizeof(AttemptTrace) + sizeof(std::uint32_t));
  const auto put = [&](std::string_view& v) {  // cuts the view and copies its bytes
    if (v.size() > kMaxString) v = v.substr(0, kMaxString);
    copy_bytes(bytes, v.data(), v.size());
    bytes += v.size();
  };
  const auto put_id = [&](const Endpoint* e) {
    const std::uint32_t id = id_size(e);
    if (id != kNoEndpoint) {
      copy_bytes(bytes, e->id.data(), id);
      bytes += id;
    }
    return id;
  };
  Head* const h = ::new (p) Head{static_cast<std::uint32_t>(size), static_cast<std::uint32_t>(n), 0, 0, end_unix_ns, s};
  visit_summary(h->summary, put);
  h->endpoint = put_id(s.endpoint);
  h->prefill = put_id(s.prefill_endpoint);
  char* const lengths = p + sizeof(Head) + n * sizeof(AttemptTrace);
  for (std::size_t i = 0; i < n; ++i) {
    auto* const a = ::new (p + sizeof(Head) + i * sizeof(AttemptTrace)) AttemptTrace(s.trace_attempts[i]);
    visit_attempt(*a, put);
    const std::uint32_t e = put_id(s.trace_attempts[i].endpoint);
    std::memcpy(lengths + i * sizeof e, &e, sizeof e);
  }
  std::memset(bytes, 0, static_cast<std::size_t>(p + size - bytes));  // the padding
}

// Endpoint copies by id, kept by the reading thread (ids recur: the fleet's endpoints).
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
  detail::StringMap<std::unique_ptr<Endpoint>> map_;
  const Endpoint* last_ = nullptr;  // the last one found
};

}  // namespace

struct ExchangeQueue::Impl {
  Consumer consumer;
  ExchangeQueueOptions options;

  std::mutex mutex;
  std::condition_variable wake;     // the thread: a batch waits, a flush, the end
  std::condition_variable drained;  // flush(): a round ended
  detail::ByteBuffer active;        // records, under mutex
  std::size_t active_count = 0;     // under mutex
  std::uint64_t queued = 0;         // records ever accepted, under mutex
  std::uint64_t done = 0;           // records ever handed on, under mutex
  bool flush_wanted = false;        // under mutex
  bool stopping = false;            // under mutex
  std::atomic<std::uint64_t> dropped{0};

  detail::ByteBuffer taken;            // the thread's
  std::vector<AttemptTrace> attempts;  // the thread's
  Endpoints endpoints;                 // the thread's
  std::thread thread;

  void replay(const detail::ByteBuffer& records) {
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
      visit_summary(s, get);
      s.endpoint = endpoint(h.endpoint);
      s.prefill_endpoint = endpoint(h.prefill);
      for (std::size_t i = 0; i < h.attempts; ++i) {
        AttemptTrace& a = attempts[i];
        visit_attempt(a, get);
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
      active.swap(taken);
      const std::size_t n = active_count;
      active_count = 0;
      lock.unlock();
      if (n != 0) replay(taken);
      taken.clear();
      if (taken.capacity() > (std::size_t{1} << 24)) taken.release();  // after a burst
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
  const std::size_t size = record_size(summary);
  Impl& m = *impl_;
  bool wake = false;
  {
    // Written in place, under the lock: one copy of the bytes, not a scratch record and then
    // the buffer (a few hundred instructions held against the other loops and the thread).
    std::lock_guard<std::mutex> lock(m.mutex);
    if (m.active.size() + size > m.options.capacity_bytes && m.active_count != 0) {
      m.dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    encode(m.active.extend(size), size, summary, now);
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
