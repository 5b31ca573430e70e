// Forwarder: non-blocking forwards on the library's loop, with per-request deadlines and a
// cancel that works from any thread (scripted upstreams on loopback).
#include <doctest/doctest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "support/test_certs.h"
#include "support/upstream.h"
#include "vllm_router/forwarder.h"
#include "vllm_router/router.h"

using namespace vllm_router;
using namespace vllm_router::testing;
using namespace std::chrono_literals;

namespace {

// Records what the forwarder reports; wait() blocks the test thread until on_complete.
struct Recorder final : ForwardHandler {
  std::mutex mutex;
  std::condition_variable done_cv;
  int status = 0;
  std::string body;
  int chunks = 0;
  int stop_after_chunks = -1;  // on_body returns false at this chunk
  std::optional<Result<void>> result;
  int completions = 0;

  void on_head(const ResponseHead& head) override {
    std::lock_guard<std::mutex> lock(mutex);
    status = head.status;
  }
  bool on_body(std::string_view data) override {
    std::lock_guard<std::mutex> lock(mutex);
    body.append(data);
    return ++chunks != stop_after_chunks;
  }
  void on_complete(const Result<void>& r) override {
    std::lock_guard<std::mutex> lock(mutex);
    result = r;
    ++completions;
    done_cv.notify_all();
  }
  bool wait(std::chrono::milliseconds limit = 5000ms) {
    std::unique_lock<std::mutex> lock(mutex);
    return done_cv.wait_for(lock, limit, [this] { return result.has_value(); });
  }
};

std::unique_ptr<Router> router_for(const std::string& url) {
  RouterConfig c;
  ModelConfig m;
  m.name = "m";
  m.endpoints = {EndpointConfig{url, 1, ""}};
  c.models = {m};
  return Router::create(c).value();
}

ForwardRequest request(bool stream = false) {
  ForwardRequest r;
  r.target = "/v1/chat/completions";
  r.body = stream ? R"({"model":"m","stream":true})" : R"({"model":"m"})";
  return r;
}

Reply sse(int events, std::chrono::milliseconds gap) {
  Reply r;
  r.bytes = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < events; ++i) r.pieces.push_back("b\r\ndata: tok\n\n\r\n");
  r.pieces.push_back("e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
  r.gap = gap;
  return r;
}

}  // namespace

TEST_CASE("forward returns at once and the handler gets the answer on the loop") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply(R"({"ok":1})"), 100ms); });
  auto router = router_for(up.url());
  auto forwarder = Forwarder::create(*router).value();
  auto rec = std::make_shared<Recorder>();
  const auto t0 = std::chrono::steady_clock::now();
  forwarder->forward(request(), rec);
  CHECK(std::chrono::steady_clock::now() - t0 < 50ms);  // the upstream takes 100 ms
  REQUIRE(rec->wait());
  CHECK(rec->result->ok());
  CHECK(rec->status == 200);
  CHECK(rec->body == R"({"ok":1})");
  CHECK(rec->completions == 1);
}

TEST_CASE("a per-request timeout ends a forward with 504; an unknown model with 404") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply("{}"), 3000ms); });
  auto router = router_for(up.url());
  auto forwarder = Forwarder::create(*router).value();
  auto rec = std::make_shared<Recorder>();
  ForwardRequest r = request();
  r.timeout = 200ms;
  forwarder->forward(std::move(r), rec);
  REQUIRE(rec->wait());
  CHECK(rec->result->code() == Errc::timeout);
  CHECK(http_status(rec->result->code()) == 504);
  CHECK(rec->status == 0);

  auto unknown = std::make_shared<Recorder>();
  ForwardRequest u = request();
  u.body = R"({"model":"nope"})";
  forwarder->forward(std::move(u), unknown);
  REQUIRE(unknown->wait());
  CHECK(unknown->result->code() == Errc::unknown_model);
}

