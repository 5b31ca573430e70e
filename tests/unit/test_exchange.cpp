// Exchange core: one test per rule, events fed by hand with an injected time, no sockets.
#include <doctest/doctest.h>

#include "support/exchange_host.h"

using namespace vllm_router;
using namespace vllm_router::testing;
using namespace std::chrono_literals;
using Connect = ExchangeHost::Connect;
using Send = ExchangeHost::Send;

namespace {

constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
constexpr std::string_view kSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::string_view k503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";

struct Fixture {
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  std::unique_ptr<Router> router;
  RecordingHost host;
  std::unique_ptr<Exchange> ex;
  Exchange::TimePoint t{std::chrono::seconds(100)};
  std::string body = R"({"model":"m","prompt":"hi"})";
  std::vector<HeaderField> headers;
  std::chrono::milliseconds timeout{0};

  explicit Fixture(const RouterConfig& c) {
    RouterOptions o;
    o.observer = log;
    o.seed = 7;
    auto r = Router::create(c, std::move(o));
    REQUIRE(r.ok());
    router = std::move(r).value();
    ex = std::make_unique<Exchange>(*router, host);
  }
  std::string target = "/v1/completions";
  void start() {
    ClientRequest r;
    r.method = "POST";
    r.target = target;
    r.headers = headers;
    r.body = body;
    r.request_id = "rid-1";
    r.client_address = "192.0.2.1";
    r.timeout = timeout;
    ex->start(r, t);
  }
  void feed(std::string_view bytes) { ex->on_upstream_data(bytes, t); }
  void advance(std::chrono::milliseconds d) { t += d; }
  void fire() { ex->on_timer(t); }
};

}  // namespace

TEST_CASE("a request is sent with the upstream head the rules say and its answer relayed") {
  Fixture f(fleet_config(2));
  f.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer client-key"},
               {"Connection", "keep-alive, X-Hop"}, {"X-Hop", "1"}, {"Accept-Encoding", "gzip"},
               {"X-Forwarded-For", "6.6.6.6"}, {"X-Custom", "kept"}, {"Transfer-Encoding", "chunked"},
               {"Forwarded", "for=6.6.6.7"}, {"X-Real-IP", "6.6.6.8"}, {"x-forwarded-host", "evil.example"},
               {"X-Forwarded-Proto", "https-spoof"}, {"True-Client-IP", "6.6.6.9"}};
  f.start();
  REQUIRE(f.host.heads.size() == 1);
  const std::string& head = f.host.heads[0];
  CHECK(head.rfind("POST /v1/completions HTTP/1.1\r\nHost: 10.0.0.1:8000\r\n", 0) == 0);
  CHECK(head.find("X-Custom: kept\r\n") != std::string::npos);
  CHECK(head.find("Content-Type: application/json\r\n") != std::string::npos);
  CHECK(head.find("X-Request-Id: rid-1\r\n") != std::string::npos);
  CHECK(head.find("X-Forwarded-For: 192.0.2.1\r\n") != std::string::npos);
  CHECK(head.find("Content-Length: " + std::to_string(f.body.size()) + "\r\n\r\n") != std::string::npos);
  for (std::string_view dropped : {"client-key", "X-Hop", "gzip", "6.6.6.6", "chunked", "keep-alive", "6.6.6.7",
                                   "6.6.6.8", "evil.example", "https-spoof", "6.6.6.9"}) {
    CHECK_MESSAGE(head.find(dropped) == std::string::npos, dropped);
  }
  CHECK(f.host.bodies[0] == f.body);
  f.feed(kOk);
  CHECK(f.host.status == 200);
  CHECK(f.host.length == 2u);
  CHECK(f.host.body == "{}");
  CHECK(f.host.header("X-Request-Id") == "rid-1");
  CHECK(f.host.ended);
  CHECK(f.host.releases == std::vector<bool>{true});
  CHECK(f.ex->done());
  CHECK(f.log->count("outcome m http://10.0.0.1:8000 0 200 bytes=2") == 1);
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].status == 200);
  CHECK(f.log->summaries[0].end == ExchangeEnd::ok);
  CHECK(f.log->summaries[0].bytes == 2);
}

