// Tests of the "replica_sync" block of the config (parse_router_config, validate) and of the
// HOST:PORT checks behind it (lib/host_port.h).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "host_port.h"
#include "vllm_router/config.h"

using vllm_router::Errc;
using vllm_router::parse_router_config;
using vllm_router::ReplicaSyncConfig;
using vllm_router::RouterConfig;
using vllm_router::validate;
using vllm_router::detail::split_host_port;

namespace {

const std::vector<std::string> kPolicies = {"round_robin"};

vllm_router::Error parse_error(const std::string& json) {
  auto result = parse_router_config(json);
  REQUIRE_FALSE(result.ok());
  CHECK(result.code() == Errc::config);
  return result.error();
}

vllm_router::Error validate_error(const ReplicaSyncConfig& sync) {
  RouterConfig c;
  c.replica_sync = sync;
  auto result = validate(c, kPolicies);
  REQUIRE_FALSE(result.ok());
  CHECK(result.code() == Errc::config);
  return result.error();
}

ReplicaSyncConfig enabled() {
  ReplicaSyncConfig s;
  s.listen = "0.0.0.0:7071";
  s.peers = {"a:7071"};
  return s;
}

}  // namespace

TEST_CASE("config: replica_sync: every key is read; omitted ones keep their defaults") {
  auto c = parse_router_config(R"({"replica_sync": {"listen": "0.0.0.0:7071",
      "peers": ["router-sync.llm.svc.cluster.local:7071", "10.0.0.7:7072", "[fd00::7]:7071"],
      "interval_ms": 20, "peer_timeout_ms": 2000, "resolve_interval_ms": 100, "secret": "s3"}})");
  REQUIRE(c.ok());
  const ReplicaSyncConfig& s = c->replica_sync;
  CHECK(s.listen == "0.0.0.0:7071");
  CHECK(s.peers == std::vector<std::string>{"router-sync.llm.svc.cluster.local:7071", "10.0.0.7:7072", "[fd00::7]:7071"});
  CHECK(s.interval_ms == 20);
  CHECK(s.peer_timeout_ms == 2000);
  CHECK(s.resolve_interval_ms == 100);
  CHECK(s.secret == "s3");
  CHECK(validate(*c, kPolicies).ok());

  auto d = parse_router_config(R"({"replica_sync": {"listen": "[::]:0"}})");
  REQUIRE(d.ok());
  CHECK(d->replica_sync.listen == "[::]:0");  // port 0: any free port
  CHECK(d->replica_sync.peers.empty());
  CHECK(d->replica_sync.interval_ms == 10);
  CHECK(d->replica_sync.peer_timeout_ms == 1000);
  CHECK(d->replica_sync.resolve_interval_ms == 5000);
  CHECK(d->replica_sync.secret.empty());
  CHECK(validate(*d, kPolicies).ok());

  // Off by default and with an empty listen.
  CHECK(RouterConfig{}.replica_sync.listen.empty());
  auto off = parse_router_config(R"({"replica_sync": {"listen": ""}})");
  REQUIRE(off.ok());
  CHECK(validate(*off, kPolicies).ok());

  // A block over a base keeps the base's keys it does not name (like policy_options).
  RouterConfig base;
  base.replica_sync = enabled();
  auto over = parse_router_config(R"({"replica_sync": {"interval_ms": 50}})", base);
  REQUIRE(over.ok());
  CHECK(over->replica_sync.listen == "0.0.0.0:7071");
  CHECK(over->replica_sync.peers == std::vector<std::string>{"a:7071"});
  CHECK(over->replica_sync.interval_ms == 50);
}

TEST_CASE("config: replica_sync: bad keys, types and ranges name their path") {
  struct Bad {
    const char* json;
    const char* param;
    const char* message;
  };
  for (const Bad& b : {
           Bad{R"({"replica_sync": {"listne": "a:1"}})", "replica_sync.listne", "unknown key (expected one of: listen, "},
           Bad{R"({"replica_sync": {"listen": "a:1", "listen": "b:1"}})", "replica_sync.listen", "duplicate key"},
           Bad{R"({"replica_sync": []})", "replica_sync", "expected an object, got an array"},
           Bad{R"({"replica_sync": {"listen": 7071}})", "replica_sync.listen", "expected a string, got 7071"},
           Bad{R"({"replica_sync": {"peers": "a:1"}})", "replica_sync.peers", "expected an array of strings"},
           Bad{R"({"replica_sync": {"peers": ["a:1", 2]}})", "replica_sync.peers[1]", "expected a string, got 2"},
           Bad{R"({"replica_sync": {"secret": true}})", "replica_sync.secret", "expected a string, got true"},
           Bad{R"({"replica_sync": {"interval_ms": 0}})", "replica_sync.interval_ms", "expected an integer 1..10000, got 0"},
           Bad{R"({"replica_sync": {"interval_ms": 10001}})", "replica_sync.interval_ms",
               "expected an integer 1..10000, got 10001"},
           Bad{R"({"replica_sync": {"interval_ms": "10"}})", "replica_sync.interval_ms", "expected an integer 1..10000"},
           Bad{R"({"replica_sync": {"peer_timeout_ms": 0}})", "replica_sync.peer_timeout_ms", "expected an integer >= 1"},
           Bad{R"({"replica_sync": {"resolve_interval_ms": 99}})", "replica_sync.resolve_interval_ms",
               "expected an integer >= 100, got 99"},
           Bad{R"({"replica_sync": {"listen": "7071"}})", "replica_sync.listen", "expected HOST:PORT"},
           Bad{R"({"replica_sync": {"listen": "0.0.0.0:70000"}})", "replica_sync.listen", "with a port 0..65535"},
           Bad{R"({"replica_sync": {"listen": "::1:7071"}})", "replica_sync.listen", "an IPv6 address goes in brackets"},
           Bad{R"({"replica_sync": {"listen": "a:1", "peers": ["b:1", "b:0"]}})", "replica_sync.peers[1]",
               "with a port 1..65535"},
           Bad{R"({"replica_sync": {"listen": "a:1", "peers": ["udp://b:1"]}})", "replica_sync.peers[0]",
               "(no scheme)"},
           Bad{R"({"replica_sync": {"listen": "a:1", "peers": ["b/x:1"]}})", "replica_sync.peers[0]",
               "(a host: letters, digits"},
       }) {
    const std::string json = b.json;
    CAPTURE(json);
    const auto e = parse_error(json);
    CAPTURE(e.message);
    CHECK(e.param == b.param);
    CHECK(e.message.rfind(std::string(b.param) + ": ", 0) == 0);
    CHECK(e.message.find(b.message) != std::string::npos);
  }
}

