// Event loop: a client connection and the upstream half of its exchanges over socketpairs, one
// Loop driven round by round with Loop::poll(0), time from a ManualClock (no sleeping). The test
// plays the client on one end of a pair given to Loop::adopt and the vLLM server on one end of a
// pair put in the loop's keep-alive pool (Loop::pool_upstream).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "event/loop.h"
#include "http_util.h"
#include "support/test_certs.h"
#include "tls.h"
#include "vllm_router/router.h"
#include "vllm_router/tenants.h"

namespace {

using namespace vllm_router;
using namespace std::chrono_literals;
using detail::Loop;
using detail::LoopShared;

// ---------------------------------------------------------------------------------------------
// Sockets

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  operator int() const noexcept { return fd_; }  // NOLINT: a descriptor
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// A TCP port on 127.0.0.1 that refuses connections (bound, never listening): the endpoint's
// address, so a fresh connect fails at once and the same way on every machine.
struct RefusingPort {
  Fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  std::uint16_t port = 0;
  RefusingPort() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
};

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE_MESSAGE(n > 0, "send: ", std::strerror(errno));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Writes what the socket takes now (non-blocking); returns how much.
std::size_t write_some(int fd, std::string_view data) {
  std::size_t total = 0;
  while (total < data.size()) {
    const ssize_t n = ::send(fd, data.data() + total, data.size() - total, MSG_NOSIGNAL);
    if (n <= 0) break;
    total += static_cast<std::size_t>(n);
  }
  return total;
}

struct Read {
  std::string bytes;
  bool eof = false;  // the peer closed (EOF, or a reset because it closed with unread bytes)
};

// Everything readable now (non-blocking), and whether the peer closed.
Read drain(int fd) {
  Read r;
  std::vector<char> buf(256 * 1024);
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) {
      r.bytes.append(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || errno == ECONNRESET) r.eof = true;
    return r;
  }
}

// One record of a SOCK_SEQPACKET socket: exactly what one write of the peer carried ("" if none).
std::string recv_one(int fd) {
  std::vector<char> buf(256 * 1024);
  const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

// ---------------------------------------------------------------------------------------------
// HTTP on the test's side

std::string chunk(std::string_view data) {
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return std::string(size) + std::string(data) + "\r\n";
}

const std::string kBody = R"({"model":"m","prompt":"hi"})";

std::string post(std::string_view extra_headers = "", std::string_view body = kBody) {
  return "POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n" +
         std::string(extra_headers) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

std::string ok_answer(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

struct Answer {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (detail::iequals(n, name)) return v;
    }
    return std::nullopt;
  }
};

// Takes one complete answer off the front of `buf` (Content-Length or chunked framing; `head_only`
// for an answer to HEAD); nullopt, `buf` untouched, while it is incomplete.
std::optional<Answer> take_answer(std::string& buf, bool head_only = false) {
  const std::size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  Answer a;
  REQUIRE(buf.rfind("HTTP/1.1 ", 0) == 0);
  a.status = std::stoi(buf.substr(9, 3));
  std::size_t line = buf.find("\r\n") + 2;
  while (line < end + 2) {
    const std::size_t eol = buf.find("\r\n", line);
    const std::string h = buf.substr(line, eol - line);
    const std::size_t colon = h.find(':');
    REQUIRE(colon != std::string::npos);
    a.headers.emplace_back(h.substr(0, colon), std::string(detail::trim(std::string_view(h).substr(colon + 1))));
    line = eol + 2;
  }
  std::size_t pos = end + 4;
  if (!head_only) {
    if (const auto length = a.header("Content-Length")) {
      const std::size_t n = std::stoul(*length);
      if (buf.size() < pos + n) return std::nullopt;
      a.body = buf.substr(pos, n);
      pos += n;
    } else if (a.header("Transfer-Encoding") == "chunked") {
      a.chunked = true;
      for (;;) {
        const std::size_t eol = buf.find("\r\n", pos);
        if (eol == std::string::npos) return std::nullopt;
        const std::size_t n = std::stoul(buf.substr(pos, eol - pos), nullptr, 16);
        if (buf.size() < eol + 2 + n + 2) return std::nullopt;
        REQUIRE(buf.compare(eol + 2 + n, 2, "\r\n") == 0);
        a.body.append(buf, eol + 2, n);
        pos = eol + 2 + n + 2;
        if (n == 0) break;
      }
    }
  }
  buf.erase(0, pos);
  return a;
}

// ---------------------------------------------------------------------------------------------
// The loop under test

struct Summary {
  ExchangeEnd end;
  int status;
  std::string error;
};

struct Recorder final : Observer {
  std::mutex mutex;
  std::vector<Summary> exchanges;
  void on_exchange(const ExchangeSummary& s) override {
    std::lock_guard<std::mutex> lock(mutex);
    exchanges.push_back(Summary{s.end, s.status, std::string(s.error)});
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return exchanges.size();
  }
  Summary last() {
    std::lock_guard<std::mutex> lock(mutex);
    REQUIRE(!exchanges.empty());
    return exchanges.back();
  }
};

using Tweak = std::function<void(RouterConfig&, ServerOptions&)>;

// A router with one model "m" on one endpoint (health checks off), one loop with a ManualClock.
struct Harness {
  std::shared_ptr<Recorder> recorder = std::make_shared<Recorder>();
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  RefusingPort refusing;
  std::unique_ptr<Router> router;
  std::unique_ptr<LoopShared> shared;
  std::unique_ptr<Loop> loop;
  std::string endpoint_id;

  explicit Harness(const Tweak& tweak = {}) {
    RouterConfig c;
    ModelConfig m;
    m.name = "m";
    m.endpoints.push_back(EndpointConfig{"http://127.0.0.1:" + std::to_string(refusing.port), 1, ""});
    c.models = {m};
    c.health_check.enabled = false;
    c.timeouts.connect_ms = 1000;
    c.timeouts.read_ms = 30000;
    ServerOptions o;
    o.threads = 1;
    o.client_timeout_ms = 10000;
    if (tweak) tweak(c, o);
    RouterOptions ro;
    ro.observer = recorder;
    ro.seed = 1;
    ro.clock = clock;
    auto r = Router::create(c, std::move(ro));
    REQUIRE(r.ok());
    router = std::move(r).value();
    shared = std::make_unique<LoopShared>(*router, std::move(o), clock);
    shared->created = 1700000000;
    loop = std::make_unique<Loop>(*shared);
    endpoint_id = router->snapshot()->pools[0].endpoints[0]->id;
  }
  ~Harness() {
    loop.reset();
    shared.reset();
    router.reset();
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // A client connection: the loop adopts one end (counted as accept_all counts it), the test
  // gets the other.
  Fd client(int type = SOCK_STREAM) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    loop->open.fetch_add(1);
    shared->connections.fetch_add(1);
    loop->adopt(sv[0]);
    return Fd(sv[1]);
  }
  // An upstream connection idle in the loop's pool for the endpoint; the test plays vLLM on the
  // returned end. `loop_end` receives the descriptor the loop owns.
  Fd upstream(int type = SOCK_STREAM, int* loop_end = nullptr) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    loop->pool_upstream(endpoint_id, sv[0]);
    if (loop_end != nullptr) *loop_end = sv[0];
    return Fd(sv[1]);
  }
  // Rounds of the loop without waiting: socket I/O between the two ends of a pair is
  // synchronous, so a few rounds see everything through.
  void pump(int rounds = 8) {
    for (int i = 0; i < rounds; ++i) loop->poll(0);
  }
  void advance(std::chrono::milliseconds d) {
    clock->advance(d);
    pump();
  }
  EndpointState& state() const { return *router->snapshot()->pools[0].states[0]; }
};

