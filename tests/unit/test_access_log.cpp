// The access log (server/access_log.h): line formats, escaping, bounds, dropping when the sink
// stalls, reopening for rotation; and the JSON form of log lines (server/log.h).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "access_log.h"
#include "log.h"

using namespace vllm_router;
using namespace vllm_router::server;
using namespace std::chrono_literals;

namespace {

ExchangeSummary sample(const Endpoint& ep) {
  ExchangeSummary s;
  s.request_id = "req-1";
  s.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  s.client_address = "192.0.2.7";
  s.path = "/v1/chat/completions";
  s.requested_model = "llama";
  s.model = "meta-llama/Llama-3.1-8B";
  s.endpoint = &ep;
  s.end = ExchangeEnd::ok;
  s.status = 200;
  s.attempts = 2;
  s.queue_wait = 1500us;
  s.ttfb = 12345us;
  s.ttft = 23456us;
  s.duration = 1234567us;
  s.bytes = 4096;
  s.bytes_in = 321;
  s.stream = true;
  s.key_id = "team-a";
  s.usage.prompt = 17;
  s.usage.completion = 42;
  return s;
}

std::string line_of(const ExchangeSummary& s, LogFormat f, std::int64_t ms = 1765015200123) {
  std::string out;
  format_access_line(out, s, ms, f);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("an access line in text (logfmt) carries every fact of the request") {
  Endpoint ep;
  ep.id = "http://10.0.0.5:8000";
  const std::string line = line_of(sample(ep), LogFormat::text);
  CHECK(line ==
        "time=2025-12-06T10:00:00.123Z level=info msg=access request_id=req-1 "
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 client=192.0.2.7 key_id=team-a model=llama "
        "resolved_model=meta-llama/Llama-3.1-8B endpoint=/v1/chat/completions upstream=http://10.0.0.5:8000 "
        "status=200 outcome=ok attempts=2 stream=true queue_ms=1.500 ttfb_ms=12.345 ttft_ms=23.456 "
        "duration_ms=1234.567 prompt_tokens=17 completion_tokens=42 bytes_in=321 bytes_out=4096 "
        "tokens_estimated=false error=\"\"\n");
}

TEST_CASE("a split request's line names its prefill leg; a colocated fallback says so") {
  Endpoint decode, prefill;
  decode.id = "http://10.0.0.5:8000";
  prefill.id = "http://10.0.1.9:8000";
  ExchangeSummary s = sample(decode);
  CHECK(line_of(s, LogFormat::text).find("prefill") == std::string::npos);  // not split: no fields
  CHECK(line_of(s, LogFormat::text).find("colocated") == std::string::npos);
  s.prefill_endpoint = &prefill;
  s.prefill = 81250us;
  CHECK(line_of(s, LogFormat::text).find(" upstream=http://10.0.0.5:8000 prefill_upstream=http://10.0.1.9:8000 "
                                         "prefill_ms=81.250 status=200 ") != std::string::npos);
  CHECK(line_of(s, LogFormat::json).find(",\"upstream\":\"http://10.0.0.5:8000\",\"prefill_upstream\":"
                                         "\"http://10.0.1.9:8000\",\"prefill_ms\":81.250,\"status\":200,") != std::string::npos);
  s.prefill_endpoint = nullptr;
  s.prefill = 0us;
  s.colocated_fallback = true;
  CHECK(line_of(s, LogFormat::text).find(" upstream=http://10.0.0.5:8000 colocated_fallback=true status=200 ") !=
        std::string::npos);
  CHECK(line_of(s, LogFormat::json).find(",\"colocated_fallback\":true,\"status\":200,") != std::string::npos);
}

TEST_CASE("an access line in JSON has typed fields") {
  Endpoint ep;
  ep.id = "http://10.0.0.5:8000";
  ExchangeSummary s = sample(ep);
  s.end = ExchangeEnd::upstream_error;
  s.status = 502;
  s.error = "upstream closed";
  const std::string line = line_of(s, LogFormat::json);
  CHECK(line.rfind("{\"time\":\"2025-12-06T10:00:00.123Z\",\"level\":\"info\",\"msg\":\"access\",\"request_id\":\"req-1\",", 0) == 0);
  CHECK(line.find(",\"status\":502,\"outcome\":\"upstream_error\",\"attempts\":2,\"stream\":true,") != std::string::npos);
  CHECK(line.find(",\"duration_ms\":1234.567,") != std::string::npos);
  CHECK(line.find(",\"prompt_tokens\":17,\"completion_tokens\":42,") != std::string::npos);
  CHECK(line.find(",\"error\":\"upstream closed\"}\n") != std::string::npos);
  CHECK(line.find('\n') == line.size() - 1);
}

TEST_CASE("a client's bytes cannot break or forge a line, and fields are bounded") {
  Endpoint ep;
  ExchangeSummary s = sample(ep);
  s.endpoint = nullptr;
  static constexpr char kEvil[] = "m\nstatus=200 \"x\\\x01\xff\xc3\xa9";
  const std::string evil(kEvil, sizeof kEvil - 1);
  s.requested_model = evil;
  const std::string text = line_of(s, LogFormat::text);
  CHECK(text.find('\n') == text.size() - 1);
  CHECK(text.find(" model=\"m\\nstatus=200 \\\"x\\\\\\u0001\\u00ff\xc3\xa9\" ") != std::string::npos);
  CHECK(text.find(" upstream=\"\" ") != std::string::npos);
  const std::string json = line_of(s, LogFormat::json);
  CHECK(json.find("\"model\":\"m\\nstatus=200 \\\"x\\\\\\u0001\\u00ff\xc3\xa9\"") != std::string::npos);

  const std::string huge(100000, 'a');
  s.requested_model = huge;
  const std::string bounded = line_of(s, LogFormat::text);
  CHECK(bounded.size() < 1500);
  CHECK(bounded.find(" model=" + std::string(256, 'a') + " ") != std::string::npos);
}

TEST_CASE("logfmt quotes a value for any special byte at any position (word-wise scans)") {
  // The bare-value scan works on 16- and 8-byte words with an overlapping tail: every length
  // around those sizes, every position, every kind of byte that needs quotes.
  Endpoint ep;
  ExchangeSummary s = sample(ep);
  const std::string specials = std::string("\x00\x01\x1f \"=\\\x7f\x80\xc3\xff", 12);
  for (std::size_t len = 1; len <= 40; ++len) {
    std::string v(len, 'a');
    s.requested_model = v;
    REQUIRE(line_of(s, LogFormat::text).find(" model=" + v + " ") != std::string::npos);
    for (std::size_t at = 0; at < len; ++at) {
      for (const char c : specials) {
        v.assign(len, 'a');
        v[at] = c;
        s.requested_model = v;
        const std::string line = line_of(s, LogFormat::text);
        INFO("length ", len, " position ", at, " byte ", static_cast<int>(static_cast<unsigned char>(c)));
        REQUIRE(line.find(" model=\"") != std::string::npos);  // quoted
        REQUIRE(line.find(" model=" + v + " ") == std::string::npos);
      }
    }
  }
  // Every printable byte but the three is bare.
  std::string printable;
  for (int c = 0x21; c < 0x7f; ++c) {
    if (c != '"' && c != '=' && c != '\\') printable += static_cast<char>(c);
  }
  s.requested_model = printable;
  CHECK(line_of(s, LogFormat::text).find(" model=" + printable + " ") != std::string::npos);
}

TEST_CASE("JSON strings: valid UTF-8 passes, everything else is escaped") {
  auto js = [](std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  CHECK(js("plain") == "\"plain\"");
  CHECK(js("\xe2\x82\xac \xf0\x9f\x98\x80") == "\"\xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(js("\xc0\xaf") == "\"\\u00c0\\u00af\"");          // overlong
  CHECK(js("\xed\xa0\x80") == "\"\\u00ed\\u00a0\\u0080\"");  // surrogate
  CHECK(js("\xe2\x82") == "\"\\u00e2\\u0082\"");          // cut
  CHECK(js(std::string_view("\0\t\r", 3)) == "\"\\u0000\\t\\r\"");
}

TEST_CASE("a stalled sink never blocks a request: lines beyond the buffer are dropped and counted") {
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, release = false;
  std::string got;
  AccessLog log(AccessLogOptions{"", LogFormat::text, 4}, [&](std::string_view bytes) {
    std::unique_lock<std::mutex> lock(m);
    got.append(bytes);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return true;
  });
  Endpoint ep;
  const ExchangeSummary s = sample(ep);
  log.write(s);  // the writer takes it and stalls in the sink
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return entered; });
  }
  for (int i = 0; i < 10; ++i) log.write(s);  // 4 wait, 6 are dropped; none blocks
  CHECK(log.dropped() == 6);
  {
    std::lock_guard<std::mutex> lock(m);
    release = true;
  }
  cv.notify_all();
  log.flush();
  CHECK(log.written() == 5);
  CHECK(log.dropped() == 6);
  std::string metrics;
  log.render_metrics(metrics);
  CHECK(metrics.find("vllm_router_access_log_lines_total 5\n") != std::string::npos);
  CHECK(metrics.find("vllm_router_access_log_dropped_total 6\n") != std::string::npos);
  std::lock_guard<std::mutex> lock(m);
  CHECK(std::count(got.begin(), got.end(), '\n') == 5);
}