TEST_CASE("the summary says where the time went and what crossed: first body byte, bytes both ways, path, client") {
  Fixture f(fleet_config(1));
  f.target = "/v1/completions?x=1";
  f.start();
  f.advance(30ms);
  f.feed(kSseHead);  // the head at 30 ms, the first event at 75 ms
  f.advance(45ms);
  f.feed("b\r\ndata: one\n\n\r\n");
  f.advance(10ms);
  f.feed("0\r\n\r\n");
  REQUIRE(f.log->summaries.size() == 1);
  const ExchangeSummary& s = f.log->summaries[0];
  CHECK(s.ttfb == 30ms);
  CHECK(s.ttft == 75ms);
  CHECK(s.duration == 85ms);
  CHECK(s.stream);
  CHECK(s.bytes == 11);
  CHECK(s.bytes_in == f.body.size());
  CHECK(f.log->summary_paths[0] == "/v1/completions");
  CHECK(f.log->summary_clients[0] == "192.0.2.1");
}

TEST_CASE("an event stream reports the gap before every chunk after the first; other answers report none") {
  Fixture f(fleet_config(1));
  f.start();
  f.advance(30ms);
  f.feed(std::string(kSseHead) + "b\r\ndata: one\n\n\r\n");  // the first event: TTFT, no gap
  CHECK(f.log->gaps.empty());
  f.advance(20ms);
  f.feed("b\r\ndata: two\n\n\r\nd\r\ndata: three\n\n\r\n");  // two in one read: 20 ms, then 0
  f.advance(35ms);
  f.feed("c\r\ndata: fo");  // one event over two reads: two pieces relayed
  f.advance(5ms);
  f.feed("ur\n\n\r\n");
  f.advance(10ms);
  f.feed("0\r\n\r\n");  // the end is no chunk
  CHECK(f.log->gaps == std::vector<std::string>{"m http://10.0.0.1:8000 20", "m http://10.0.0.1:8000 0",
                                                 "m http://10.0.0.1:8000 35", "m http://10.0.0.1:8000 5"});
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].ttft == 30ms);

  Fixture plain(fleet_config(1));
  plain.start();
  plain.feed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n");
  plain.advance(20ms);
  plain.feed("1\r\n}\r\n0\r\n\r\n");
  CHECK(plain.host.body == "{}");
  CHECK(plain.log->gaps.empty());
}

TEST_CASE("a summary without a body relayed has no first-token time") {
  Fixture f(fleet_config(1));
  f.start();
  f.advance(5ms);
  f.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].ttft == 0ms);
  CHECK_FALSE(f.log->summaries[0].stream);
}

TEST_CASE("an answer's Content-Encoding is relayed with its coded body (never a coded body without it)") {
  Fixture f(fleet_config(1));
  f.start();
  f.feed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\n\x1f\x8b\x08");
  CHECK(f.host.header("Content-Encoding") == "gzip");
  CHECK(f.host.body == "\x1f\x8b\x08");
  CHECK(f.host.ended);
}

TEST_CASE("the replica's own key replaces the client's, and an alias is rewritten to the served name") {
  RouterConfig c = fleet_config(1);
  c.models[0].endpoints[0].api_key = "replica-secret";
  Fixture f(c);
  f.body = R"({"model":"alias-m","prompt":"hi"})";
  f.headers = {{"Authorization", "Bearer client-key"}};
  f.start();
  REQUIRE(f.host.heads.size() == 1);
  CHECK(f.host.heads[0].find("Authorization: Bearer replica-secret\r\n") != std::string::npos);
  CHECK(f.host.heads[0].find("client-key") == std::string::npos);
  CHECK(f.host.bodies[0] == R"({"model":"m","prompt":"hi"})");
}