// Runs the loop's run() (the drain lives there); a guard ends it (by the drain deadline) if it
// has not returned after 10 real seconds. True when it returned on its own.
bool run_guarded(Harness& h) {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  bool fired = false;
  std::thread guard([&] {
    std::unique_lock<std::mutex> lock(mutex);
    if (!cv.wait_for(lock, 10s, [&] { return done; })) {
      fired = true;
      h.shared->drain_deadline_ns.store(0);
      h.loop->wake();
    }
  });
  h.loop->run();
  {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
  }
  cv.notify_all();
  guard.join();
  return !fired;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("event loop: a proxied POST: the upstream head, head and first body bytes in one write, keep-alive") {
  Harness h;
  // Datagram-like pairs: each recv returns exactly what one write of the other side carried.
  Fd up = h.upstream(SOCK_SEQPACKET);
  Fd cl = h.client(SOCK_SEQPACKET);
  send_all(cl, post("Authorization: Bearer client-secret\r\nConnection: keep-alive\r\nX-Custom: kept\r\n"
                    "X-Request-Id: rid-1\r\n"));
  h.pump();

  const std::string req = recv_one(up);  // head and body in one gathered write
  CHECK(req.rfind("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(h.refusing.port) + "\r\n", 0) ==
        0);
  CHECK(contains(req, "\r\nContent-Type: application/json\r\n"));
  CHECK(contains(req, "\r\nX-Custom: kept\r\n"));
  CHECK(contains(req, "\r\nX-Request-Id: rid-1\r\n"));
  const std::string tail = "\r\nContent-Length: " + std::to_string(kBody.size()) + "\r\n\r\n" + kBody;
  CHECK(req.size() > tail.size());
  CHECK(req.compare(req.size() - tail.size(), tail.size(), tail) == 0);
  // The client's credentials, its Host, hop-by-hop headers: not forwarded. An AF_UNIX peer has
  // no address: no X-Forwarded-For at all.
  for (std::string_view dropped : {"client-secret", "router\r\n", "keep-alive", "X-Forwarded-For"}) {
    CHECK_MESSAGE(!contains(req, dropped), dropped);
  }
  CHECK(recv_one(up).empty());  // nothing else was written

  // A streamed answer: the client gets the head and the first event in one write.
  const std::string event1 = "data: {\"n\":1}\n\n";
  send_all(up,
           "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nServer: vllm\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunk(event1));
  h.pump();
  std::string first = recv_one(cl);
  CHECK(recv_one(cl).empty());
  CHECK(first.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(contains(first, "\r\nContent-Type: text/event-stream\r\n"));
  CHECK(contains(first, "\r\nTransfer-Encoding: chunked\r\n"));
  CHECK(contains(first, "\r\nX-Request-Id: rid-1\r\n"));
  CHECK(!contains(first, "Server: vllm"));
  CHECK(!contains(first, "Connection: close"));
  const std::string framed1 = chunk(event1);
  CHECK(first.size() > framed1.size());
  CHECK(first.compare(first.size() - framed1.size(), framed1.size(), framed1) == 0);
  CHECK(h.state().in_flight.load() == 1);

  send_all(up, chunk("data: [DONE]\n\n") + "0\r\n\r\n");
  h.pump();
  std::string all = first;
  for (std::string r = recv_one(cl); !r.empty(); r = recv_one(cl)) all += r;
  auto a = take_answer(all);
  REQUIRE(a.has_value());
  CHECK(a->chunked);
  CHECK(a->body == event1 + "data: [DONE]\n\n");
  CHECK(all.empty());
  CHECK(h.state().in_flight.load() == 0);
  REQUIRE(h.recorder->count() == 1);
  CHECK(h.recorder->last().end == ExchangeEnd::ok);

  // A second request on the same client connection goes out on the same upstream socket.
  send_all(cl, post());
  h.pump();
  const std::string req2 = recv_one(up);
  CHECK(req2.rfind("POST /v1/completions HTTP/1.1\r\n", 0) == 0);
  CHECK(req2.size() > kBody.size());
  CHECK(req2.compare(req2.size() - kBody.size(), kBody.size(), kBody) == 0);
  const auto rid = req2.find("\r\nX-Request-Id: ");  // a fresh one: the client sent none
  REQUIRE(rid != std::string::npos);
  const std::string id2 = req2.substr(rid + 16, 32);
  send_all(up, ok_answer(R"({"id":"x"})"));
  h.pump();
  std::string second = recv_one(cl);  // head and body in one write
  CHECK(recv_one(cl).empty());
  auto b = take_answer(second);
  REQUIRE(b.has_value());
  CHECK(b->status == 200);
  CHECK(b->header("Content-Length") == "10");
  CHECK(b->header("X-Request-Id") == id2);
  CHECK(b->body == R"({"id":"x"})");
  CHECK(second.empty());
  CHECK(h.recorder->count() == 2);
}

TEST_CASE("event loop: upstream framings are relayed: chunked, close-delimited re-framed, Content-Length as is") {
  struct Row {
    const char* name;
    std::string answer;
    bool close_after;   // the upstream closes its side after the answer
    bool chunked;       // the client gets chunked framing
    bool reused;        // the upstream socket goes back to the pool
  };
  const Row rows[] = {
      {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false,
       true, true},
      {"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world", true, true, false},
      {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", false, false, true},
      {"upstream says Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world",
       false, false, false},
      {"bytes after the body", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello worldHTTP/1.1 200 OK\r\n", false,
       false, false},
  };
  for (const Row& row : rows) {
    CAPTURE(row.name);
    Harness h;
    Fd up = h.upstream();
    Fd cl = h.client();
    send_all(cl, post());
    h.pump();
    CHECK(contains(drain(up).bytes, "POST /v1/completions"));
    send_all(up, row.answer);
    if (row.close_after) ::shutdown(up, SHUT_WR);
    h.pump();
    Read got = drain(cl);
    CHECK(!got.eof);
    auto a = take_answer(got.bytes);
    REQUIRE(a.has_value());
    CHECK(a->status == 200);
    CHECK(a->body == "hello world");
    CHECK(a->chunked == row.chunked);
    CHECK(a->header("Content-Length") == (row.chunked ? std::nullopt : std::optional<std::string>("11")));
    CHECK(got.bytes.empty());
    CHECK(h.recorder->last().end == ExchangeEnd::ok);
    CHECK(h.state().in_flight.load() == 0);
    if (row.reused) {
      CHECK(!drain(up).eof);
      send_all(cl, post());
      h.pump();
      CHECK(contains(drain(up).bytes, "POST /v1/completions"));
    } else {
      CHECK(drain(up).eof);  // closed by the router, not kept
    }
  }
}

TEST_CASE("event loop: pipelined requests get their answers in order") {
  Harness h;
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post("X-Request-Id: rid-a\r\n") + post("X-Request-Id: rid-b\r\n"));
  h.pump();
  const std::string first = drain(up).bytes;
  CHECK(contains(first, "X-Request-Id: rid-a\r\n"));
  CHECK(!contains(first, "rid-b"));  // one at a time
  send_all(up, ok_answer(R"({"n":"a"})"));
  h.pump();
  const std::string second = drain(up).bytes;  // on the same upstream socket
  CHECK(contains(second, "X-Request-Id: rid-b\r\n"));
  send_all(up, ok_answer(R"({"n":"b"})"));
  h.pump();
  std::string got = drain(cl).bytes;
  auto a = take_answer(got);
  auto b = take_answer(got);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->header("X-Request-Id") == "rid-a");
  CHECK(a->body == R"({"n":"a"})");
  CHECK(b->header("X-Request-Id") == "rid-b");
  CHECK(b->body == R"({"n":"b"})");
  CHECK(got.empty());

  // Then one that arrives while the answer before it is still being relayed.
  send_all(cl, post("X-Request-Id: rid-c\r\n"));
  h.pump();
  CHECK(contains(drain(up).bytes, "rid-c"));
  send_all(up, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"n\"");
  h.pump();
  send_all(cl, post("X-Request-Id: rid-d\r\n"));
  h.pump();
  CHECK(drain(up).bytes.empty());  // waits for the answer to end
  send_all(up, ":\"c\"}");
  h.pump();
  CHECK(contains(drain(up).bytes, "rid-d"));
  send_all(up, ok_answer(R"({"n":"d"})"));
  h.pump();
  got = drain(cl).bytes;
  auto c = take_answer(got);
  auto d = take_answer(got);
  REQUIRE(c.has_value());
  REQUIRE(d.has_value());
  CHECK(c->body == R"({"n":"c"})");
  CHECK(d->header("X-Request-Id") == "rid-d");
  CHECK(got.empty());
}

TEST_CASE("event loop: a request arriving in pieces, its large body written upstream as the upstream takes it") {
  Harness h;
  Fd up = h.upstream();
  Fd cl = h.client();
  const std::string body = R"({"model":"m","prompt":")" + std::string(600 * 1024, 'x') + R"("})";
  const std::string request = post("X-Custom: kept\r\n", body);
  const std::size_t head_size = request.find("\r\n\r\n") + 4;
  // The head in three pieces, then the body as the client socket takes it.
  send_all(cl, request.substr(0, 20));
  h.pump();
  send_all(cl, request.substr(20, 40));
  h.pump();
  std::size_t sent = 60;
  std::string upstream;
  for (int i = 0; i < 10000 && upstream.size() < head_size + body.size(); ++i) {
    sent += write_some(cl, std::string_view(request).substr(sent, std::min<std::size_t>(50000, request.size() - sent)));
    h.pump(2);
    // The upstream reads slowly: a little at a time, so the router's write stays pending.
    std::vector<char> buf(30000);
    const ssize_t n = ::recv(up, buf.data(), buf.size(), 0);
    if (n > 0) upstream.append(buf.data(), static_cast<std::size_t>(n));
  }
  REQUIRE(sent == request.size());
  REQUIRE(upstream.size() > body.size());
  CHECK(upstream.rfind("POST /v1/completions HTTP/1.1\r\n", 0) == 0);
  CHECK(contains(upstream, "\r\nX-Custom: kept\r\n"));
  CHECK(contains(upstream, "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  CHECK(upstream.substr(upstream.size() - body.size()) == body);
  CHECK(upstream.size() == upstream.find("\r\n\r\n") + 4 + body.size());
  send_all(up, ok_answer("{}"));
  h.pump();
  std::string got = drain(cl).bytes;
  auto a = take_answer(got);
  REQUIRE(a.has_value());
  CHECK(a->status == 200);
}

TEST_CASE("event loop: a chunked request body goes upstream with a Content-Length; Expect: 100-continue is answered") {
  SUBCASE("chunked") {
    Harness h;
    Fd up = h.upstream();
    Fd cl = h.client();
    send_all(cl, "POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                     chunk(R"({"model":"m",)") + chunk(R"("prompt":"hi"})"));
    h.pump();
    CHECK(drain(up).bytes.empty());  // not before its last chunk
    send_all(cl, "0\r\n\r\n");
    h.pump();
    const std::string req = drain(up).bytes;
    CHECK(!contains(req, "Transfer-Encoding"));
    CHECK(req.ends_with("\r\nContent-Length: 27\r\n\r\n" + kBody));
  }
  SUBCASE("Expect: 100-continue") {
    Harness h;
    Fd up = h.upstream();
    Fd cl = h.client();
    const std::string request = post("Expect: 100-continue\r\n");
    const std::size_t head_size = request.find("\r\n\r\n") + 4;
    send_all(cl, request.substr(0, head_size));
    h.pump();
    CHECK(drain(cl).bytes == "HTTP/1.1 100 Continue\r\n\r\n");
    CHECK(drain(up).bytes.empty());
    send_all(cl, request.substr(head_size));
    h.pump();
    const std::string req = drain(up).bytes;
    CHECK(req.ends_with(kBody));
    CHECK(!contains(req, "Expect"));
    send_all(up, ok_answer("{}"));
    h.pump();
    std::string got = drain(cl).bytes;
    auto a = take_answer(got);
    REQUIRE(a.has_value());
    CHECK(a->status == 200);
    CHECK(got.empty());
  }
}

TEST_CASE("event loop: an HTTP/1.0 client gets a body of unknown length unframed, ended by the close") {
  // RFC 9112 6.1: no Transfer-Encoding in an answer to an HTTP/1.0 request.
  Harness h;
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n" + kBody);
  h.pump();
  CHECK(contains(drain(up).bytes, "POST /v1/completions HTTP/1.1\r\n"));
  send_all(up, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   chunk("data: 1\n\n") + chunk("data: [DONE]\n\n") + "0\r\n\r\n");
  h.pump();
  const Read got = drain(cl);
  const std::size_t end = got.bytes.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  const std::string head = got.bytes.substr(0, end + 4);
  CHECK(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(!contains(head, "Transfer-Encoding"));
  CHECK(!contains(head, "Content-Length"));
  CHECK(contains(head, "\r\nConnection: close\r\n"));
  CHECK(got.bytes.substr(end + 4) == "data: 1\n\ndata: [DONE]\n\n");
  CHECK(got.eof);
  CHECK(h.recorder->last().end == ExchangeEnd::ok);
}

TEST_CASE("event loop: requests over the limits are refused with Connection: close, then the socket closes") {
  std::string chunks;
  for (int i = 0; i < 20000; ++i) chunks += "1\r\na\r\n";  // 4 bytes of framing per byte of data
  struct Row {
    const char* name;
    std::string request;  // sent as is (never completed where the refusal must come first)
    int status;
  };
  const Row rows[] = {
      {"head over max_head_bytes", "POST /v1/completions HTTP/1.1\r\nX-Big: " + std::string(2000, 'a'), 431},
      {"Content-Length over max_body_bytes, before the body",
       "POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n", 413},
      {"chunked framing out of proportion to its data",
       "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, 413},
      {"malformed request line", "BLAH\r\n\r\n", 400},
  };
  for (const Row& row : rows) {
    CAPTURE(row.name);
    Harness h([&](RouterConfig&, ServerOptions& o) {
      o.max_head_bytes = 1024;
      // The chunked row stays far below the body limit: only its overhead may refuse it.
      o.max_body_bytes = std::string_view(row.name).starts_with("chunked") ? 1024 * 1024 : 1000;
    });
    Fd up = h.upstream();
    Fd cl = h.client();
    send_all(cl, row.request);
    h.pump();
    Read got = drain(cl);
    auto a = take_answer(got.bytes);
    REQUIRE(a.has_value());
    CHECK(a->status == row.status);
    CHECK(a->header("Connection") == "close");
    CHECK(contains(a->body, "\"error\""));
    CHECK(got.eof);
    CHECK(drain(up).bytes.empty());  // nothing went upstream
    CHECK(h.shared->connections.load() == 0);
  }
}

TEST_CASE("event loop: a request head trickled slowly gets 408 at client_timeout_ms") {
  Harness h;  // client_timeout_ms 10000
  Fd cl = h.client();
  send_all(cl, "POST /v1/completions HTTP/1.1\r\n");
  h.pump();
  // Bytes keep coming, but the limit counts from the start of the request.
  for (std::string_view piece : {"Content-Type: application/json\r\n", "X-A: b\r\n", "X-C: d\r\n"}) {
    h.advance(3000ms);
    send_all(cl, piece);
    h.pump();
  }
  h.advance(999ms);  // 9999 ms
  Read before = drain(cl);
  CHECK(before.bytes.empty());
  CHECK(!before.eof);
  h.advance(1ms);
  Read got = drain(cl);
  auto a = take_answer(got.bytes);
  REQUIRE(a.has_value());
  CHECK(a->status == 408);
  CHECK(a->header("Connection") == "close");
  CHECK(got.eof);
}

TEST_CASE("event loop: a request body trickled slowly (length or chunked) gets 408 at client_timeout_ms") {
  for (const bool chunked : {false, true}) {
    CAPTURE(chunked);
    Harness h;  // client_timeout_ms 10000
    Fd up = h.upstream();
    Fd cl = h.client();
    send_all(cl, chunked ? "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         : "POST /v1/completions HTTP/1.1\r\nContent-Length: 27\r\n\r\n");
    h.pump();
    // One byte every 3 s: each arrives, none moves the deadline.
    const std::string body = chunked ? chunk(kBody) : kBody;
    for (int i = 0; i < 3; ++i) {
      h.advance(3000ms);
      send_all(cl, body.substr(static_cast<std::size_t>(i), 1));
      h.pump();
    }
    h.advance(999ms);
    CHECK(drain(cl).bytes.empty());
    h.advance(1ms);
    Read got = drain(cl);
    auto a = take_answer(got.bytes);
    REQUIRE(a.has_value());
    CHECK(a->status == 408);
    CHECK(got.eof);
    CHECK(drain(up).bytes.empty());
  }
}

TEST_CASE("event loop: an idle keep-alive connection closes at client_timeout_ms after its last answer") {
  Harness h;
  Fd quiet = h.client();  // never sends a byte
  Fd cl = h.client();
  h.advance(4000ms);
  send_all(cl, "GET /health HTTP/1.1\r\nHost: r\r\n\r\n");
  h.pump();
  std::string got = drain(cl).bytes;
  auto a = take_answer(got);
  REQUIRE(a.has_value());
  CHECK(a->status == 200);
  CHECK(!a->header("Connection").has_value());
  h.advance(5999ms);  // 9999 ms after the start
  CHECK(!drain(quiet).eof);
  h.advance(1ms);
  CHECK(drain(quiet).eof);
  CHECK(!drain(cl).eof);  // its idle time started with the answer
  h.advance(3999ms);      // 9999 ms after the answer
  CHECK(!drain(cl).eof);
  h.advance(1ms);
  const Read last = drain(cl);
  CHECK(last.bytes.empty());
  CHECK(last.eof);
  CHECK(h.shared->connections.load() == 0);
}

TEST_CASE("event loop: an upstream that does not answer gets 504 at timeouts.first_byte_ms, not before") {
  Harness h([](RouterConfig& c, ServerOptions&) { c.timeouts.first_byte_ms = 2000; });
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post());
  h.pump();
  CHECK(contains(drain(up).bytes, "POST /v1/completions"));
  h.advance(1999ms);
  CHECK(drain(cl).bytes.empty());
  CHECK(!drain(up).eof);
  CHECK(h.recorder->count() == 0);
  h.advance(1ms);
  Read got = drain(cl);
  auto a = take_answer(got.bytes);
  REQUIRE(a.has_value());
  CHECK(a->status == 504);
  CHECK(contains(a->body, "first-byte timeout"));
  CHECK(!got.eof);             // the client connection stays for the next request
  CHECK(drain(up).eof);        // the silent upstream connection is closed
  CHECK(h.recorder->last().end == ExchangeEnd::timeout);
  CHECK(h.state().in_flight.load() == 0);
}

TEST_CASE("event loop: the idle timeout restarts with each relayed chunk (the timer heap re-arms lazily)") {
  Harness h([](RouterConfig& c, ServerOptions&) {
    c.timeouts.first_byte_ms = 5000;
    c.timeouts.idle_ms = 1000;
  });
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post());
  h.pump();
  drain(up);
  send_all(up, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("a"));
  h.pump();
  std::string got = drain(cl).bytes;
  CHECK(contains(got, chunk("a")));
  h.advance(900ms);
  send_all(up, chunk("b"));
  h.pump();
  got += drain(cl).bytes;
  CHECK(contains(got, chunk("b")));
  h.advance(900ms);  // past the first chunk's idle deadline: its timer entry comes due, re-arms
  CHECK(!drain(cl).eof);
  h.advance(99ms);  // 999 ms after the last chunk
  CHECK(!drain(cl).eof);
  CHECK(h.recorder->count() == 0);
  h.advance(1ms);
  const Read cut = drain(cl);
  CHECK(cut.eof);  // a plain chunked body is cut: no last chunk, the connection closes
  got += cut.bytes;
  CHECK(!contains(got, "0\r\n\r\n"));
  CHECK(!take_answer(got).has_value());
  CHECK(h.recorder->last().end == ExchangeEnd::timeout);
  CHECK(drain(up).eof);
}

namespace {

// Sends a big answer's start on `up` while the client reads nothing, until the loop stops taking
// bytes (three rounds in a row without progress). Returns how much of `answer` went out.
std::size_t fill_until_paused(Harness& h, int up, const std::string& answer) {
  std::size_t sent = 0;
  int idle_rounds = 0;
  while (sent < answer.size() && idle_rounds < 3) {
    const std::size_t n = write_some(up, std::string_view(answer).substr(sent));
    sent += n;
    h.pump();
    idle_rounds = n == 0 ? idle_rounds + 1 : 0;
  }
  return sent;
}

std::string big_answer(std::size_t n, std::string& payload) {
  payload.resize(n);
  for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + std::to_string(n) +
         "\r\n\r\n" + payload;
}

}  // namespace

TEST_CASE("event loop: backpressure: a client that stops reading pauses the upstream, without its idle timeout") {
  Harness h([](RouterConfig& c, ServerOptions&) {
    c.timeouts.first_byte_ms = 1000;
    c.timeouts.idle_ms = 1000;
  });
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post());
  h.pump();
  CHECK(contains(drain(up).bytes, "POST /v1/completions"));
  std::string payload;
  const std::string answer = big_answer(4 * 1024 * 1024, payload);
  std::size_t sent = fill_until_paused(h, up, answer);
  REQUIRE(sent < answer.size());  // the loop stopped reading the upstream
  CHECK(sent > 256 * 1024);

  h.advance(5000ms);  // far past the idle timeout (and the first byte's)
  CHECK(write_some(up, std::string_view(answer).substr(sent)) == 0);  // still paused
  CHECK(h.recorder->count() == 0);
  CHECK(h.state().in_flight.load() == 1);

  // The client reads again: the relay resumes and the whole answer arrives.
  std::string got;
  std::optional<Answer> a;
  for (int i = 0; i < 100000 && !a; ++i) {
    Read r = drain(cl);
    REQUIRE(!r.eof);
    got += r.bytes;
    sent += write_some(up, std::string_view(answer).substr(sent));
    h.pump(2);
    a = take_answer(got);
  }
  REQUIRE(a.has_value());
  CHECK(a->status == 200);
  CHECK(a->body.size() == payload.size());
  CHECK(a->body == payload);
  CHECK(h.recorder->last().end == ExchangeEnd::ok);
  CHECK(h.state().in_flight.load() == 0);
  CHECK(h.state().failures.load() == 0);
}

TEST_CASE("event loop: a client stalled past client_timeout_ms ends the exchange as cancelled, not as an upstream failure") {
  Harness h([](RouterConfig& c, ServerOptions&) { c.timeouts.idle_ms = 1000; });  // client_timeout_ms 10000
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post());
  h.pump();
  drain(up);
  std::string payload;
  const std::string answer = big_answer(4 * 1024 * 1024, payload);
  REQUIRE(fill_until_paused(h, up, answer) < answer.size());
  h.advance(9999ms);
  CHECK(h.recorder->count() == 0);
  CHECK(h.state().in_flight.load() == 1);
  h.advance(1ms);
  REQUIRE(h.recorder->count() == 1);
  CHECK(h.recorder->last().end == ExchangeEnd::cancelled);
  CHECK(h.state().in_flight.load() == 0);
  CHECK(h.state().failures.load() == 0);
  CHECK(h.state().consecutive_failures.load() == 0);
  CHECK(drain(up).eof);  // the upstream connection is closed
  std::string got;
  Read r;
  for (int i = 0; i < 1000 && !r.eof; ++i) {
    r = drain(cl);
    got += r.bytes;
  }
  CHECK(r.eof);  // the client connection too, its answer cut
  CHECK(!take_answer(got).has_value());
  CHECK(h.shared->connections.load() == 0);
}

TEST_CASE("event loop: a client leaving mid-answer closes the upstream socket and releases the lease") {
  Harness h;
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, post());
  h.pump();
  drain(up);
  send_all(up, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
  h.pump();
  const std::string got = drain(cl).bytes;
  CHECK(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(got.ends_with("\r\n\r\n0123456789"));
  CHECK(h.state().in_flight.load() == 1);
  CHECK(!drain(up).eof);
  cl.reset();
  h.pump();
  CHECK(drain(up).eof);
  CHECK(h.state().in_flight.load() == 0);
  CHECK(h.state().failures.load() == 0);
  REQUIRE(h.recorder->count() == 1);
  CHECK(h.recorder->last().end == ExchangeEnd::cancelled);
  CHECK(h.shared->connections.load() == 0);
}

TEST_CASE("event loop: a pooled socket the upstream closes while idle leaves the pool") {
  Harness h;
  int pooled = -1;
  Fd up = h.upstream(SOCK_STREAM, &pooled);
  h.pump();
  CHECK(::fcntl(pooled, F_GETFD) >= 0);  // idle and open: EPOLLOUT alone does not drop it
  up.reset();
  h.pump();
  errno = 0;
  CHECK(::fcntl(pooled, F_GETFD) == -1);  // the loop closed its end
  CHECK(errno == EBADF);
  // The next request connects afresh: to a port that refuses.
  Fd cl = h.client();
  send_all(cl, post());
  std::optional<Answer> a;
  std::string got;
  for (int i = 0; i < 100 && !a; ++i) {
    h.loop->poll(10);  // a refused connect is reported by an event
    got += drain(cl).bytes;
    a = take_answer(got);
  }
  REQUIRE(a.has_value());
  CHECK(a->status == 502);
  CHECK(contains(a->body, "cannot connect"));
  CHECK(h.recorder->last().end == ExchangeEnd::upstream_error);
}

// A limiter that notes, at each finish(), the tokens and how many answer bytes the client could
// already read: a client holding its whole answer may send its next request at once (on
// another connection, another loop), so the place and the tokens must be back by then.
struct SpyLimiter final : RateLimiter {
  std::shared_ptr<RateLimiter> inner = make_local_rate_limiter();
  int client_fd = -1;
  struct Finish {
    std::uint64_t tokens;
    std::size_t readable;
  };
  std::vector<Finish> finishes;
  bool admit(const ApiKey& key, std::int64_t now_ms, LimitDecision& d, const std::function<Done()>& later) override {
    return inner->admit(key, now_ms, d, later);
  }
  void finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund) override {
    std::vector<char> buf(256 * 1024);
    const ssize_t n = ::recv(client_fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    finishes.push_back(Finish{tokens, n > 0 ? static_cast<std::size_t>(n) : 0});
    inner->finish(key, tokens, now_ms, refund);
  }
};

TEST_CASE("event loop: a limited key's place and tokens are given back before the client can read the answer's end") {
  auto spy = std::make_shared<SpyLimiter>();
  Harness h([&](RouterConfig& c, ServerOptions& o) {
    c.max_attempts = 1;
    auto keys = KeyTable::parse(R"({"keys": [{"id": "a", "sha256": ")" + sha256_hex("sk-a") +
                                R"(", "max_concurrent": 1, "tpm": 1000000}]})");
    REQUIRE(keys);
    o.keys = keys.value();
    o.limiter = spy;
  });
  Fd up = h.upstream();
  Fd cl = h.client();
  spy->client_fd = cl;
  const std::string request = post("Authorization: Bearer sk-a\r\n");
  const std::string usage = R"({"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})";
  std::string got;  // what the client read
  send_all(cl, request);
  h.pump();
  CHECK(contains(drain(up).bytes, kBody));

  SUBCASE("a JSON answer") {
    send_all(up, ok_answer(usage));
    h.pump();
    REQUIRE(spy->finishes.size() == 1);
    CHECK(spy->finishes[0].tokens == 7);
  }
  SUBCASE("a streamed answer: the last event and the end of the body") {
    send_all(up, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                     chunk("data: {\"n\":1}\n\n"));
    h.pump();
    got = drain(cl).bytes;  // the stream so far, read
    CHECK(contains(got, "data: {\"n\":1}"));
    CHECK(spy->finishes.empty());
    send_all(up, chunk("data: " + usage + "\n\n") + chunk("data: [DONE]\n\n") + "0\r\n\r\n");
    h.pump();
    REQUIRE(spy->finishes.size() == 1);
    CHECK(spy->finishes[0].tokens == 7);
  }
  SUBCASE("an error answer: the upstream closes without answering") {
    up.reset();
    h.pump();
    REQUIRE(spy->finishes.size() == 1);
    CHECK(spy->finishes[0].tokens == 0);
  }
  CHECK(spy->finishes[0].readable == 0);  // finished before the answer's last bytes were written
  got += drain(cl).bytes;
  auto a = take_answer(got);
  REQUIRE(a.has_value());  // and then the client got them
  CHECK(got.empty());
}