TEST_CASE("lines are written in batches: no wake-up of the writer per request") {
  std::mutex m;
  std::vector<std::string> calls;
  AccessLogOptions o{"", LogFormat::text, 400};
  o.flush_interval = std::chrono::hours(1);  // only a quarter of the capacity or flush() wakes it
  AccessLog log(o, [&](std::string_view bytes) {
    std::lock_guard<std::mutex> lock(m);
    calls.emplace_back(bytes);
    return true;
  });
  Endpoint ep;
  for (int i = 0; i < 3; ++i) log.write(sample(ep));
  {
    std::lock_guard<std::mutex> lock(m);
    CHECK(calls.empty());  // waiting for the interval
  }
  log.flush();
  {
    std::lock_guard<std::mutex> lock(m);
    REQUIRE(calls.size() == 1);  // one write for the three lines
    CHECK(std::count(calls[0].begin(), calls[0].end(), '\n') == 3);
  }
  for (int i = 0; i < 100; ++i) log.write(sample(ep));  // a quarter of 400 wakes the writer
  log.flush();
  std::lock_guard<std::mutex> lock(m);
  CHECK(log.written() == 103);
  std::size_t lines = 0;
  for (const std::string& c : calls) lines += static_cast<std::size_t>(std::count(c.begin(), c.end(), '\n'));
  CHECK(lines == 103);
}

