// The gateway's Prometheus metrics (server/metrics.*): bucket ladders, histograms, bounded
// label sets, the exposition's families; and the process_* figures read from /proc.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <set>
#include <sstream>
#include <string>

#include "metrics.h"
#include "process_metrics.h"
#include "vllm_router/router.h"
#include "vllm_router/version.h"

using namespace vllm_router;
using namespace vllm_router::server;
using namespace std::chrono_literals;

namespace {

bool increasing(const std::vector<double>& v) {
  for (std::size_t i = 1; i < v.size(); ++i) {
    if (!(v[i] > v[i - 1])) return false;
  }
  return !v.empty();
}

std::unique_ptr<Router> one_model_router() {
  RouterConfig c;
  ModelConfig m;
  m.name = "org/m";
  m.endpoints = {{"http://127.0.0.1:1001", 1, ""}};
  c.models = {m};
  auto r = Router::create(c);
  REQUIRE(r);
  return std::move(r).value();
}

// The value of the sample whose line starts with `prefix` (name and labels), or -1.
double sample(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix + " ", 0) == 0) return std::stod(line.substr(prefix.size() + 1));
  }
  return -1;
}

}  // namespace

TEST_CASE("duration buckets run from 1 ms to the first bound at or above the longest timeout") {
  const auto d600 = duration_bounds(600);
  CHECK(increasing(d600));
  CHECK(d600.front() == 0.001);
  CHECK(d600.back() == 600);
  CHECK(duration_bounds(900).back() == 1200);
  CHECK(duration_bounds(5).back() == 60);  // never shorter than a minute
  CHECK(duration_bounds(3600).back() == 3600);
  const auto long_one = duration_bounds(7200.5);
  CHECK(increasing(long_one));
  CHECK(long_one.back() == 7201);
  CHECK(long_one[long_one.size() - 2] == 3600);

  const auto gaps = gap_bounds(600);
  CHECK(increasing(gaps));
  CHECK(gaps.front() == 0.001);
  CHECK(gaps.back() == 600);
  CHECK(std::count(gaps.begin(), gaps.end(), 0.02) == 1);  // fine steps where tokens are

  RouterConfig c;
  CHECK(longest_timeout_seconds(c, 60000) == 600);  // read_ms's default
  c.timeouts.total_ms = 900000;
  CHECK(longest_timeout_seconds(c, 60000) == 900);
  c.timeouts.total_ms = 0;
  c.timeouts.read_ms = 1000;
  c.timeouts.idle_ms = 0;
  CHECK(longest_timeout_seconds(c, 60000) == 60);  // the client's idle timeout
}

