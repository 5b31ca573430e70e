// Router tests with a fake Transport: resolution, retries on connect failure, alias rewrite, update.
#include <doctest/doctest.h>

#include <mutex>
#include <set>
#include <vector>

#include "vllm_router/router.h"

using namespace vllm_router;

namespace {

struct FakeResponse final : UpstreamResponse {
  std::string body = "ok";
  Headers hs;
  int status() const noexcept override { return 200; }
  const Headers& headers() const noexcept override { return hs; }
  std::optional<std::uint64_t> content_length() const noexcept override { return body.size(); }
  Result<std::uint64_t> relay(BodySink& sink) override {
    if (!sink.write(body.data(), body.size())) return Result<std::uint64_t>(Errc::cancelled, "gone");
    return std::uint64_t{body.size()};
  }
};

struct FakeTransport final : Transport {
  std::mutex mutex;
  std::set<std::string> refusing;   // endpoint ids that refuse connections
  std::vector<std::string> calls;   // endpoint ids in call order
  std::vector<std::string> bodies;
  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& ep, const UpstreamRequest& req,
                                                 const AliveCheck&) override {
    std::lock_guard<std::mutex> lock(mutex);
    calls.push_back(ep.id);
    bodies.emplace_back(req.body);
    if (refusing.count(ep.id) != 0) {
      return Result<std::unique_ptr<UpstreamResponse>>(Errc::connect_failed, "refused");
    }
    return std::unique_ptr<UpstreamResponse>(std::make_unique<FakeResponse>());
  }
};

struct StringSink final : BodySink {
  std::string data;
  bool write(const char* d, std::size_t n) override {
    data.append(d, n);
    return true;
  }
};

RouterConfig two_models() {
  RouterConfig c;
  ModelConfig a;
  a.name = "org/a";
  a.aliases = {"a"};
  a.loras = {"a-lora"};
  a.endpoints = {{"http://127.0.0.1:1001", 1, ""}, {"http://127.0.0.1:1002", 1, ""},
                 {"http://127.0.0.1:1003", 1, ""}};
  ModelConfig b;
  b.name = "org/b";
  b.policy = "least_requests";
  b.endpoints = {{"http://127.0.0.1:2001", 1, ""}};
  c.models = {a, b};
  return c;
}

std::unique_ptr<Router> make_router(const RouterConfig& c, std::shared_ptr<FakeTransport> t) {
  RouterOptions o;
  o.transport = t;
  o.seed = 99;
  auto r = Router::create(c, std::move(o));
  REQUIRE(r.ok());
  return std::move(r).value();
}

RequestView view_of(std::string_view body) {
  auto v = parse_request(body);
  REQUIRE(v.ok());
  return v.value();
}

}  // namespace

TEST_CASE("route resolves names to their pool and round-robins across replicas") {
  auto t = std::make_shared<FakeTransport>();
  auto router = make_router(two_models(), t);
  std::map<std::string, int> counts;
  for (int i = 0; i < 30; ++i) {
    auto route = router->route(view_of(R"({"model":"org/a"})"));
    REQUIRE(route.ok());
    counts[route->lease.endpoint().id]++;
  }
  CHECK(counts.size() == 3);
  for (auto& [id, n] : counts) CHECK(n == 10);
  auto b = router->route(view_of(R"({"model":"org/b"})"));
  REQUIRE(b.ok());
  CHECK(b->lease.endpoint().id == "http://127.0.0.1:2001");
  CHECK(b->pool->policy->name() == "least_requests");
}

TEST_CASE("route errors: unknown model names it, missing model without default") {
  auto t = std::make_shared<FakeTransport>();
  auto router = make_router(two_models(), t);
  auto unknown = router->route(view_of(R"({"model":"nope"})"));
  CHECK(unknown.code() == Errc::unknown_model);
  CHECK(unknown.error().message.find("`nope`") != std::string::npos);
  CHECK(http_status(unknown.code()) == 404);
  CHECK(router->route(view_of(R"({"prompt":"x"})")).code() == Errc::missing_model);
}

TEST_CASE("forward skips a refusing replica and never retries a delivered request") {
  auto t = std::make_shared<FakeTransport>();
  t->refusing = {"http://127.0.0.1:1001", "http://127.0.0.1:1002"};
  auto router = make_router(two_models(), t);
  const std::string body = R"({"model":"org/a"})";
  UpstreamRequest req;
  req.path = "/v1/completions";
  req.body = body;
  for (int i = 0; i < 6; ++i) {
    auto ex = router->forward(view_of(body), req);
    REQUIRE(ex.ok());
    CHECK(ex->endpoint().id == "http://127.0.0.1:1003");
    StringSink sink;
    REQUIRE(ex->relay(sink).ok());
    CHECK(sink.data == "ok");
  }
  auto snap = router->snapshot();
  for (const auto& s : snap->pools[0].states) CHECK(s->in_flight == 0);
  CHECK(snap->pools[0].states[0]->failures >= 1);
}