TEST_CASE("event loop: the wait for capacity: served when the running request ends, 503 after queue_timeout_ms") {
  const Tweak one_at_a_time = [](RouterConfig& c, ServerOptions&) {
    c.models[0].max_in_flight_per_endpoint = 1;
    c.queue_timeout_ms = 2000;
  };
  SUBCASE("served when capacity frees") {
    Harness h(one_at_a_time);
    Fd up = h.upstream();
    Fd first = h.client();
    Fd second = h.client();
    send_all(first, post("X-Request-Id: rid-1\r\n"));
    h.pump();
    CHECK(contains(drain(up).bytes, "rid-1"));
    send_all(second, post("X-Request-Id: rid-2\r\n"));
    h.advance(1000ms);
    CHECK(drain(up).bytes.empty());  // it waits
    CHECK(drain(second).bytes.empty());
    CHECK(h.state().in_flight.load() == 1);
    send_all(up, ok_answer("{}"));
    h.pump();  // the first ends; the loop's capacity listener lets the second go
    std::string got1 = drain(first).bytes;
    auto a1 = take_answer(got1);
    REQUIRE(a1.has_value());
    CHECK(a1->status == 200);
    CHECK(contains(drain(up).bytes, "rid-2"));  // on the socket the first gave back
    send_all(up, ok_answer("{}"));
    h.pump();
    std::string got2 = drain(second).bytes;
    auto a2 = take_answer(got2);
    REQUIRE(a2.has_value());
    CHECK(a2->status == 200);
    CHECK(a2->header("X-Request-Id") == "rid-2");
  }
  SUBCASE("503 when it never frees") {
    Harness h(one_at_a_time);
    Fd up = h.upstream();
    Fd first = h.client();
    Fd second = h.client();
    send_all(first, post());
    h.pump();
    send_all(second, post());
    h.pump();
    h.advance(1999ms);
    CHECK(drain(second).bytes.empty());
    h.advance(1ms);
    std::string got = drain(second).bytes;
    auto a = take_answer(got);
    REQUIRE(a.has_value());
    CHECK(a->status == 503);
    CHECK(a->header("Retry-After") == "1");
    CHECK(h.recorder->last().end == ExchangeEnd::rejected);
    CHECK(h.state().in_flight.load() == 1);  // the first still runs
    CHECK(drain(first).bytes.empty());
  }
}