TEST_CASE("bad requests are answered without touching an upstream") {
  struct Row {
    std::string body;
    std::vector<HeaderField> headers;
    int status;
  };
  const Row rows[] = {
      {"", {}, 400},                                        // empty body
      {"{not json", {}, 400},                               // invalid JSON
      {R"({"model":"nope"})", {}, 404},                     // unknown model
      {R"({"model":7})", {}, 400},                          // model is not a string
      {R"({"model":"m"})", {{"X-Bad", "a\rb"}}, 400},       // CR in a header value
      {R"({"model":"m"})", {{"X-Bad", std::string_view("a\0b", 3)}}, 400},  // NUL
  };
  for (const Row& row : rows) {
    Fixture f(fleet_config(1));
    f.body = row.body;
    f.headers = row.headers;
    f.start();
    REQUIRE_MESSAGE(f.host.error.has_value(), row.body);
    CHECK(http_status(f.host.error->code) == row.status);
    CHECK(f.host.connected.empty());
    CHECK(f.ex->done());
    REQUIRE(f.log->summaries.size() == 1);
    CHECK(f.log->summaries[0].end == ExchangeEnd::rejected);
    CHECK(f.log->summary_models[0].empty());  // an unresolved name never becomes a label
  }
}

TEST_CASE("only the configured routes are forwarded, and only targets the engine will read as checked") {
  struct Row {
    std::string target;
    std::vector<std::string> routes;  // empty: the default (vLLM's inference routes)
    int status;                       // 0: forwarded
  };
  const std::vector<std::string> any = {"*"};
  const std::vector<std::string> v1 = {"/v1/*"};
  const Row rows[] = {
      {"/v1/completions", {}, 0},
      {"/v1/chat/completions?trace=1", {}, 0},
      {"/v1/embeddings", {}, 0},
      {"/tokenize", {}, 0},
      {"/v2/rerank", {}, 0},
      // vLLM's administrative routes: not by default.
      {"/sleep", {}, 404},
      {"/reset_prefix_cache", {}, 404},
      {"/v1/load_lora_adapter", {}, 404},
      {"/start_profile", {}, 404},
      {"/v1/completions/", {}, 404},
      {"/V1/completions", {}, 404},
      // Targets whose meaning could change on the way: refused whatever the routes.
      {"/v1/../sleep", any, 400},
      {"/v1/./completions", {}, 400},
      {"/v1/completions/..", any, 400},
      {"/v1/%2e%2e/sleep", any, 400},
      {"/v1/%2E%2e/sleep", any, 400},
      {"/v1%2fcompletions", any, 400},
      {"/v1\\completions", any, 400},
      {"http://evil/v1/completions", {}, 400},
      {"*", {}, 400},
      {"", {}, 400},
      {"/v1/completions#x", {}, 400},
      {std::string("/v1/completions\x01", 16), any, 400},
      {"/v1/compl etions", any, 400},
      // A deployment's own list.
      {"/sleep", any, 0},
      {"/v1/anything", v1, 0},
      {"/tokenize", v1, 404},
  };
  for (const Row& row : rows) {
    CAPTURE(row.target);
    RouterConfig c = fleet_config(1);
    if (!row.routes.empty()) c.routes = row.routes;
    Fixture f(c);
    f.target = row.target;
    f.start();
    if (row.status == 0) {
      CHECK_FALSE(f.host.error.has_value());
      REQUIRE(f.host.heads.size() == 1);
      CHECK(f.host.heads[0].rfind("POST " + row.target + " HTTP/1.1\r\n", 0) == 0);
    } else {
      REQUIRE(f.host.error.has_value());
      CHECK(http_status(f.host.error->code) == row.status);
      CHECK(f.host.connected.empty());
      if (row.status == 404) CHECK(f.host.error->message == "Not Found: POST " + row.target);
    }
  }
}

