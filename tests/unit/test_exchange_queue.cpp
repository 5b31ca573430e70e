// ExchangeQueue (vllm_router/exchange_queue.h): a summary read back on the queue's thread is the
// one pushed (every field, copied: the request's strings may be gone), strings are bounded,
// endpoints are rebuilt from their ids, a full queue drops and counts, flush() and the destructor
// hand on everything pushed before them.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "vllm_router/exchange_queue.h"

using namespace vllm_router;
using namespace std::chrono_literals;

namespace {

Endpoint endpoint(const std::string& url) {
  Endpoint e;
  e.url = parse_url(url).value();
  e.id = endpoint_id(e.url);
  e.api_key = "sk-upstream-secret";
  return e;
}

// What a consumer saw, as owned values (the views die when the call returns).
struct Seen {
  std::vector<std::string> strings;  // the summary's, then each attempt's, in visit order
  std::string endpoint, endpoint_host, prefill;
  std::uint16_t endpoint_port = 0;
  std::string endpoint_key;
  std::vector<std::string> attempt_endpoints;
  std::vector<std::string> attempt_hosts;
  const Endpoint* first_attempt_endpoint = nullptr;
  std::int64_t end_unix_ns = 0;
  std::uint64_t trace_id_high = 0, trace_id_low = 0, span_id_bits = 0, parent_span_id_bits = 0;
  bool sampled = false, stream = false, colocated_fallback = false, panic = false;
  std::int64_t start_unix_ns = 0, prefix_match = 0;
  ExchangeEnd end = ExchangeEnd::ok;
  int status = 0, attempt_status = 0;
  unsigned attempts = 0;
  std::size_t candidates = 0;
  std::chrono::nanoseconds queue_wait{}, ttfb{}, ttft{}, duration{}, prefill_time{}, route_end{}, attempt_end{};
  std::uint64_t bytes = 0, bytes_in = 0, prompt = 0, completion = 0, span_bits = 0;
  bool estimated = false, retried = false;
  RetryReason retry_reason = RetryReason::connect_failure;
  OutcomeKind outcome = OutcomeKind::cancelled;
};

Seen seen(const ExchangeSummary& s, std::int64_t end_unix_ns) {
  Seen v;
  for (std::string_view x : {s.request_id, s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.method,
                             s.client_address, s.path, s.requested_model, s.model, s.error, s.key_id}) {
    v.strings.emplace_back(x);
  }
  for (const AttemptTrace& a : s.trace_attempts) {
    for (std::string_view x : {a.route_span_id, a.span_id, a.model, a.policy, a.error, a.leg}) v.strings.emplace_back(x);
    v.attempt_endpoints.push_back(a.endpoint != nullptr ? a.endpoint->id : "(none)");
    v.attempt_hosts.push_back(a.endpoint != nullptr ? a.endpoint->url.host : "(none)");
  }
  if (!s.trace_attempts.empty()) {
    const AttemptTrace& a = s.trace_attempts.front();
    v.first_attempt_endpoint = a.endpoint;
    v.candidates = a.candidates;
    v.panic = a.panic;
    v.prefix_match = a.prefix_match;
    v.route_end = a.route_end;
    v.attempt_end = a.end;
    v.outcome = a.outcome;
    v.attempt_status = a.status;
    v.retried = a.retried;
    v.retry_reason = a.retry_reason;
    v.span_bits = a.span_bits;
  }
  if (s.endpoint != nullptr) {
    v.endpoint = s.endpoint->id;
    v.endpoint_host = s.endpoint->url.host;
    v.endpoint_port = s.endpoint->url.port;
    v.endpoint_key = s.endpoint->api_key;
  }
  if (s.prefill_endpoint != nullptr) v.prefill = s.prefill_endpoint->id;
  v.end_unix_ns = end_unix_ns;
  v.trace_id_high = s.trace_id_high;
  v.trace_id_low = s.trace_id_low;
  v.span_id_bits = s.span_id_bits;
  v.parent_span_id_bits = s.parent_span_id_bits;
  v.sampled = s.sampled;
  v.start_unix_ns = s.start_unix_ns;
  v.end = s.end;
  v.status = s.status;
  v.attempts = s.attempts;
  v.queue_wait = s.queue_wait;
  v.ttfb = s.ttfb;
  v.ttft = s.ttft;
  v.duration = s.duration;
  v.bytes = s.bytes;
  v.bytes_in = s.bytes_in;
  v.stream = s.stream;
  v.prompt = s.usage.prompt;
  v.completion = s.usage.completion;
  v.estimated = s.usage.estimated;
  v.prefill_time = s.prefill;
  v.colocated_fallback = s.colocated_fallback;
  return v;
}

struct Collector {
  std::mutex mutex;
  std::vector<Seen> got;
  ExchangeQueue::Consumer consumer() {
    return [this](const ExchangeSummary& s, std::int64_t end) {
      std::lock_guard<std::mutex> lock(mutex);
      got.push_back(seen(s, end));
    };
  }
};

}  // namespace