TEST_CASE("event loop: local routes: health, readiness, models with API keys, 404, HEAD") {
  Harness h([](RouterConfig&, ServerOptions& o) { o.api_keys = {"KEY"}; });
  Fd up = h.upstream();
  Fd cl = h.client();
  struct Row {
    std::string request;
    int status;
    std::string body_has;  // "" : the body must be empty
  };
  const Row rows[] = {
      {"GET /health HTTP/1.1\r\n\r\n", 200, ""},
      {"GET /ready HTTP/1.1\r\n\r\n", 200, R"("status":"ready")"},
      {"GET /v1/models HTTP/1.1\r\n\r\n", 401, R"("error")"},
      {"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer WRONG\r\n\r\n", 401, R"("error")"},
      {"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer KEY\r\n\r\n", 200, R"("id":"m")"},
      {"GET /v1/models?x=1 HTTP/1.1\r\nauthorization: bearer KEY\r\n\r\n", 200, R"("id":"m")"},
      {"GET /nope HTTP/1.1\r\n\r\n", 404, R"("message":"Not Found: GET /nope")"},
      {"HEAD /v1/models HTTP/1.1\r\nAuthorization: Bearer KEY\r\n\r\n", 200, ""},
      {"HEAD /nope HTTP/1.1\r\n\r\n", 404, ""},
      {"POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 401, R"("error")"},
  };
  // One keep-alive connection for all: a stray body byte would break the next answer.
  for (const Row& row : rows) {
    CAPTURE(row.request);
    send_all(cl, row.request);
    h.pump();
    std::string got = drain(cl).bytes;
    auto a = take_answer(got, row.request.starts_with("HEAD"));
    REQUIRE(a.has_value());
    CHECK(a->status == row.status);
    CHECK(got.empty());
    if (row.body_has.empty()) {
      CHECK(a->body.empty());
    } else {
      CHECK(contains(a->body, row.body_has));
      CHECK(a->header("Content-Type") == "application/json");
    }
    CHECK(!a->header("Connection").has_value());
  }
  CHECK(drain(up).bytes.empty());  // none of it went upstream

  // RFC 9110 8.6: an answer to HEAD carries the Content-Length the GET's would, or none.
  send_all(cl, "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer KEY\r\n\r\n"
               "HEAD /v1/models HTTP/1.1\r\nAuthorization: Bearer KEY\r\n\r\n");
  h.pump();
  std::string both = drain(cl).bytes;
  auto get = take_answer(both);
  auto head = take_answer(both, true);
  REQUIRE(get.has_value());
  REQUIRE(head.has_value());
  CHECK(both.empty());
  CHECK(!get->body.empty());
  CHECK(head->header("Content-Length").value_or(std::to_string(get->body.size())) == std::to_string(get->body.size()));

  h.shared->draining = true;
  send_all(cl, "GET /ready HTTP/1.1\r\n\r\n");
  h.pump();
  std::string got = drain(cl).bytes;
  auto a = take_answer(got);
  REQUIRE(a.has_value());
  CHECK(a->status == 503);
  CHECK(contains(a->body, "draining"));
}

TEST_CASE("event loop: without a valid key a POST is answered 401 before its body is read") {
  struct Row {
    const char* name;
    std::string head;  // sent alone; the body never follows
  };
  const Row rows[] = {
      {"Content-Length, no key", "POST /v1/completions HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"},
      {"Content-Length, wrong key",
       "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer WRONG\r\nContent-Length: 1000000\r\n\r\n"},
      {"Expect: 100-continue gets the 401, not a 100",
       "POST /v1/completions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n"},
      {"chunked, no key", "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"},
      {"two Authorization headers, both valid",
       "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer KEY\r\nAuthorization: Bearer KEY\r\n"
       "Content-Length: 1000000\r\n\r\n"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.name);
    Harness h([](RouterConfig&, ServerOptions& o) { o.api_keys = {"KEY"}; });
    Fd up = h.upstream();
    Fd cl = h.client();
    send_all(cl, row.head);
    h.pump();
    const Read got = drain(cl);
    std::string bytes = got.bytes;
    auto a = take_answer(bytes);
    REQUIRE(a.has_value());
    CHECK(a->status == 401);
    CHECK(contains(a->body, "\"code\":401"));
    CHECK(contains(a->body, "Missing or invalid API key"));
    CHECK(a->header("Connection") == "close");  // the unread body must not become a request
    CHECK(bytes.empty());                      // no 100 Continue before or after
    CHECK(got.eof);
    CHECK(drain(up).bytes.empty());
  }
  // With the key, the same head waits for its body (and is not refused).
  Harness h([](RouterConfig&, ServerOptions& o) { o.api_keys = {"KEY"}; });
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer KEY\r\nExpect: 100-continue\r\n"
               "Content-Length: 27\r\n\r\n");
  h.pump();
  CHECK(drain(cl).bytes == "HTTP/1.1 100 Continue\r\n\r\n");
  send_all(cl, kBody);
  h.pump();
  CHECK(contains(drain(up).bytes, kBody));
}

