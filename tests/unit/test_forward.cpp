// The blocking driver (Router::forward, Response::relay) against scripted upstreams on loopback.
#include <doctest/doctest.h>

#include <future>
#include <thread>

#include "support/exchange_host.h"
#include "support/routing.h"
#include "support/test_certs.h"
#include "support/upstream.h"
#include "vllm_router/transport.h"

using namespace vllm_router;
using namespace vllm_router::testing;
using namespace std::chrono_literals;

namespace {

struct StringSink final : BodySink {
  std::string data;
  bool write(const char* d, std::size_t n) override {
    data.append(d, n);
    return true;
  }
};

RouterConfig config_for(const std::vector<std::string>& urls) {
  RouterConfig c;
  ModelConfig m;
  m.name = "org/m";
  m.aliases = {"m"};
  for (const auto& u : urls) m.endpoints.push_back(EndpointConfig{u, 1, ""});
  c.models = {m};
  c.timeouts.connect_ms = 500;
  return c;
}

}  // namespace

TEST_CASE("forward relays an answer, skips a refusing replica, rewrites an alias, reuses connections") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply(R"({"ok":1})")); });
  const std::string dead = "http://127.0.0.1:" + std::to_string(dead_port());
  auto log = std::make_shared<EventLog>();
  auto router = make_router(config_for({dead, up.url()}), log);
  const std::string body = R"({"model":"m","prompt":"x"})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  for (int i = 0; i < 4; ++i) {
    auto response = router->forward(view_of(body), req);
    REQUIRE(response.ok());
    CHECK(response->status() == 200);
    CHECK(response->endpoint().id == up.url());
    StringSink sink;
    auto relayed = response->relay(sink);
    REQUIRE(relayed.ok());
    CHECK(sink.data == R"({"ok":1})");
    CHECK(relayed.value() == sink.data.size());
  }
  CHECK(up.requests == 4);
  CHECK(up.connections == 1);  // the keep-alive pool
  std::lock_guard<std::mutex> lock(up.mutex);
  CHECK(up.bodies[0] == R"({"model":"org/m","prompt":"x"})");
  for (const auto& s : router->snapshot()->pools[0].states) CHECK(s->in_flight == 0);
  CHECK(log->count("retry") >= 1);  // the dead replica was picked and skipped at least once
}

TEST_CASE("forward answers 502 when every replica refuses and 504 past its per-call timeout") {
  auto router = make_router(config_for({"http://127.0.0.1:" + std::to_string(dead_port())}));
  const std::string body = R"({"model":"m"})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  auto refused = router->forward(view_of(body), req);
  CHECK(refused.code() == Errc::connect_failed);

  TestUpstream slow([](const std::string&, const std::string&) { return reply(json_reply("{}"), 2000ms); });
  auto router2 = make_router(config_for({slow.url()}));
  ForwardOptions options;
  options.timeout = 200ms;
  const auto t0 = std::chrono::steady_clock::now();
  auto timed_out = router2->forward(view_of(body), req, options);
  CHECK(timed_out.code() == Errc::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
}

TEST_CASE("a cancel token stops a forward from another thread, before and during the body") {
  TestUpstream up([](const std::string&, const std::string&) {
    Reply r;
    r.bytes = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 200; ++i) r.pieces.push_back("b\r\ndata: tok\n\n\r\n");
    r.gap = 20ms;
    r.delay = 0ms;
    return r;
  });
  TestUpstream stuck([](const std::string&, const std::string&) { return reply(json_reply("{}"), 5000ms); });
  const std::string body = R"({"model":"m","stream":true})";
  UpstreamRequest req;
  req.path = "/v1/chat/completions";
  req.body = body;
  {
    auto router = make_router(config_for({stuck.url()}));
    CancelToken token;
    ForwardOptions options;
    options.cancel = &token;
    std::thread canceller([&] {
      std::this_thread::sleep_for(100ms);  // the forward is blocked waiting for the head by now
      token.cancel();
    });
    const auto t0 = std::chrono::steady_clock::now();
    auto r = router->forward(view_of(body), req, options);
    canceller.join();
    CHECK(r.code() == Errc::cancelled);
    CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
    CHECK(router->snapshot()->pools[0].states[0]->in_flight == 0);
  }
  auto router = make_router(config_for({up.url()}));
  CancelToken token;
  ForwardOptions options;
  options.cancel = &token;
  auto r = router->forward(view_of(body), req, options);
  REQUIRE(r.ok());
  CHECK(r->event_stream());
  struct CancellingSink final : BodySink {
    CancelToken* token;
    int events = 0;
    bool write(const char*, std::size_t) override {
      if (++events == 3) token->cancel();
      return true;
    }
  } sink;
  sink.token = &token;
  auto relayed = r->relay(sink);
  CHECK(relayed.code() == Errc::cancelled);
  CHECK(sink.events < 10);
}