TEST_CASE("config: replica_sync: validate checks the cross-field rules and programmatic values") {
  CHECK(validate(RouterConfig{}, kPolicies).ok());
  {
    RouterConfig c;
    c.replica_sync = enabled();
    CHECK(validate(c, kPolicies).ok());
  }
  SUBCASE("peers without listen") {
    ReplicaSyncConfig s = enabled();
    s.listen.clear();
    const auto e = validate_error(s);
    CHECK(e.param == "replica_sync.listen");
    CHECK(e.message.find("peers are given but no listen address") != std::string::npos);
  }
  SUBCASE("peers without listen, from a document") {
    auto c = parse_router_config(R"({"replica_sync": {"peers": ["a:7071"]}})");
    REQUIRE(c.ok());  // the file may leave listen to a variable or a flag
    CHECK(validate(*c, kPolicies).error().param == "replica_sync.listen");
  }
  SUBCASE("peer_timeout_ms below interval_ms") {
    ReplicaSyncConfig s = enabled();
    s.interval_ms = 100;
    s.peer_timeout_ms = 99;
    const auto e = validate_error(s);
    CHECK(e.param == "replica_sync.peer_timeout_ms");
    CHECK(e.message == "replica_sync.peer_timeout_ms: expected an integer >= interval_ms (100), got 99");
    s.peer_timeout_ms = 100;
    RouterConfig c;
    c.replica_sync = s;
    CHECK(validate(c, kPolicies).ok());
  }
  SUBCASE("peer_timeout_ms below interval_ms, from a document") {
    auto c = parse_router_config(R"({"replica_sync": {"listen": "a:1", "interval_ms": 500, "peer_timeout_ms": 400}})");
    REQUIRE(c.ok());
    CHECK(validate(*c, kPolicies).error().param == "replica_sync.peer_timeout_ms");
  }
  SUBCASE("interval_ms out of range") {
    ReplicaSyncConfig s = enabled();
    s.interval_ms = 0;
    CHECK(validate_error(s).param == "replica_sync.interval_ms");
    s.interval_ms = 10001;
    s.peer_timeout_ms = 20000;
    CHECK(validate_error(s).param == "replica_sync.interval_ms");
  }
  SUBCASE("resolve_interval_ms too small") {
    ReplicaSyncConfig s = enabled();
    s.resolve_interval_ms = 99;
    CHECK(validate_error(s).param == "replica_sync.resolve_interval_ms");
  }
  SUBCASE("a bad listen address") {
    ReplicaSyncConfig s = enabled();
    s.listen = "0.0.0.0";
    CHECK(validate_error(s).param == "replica_sync.listen");
  }
  SUBCASE("a bad peer") {
    ReplicaSyncConfig s = enabled();
    s.peers = {"a:7071", "b:7071", "c"};
    const auto e = validate_error(s);
    CHECK(e.param == "replica_sync.peers[2]");
    CHECK(e.message.find("got \"c\"") != std::string::npos);
  }
}

TEST_CASE("config: replica_sync: HOST:PORT splitting") {
  struct Good {
    const char* text;
    const char* host;
    unsigned port;
  };
  for (const Good& g : {Good{"a:1", "a", 1}, Good{"10.0.0.7:7071", "10.0.0.7", 7071},
                        Good{"router-sync.llm.svc.cluster.local:65535", "router-sync.llm.svc.cluster.local", 65535},
                        Good{"[::1]:7071", "::1", 7071}, Good{"[fe80::1%eth0]:7071", "fe80::1%eth0", 7071},
                        Good{"[::ffff:10.0.0.1]:9", "::ffff:10.0.0.1", 9}, Good{"my_host:80", "my_host", 80}}) {
    const std::string text = g.text;
    CAPTURE(text);
    auto hp = split_host_port(g.text);
    REQUIRE(hp.ok());
    CHECK(hp->host == g.host);
    CHECK(hp->port == g.port);
  }
  CHECK(split_host_port("0.0.0.0:0", 0).ok());
  CHECK_FALSE(split_host_port("0.0.0.0:0").ok());  // a peer needs a real port
  for (const char* bad : {"", ":", "a", "a:", ":7071", "a:b", "a:-1", "a:65536", "a:000001", "a:1 ", " a:1",
                          "::1:7071", "[::1]", "[::1]7071", "[::1:7071", "[]:1", "[a.b]:1", "[::1%]:1",
                          "http://a:1", "a/b:1", "a:1/x", "[::1]:"}) {
    const std::string text = bad;
    CAPTURE(text);
    auto hp = split_host_port(text, 0);
    REQUIRE_FALSE(hp.ok());
    CHECK(hp.code() == Errc::config);
    CHECK(hp.error().message.find("expected HOST:PORT") == 0);
    CHECK(hp.error().message.find(std::string("got \"") + bad + "\"") != std::string::npos);
  }
}