TEST_CASE("exchange queue: a summary read back is the one pushed, copied whole") {
  const Endpoint decode = endpoint("http://10.0.0.5:8000");
  const Endpoint retry = endpoint("https://[fd00::7]:8443/v1base");
  const Endpoint prefill = endpoint("http://prefill.internal:9000");
  // The request's strings live in buffers that are overwritten once push() returned.
  std::string request_id = "req-0001", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", span = "00f067aa0ba902b7",
              parent = "b7ad6b7169203331", state = "congo=t61rcWkgMzE", method = "POST", client = "192.0.2.7",
              path = "/v1/chat/completions", requested = "llama", model = "meta-llama/Llama-3.1-8B",
              error = "", key = "team-a", r0 = "a000000000000001", s0 = "a000000000000002", p0 = "prefix_aware",
              e0 = "connect refused", r1 = "a000000000000003", s1 = "a000000000000004", leg = "decode";
  std::vector<AttemptTrace> attempts(2);
  attempts[0].route_span_id = r0;
  attempts[0].span_id = s0;
  attempts[0].endpoint = &retry;
  attempts[0].model = model;
  attempts[0].policy = p0;
  attempts[0].candidates = 3;
  attempts[0].panic = true;
  attempts[0].prefix_match = 4096;
  attempts[0].route_end = 2ms;
  attempts[0].end = 5ms;
  attempts[0].outcome = OutcomeKind::connect_failure;
  attempts[0].status = 0;
  attempts[0].retried = true;
  attempts[0].retry_reason = RetryReason::status_503;
  attempts[0].error = e0;
  attempts[0].span_bits = 0xa000000000000002ull;
  attempts[1].route_span_id = r1;
  attempts[1].span_id = s1;
  attempts[1].endpoint = &decode;
  attempts[1].model = model;
  attempts[1].policy = p0;
  attempts[1].leg = leg;
  ExchangeSummary s;
  s.request_id = request_id;
  s.trace_id = trace_id;
  s.span_id = span;
  s.parent_span_id = parent;
  s.trace_state = state;
  s.trace_id_high = 0x4bf92f3577b34da6ull;
  s.trace_id_low = 0xa3ce929d0e0e4736ull;
  s.span_id_bits = 0x00f067aa0ba902b7ull;
  s.parent_span_id_bits = 0xb7ad6b7169203331ull;
  s.sampled = true;
  s.start_unix_ns = 1796668076576916481;
  s.method = method;
  s.trace_attempts = attempts;
  s.client_address = client;
  s.path = path;
  s.requested_model = requested;
  s.model = model;
  s.endpoint = &decode;
  s.end = ExchangeEnd::upstream_error;
  s.status = 502;
  s.attempts = 2;
  s.queue_wait = 1500us;
  s.ttfb = 12ms;
  s.ttft = 23ms;
  s.duration = 1234ms;
  s.bytes = 645;
  s.bytes_in = 987;
  s.stream = true;
  s.error = error;
  s.key_id = key;
  s.usage = TokenUsage{227, 16, true};
  s.prefill_endpoint = &prefill;
  s.prefill = 7ms;
  s.colocated_fallback = true;
  const Seen expected = seen(s, 0);

  Collector c;
  {
    ExchangeQueue queue(c.consumer());
    const auto before = std::chrono::system_clock::now();
    CHECK(queue.push(s));
    const auto after = std::chrono::system_clock::now();
    for (std::string* str : {&request_id, &trace_id, &span, &parent, &state, &method, &client, &path, &requested, &model,
                             &key, &r0, &s0, &p0, &e0, &r1, &s1, &leg}) {
      std::fill(str->begin(), str->end(), '#');
    }
    ExchangeSummary plain;  // no trace, no endpoint
    plain.request_id = "req-0002";
    plain.status = 401;
    plain.end = ExchangeEnd::rejected;
    CHECK(queue.push(plain));
    queue.flush();
    std::lock_guard<std::mutex> lock(c.mutex);
    REQUIRE(c.got.size() == 2);
    const Seen& v = c.got[0];
    CHECK(v.strings == expected.strings);
    CHECK(v.endpoint == decode.id);
    CHECK(v.endpoint_host == "10.0.0.5");
    CHECK(v.endpoint_port == 8000);
    CHECK(v.endpoint_key.empty());  // never carried
    CHECK(v.prefill == prefill.id);
    CHECK(v.attempt_endpoints == std::vector<std::string>{retry.id, decode.id});
    CHECK(v.attempt_hosts == std::vector<std::string>{"fd00::7", "10.0.0.5"});
    CHECK(v.end_unix_ns >= std::chrono::duration_cast<std::chrono::nanoseconds>(before.time_since_epoch()).count());
    CHECK(v.end_unix_ns <= std::chrono::duration_cast<std::chrono::nanoseconds>(after.time_since_epoch()).count());
    CHECK(v.trace_id_high == expected.trace_id_high);
    CHECK(v.trace_id_low == expected.trace_id_low);
    CHECK(v.span_id_bits == expected.span_id_bits);
    CHECK(v.parent_span_id_bits == expected.parent_span_id_bits);
    CHECK(v.sampled);
    CHECK(v.start_unix_ns == expected.start_unix_ns);
    CHECK(v.end == ExchangeEnd::upstream_error);
    CHECK(v.status == 502);
    CHECK(v.attempts == 2);
    CHECK(v.queue_wait == expected.queue_wait);
    CHECK(v.ttfb == expected.ttfb);
    CHECK(v.ttft == expected.ttft);
    CHECK(v.duration == expected.duration);
    CHECK(v.bytes == 645);
    CHECK(v.bytes_in == 987);
    CHECK(v.stream);
    CHECK(v.prompt == 227);
    CHECK(v.completion == 16);
    CHECK(v.estimated);
    CHECK(v.prefill_time == 7ms);
    CHECK(v.colocated_fallback);
    CHECK(v.candidates == 3);
    CHECK(v.panic);
    CHECK(v.prefix_match == 4096);
    CHECK(v.route_end == 2ms);
    CHECK(v.attempt_end == 5ms);
    CHECK(v.outcome == OutcomeKind::connect_failure);
    CHECK(v.retried);
    CHECK(v.retry_reason == RetryReason::status_503);
    CHECK(v.span_bits == 0xa000000000000002ull);
    const Seen& w = c.got[1];
    CHECK(w.strings[0] == "req-0002");
    CHECK(w.status == 401);
    CHECK(w.end == ExchangeEnd::rejected);
    CHECK(w.endpoint.empty());
    CHECK(w.prefill.empty());
    CHECK(w.attempt_endpoints.empty());
    CHECK(queue.stats().handled == 2);
    CHECK(queue.stats().dropped == 0);
  }
}