// flush() right after a write that woke the writer: the writer may take the line before flush()
// asks, and then finds nothing left when it looks at the request. It must still answer it (it
// spun on the mutex for ever, and every later write() with it, found by a unit run on a loaded
// machine). The interleaving is a race, so it is tried many times; a regression hangs here.
TEST_CASE("flush() racing the writer that already took the lines returns, and the log goes on") {
  std::atomic<std::size_t> lines{0};
  AccessLogOptions o{"", LogFormat::text, 4};  // a quarter of 4: every line wakes the writer
  o.flush_interval = std::chrono::hours(1);
  AccessLog log(o, [&](std::string_view bytes) {
    lines += static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), '\n'));
    return true;
  });
  Endpoint ep;
  const ExchangeSummary s = sample(ep);
  constexpr std::size_t kRounds = 3000;
  for (std::size_t i = 0; i < kRounds; ++i) {
    log.write(s);
    log.flush();
    REQUIRE(lines.load() == i + 1);  // flush() returned after the line was written
  }
  CHECK(log.written() == kRounds);
  CHECK(log.dropped() == 0);
}

TEST_CASE("a failing sink counts its lines as dropped") {
  AccessLog log(AccessLogOptions{"", LogFormat::json, 16}, [](std::string_view) { return false; });
  Endpoint ep;
  log.write(sample(ep));
  log.write(sample(ep));
  log.flush();
  CHECK(log.written() == 0);
  CHECK(log.dropped() == 2);
}

TEST_CASE("reopen() writes on to a new file at the same path (rotation)") {
  char dir_pattern[] = "/tmp/vllm_router_access_XXXXXX";
  REQUIRE(::mkdtemp(dir_pattern) != nullptr);
  const std::string dir = dir_pattern;
  const std::string path = dir + "/access.log";
  {
    auto opened = AccessLog::open(AccessLogOptions{path, LogFormat::text, 64});
    REQUIRE(opened.ok());
    AccessLog& log = *opened.value();
    Endpoint ep;
    ExchangeSummary s = sample(ep);
    s.request_id = "first";
    log.write(s);
    log.flush();
    REQUIRE(std::rename(path.c_str(), (path + ".1").c_str()) == 0);
    log.reopen();
    s.request_id = "second";
    log.write(s);
    log.flush();
    s.request_id = "third";
    log.write(s);
  }  // the destructor writes what is queued
  const std::string old = read_file(path + ".1");
  const std::string now = read_file(path);
  CHECK(old.find("request_id=first ") != std::string::npos);
  CHECK(old.find("request_id=second") == std::string::npos);
  CHECK(now.find("request_id=second ") != std::string::npos);
  CHECK(now.find("request_id=third ") != std::string::npos);
  std::remove((path + ".1").c_str());
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("an access log that cannot be opened is a configuration error naming the path") {
  auto opened = AccessLog::open(AccessLogOptions{"/nonexistent-dir/x/access.log", LogFormat::text, 4});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().message.find("/nonexistent-dir/x/access.log") != std::string::npos);
}

TEST_CASE("AccessLog::write queues the lines format_access_line makes, in order") {
  // write() formats on the request's thread; its lines match format_access_line's,
  // field cuts and escaping included (the time aside: write() takes the clock's).
  Endpoint ep;
  ep.id = "http://10.0.0.1:8000";
  ExchangeSummary odd = sample(ep);
  const std::string long_model(1000, 'm');
  odd.requested_model = long_model;  // cut at the bound
  odd.request_id = "a b\"c\\d\n\xff";  // quoted and escaped
  odd.end = ExchangeEnd::upstream_error;
  odd.error = "upstream reset";
  for (const LogFormat f : {LogFormat::text, LogFormat::json}) {
    std::mutex m;
    std::string got;
    {
      AccessLog log(AccessLogOptions{"", f, 16}, [&](std::string_view bytes) {
        std::lock_guard<std::mutex> lock(m);
        got.append(bytes);
        return true;
      });
      log.write(sample(ep));
      log.write(odd);
      log.flush();
      CHECK(log.written() == 2);
    }
    const auto after_time = [](const std::string& text) {
      std::string out;
      std::istringstream in(text);
      for (std::string line; std::getline(in, line);) out += line.substr(line.find("level")) + "\n";
      return out;
    };
    CHECK(after_time(got) == after_time(line_of(sample(ep), f) + line_of(odd, f)));
  }
}
