// Prefill/decode disaggregation in the exchange core: the two legs, their bodies, one request id,
// retries per leg and the colocated fallback, fed by hand (no sockets).
#include <doctest/doctest.h>

#include "support/exchange_host.h"

using namespace vllm_router;
using namespace vllm_router::testing;
using namespace std::chrono_literals;
using Connect = ExchangeHost::Connect;

namespace {

constexpr std::string_view kParams =
    R"({"do_remote_prefill":true,"remote_engine_id":"p1","remote_block_ids":[1,2],"remote_host":"10.0.1.1","remote_port":8000})";

std::string prefill_answer(std::string_view params = kParams) {
  const std::string body = std::string(R"({"id":"cmpl-1","choices":[],"kv_transfer_params":null,"kv_transfer_params":)") +
                           std::string(params) + "}";
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

// Model "m": decode endpoints 10.0.0.<i>, prefill endpoints 10.0.1.<i> (round robin both).
RouterConfig pd_config(std::size_t decode, std::size_t prefill, bool fallback = true) {
  RouterConfig c = fleet_config(decode);
  PrefillConfig p;
  for (std::size_t i = 1; i <= prefill; ++i) p.endpoints.push_back(EndpointConfig{"http://10.0.1." + std::to_string(i) + ":8000", 1, ""});
  p.colocated_fallback = fallback;
  c.models[0].prefill = p;
  return c;
}

struct Fixture {
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  std::unique_ptr<Router> router;
  RecordingHost host;
  std::unique_ptr<Exchange> ex;
  Exchange::TimePoint t{std::chrono::seconds(100)};
  std::string body =
      R"({"model":"alias-m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":3,"kv_transfer_params":{"x":1}})";
  std::string target = "/v1/completions";
  std::string request_id = "rid-1";

  explicit Fixture(const RouterConfig& c) {
    RouterOptions o;
    o.observer = log;
    o.seed = 7;
    auto r = Router::create(c, std::move(o));
    REQUIRE(r.ok());
    router = std::move(r).value();
    ex = std::make_unique<Exchange>(*router, host);
  }
  void start() {
    ClientRequest r;
    r.target = target;
    r.body = body;
    r.request_id = request_id;
    ex->start(r, t);
  }
  void feed(std::string_view bytes) { ex->on_upstream_data(bytes, t); }
};

bool has(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a disaggregated model runs a prefill leg, then the client's request with its kv_transfer_params on decode") {
  Fixture f(pd_config(1, 1));
  f.start();
  REQUIRE(f.host.connected == std::vector<std::string>{"http://10.0.1.1:8000"});
  const std::string& prefill = f.host.bodies[0];
  CHECK(prefill ==
        R"({"model":"m","prompt":"hi","stream":false,"max_tokens":1,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}})");
  CHECK(has(f.host.heads[0], "X-Request-Id: rid-1\r\n"));
  f.t += 40ms;
  f.feed(prefill_answer());
  CHECK(f.host.status == 0);  // nothing of the prefill answer reached the client
  REQUIRE(f.host.connected.size() == 2);
  CHECK(f.host.connected[1] == "http://10.0.0.1:8000");
  CHECK(f.host.bodies[1] ==
        std::string(R"({"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":3,"kv_transfer_params":)") +
            std::string(kParams) + "}");
  CHECK(has(f.host.heads[1], "X-Request-Id: rid-1\r\n"));
  CHECK(f.host.releases == std::vector<bool>{true});  // the prefill connection is kept alive
  f.t += 10ms;
  f.feed(kOk);
  CHECK(f.host.status == 200);
  CHECK(f.host.body == "{}");
  CHECK(f.host.ended);
  REQUIRE(f.log->summaries.size() == 1);
  const ExchangeSummary& s = f.log->summaries[0];
  CHECK(s.attempts == 2);
  CHECK(s.prefill == 40ms);
  CHECK(s.duration == 50ms);
  CHECK_FALSE(s.colocated_fallback);
  CHECK(f.log->count("outcome m http://10.0.1.1:8000 0 200") == 1);
  CHECK(f.log->count("outcome m http://10.0.0.1:8000 0 200") == 1);
}

TEST_CASE("max_completion_tokens is set to 1 on the prefill leg when the client sent it; no request id is made one") {
  Fixture f(pd_config(1, 1));
  f.target = "/v1/chat/completions";
  f.body = R"({"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":9,"min_completion_tokens":2})";
  f.request_id = "";
  f.start();
  CHECK(f.host.bodies[0] ==
        R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false,"max_tokens":1,"max_completion_tokens":1,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}})");
  const auto id_of = [](const std::string& head) {
    const auto at = head.find("X-Request-Id: ");
    REQUIRE(at != std::string::npos);
    return head.substr(at + 14, head.find("\r\n", at) - at - 14);
  };
  const std::string id = id_of(f.host.heads[0]);
  CHECK(id.size() == 32);
  f.feed(prefill_answer());
  REQUIRE(f.host.heads.size() == 2);
  CHECK(id_of(f.host.heads[1]) == id);
  f.feed(kOk);
  CHECK(f.host.header("X-Request-Id") == id);
}