TEST_CASE("a histogram counts a value in the first bucket whose bound is not below it") {
  const std::vector<double> bounds = {0.1, 1, 10};
  Histogram h(bounds);
  h.observe(0.1);   // on a bound: that bucket (le is "less or equal")
  h.observe(0.5);
  h.observe(1.0);
  h.observe(11);    // beyond every bound: +Inf only
  h.observe(0);
  CHECK(h.bucket(0) == 2);
  CHECK(h.bucket(1) == 2);
  CHECK(h.bucket(2) == 0);
  CHECK(h.bucket(3) == 1);
  CHECK(h.count() == 5);
  std::string out;
  h.render(out, "x_seconds", "model=\"m\"");
  CHECK(out ==
        "x_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
        "x_seconds_bucket{model=\"m\",le=\"1\"} 4\n"
        "x_seconds_bucket{model=\"m\",le=\"10\"} 4\n"
        "x_seconds_bucket{model=\"m\",le=\"+Inf\"} 5\n"
        "x_seconds_sum{model=\"m\"} 12.6\n"
        "x_seconds_count{model=\"m\"} 5\n");
  std::string bare;
  h.render(bare, "y_seconds", "");
  CHECK(bare.find("y_seconds_bucket{le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(bare.find("y_seconds_count 5\n") != std::string::npos);
}

TEST_CASE("metrics: streams, retries, queue and label values a client cannot choose") {
  auto router = one_model_router();
  Metrics metrics(600);
  const Endpoint& ep = *router->snapshot()->pools[0].endpoints[0];

  ExchangeSummary unknown;  // a made-up model: it resolved nothing
  unknown.requested_model = "client-made-up-model";
  unknown.status = 404;
  unknown.duration = 1ms;
  metrics.on_exchange(unknown);

  ExchangeSummary stream;
  stream.requested_model = "alias-of-m";
  stream.model = "org/m";
  stream.endpoint = &ep;
  stream.status = 200;
  stream.attempts = 2;
  stream.stream = true;
  stream.ttft = 250ms;
  stream.duration = 2s;
  stream.queue_wait = 30ms;
  stream.usage = TokenUsage{12, 40, false};
  metrics.on_exchange(stream);
  metrics.on_retry("org/m", ep, RetryReason::status_503, 1);
  for (int i = 0; i < 3; ++i) metrics.on_stream_gap("org/m", ep, 20ms);
  metrics.on_stream_gap("org/m", ep, 2s);

  ExchangeSummary plain = stream;  // non-streamed: no TTFT
  plain.stream = false;
  plain.attempts = 1;
  plain.queue_wait = 0ns;
  metrics.on_exchange(plain);

  const std::string text = metrics.render(*router->snapshot(), 3);
  CHECK(text.find("client-made-up-model") == std::string::npos);
  CHECK(text.find("alias-of-m") == std::string::npos);
  CHECK(sample(text, "vllm_router_requests_total{model=\"org/m\",status=\"200\"}") == 2);
  CHECK(sample(text, "vllm_router_requests_total{model=\"\",status=\"404\"}") == 1);
  CHECK(sample(text, "vllm_router_time_to_first_token_seconds_count{model=\"org/m\"}") == 1);
  CHECK(sample(text, "vllm_router_time_to_first_token_seconds_bucket{model=\"org/m\",le=\"0.25\"}") == 1);
  CHECK(sample(text, "vllm_router_time_to_first_token_seconds_bucket{model=\"org/m\",le=\"0.1\"}") == 0);
  CHECK(sample(text, "vllm_router_inter_token_latency_seconds_count{model=\"org/m\"}") == 4);
  CHECK(sample(text, "vllm_router_inter_token_latency_seconds_bucket{model=\"org/m\",le=\"0.02\"}") == 3);
  CHECK(sample(text, "vllm_router_inter_token_latency_seconds_bucket{model=\"org/m\",le=\"600\"}") == 4);
  CHECK(sample(text, "vllm_router_retries_total{model=\"org/m\",reason=\"status_503\"}") == 1);
  CHECK(sample(text, "vllm_router_tokens_total{model=\"org/m\",kind=\"completion\"}") == 80);
  CHECK(sample(text, "vllm_router_queue_depth") == 3);
  CHECK(sample(text, "vllm_router_queue_wait_seconds_count") == 2);  // routed ones; not the 404
  CHECK(sample(text, "vllm_router_queue_wait_seconds_bucket{le=\"0.025\"}") == 1);
  CHECK(sample(text, "vllm_router_request_duration_seconds_bucket{model=\"org/m\",le=\"600\"}") == 2);
  CHECK(sample(text, "vllm_router_endpoint_ejections_total{model=\"org/m\",endpoint=\"http://127.0.0.1:1001\"}") == 0);
  CHECK(sample(text, "vllm_router_build_info{version=\"" + std::string(version()) + "\"}") == 1);
  CHECK(text.find("# TYPE vllm_router_endpoint_ejections_total counter\n") != std::string::npos);

  // Every sample belongs to a family declared before it, declared once; counters end in _total.
  std::set<std::string> declared;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      CHECK_MESSAGE(declared.insert(name).second, name);
      if (type == "counter") CHECK_MESSAGE(name.size() > 6, name);
      if (type == "counter") CHECK_MESSAGE(name.substr(name.size() - 6) == "_total", name);
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (name.size() > s.size() && name.substr(name.size() - s.size()) == s &&
          declared.count(name.substr(0, name.size() - s.size())) != 0) {
        name = name.substr(0, name.size() - s.size());
      }
    }
    CHECK_MESSAGE(declared.count(name) == 1, line);
  }
  CHECK(declared.count("process_cpu_seconds_total") == 1);
}

TEST_CASE("the per-thread entry cache of stream gaps never mixes two Metrics or two models") {
  auto router = one_model_router();
  const Endpoint& ep = *router->snapshot()->pools[0].endpoints[0];
  auto first = std::make_unique<Metrics>(600);
  first->on_stream_gap("org/m", ep, 1ms);
  first->on_stream_gap("org/other", ep, 1ms);
  first->on_stream_gap("org/m", ep, 1ms);
  const std::string a = first->render(*router->snapshot());
  CHECK(sample(a, "vllm_router_inter_token_latency_seconds_count{model=\"org/m\"}") == 2);
  CHECK(sample(a, "vllm_router_inter_token_latency_seconds_count{model=\"org/other\"}") == 1);
  const std::string long_name(200, 'x');  // longer than the cache holds: looked up each time
  first->on_stream_gap(long_name, ep, 1ms);
  first->on_stream_gap(long_name, ep, 1ms);
  first->on_stream_gap("org/m", ep, 1ms);
  const std::string b = first->render(*router->snapshot());
  CHECK(sample(b, "vllm_router_inter_token_latency_seconds_count{model=\"" + long_name + "\"}") == 2);
  CHECK(sample(b, "vllm_router_inter_token_latency_seconds_count{model=\"org/m\"}") == 3);
  first.reset();
  Metrics second(600);  // may sit where the first one was: the cache must not hand its entry over
  second.on_stream_gap("org/m", ep, 1ms);
  CHECK(sample(second.render(*router->snapshot()), "vllm_router_inter_token_latency_seconds_count{model=\"org/m\"}") == 1);
}

