// OtlpExporter: sampled exchanges' spans, encoded (protobuf) and queued (bounded) on the request's
// thread, batched and POSTed as OTLP/HTTP to <endpoint>/v1/traces by the exporter's own thread.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <utility>
#include <vector>
#include <mutex>
#include <thread>

#include "otlp_proto.h"
#include "vllm_router/tracing.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

using Clock = std::chrono::steady_clock;

class DiscardSink final : public BodySink {
 public:
  bool write(const char*, std::size_t) override { return true; }
};

}  // namespace

struct OtlpExporter::Impl {
  OtlpOptions options;
  Endpoint collector;
  std::shared_ptr<Transport> transport;

  std::mutex mutex;
  std::condition_variable wake;      // the thread: a batch is full, a flush, the end
  std::condition_variable flushed;   // flush(): a round ended
  // Encoded spans waiting, and where each exchange's end in them (so a request can be cut at
  // batch_size spans). Guarded by mutex; the thread swaps them with its own (capacity kept).
  // The spans start after `headroom` bytes, where the request's head is written in place.
  struct Queue {
    detail::ProtoWriter spans;
    std::vector<std::pair<std::size_t, std::size_t>> ends;  // (end offset, spans so far)
    void clear(std::size_t headroom) {
      spans.clear();
      spans.extend(headroom);
      ends.clear();
    }
  };
  std::unique_ptr<detail::OtlpHeader> header;  // set before the thread starts
  Queue queue;                          // guarded by mutex
  std::size_t queued_spans = 0;         // guarded by mutex
  std::uint64_t flush_wanted = 0;       // guarded by mutex
  std::uint64_t flush_done = 0;         // guarded by mutex
  bool stopping = false;                // guarded by mutex

  std::atomic<std::uint64_t> exported{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> failed{0};
  std::uint64_t dropped_logged = 0;  // the thread's
  Clock::time_point drop_log_at{};   // the thread's

  // A failed batch that may succeed later (network error, 429, 502, 503, 504): sent once more
  // at the next round. The thread's.
  std::string retry_body;
  std::size_t retry_spans = 0;
  Queue batch;               // the thread's: the queue it took

  std::thread thread;

  void log(int level, const std::string& message) const {
    if (options.log) options.log(level, message);
  }

  // POSTs one request body; true when the collector took it (2xx), `retryable` when worth another try.
  bool post(std::string_view body, bool& retryable) {
    Headers headers{{"Content-Type", "application/x-protobuf"}};
    UpstreamRequest request;
    request.method = "POST";
    request.path = "/v1/traces";
    request.headers = &headers;
    request.body = body;
    request.timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
    auto response = transport->send(collector, request, {});
    if (!response) {
      retryable = true;
      log(1, "OTLP export to " + collector.id + " failed: " + response.error().message);
      return false;
    }
    const int status = response.value()->status();
    DiscardSink sink;
    (void)response.value()->relay(sink);  // read the answer so the connection can be kept
    if (status >= 200 && status < 300) return true;
    retryable = status == 429 || status == 502 || status == 503 || status == 504;
    log(1, "OTLP export to " + collector.id + "/v1/traces answered HTTP " + std::to_string(status));
    return false;
  }

  void send(std::string_view body, std::size_t spans, bool last_chance) {
    bool retryable = false;
    if (post(body, retryable)) {
      exported.fetch_add(spans, std::memory_order_relaxed);
    } else if (retryable && !last_chance && retry_body.empty()) {
      retry_body.assign(body);
      retry_spans = spans;
    } else {
      failed.fetch_add(spans, std::memory_order_relaxed);
    }
  }

  // Sends `batch`, at most batch_size spans per request (cut between exchanges).
  void export_batch(bool last_chance) {
    if (!retry_body.empty()) {
      const std::string body = std::move(retry_body);
      retry_body.clear();
      send(body, retry_spans, true);
    }
    std::size_t from = header->max_size();  // the request being cut: its first span's byte
    std::size_t spans_before = 0;           // spans before it
    for (std::size_t i = 0; i < batch.ends.size(); ++i) {
      const auto [end, spans_so_far] = batch.ends[i];
      const bool cut = spans_so_far - spans_before >= options.batch_size || i + 1 == batch.ends.size();
      if (!cut) continue;
      // The head goes just before the spans: over the headroom, or over spans already sent
      // (every run of spans starts at least max_size() bytes into the buffer).
      const std::size_t size = end - from;
      const std::size_t n = header->write_before(batch.spans.data() + from, size);
      send(batch.spans.view().substr(from - n, n + size), spans_so_far - spans_before, last_chance);
      from = end;
      spans_before = spans_so_far;
    }
    batch.clear(header->max_size());
  }

  void log_drops() {
    const std::uint64_t now_dropped = dropped.load(std::memory_order_relaxed);
    if (now_dropped == dropped_logged) return;
    const auto now = Clock::now();
    if (now < drop_log_at) return;
    log(1, "tracing: " + std::to_string(now_dropped - dropped_logged) +
               " span(s) dropped, the export queue was full (otlp queue_size " + std::to_string(options.queue_size) +
               ")");
    dropped_logged = now_dropped;
    drop_log_at = now + std::chrono::seconds(10);
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      wake.wait_for(lock, options.interval, [this] {
        return stopping || queued_spans >= options.batch_size || flush_wanted > flush_done;
      });
      std::swap(batch, queue);
      queued_spans = 0;
      const bool stop = stopping;
      const std::uint64_t ticket = flush_wanted;
      lock.unlock();
      if (!batch.ends.empty() || !retry_body.empty()) export_batch(stop);
      log_drops();
      lock.lock();
      flush_done = ticket;
      flushed.notify_all();
      if (stop && queue.ends.empty()) return;
    }
  }
};