TEST_CASE("routes other than the completions are not split; models without a prefill pool never are") {
  Fixture embeddings(pd_config(1, 1));
  embeddings.target = "/v1/embeddings";
  embeddings.body = R"({"model":"m","input":"hi"})";
  embeddings.start();
  CHECK(embeddings.host.connected == std::vector<std::string>{"http://10.0.0.1:8000"});
  CHECK(embeddings.host.bodies[0] == embeddings.body);

  Fixture plain(fleet_config(1));
  plain.start();
  CHECK(plain.host.bodies[0] == R"({"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":3,"kv_transfer_params":{"x":1}})");
}

TEST_CASE("a failed prefill endpoint is left for another; a 5xx and an answer without params are failures") {
  Fixture f(pd_config(1, 3));
  f.host.connects = {Connect::failed};
  f.start();
  REQUIRE(f.host.connected.size() == 2);
  CHECK(f.host.connected[0].rfind("http://10.0.1.", 0) == 0);
  CHECK(f.host.connected[1].rfind("http://10.0.1.", 0) == 0);
  f.feed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}");
  REQUIRE(f.host.connected.size() == 3);
  CHECK(f.host.connected[2].rfind("http://10.0.1.", 0) == 0);
  f.feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");  // no kv_transfer_params: not a prefill engine
  // Every prefill endpoint failed: the request runs colocated on decode, the client's body as sent.
  REQUIRE(f.host.connected.size() == 4);
  CHECK(f.host.connected[3] == "http://10.0.0.1:8000");
  REQUIRE(f.host.bodies.size() == 3);  // the refused connect sent nothing
  CHECK(f.host.bodies[2] == R"({"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":3,"kv_transfer_params":{"x":1}})");
  f.feed(kOk);
  CHECK(f.host.status == 200);
  REQUIRE(f.log->summaries.size() == 1);
  CHECK(f.log->summaries[0].colocated_fallback);
  CHECK(f.log->count("retry http://10.0.1.") == 2);
}

TEST_CASE("without the fallback, no prefill endpoint left is a 503") {
  Fixture f(pd_config(1, 1, false));
  f.host.connects = {Connect::failed};
  f.start();
  REQUIRE(f.host.error);
  CHECK(f.host.error->code == Errc::no_endpoint);
  CHECK(http_status(f.host.error->code) == 503);
  CHECK(has(f.host.error->message, "prefill"));
  CHECK(f.host.connected.size() == 1);
}

TEST_CASE("a decode failure before the first byte moves to another decode endpoint with the same params") {
  Fixture f(pd_config(2, 1));
  f.start();
  f.feed(prefill_answer());
  REQUIRE(f.host.bodies.size() == 2);
  f.feed("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
  REQUIRE(f.host.bodies.size() == 3);
  CHECK(f.host.connected[1] != f.host.connected[2]);
  CHECK(f.host.connected[2].rfind("http://10.0.0.", 0) == 0);
  CHECK(f.host.bodies[2] == f.host.bodies[1]);
  CHECK(f.host.heads[2].find("10.0.1.") == std::string::npos);
  f.feed(kOk);
  CHECK(f.host.status == 200);
  CHECK(f.log->summaries[0].attempts == 3);
}

TEST_CASE("the prefill's verdict on a bad request (4xx) is the client's answer") {
  Fixture f(pd_config(1, 1));
  f.start();
  f.feed("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"e\":1}");
  CHECK(f.host.status == 400);
  CHECK(f.host.body == "{\"e\":1}");
  CHECK(f.host.connected.size() == 1);
}

TEST_CASE("config: a prefill pool is read, validated and gets a pool of its own") {
  auto c = parse_router_config(R"({"models":[{"name":"m","endpoints":[{"url":"http://10.0.0.1:8000"}],
    "decode":{"policy":"least_requests"},
    "prefill":{"endpoints":[{"url":"http://10.0.1.1:8000"}],"policy":"power_of_two","colocated_fallback":false}}]})");
  REQUIRE(c.ok());
  const ModelConfig& m = c.value().models[0];
  CHECK(m.policy == "least_requests");
  REQUIRE(m.prefill);
  CHECK(m.prefill->policy == "power_of_two");
  CHECK_FALSE(m.prefill->colocated_fallback);
  REQUIRE(m.prefill->endpoints.size() == 1);
  auto r = Router::create(c.value());
  REQUIRE(r.ok());
  const auto snap = r.value()->snapshot();
  CHECK(snap->disaggregated);
  REQUIRE(snap->pools.size() == 2);
  CHECK(snap->pools[0].prefill == 1);
  CHECK_FALSE(snap->pools[0].colocated_fallback);
  CHECK(snap->pools[1].prefill_role);
  CHECK(snap->pools[1].policy->name() == "power_of_two");

  auto empty = parse_router_config(R"({"models":[{"name":"m","endpoints":[{"url":"http://a:1"}],"prefill":{"endpoints":[]}}]})");
  REQUIRE(empty.ok());
  auto v = validate(empty.value(), {"round_robin"});
  REQUIRE_FALSE(v.ok());
  CHECK(v.error().param == "models[0].prefill.endpoints");
  auto unknown = parse_router_config(R"({"models":[{"name":"m","endpoints":[{"url":"http://a:1"}],"prefill":{"endpoints":[{"url":"http://b:1"}],"policy":"nope"}}]})");
  REQUIRE(unknown.ok());
  CHECK(validate(unknown.value(), {"round_robin"}).error().param == "models[0].prefill.policy");
  auto bad_key = parse_router_config(R"({"models":[{"name":"m","endpoints":[{"url":"http://a:1"}],"prefill":{"endpoint":[]}}]})");
  REQUIRE_FALSE(bad_key.ok());
}