TEST_CASE("/proc/PID/stat: fields counted from the last parenthesis") {
  // pid (comm) state ppid ... : utime=300 stime=100 (fields 14, 15), starttime=5000 (22),
  // vsize=8192000 (23), rss=250 pages (24). The name holds a space and a parenthesis.
  const std::string stat =
      "4242 (vllm (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 300 100 0 0 20 0 3 0 5000 8192000 250 "
      "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
  const auto s = parse_proc_stat(stat, 100, 4096, 1700000000);
  REQUIRE(s);
  CHECK(s->cpu_seconds == doctest::Approx(4.0));
  CHECK(s->start_time_seconds == doctest::Approx(1700000050.0));
  CHECK(s->virtual_bytes == 8192000);
  CHECK(s->resident_bytes == 250 * 4096);
  CHECK_FALSE(parse_proc_stat("4242 (x) S 1 2", 100, 4096, 0));  // cut short
  CHECK_FALSE(parse_proc_stat("no parenthesis", 100, 4096, 0));
  CHECK_FALSE(parse_proc_stat(std::string(stat).replace(stat.find(" 300 "), 5, " x00 "), 100, 4096, 0));

  CHECK(parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") == 1700000000.0);
  CHECK_FALSE(parse_boot_time("cpu  1 2 3\n"));
}

TEST_CASE("this process's figures from /proc: descriptors, limit, memory, start time") {
  const auto before = read_process_stats();
  REQUIRE(before);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const auto during = read_process_stats();
  ::close(fds[0]);
  ::close(fds[1]);
  REQUIRE(during);
  CHECK(during->open_fds == before->open_fds + 2);
  rlimit rl{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  if (rl.rlim_cur != RLIM_INFINITY) CHECK(during->max_fds == rl.rlim_cur);
  CHECK(during->resident_bytes > 1024 * 1024);
  CHECK(during->virtual_bytes >= during->resident_bytes);
  const double now = static_cast<double>(std::time(nullptr));
  CHECK(during->start_time_seconds <= now + 1);
  CHECK(during->start_time_seconds > now - 3600);  // the test binary started just now
  CHECK(during->cpu_seconds >= 0);
  std::string out;
  render_process_metrics(out, *during);
  CHECK(out.find("process_open_fds " + std::to_string(during->open_fds) + "\n") != std::string::npos);
  CHECK(out.find("# TYPE process_cpu_seconds_total counter\n") != std::string::npos);
}

TEST_CASE("metrics: prefill/decode disaggregation's prefill leg and fallbacks, by model") {
  auto router = one_model_router();
  Metrics metrics(600);
  const Endpoint& ep = *router->snapshot()->pools[0].endpoints[0];
  ExchangeSummary split;
  split.model = "org/m";
  split.endpoint = &ep;
  split.status = 200;
  split.duration = 1s;
  split.prefill_endpoint = &ep;
  split.prefill = 120ms;
  metrics.on_exchange(split);
  ExchangeSummary fell_back = split;
  fell_back.colocated_fallback = true;
  metrics.on_exchange(fell_back);
  ExchangeSummary colocated;  // a model without a prefill pool: neither family gets a sample
  colocated.model = "org/other";
  colocated.status = 200;
  metrics.on_exchange(colocated);
  const std::string text = metrics.render(*router->snapshot());
  CHECK(text.find("# TYPE vllm_router_pd_prefill_seconds histogram\n") != std::string::npos);
  CHECK(text.find("vllm_router_pd_prefill_seconds_count{model=\"org/m\"} 2\n") != std::string::npos);
  CHECK(text.find("vllm_router_pd_prefill_seconds_bucket{model=\"org/m\",le=\"0.1\"} 0\n") != std::string::npos);
  CHECK(text.find("# TYPE vllm_router_pd_fallbacks_total counter\n") != std::string::npos);
  CHECK(text.find("vllm_router_pd_fallbacks_total{model=\"org/m\"} 1\n") != std::string::npos);
  CHECK(text.find("vllm_router_pd_prefill_seconds_count{model=\"org/other\"}") == std::string::npos);
  CHECK(text.find("vllm_router_pd_fallbacks_total{model=\"org/other\"}") == std::string::npos);
}