TEST_CASE("forward waits for capacity when every replica is full, then goes") {
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply("{}"), 150ms); });
  RouterConfig c = config_for({up.url()});
  c.models[0].max_in_flight_per_endpoint = 1;
  c.queue_timeout_ms = 3000;
  auto router = make_router(c);
  const std::string body = R"({"model":"m"})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  auto run = [&] {
    auto r = router->forward(view_of(body), req);
    if (!r) return r.error().code;
    StringSink sink;
    return r->relay(sink).ok() ? Errc::ok : Errc::internal;
  };
  auto a = std::async(std::launch::async, run);
  auto b = std::async(std::launch::async, run);
  auto d = std::async(std::launch::async, run);
  CHECK(a.get() == Errc::ok);
  CHECK(b.get() == Errc::ok);
  CHECK(d.get() == Errc::ok);
  CHECK(up.requests == 3);
}

TEST_CASE("a stream that breaks mid-way returns the error after relaying what came (no in-band event)") {
  TestUpstream up([](const std::string&, const std::string&) {
    Reply r;
    r.bytes = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
              "b\r\ndata: tok\n\n\r\n";
    r.close = true;
    return r;
  });
  auto router = make_router(config_for({up.url()}));
  const std::string body = R"({"model":"m","stream":true})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  auto r = router->forward(view_of(body), req);
  REQUIRE(r.ok());
  StringSink sink;
  auto relayed = r->relay(sink);
  CHECK(relayed.code() == Errc::upstream_closed);
  CHECK(sink.data == "data: tok\n\n");
}

TEST_CASE("forward to an https endpoint: verified (CA, name), pooled with its session; a failed verification is a connect failure") {
  const auto& certs = TestCerts::get();
  auto tls = detail::TlsContext::server(certs.cert, certs.key).value();
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply(R"({"ok":1})")); }, tls);
  RouterConfig c = config_for({up.url()});
  c.upstream_tls.ca_file = certs.ca;
  auto router = make_router(c);
  const std::string body = R"({"model":"m","prompt":"x"})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  for (int i = 0; i < 3; ++i) {
    auto response = router->forward(view_of(body), req);
    REQUIRE(response.ok());
    CHECK(response->status() == 200);
    StringSink sink;
    REQUIRE(response->relay(sink).ok());
    CHECK(sink.data == R"({"ok":1})");
  }
  CHECK(up.requests == 3);
  CHECK(up.connections == 1);
  {
    std::lock_guard<std::mutex> lock(up.mutex);
    CHECK(up.heads[0].find("\r\nHost: 127.0.0.1:" + std::to_string(up.port) + "\r\n") != std::string::npos);
    CHECK(up.bodies[0] == R"({"model":"org/m","prompt":"x"})");
  }

  // Verification off: any certificate; a CA that did not sign it: refused (and the request
  // retried on no other replica: 502). New routers: a pooled connection keeps the verification
  // it was made with.
  struct Case {
    std::string ca;
    bool skip;
    std::string error;
  };
  for (const Case& k : {Case{certs.other_ca, false, "certificate verify failed: unable to get local issuer certificate"},
                        Case{certs.other_ca, true, ""}}) {
    c.upstream_tls = UpstreamTlsConfig{k.ca, k.skip};
    auto other = make_router(c);
    auto response = other->forward(view_of(body), req);
    if (k.error.empty()) {
      REQUIRE(response.ok());
      CHECK(response->status() == 200);
      StringSink sink;
      CHECK(response->relay(sink).ok());
    } else {
      REQUIRE_FALSE(response.ok());
      CHECK(response.code() == Errc::connect_failed);
      CHECK(response.error().message == "no replica of model `org/m` could be reached: cannot connect to " + up.url() +
                                            ": TLS handshake failed: " + k.error);
    }
  }

  // A CA file that cannot be read is refused by update(), and the router keeps its table.
  c.upstream_tls = UpstreamTlsConfig{certs.dir + "/missing.pem", false};
  auto refused = router->update(c);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().param == "upstream_tls.ca_file");
}

TEST_CASE("the http transport (probes) speaks https, verified as its Router's upstream_tls says") {
  const auto& certs = TestCerts::get();
  TestUpstream up([](const std::string&, const std::string&) { return reply(json_reply(R"({"healthy":true})")); },
                  detail::TlsContext::server(certs.cert, certs.key).value());
  RouterConfig c = config_for({up.url()});
  c.upstream_tls.ca_file = certs.ca;
  auto router = make_router(c);
  HttpTransportOptions options;
  options.router = router.get();
  auto transport = make_http_transport(options);
  const Endpoint& endpoint = *router->snapshot()->pools[0].endpoints[0];
  UpstreamRequest probe;
  probe.method = "GET";
  probe.path = "/health";
  for (int i = 0; i < 2; ++i) {
    auto response = transport->send(endpoint, probe, {});
    REQUIRE(response.ok());
    CHECK(response.value()->status() == 200);
    StringSink sink;
    REQUIRE(response.value()->relay(sink).ok());
    CHECK(sink.data == R"({"healthy":true})");
  }
  CHECK(up.connections == 1);  // pooled with its session

  // Without a router: the transport's own settings (here the system's CAs, which do not know
  // the test CA).
  auto system = make_http_transport(HttpTransportOptions{});
  auto refused = system->send(endpoint, probe, {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.code() == Errc::connect_failed);
  CHECK(refused.error().message.find("certificate verify failed") != std::string::npos);
}