Result<std::shared_ptr<OtlpExporter>> OtlpExporter::create(OtlpOptions options) {
  auto url = parse_url(options.endpoint);
  if (!url) return Error{Errc::config, "otlp endpoint: " + url.error().message, "otlp.endpoint"};
  if (options.batch_size == 0 || options.queue_size == 0) {
    return Error{Errc::config, "otlp batch_size and queue_size must be at least 1", "otlp"};
  }
  if (options.interval.count() <= 0) options.interval = std::chrono::milliseconds(1);
  if (options.timeout.count() <= 0) options.timeout = std::chrono::milliseconds(10000);
  auto impl = std::make_unique<Impl>();
  impl->collector.url = std::move(url).value();
  impl->collector.id = endpoint_id(impl->collector.url);
  HttpTransportOptions transport;
  transport.connect_timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
  transport.read_timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
  transport.write_timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
  transport.max_idle_per_endpoint = 1;
  impl->transport = make_http_transport(transport);
  impl->header = std::make_unique<detail::OtlpHeader>(options.service_name);
  impl->queue.clear(impl->header->max_size());
  impl->batch.clear(impl->header->max_size());
  impl->options = std::move(options);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::shared_ptr<OtlpExporter>(new OtlpExporter(std::move(impl)));
}

OtlpExporter::OtlpExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

OtlpExporter::~OtlpExporter() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  impl_->thread.join();
}

void OtlpExporter::on_exchange(const ExchangeSummary& summary) {
  if (!summary.sampled || summary.trace_id.size() != 32 || summary.span_id.size() != 16) return;
  Impl& m = *impl_;
  // Encoded here, outside the lock, into this thread's buffer (kept: no allocation per request).
  thread_local detail::ProtoWriter encoded;
  encoded.clear();
  const std::size_t n = detail::append_spans(encoded, summary);
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (m.queued_spans + n > m.options.queue_size) {
      m.dropped.fetch_add(n, std::memory_order_relaxed);
      return;
    }
    const std::size_t before = m.queued_spans;
    m.queued_spans += n;
    m.queue.spans.raw(encoded.view());
    const std::size_t so_far = m.queue.ends.empty() ? n : m.queue.ends.back().second + n;
    m.queue.ends.emplace_back(m.queue.spans.size(), so_far);
    // Wake the thread once, when a batch fills (no system call per span).
    notify = before < m.options.batch_size && m.queued_spans >= m.options.batch_size;
  }
  if (notify) m.wake.notify_one();
}

OtlpStats OtlpExporter::stats() const noexcept {
  OtlpStats s;
  s.exported = impl_->exported.load(std::memory_order_relaxed);
  s.dropped = impl_->dropped.load(std::memory_order_relaxed);
  s.failed = impl_->failed.load(std::memory_order_relaxed);
  return s;
}

void OtlpExporter::flush() {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mutex);
  const std::uint64_t ticket = ++m.flush_wanted;
  m.wake.notify_one();
  m.flushed.wait(lock, [&] { return m.flush_done >= ticket || m.stopping; });
}

VLLM_ROUTER_END_NAMESPACE