TEST_CASE("a refused connect moves to another endpoint; when all refuse the client gets 502") {
  Fixture f(fleet_config(2));
  f.host.connects = {Connect::failed, Connect::failed};
  f.start();
  CHECK(f.host.connected == std::vector<std::string>{"http://10.0.0.1:8000", "http://10.0.0.2:8000"});
  REQUIRE(f.host.error.has_value());
  CHECK(f.host.error->code == Errc::connect_failed);
  CHECK(http_status(f.host.error->code) == 502);
  CHECK(f.host.error->message.find("could be reached") != std::string::npos);
  CHECK(f.log->count("retry http://10.0.0.1:8000 0 1") == 1);
  CHECK(f.ex->attempts() == 2);
}

TEST_CASE("a connect timeout is a 504, retried elsewhere first, and does not wait for the first-byte budget") {
  RouterConfig c = fleet_config(2);
  c.timeouts.first_byte_ms = 50;  // shorter than connect_ms (100): must not cap the connect
  Fixture f(c);
  f.host.connects = {Connect::pending, Connect::pending};
  f.start();
  CHECK(f.ex->deadline() == f.t + 100ms);
  f.advance(100ms);
  f.fire();
  CHECK(f.host.connected.size() == 2);
  CHECK(f.log->count("retry http://10.0.0.1:8000 1 1") == 1);
  f.advance(100ms);
  f.fire();
  REQUIRE(f.host.error.has_value());
  CHECK(f.host.error->code == Errc::timeout);
  CHECK(http_status(f.host.error->code) == 504);
}

TEST_CASE("a first-byte timeout retries within the budget when configured, else answers 504") {
  for (const bool retry_on : {true, false}) {
    RouterConfig c = fleet_config(2);
    c.timeouts.first_byte_ms = 300;
    c.retry.on_first_byte_timeout = retry_on;
    Fixture f(c);
    f.start();
    CHECK(f.ex->deadline() == f.t + 300ms);
    f.advance(300ms);
    f.fire();
    if (retry_on) {
      CHECK(f.host.connected.size() == 2);
      f.feed(kOk);
      CHECK(f.host.status == 200);
      CHECK(f.log->count("retry http://10.0.0.1:8000 3 1") == 1);
    } else {
      CHECK(f.host.connected.size() == 1);
      REQUIRE(f.host.error.has_value());
      CHECK(http_status(f.host.error->code) == 504);
    }
    CHECK(f.host.releases.front() == false);  // the timed-out connection is closed, never pooled
  }
}

TEST_CASE("the retry budget stops retries beyond max(min_concurrent, budget_percent of the running)") {
  RouterConfig c = fleet_config(2);
  c.timeouts.first_byte_ms = 300;
  c.retry.min_concurrent = 1;
  c.retry.budget_percent = 0;
  auto log = std::make_shared<EventLog>();
  RouterOptions o;
  o.observer = log;
  auto router = Router::create(c, std::move(o)).value();
  RecordingHost h1;
  RecordingHost h2;
  Exchange a(*router, h1);
  Exchange b(*router, h2);
  const std::string body = R"({"model":"m"})";
  ClientRequest r;
  r.target = "/v1/completions";
  r.body = body;
  Exchange::TimePoint t{std::chrono::seconds(5)};
  a.start(r, t);
  b.start(r, t);
  t += 300ms;
  a.on_timer(t);  // takes the only retry slot
  b.on_timer(t);  // none left: 504
  CHECK(h1.connected.size() == 2);
  REQUIRE(h2.error.has_value());
  CHECK(http_status(h2.error->code) == 504);
  a.on_upstream_data(kOk, t);  // a finishes and gives the slot back
  CHECK(h1.ended);
  Exchange c2(*router, h2);
  RecordingHost h3;
  Exchange d(*router, h3);
  d.start(r, t);
  t += 300ms;
  d.on_timer(t);
  CHECK(h3.connected.size() == 2);  // the slot is free again
}