TEST_CASE("forward fails with connect_failed (502) when every replica refuses") {
  auto t = std::make_shared<FakeTransport>();
  t->refusing = {"http://127.0.0.1:1001", "http://127.0.0.1:1002", "http://127.0.0.1:1003"};
  auto router = make_router(two_models(), t);
  const std::string body = R"({"model":"a"})";
  UpstreamRequest req;
  req.body = body;
  auto ex = router->forward(view_of(body), req);
  CHECK(ex.code() == Errc::connect_failed);
  CHECK(http_status(ex.code()) == 502);
  CHECK(t->calls.size() == 3);
  CHECK(std::set<std::string>(t->calls.begin(), t->calls.end()).size() == 3);
}

TEST_CASE("an alias is rewritten to the served name; a LoRA name is sent as is") {
  auto t = std::make_shared<FakeTransport>();
  auto router = make_router(two_models(), t);
  const std::string alias_body = R"({"model":"a","prompt":"p"})";
  UpstreamRequest req;
  req.body = alias_body;
  REQUIRE(router->forward(view_of(alias_body), req).ok());
  CHECK(t->bodies.back() == R"({"model":"org/a","prompt":"p"})");
  const std::string lora_body = R"({"model":"a-lora","prompt":"p"})";
  req.body = lora_body;
  REQUIRE(router->forward(view_of(lora_body), req).ok());
  CHECK(t->bodies.back() == lora_body);
}

TEST_CASE("update swaps the table, keeps live state, and rejects a bad config") {
  auto t = std::make_shared<FakeTransport>();
  auto router = make_router(two_models(), t);
  auto before = router->snapshot();
  auto held = router->route(view_of(R"({"model":"org/b"})"));
  REQUIRE(held.ok());
  RouterConfig next = two_models();
  next.models.pop_back();
  ModelConfig c;
  c.name = "org/c";
  c.endpoints = {{"http://127.0.0.1:2001", 1, ""}};  // same server as org/b
  next.models.push_back(c);
  REQUIRE(router->update(next).ok());
  auto after = router->snapshot();
  CHECK(after->version > before->version);
  CHECK(router->route(view_of(R"({"model":"org/b"})")).code() == Errc::unknown_model);
  // The server's in-flight count carried over to the new table.
  CHECK(after->pools[1].states[0]->in_flight == 1);
  held->lease.complete(Outcome{});
  CHECK(after->pools[1].states[0]->in_flight == 0);

  RouterConfig bad = two_models();
  bad.models[1].endpoints[0].url = "ftp://x";
  CHECK(router->update(bad).code() == Errc::config);
  CHECK(router->snapshot()->version == after->version);
}

TEST_CASE("update carries prefix_aware's index to the new table, following endpoints by id") {
  auto t = std::make_shared<FakeTransport>();
  RouterConfig c;
  c.policy = "prefix_aware";
  ModelConfig m;
  m.name = "org/p";
  m.endpoints = {{"http://127.0.0.1:3001", 1, ""}, {"http://127.0.0.1:3002", 1, ""}, {"http://127.0.0.1:3003", 1, ""}};
  c.models = {m};
  auto router = make_router(c, t);
  const auto prompt = [](int g) {
    std::string s;
    for (int i = 0; i < 120; ++i) s += "group " + std::to_string(g) + " line " + std::to_string(i) + ". ";
    return s;
  };
  const auto body = [&](int g, std::string_view tail) {
    return R"({"model":"org/p","prompt":")" + prompt(g) + std::string(tail) + R"("})";
  };
  // Three prompt groups; each first request stays open, so the groups spread over the servers.
  std::vector<Route> held;
  std::vector<std::string> served;
  for (int g = 0; g < 3; ++g) {
    const std::string b = body(g, "");
    auto r = router->route(view_of(b));
    REQUIRE(r.ok());
    served.push_back(r->lease.endpoint().id);
    held.push_back(std::move(r.value()));
  }
  REQUIRE(std::set<std::string>(served.begin(), served.end()).size() == 3);
  for (auto& h : held) h.lease.complete(Outcome{});

  // A reload lists the same servers in another order (slots move): each group still goes home.
  RouterConfig next = c;
  std::swap(next.models[0].endpoints[0], next.models[0].endpoints[2]);
  REQUIRE(router->update(next).ok());
  for (int g = 0; g < 3; ++g) {
    const std::string b = body(g, " and a follow-up");
    auto r = router->route(view_of(b));
    REQUIRE(r.ok());
    CHECK(r->lease.endpoint().id == served[static_cast<std::size_t>(g)]);
    r->lease.complete(Outcome{});
  }
}