TEST_CASE("exchange queue: strings are cut to 1 KiB; an endpoint id read back is one object while it recurs") {
  const Endpoint ep = endpoint("http://10.0.0.5:8000");
  const std::string huge(100000, 'm');
  AttemptTrace a;
  a.endpoint = &ep;
  a.error = huge;
  ExchangeSummary s;
  s.requested_model = huge;
  s.endpoint = &ep;
  s.trace_attempts = std::span<const AttemptTrace>(&a, 1);
  Collector c;
  ExchangeQueue queue(c.consumer());
  queue.push(s);
  queue.push(s);
  queue.flush();
  std::lock_guard<std::mutex> lock(c.mutex);
  REQUIRE(c.got.size() == 2);
  CHECK(c.got[0].strings[8] == huge.substr(0, 1024));   // requested_model
  CHECK(c.got[0].strings[12 + 4] == huge.substr(0, 1024));  // the attempt's error
  CHECK(c.got[0].first_attempt_endpoint != nullptr);
  CHECK(c.got[0].first_attempt_endpoint == c.got[1].first_attempt_endpoint);
  CHECK(c.got[0].first_attempt_endpoint != &ep);
}

TEST_CASE("exchange queue: strings of every short length read back byte for byte") {
  // Each length from 0 to 80 in every string of a summary and of an attempt, with a different
  // byte at each position (short strings are copied with overlapping fixed-size moves).
  const Endpoint ep = endpoint("http://10.0.0.5:8000");
  Collector c;
  ExchangeQueue queue(c.consumer());
  std::vector<std::string> pushed;
  for (std::size_t len = 0; len <= 80; ++len) {
    std::vector<std::string> text;
    for (std::size_t k = 0; k < 18; ++k) {
      std::string t(len, ' ');
      for (std::size_t i = 0; i < len; ++i) t[i] = static_cast<char>('!' + (i * 7 + k * 13 + len) % 90);
      text.push_back(t);
    }
    AttemptTrace a;
    a.endpoint = &ep;
    a.route_span_id = text[12];
    a.span_id = text[13];
    a.model = text[14];
    a.policy = text[15];
    a.error = text[16];
    a.leg = text[17];
    ExchangeSummary s;
    std::string_view* fields[] = {&s.request_id, &s.trace_id, &s.span_id, &s.parent_span_id, &s.trace_state, &s.method,
                                  &s.client_address, &s.path, &s.requested_model, &s.model, &s.error, &s.key_id};
    for (std::size_t k = 0; k < 12; ++k) *fields[k] = text[k];
    s.endpoint = &ep;
    s.trace_attempts = std::span<const AttemptTrace>(&a, 1);
    queue.push(s);
    for (const std::string& t : text) pushed.push_back(t);
  }
  queue.flush();
  std::lock_guard<std::mutex> lock(c.mutex);
  REQUIRE(c.got.size() == 81);
  std::vector<std::string> read;
  for (const Seen& v : c.got) {
    CHECK(v.endpoint == ep.id);
    for (const std::string& t : v.strings) read.push_back(t);
  }
  CHECK(read == pushed);
}