TEST_CASE("a 503 moves to another replica; the last replica's 503 passes through") {
  Fixture f(fleet_config(2));
  f.start();
  f.feed(k503);
  CHECK(f.host.status == 0);  // nothing relayed yet
  CHECK(f.host.connected.size() == 2);
  CHECK(f.log->count("retry http://10.0.0.1:8000 2 1") == 1);
  f.feed(k503);
  CHECK(f.host.status == 503);
  CHECK(f.host.body == "busy");
  CHECK(f.host.ended);
}

TEST_CASE("a kept-alive connection found closed is replaced once by a fresh one to the same endpoint") {
  Fixture f(fleet_config(2));
  f.host.connects = {Connect::pooled, Connect::connected};
  f.start();
  f.ex->on_upstream_eof(f.t);
  CHECK(f.host.connected == std::vector<std::string>{"http://10.0.0.1:8000", "http://10.0.0.1:8000+fresh"});
  CHECK(f.ex->attempts() == 1);
  f.feed(kOk);
  CHECK(f.host.ended);
  CHECK(f.log->count("retry") == 0);
}

TEST_CASE("a reset before the head retries (on_reset); after the head it never does") {
  Fixture f(fleet_config(2));
  f.start();
  f.ex->on_upstream_error(Error{Errc::upstream_closed, "reset", ""}, f.t);
  CHECK(f.host.connected.size() == 2);
  CHECK(f.log->count("retry http://10.0.0.1:8000 4 1") == 1);
  f.feed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"a\"");
  f.ex->on_upstream_error(Error{Errc::upstream_closed, "reset", ""}, f.t);
  CHECK(f.host.connected.size() == 2);
  CHECK(f.host.aborted);  // not an event stream: the client sees a cut body
  CHECK_FALSE(f.host.ended);
  CHECK(f.log->count("outcome m http://10.0.0.2:8000 3 200 bytes=4") == 1);  // honest byte count
}

TEST_CASE("an event stream broken at an event boundary ends with vLLM's in-band error and [DONE]") {
  Fixture f(fleet_config(1));
  f.start();
  f.feed(kSseHead);
  CHECK(f.host.event_stream);
  CHECK_FALSE(f.host.length.has_value());
  f.feed("b\r\ndata: one\n\n\r\n");
  CHECK(f.host.body == "data: one\n\n");
  f.ex->on_upstream_eof(f.t);
  CHECK(f.host.ended);
  CHECK(f.host.body.find("data: {\"error\"") != std::string::npos);
  CHECK(f.host.body.ends_with("data: [DONE]\n\n"));
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].end == ExchangeEnd::upstream_error);
}

TEST_CASE("an event stream releases its relayed head: events that came with the head, and the next request, still arrive intact") {
  Fixture f(fleet_config(1));
  f.start();
  // The head, one event and half of the next in one read: the half event waits in the reader.
  f.feed(std::string(kSseHead) + "b\r\ndata: one\n\n\r\nb\r\ndata: t");
  CHECK(f.host.event_stream);
  CHECK(f.host.body == "data: one\n\ndata: t");
  f.feed("wo\n\n\r\n");
  f.feed("0\r\n\r\n");
  CHECK(f.host.body == "data: one\n\ndata: two\n\n");
  CHECK(f.host.ended);
  CHECK(f.host.releases == std::vector<bool>{true});
  // The same exchange object serves the next request of the connection (its reader reset).
  f.host.body.clear();
  f.host.ended = false;
  f.start();
  f.feed(kOk);
  CHECK(f.host.status == 200);
  CHECK(f.host.body == "{}");
  CHECK(f.host.ended);
}