TEST_CASE("cancel from another thread stops a forward at once and closes its upstream") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply("{}"), 5000ms); });
  auto router = router_for(up.url());
  auto forwarder = Forwarder::create(*router).value();
  auto rec = std::make_shared<Recorder>();
  ForwardHandle handle = forwarder->forward(request(), rec);
  for (int i = 0; i < 200 && up.requests.load() == 0; ++i) std::this_thread::sleep_for(5ms);  // it reached the upstream
  REQUIRE(up.requests == 1);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread([handle] { handle.cancel(); }).join();
  REQUIRE(rec->wait(2000ms));
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
  CHECK(rec->result->code() == Errc::cancelled);
  for (int i = 0; i < 200 && up.closed_by_peer.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  CHECK(up.closed_by_peer == 1);  // vLLM sees the connection close and aborts the request
  handle.cancel();                // again, and after the end: nothing happens
  CHECK(rec->completions == 1);
  CHECK(router->snapshot()->pools[0].states[0]->in_flight == 0);
}

TEST_CASE("a streamed answer arrives chunk by chunk; a handler that refuses a chunk cancels") {
  TestUpstream up([](const std::string&, const std::string&) { return sse(5, 10ms); });
  auto router = router_for(up.url());
  auto forwarder = Forwarder::create(*router).value();
  auto rec = std::make_shared<Recorder>();
  forwarder->forward(request(true), rec);
  REQUIRE(rec->wait());
  CHECK(rec->result->ok());
  CHECK(rec->chunks == 6);
  CHECK(rec->body.ends_with("data: [DONE]\n\n"));

  auto quitter = std::make_shared<Recorder>();
  quitter->stop_after_chunks = 2;
  forwarder->forward(request(true), quitter);
  REQUIRE(quitter->wait());
  CHECK(quitter->result->code() == Errc::cancelled);
  CHECK(quitter->chunks == 2);
}

TEST_CASE("destroying the forwarder cancels what runs; every handler hears the end once") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply("{}"), 5000ms); });
  auto router = router_for(up.url());
  std::vector<std::shared_ptr<Recorder>> recs;
  {
    auto forwarder = Forwarder::create(*router, ForwarderOptions{2}).value();
    for (int i = 0; i < 6; ++i) {
      recs.push_back(std::make_shared<Recorder>());
      forwarder->forward(request(), recs.back());
    }
  }
  for (auto& rec : recs) {
    REQUIRE(rec->result.has_value());
    CHECK(rec->result->code() == Errc::cancelled);
    CHECK(rec->completions == 1);
  }
}

TEST_CASE("an https endpoint on the loop: verified handshake, answers streamed, the connection pooled with its session") {
  const auto& certs = TestCerts::get();
  TestUpstream up([](const std::string&, const std::string&) { return sse(3, 0ms); },
                  detail::TlsContext::server(certs.cert, certs.key).value());
  RouterConfig c;
  ModelConfig m;
  m.name = "m";
  m.endpoints = {EndpointConfig{up.url(), 1, ""}};
  c.models = {m};
  c.upstream_tls.ca_file = certs.ca;
  auto router = Router::create(c).value();
  auto forwarder = Forwarder::create(*router, ForwarderOptions{1}).value();
  for (int i = 0; i < 3; ++i) {
    auto rec = std::make_shared<Recorder>();
    forwarder->forward(request(true), rec);
    REQUIRE(rec->wait());
    REQUIRE(rec->result->ok());
    CHECK(rec->status == 200);
    CHECK(rec->body == "data: tok\n\ndata: tok\n\ndata: tok\n\ndata: [DONE]\n\n");
  }
  CHECK(up.requests == 3);
  CHECK(up.connections == 1);
  CHECK(up.tls_failures == 0);

  // Another CA: the handshake fails, which is a failed connect (502), with OpenSSL's reason.
  c.upstream_tls.ca_file = certs.other_ca;
  c.max_idle_connections = 0;
  REQUIRE(router->update(c));
  auto fresh = Forwarder::create(*router, ForwarderOptions{1}).value();  // no pooled session
  auto rec = std::make_shared<Recorder>();
  fresh->forward(request(), rec);
  REQUIRE(rec->wait());
  REQUIRE_FALSE(rec->result->ok());
  CHECK(rec->result->code() == Errc::connect_failed);
  CHECK(http_status(rec->result->code()) == 502);
  CHECK(rec->result->error().message.find("cannot connect to " + up.url() +
                                          ": TLS handshake failed: certificate verify failed: unable to get local "
                                          "issuer certificate") != std::string::npos);
}