TEST_CASE("exchange queue: a full queue drops and counts; flush and the destructor hand on the rest") {
  std::mutex mutex;
  std::condition_variable cv;
  bool release = false;
  std::size_t consumed = 0;
  ExchangeQueueOptions options;
  options.capacity_bytes = 4096;  // a few records
  options.batch = 1;              // the thread takes the first record at once
  auto queue = std::make_unique<ExchangeQueue>(
      [&](const ExchangeSummary&, std::int64_t) {
        std::unique_lock<std::mutex> lock(mutex);
        ++consumed;
        cv.notify_all();
        cv.wait(lock, [&] { return release; });  // the consumer stalls
      },
      options);
  ExchangeSummary s;
  s.request_id = "req";
  CHECK(queue->push(s));
  {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return consumed == 1; });  // the thread holds the first record
  }
  std::size_t accepted = 0, refused = 0;
  for (int i = 0; i < 100; ++i) (queue->push(s) ? accepted : refused) += 1;
  CHECK(accepted >= 1);
  CHECK(accepted < 20);  // bounded by capacity_bytes, not by the pushes
  CHECK(refused == 100 - accepted);
  CHECK(queue->stats().dropped == refused);
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  cv.notify_all();
  queue->flush();
  CHECK(consumed == 1 + accepted);
  CHECK(queue->stats().handled == 1 + accepted);
  // What waits when the queue ends is handed on too.
  for (int i = 0; i < 3; ++i) CHECK(queue->push(s));
  queue.reset();
  CHECK(consumed == 1 + accepted + 3);
}

TEST_CASE("exchange queue: a consumer that throws does not stop the queue") {
  std::atomic<int> calls{0};
  ExchangeQueue queue([&](const ExchangeSummary&, std::int64_t) {
    if (calls.fetch_add(1) == 0) throw std::runtime_error("boom");
  });
  ExchangeSummary s;
  queue.push(s);
  queue.push(s);
  queue.flush();
  CHECK(calls.load() == 2);
  CHECK(queue.stats().handled == 2);
}