TEST_CASE("an event stream broken inside a chunk is cut, not completed") {
  Fixture f(fleet_config(1));
  f.start();
  f.feed(kSseHead);
  f.feed("c\r\ndata: o");
  f.ex->on_upstream_eof(f.t);
  CHECK(f.host.aborted);
  CHECK_FALSE(f.host.ended);
}

TEST_CASE("idle and total timeouts end a relay; the idle timer restarts with every byte") {
  RouterConfig c = fleet_config(1);
  c.timeouts.idle_ms = 200;
  c.timeouts.total_ms = 1000;
  Fixture f(c);
  f.start();
  f.feed(kSseHead);
  CHECK(f.ex->deadline() == f.t + 200ms);
  for (int i = 0; i < 4; ++i) {
    f.advance(150ms);
    f.fire();
    f.feed("b\r\ndata: one\n\n\r\n");
    CHECK_FALSE(f.ex->done());
  }
  f.advance(200ms);  // 800 ms in; idle expires first
  CHECK(f.ex->deadline() == f.t);
  f.fire();
  CHECK(f.ex->done());
  CHECK(f.host.body.find("idle timeout") != std::string::npos);

  Fixture g(c);
  g.start();
  g.feed(kSseHead);
  for (int i = 0; i < 7; ++i) {
    g.advance(150ms);
    g.feed("b\r\ndata: one\n\n\r\n");
  }
  CHECK(g.ex->deadline() == g.t - 1050ms + 1000ms);  // total: 1000 ms after the start
  g.advance(std::chrono::duration_cast<std::chrono::milliseconds>(g.ex->deadline() - g.t));
  g.fire();
  CHECK(g.host.body.find("total time limit") != std::string::npos);
}

TEST_CASE("a per-request timeout shorter than the table's total wins, and is a 504 before the head") {
  RouterConfig c = fleet_config(2);
  c.timeouts.total_ms = 10000;
  Fixture f(c);
  f.timeout = 250ms;
  f.start();
  CHECK(f.ex->deadline() == f.t + 250ms);
  f.advance(250ms);
  f.fire();
  REQUIRE(f.host.error.has_value());
  CHECK(f.host.error->code == Errc::timeout);
  CHECK(f.host.connected.size() == 1);  // no retry once the total limit passed
}

TEST_CASE("a client that stops reading never counts against the upstream") {
  RouterConfig c = fleet_config(1);
  c.timeouts.idle_ms = 100;
  Fixture f(c);
  ClientRequest r;
  r.target = "/v1/completions";
  r.body = f.body;
  r.client_stall = 500ms;
  f.ex->start(r, f.t);
  f.feed(kSseHead);
  f.ex->on_client_paused(f.t);
  CHECK(f.ex->deadline() == f.t + 500ms);
  f.advance(300ms);  // past the idle timeout: paused, so nothing happens
  f.fire();
  CHECK_FALSE(f.ex->done());
  f.ex->on_client_resumed(f.t);
  CHECK(f.ex->deadline() == f.t + 100ms);
  f.ex->on_client_paused(f.t);
  f.advance(500ms);
  f.fire();
  CHECK(f.host.aborted);
  CHECK(f.host.abort_error.code == Errc::cancelled);
  const auto state = f.router->snapshot()->pools[0].states[0];
  CHECK(state->consecutive_failures == 0);
  CHECK(state->failures == 0);
  CHECK(f.host.releases == std::vector<bool>{false});
}

TEST_CASE("the client leaving closes the upstream and records cancelled") {
  Fixture f(fleet_config(1));
  f.start();
  f.ex->cancel(f.t);
  CHECK(f.host.releases == std::vector<bool>{false});
  CHECK(f.ex->done());
  CHECK(f.log->count("outcome m http://10.0.0.1:8000 4 0") == 1);
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].status == 499);
  CHECK(f.router->snapshot()->pools[0].states[0]->in_flight == 0);
}