TEST_CASE("event loop: a chunked body in many reads keeps the request head intact (views into the head buffer)") {
  Harness h;
  Fd up = h.upstream();
  Fd cl = h.client();
  send_all(cl, "POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nX-Trace-Me: head-survives\r\n"
               "Transfer-Encoding: chunked\r\n\r\n" + chunk(R"({"model":"m","prompt":")"));
  h.pump();
  // 300 KiB of prompt in 64 writes, each pumped: the connection's buffers grow many times.
  const std::string piece(4800, 'x');
  for (int i = 0; i < 64; ++i) {
    send_all(cl, chunk(piece));
    h.pump();
  }
  send_all(cl, chunk(R"("})") + "0\r\n\r\n");
  std::string req;
  for (int i = 0; i < 100; ++i) {  // the upstream socket takes the request in several writes
    h.pump();
    const std::string more = drain(up).bytes;
    if (more.empty() && !req.empty()) break;
    req += more;
  }
  CHECK(contains(req, "POST /v1/completions HTTP/1.1\r\n"));
  CHECK(contains(req, "\r\nX-Trace-Me: head-survives\r\n"));
  const std::size_t body_size = std::string(R"({"model":"m","prompt":")").size() + 64 * piece.size() + 2;
  CHECK(contains(req, "\r\nContent-Length: " + std::to_string(body_size) + "\r\n\r\n"));
  CHECK(req.size() > body_size);
  CHECK(req.ends_with(piece + R"("})"));
}

TEST_CASE("event loop: drain closes an idle connection at once and a busy one after its answer") {
  Harness h;
  Fd up = h.upstream();
  Fd idle = h.client();
  Fd busy = h.client();
  send_all(busy, post());
  h.pump();
  CHECK(contains(drain(up).bytes, "POST /v1/completions"));
  send_all(up, ok_answer("{}"));  // waiting for the loop's next round
  h.shared->drain_deadline_ns = (h.clock->now() + 1h).time_since_epoch().count();
  h.shared->draining = true;
  REQUIRE(run_guarded(h));  // returns once both connections ended
  const Read i = drain(idle);
  CHECK(i.bytes.empty());
  CHECK(i.eof);
  Read b = drain(busy);
  CHECK(b.eof);
  auto a = take_answer(b.bytes);
  REQUIRE(a.has_value());
  CHECK(a->status == 200);
  CHECK(a->body == "{}");
  CHECK(a->header("Connection") == "close");
  CHECK(h.recorder->last().end == ExchangeEnd::ok);
  CHECK(h.shared->connections.load() == 0);
}

// ---------------------------------------------------------------------------------------------
// TLS on the listener: the test is the client, through its own TlsSession on its end.

namespace {

struct TlsClient {
  Fd fd;
  std::unique_ptr<detail::TlsSession> session;
  std::shared_ptr<const detail::TlsContext> context;
  std::string received;
  bool eof = false;

  // Turns `h`'s loop into a TLS listener and connects a client to it (the handshake not run).
  explicit TlsClient(Harness& h) {
    const auto& certs = testing::TestCerts::get();
    if (!h.shared->tls) {
      auto server = detail::TlsContext::server(certs.cert, certs.key);
      REQUIRE(server);
      h.shared->tls = true;
      h.shared->set_tls_context(server.value());
    }
    auto client = detail::TlsContext::client(certs.ca, true);
    REQUIRE(client);
    context = client.value();
    fd = h.client();
    auto s = detail::TlsSession::connect(*context, fd, "localhost");
    REQUIRE(s);
    session = std::move(s).value();
  }
  detail::TlsIo handshake(Harness& h) {
    detail::TlsIo io = detail::TlsIo::want_read;
    for (int i = 0; i < 20 && (io == detail::TlsIo::want_read || io == detail::TlsIo::want_write); ++i) {
      io = session->handshake();
      h.pump(2);
    }
    return io;
  }
  void send(std::string_view data) {
    while (!data.empty()) {
      std::size_t n = 0;
      REQUIRE(session->write(data.data(), data.size(), n) == detail::TlsIo::done);
      data.remove_prefix(n);
    }
  }
  // Reads what the session has now into `received`.
  void read() {
    char buf[16384];
    for (;;) {
      std::size_t n = 0;
      const detail::TlsIo io = session->read(buf, sizeof buf, n);
      if (io == detail::TlsIo::done) {
        received.append(buf, n);
        continue;
      }
      if (io == detail::TlsIo::eof || io == detail::TlsIo::error) eof = true;
      return;
    }
  }
};

}  // namespace

TEST_CASE("event loop: TLS: a proxied request and a local one through the session, keep-alive") {
  Harness h;
  Fd up = h.upstream();
  TlsClient cl(h);
  REQUIRE(cl.handshake(h) == detail::TlsIo::done);
  CHECK(cl.session->alpn() == "http/1.1");
  cl.send(post());
  h.pump();
  CHECK(contains(drain(up).bytes, kBody));
  send_all(up, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   chunk("data: 1\n\n"));
  h.pump();
  cl.read();
  CHECK(contains(cl.received, "data: 1\n\n"));
  send_all(up, chunk("data: [DONE]\n\n") + "0\r\n\r\n");
  h.pump();
  cl.read();
  auto a = take_answer(cl.received);
  REQUIRE(a.has_value());
  CHECK(a->body == "data: 1\n\ndata: [DONE]\n\n");
  CHECK(h.recorder->last().end == ExchangeEnd::ok);

  cl.send("GET /health HTTP/1.1\r\nHost: r\r\n\r\n");
  h.pump();
  cl.read();
  auto health = take_answer(cl.received);
  REQUIRE(health.has_value());
  CHECK(health->status == 200);
  CHECK_FALSE(cl.eof);
  CHECK(h.shared->tls_failures.load() == 0);
}

TEST_CASE("event loop: TLS: a handshake not finished in client_timeout_ms is closed and counted; a bare close is not") {
  Harness h;
  TlsClient silent(h);  // connects, never says hello
  TlsClient leaving(h);
  leaving.fd.reset();   // a port check: connects and closes
  h.pump();
  CHECK(h.shared->connections.load() == 1);
  h.advance(9999ms);
  CHECK(h.shared->connections.load() == 1);
  h.advance(2ms);
  CHECK(h.shared->connections.load() == 0);
  CHECK(drain(silent.fd).eof);
  CHECK(h.shared->tls_failures.load() == 1);
}

TEST_CASE("event loop: TLS: a slow client gets the whole answer: what SSL_write could not take is retried from the backlog") {
  Harness h;
  Fd up = h.upstream();
  TlsClient cl(h);
  int small = 8192;
  ::setsockopt(cl.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  REQUIRE(cl.handshake(h) == detail::TlsIo::done);
  cl.send(post());
  h.pump();
  CHECK(contains(drain(up).bytes, "POST /v1/completions"));
  std::string payload;
  const std::string answer = big_answer(2 * 1024 * 1024, payload);
  // The client reads nothing until the loop stops reading the upstream (paused), then reads
  // everything: every byte arrives once, in order.
  std::size_t sent = fill_until_paused(h, up, answer);
  REQUIRE(sent < answer.size());
  std::optional<Answer> a;
  for (int i = 0; i < 100000 && !a && !cl.eof; ++i) {
    cl.read();
    sent += write_some(up, std::string_view(answer).substr(sent));
    h.pump(2);
    a = take_answer(cl.received);
  }
  REQUIRE(a.has_value());
  CHECK(a->body.size() == payload.size());
  CHECK(a->body == payload);
  CHECK(h.recorder->last().end == ExchangeEnd::ok);
}