TEST_CASE("chunked and close-delimited answers are decoded and end correctly; interim 100 is skipped") {
  Fixture f(fleet_config(1));
  f.start();
  f.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  CHECK(f.host.status == 200);
  CHECK(f.host.body == "abc");
  CHECK(f.host.ended);
  CHECK(f.host.releases == std::vector<bool>{true});

  Fixture g(fleet_config(1));
  g.start();
  g.feed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nxy");
  g.feed("z");
  CHECK_FALSE(g.host.ended);
  g.ex->on_upstream_eof(g.t);
  CHECK(g.host.body == "xyz");
  CHECK(g.host.ended);
  CHECK(g.host.releases == std::vector<bool>{false});  // close-delimited: not reusable
}

TEST_CASE("a malformed upstream answer before the head is a 502") {
  Fixture f(fleet_config(1));
  f.start();
  f.feed("garbage\r\n\r\n");
  REQUIRE(f.host.error.has_value());
  CHECK(http_status(f.host.error->code) == 502);
}

TEST_CASE("when every replica is full requests wait, go when a lease ends, and time out with 503") {
  RouterConfig c = fleet_config(1);
  c.models[0].max_in_flight_per_endpoint = 1;
  c.queue_timeout_ms = 400;
  Fixture first(c);
  first.start();
  RecordingHost h2;
  Exchange second(*first.router, h2);
  ClientRequest r;
  r.target = "/v1/completions";
  r.body = first.body;
  second.start(r, first.t);
  CHECK(h2.waited);
  CHECK(second.waiting());
  CHECK(second.deadline() == first.t + 400ms);
  second.retry(first.t);  // still full
  CHECK(second.waiting());
  first.feed(kOk);  // the lease ends
  second.retry(first.t + 10ms);
  CHECK_FALSE(second.waiting());
  CHECK(h2.connected.size() == 1);

  RecordingHost h3;
  Exchange third(*first.router, h3);
  third.start(r, first.t);
  CHECK(third.waiting());
  third.on_timer(first.t + 400ms);
  REQUIRE(h3.error.has_value());
  CHECK(h3.error->code == Errc::overloaded);
  CHECK(http_status(h3.error->code) == 503);
}

TEST_CASE("a full wait queue answers 429 at once") {
  RouterConfig c = fleet_config(1);
  c.models[0].max_in_flight_per_endpoint = 1;
  c.queue_max = 1;
  Fixture first(c);
  first.start();
  ClientRequest r;
  r.target = "/v1/completions";
  r.body = first.body;
  RecordingHost h2;
  Exchange second(*first.router, h2);
  second.start(r, first.t);
  CHECK(second.waiting());
  RecordingHost h3;
  Exchange third(*first.router, h3);
  third.start(r, first.t);
  REQUIRE(h3.error.has_value());
  CHECK(http_status(h3.error->code) == 429);
}

TEST_CASE("the observer sees picks, retries, outcomes and one summary per exchange") {
  Fixture f(fleet_config(2));
  f.host.connects = {Connect::failed};
  f.start();
  f.feed(kOk);
  CHECK(f.log->events == std::vector<std::string>{
                             "pick http://10.0.0.1:8000",
                             "outcome m http://10.0.0.1:8000 1 0 bytes=0",
                             "retry http://10.0.0.1:8000 0 1",
                             "pick http://10.0.0.2:8000",
                             "outcome m http://10.0.0.2:8000 0 200 bytes=2",
                             "exchange 200",
                         });
  CHECK(f.log->summaries[0].attempts == 2);
}

TEST_CASE("a pending send that fails on a fresh connection is a reset (budgeted retry)") {
  Fixture f(fleet_config(2));
  f.host.sends = {Send::pending};
  f.start();
  CHECK(f.ex->deadline() == f.t + 200ms);  // write timeout
  f.ex->on_upstream_error(Error{Errc::upstream_closed, "EPIPE", ""}, f.t);
  CHECK(f.host.connected.size() == 2);
}
