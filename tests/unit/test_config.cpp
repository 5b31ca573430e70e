// Tests of the JSON config parser (parse_app_config / parse_router_config) and validate().
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "app_config.h"
#include "vllm_router/config.h"

using vllm_router::Errc;
using vllm_router::server::AppConfig;
using vllm_router::server::parse_app_config;
using vllm_router::parse_router_config;
using vllm_router::RouterConfig;
using vllm_router::validate;

namespace {

const char* const kFullDocument = R"({
  "host": "127.0.0.1", "port": 9090,
  "api_keys": ["k1", "k2"],
  "policy": "least_requests",
  "default_model": "llama-7b",
  "max_body_bytes": 1048576, "threads": 16, "max_connections": 100, "client_timeout_ms": 5000,
  "log_level": "debug",
  "timeouts": {"connect_ms": 100, "read_ms": 200, "write_ms": 300},
  "max_attempts": 5, "max_idle_connections": 8,
  "models": [
    {"name": "meta-llama/Llama-2-7b-chat-hf", "aliases": ["llama-7b"], "loras": ["sql-lora"],
     "policy": "round_robin",
     "endpoints": ["http://127.0.0.1:8001",
                   {"url": "http://127.0.0.1:8002", "weight": 2, "api_key": "sk-x"}]},
    {"name": "qwen", "endpoints": [{"url": "http://10.0.0.9:8000/v"}]}
  ]
})";

const std::vector<std::string> kPolicies = {"round_robin", "least_requests"};

// Parses `json` expecting a config error; returns it.
vllm_router::Error parse_error(const std::string& json) {
  auto result = parse_app_config(json);
  REQUIRE_FALSE(result.ok());
  CHECK(result.code() == Errc::config);
  return result.error();
}

std::string with_model(const std::string& model_json) {
  return R"({"models": [{"name": "a", "endpoints": ["http://h:1"]}, )" + model_json + "]}";
}

RouterConfig valid_router() {
  auto result = parse_app_config(kFullDocument);
  REQUIRE(result.ok());
  return result->router;
}

}  // namespace

TEST_CASE("config: a full document sets every field") {
  auto result = parse_app_config(kFullDocument);
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.error().message));
  const AppConfig& c = *result;
  CHECK(c.host == "127.0.0.1");
  CHECK(c.port == 9090);
  CHECK(c.api_keys == std::vector<std::string>{"k1", "k2"});
  CHECK(c.router.policy == "least_requests");
  CHECK(c.router.default_model == "llama-7b");
  CHECK(c.max_body_bytes == 1048576u);
  CHECK(c.threads == 16u);
  CHECK(c.max_connections == 100u);
  CHECK(c.client_timeout_ms == 5000u);
  CHECK(c.log_level == "debug");
  CHECK(c.router.timeouts.connect_ms == 100u);
  CHECK(c.router.timeouts.read_ms == 200u);
  CHECK(c.router.timeouts.write_ms == 300u);
  CHECK(c.router.max_attempts == 5u);
  CHECK(c.router.max_idle_connections == 8u);
  REQUIRE(c.router.models.size() == 2);
  const auto& m = c.router.models[0];
  CHECK(m.name == "meta-llama/Llama-2-7b-chat-hf");
  CHECK(m.aliases == std::vector<std::string>{"llama-7b"});
  CHECK(m.loras == std::vector<std::string>{"sql-lora"});
  CHECK(m.policy == "round_robin");
  REQUIRE(m.endpoints.size() == 2);
  CHECK(m.endpoints[0].url == "http://127.0.0.1:8001");
  CHECK(m.endpoints[0].weight == 1u);
  CHECK(m.endpoints[0].api_key.empty());
  CHECK(m.endpoints[1].url == "http://127.0.0.1:8002");
  CHECK(m.endpoints[1].weight == 2u);
  CHECK(m.endpoints[1].api_key == "sk-x");
  CHECK(c.router.models[1].name == "qwen");
  CHECK(c.router.models[1].policy.empty());
  CHECK(c.router.models[1].endpoints[0].url == "http://10.0.0.9:8000/v");
  CHECK(validate(c.router, kPolicies).ok());
}

TEST_CASE("config: an empty object gives the defaults") {
  auto result = parse_app_config("  {}  ");
  REQUIRE(result.ok());
  const AppConfig defaults;
  CHECK(result->host == defaults.host);
  CHECK(result->port == 8080);
  CHECK(result->api_keys.empty());
  CHECK(result->router.policy == "round_robin");
  CHECK(result->router.default_model.empty());
  CHECK(result->max_body_bytes == 32ull * 1024 * 1024);
  CHECK(result->threads == 0u);
  CHECK(result->io == "epoll");
  CHECK(result->max_connections == 0u);
  CHECK(result->client_timeout_ms == 60000u);
  CHECK(result->log_level == "info");
  CHECK(result->router.timeouts.connect_ms == 3000u);
  CHECK(result->router.timeouts.read_ms == 600000u);
  CHECK(result->router.timeouts.write_ms == 30000u);
  CHECK(result->router.max_attempts == 3u);
  CHECK(result->router.max_idle_connections == 64u);
  CHECK(result->router.models.empty());
}

TEST_CASE("config: omitted fields keep the base's values; given ones replace them") {
  AppConfig base;
  base.port = 1234;
  base.api_keys = {"old"};
  base.router.timeouts.read_ms = 7;
  base.router.models.push_back({"base-model", {}, {}, {{"http://h:1", 1, {}}}, {}, {}, 0, {}, {}});
  auto result =
      parse_app_config(R"({"api_keys": ["new"], "timeouts": {"connect_ms": 9}})", base);
  REQUIRE(result.ok());
  CHECK(result->port == 1234);
  CHECK(result->api_keys == std::vector<std::string>{"new"});
  CHECK(result->router.timeouts.connect_ms == 9u);
  CHECK(result->router.timeouts.read_ms == 7u);
  REQUIRE(result->router.models.size() == 1);
  CHECK(result->router.models[0].name == "base-model");

  auto replaced = parse_app_config(R"({"models": []})", base);
  REQUIRE(replaced.ok());
  CHECK(replaced->router.models.empty());
}

TEST_CASE("config: the library parses routing keys; a host's own keys go through its extension") {
  // Alone, the library knows routing keys only: the executable's listener keys are unknown.
  auto alone = parse_router_config(R"({"policy": "least_requests", "port": 1})");
  REQUIRE_FALSE(alone.ok());
  CHECK(alone.error().param == "port");
  CHECK(alone.error().message.find("unknown key") != std::string::npos);

  std::uint16_t port = 0;
  vllm_router::ConfigExtension extension;
  extension.keys = {"port"};
  extension.read = [&port](vllm_router::ConfigField& f) { return f.read(port); };
  auto result = parse_router_config(R"({"policy": "least_requests", "port": 1})", {}, &extension);
  REQUIRE(result.ok());
  CHECK(result->policy == "least_requests");
  CHECK(port == 1);

  auto bad = parse_router_config(R"({"port": -1})", {}, &extension);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().param == "port");
  CHECK(bad.error().message == "port: expected an integer 0..65535, got -1");
}

TEST_CASE("config: large integers within range are accepted") {
  auto result = parse_app_config(
      R"({"max_body_bytes": 18446744073709551615, "port": 65535, "threads": 4294967295})");
  REQUIRE(result.ok());
  CHECK(result->max_body_bytes == 18446744073709551615ull);
  CHECK(result->port == 65535);
  CHECK(result->threads == 4294967295u);
  CHECK(parse_app_config(R"({"port": 0, "max_connections": 0})").ok());
}

TEST_CASE("config: bad fields name their JSON path and what is expected") {
  SUBCASE("negative weight") {
    auto e = parse_error(with_model(
        R"({"name": "b", "endpoints": ["http://h:2", {"url": "http://h:3", "weight": -3}]})"));
    CHECK(e.param == "models[1].endpoints[1].weight");
    CHECK(e.message == "models[1].endpoints[1].weight: expected an integer >= 1, got -3");
  }
  SUBCASE("zero weight") {
    auto e = parse_error(
        with_model(R"({"name": "b", "endpoints": [{"url": "http://h", "weight": 0}]})"));
    CHECK(e.param == "models[1].endpoints[0].weight");
  }
  SUBCASE("port out of range") {
    auto e = parse_error(R"({"port": 70000})");
    CHECK(e.param == "port");
    CHECK(e.message == "port: expected an integer 0..65535, got 70000");
  }
  SUBCASE("port as a string") {
    auto e = parse_error(R"({"port": "8080"})");
    CHECK(e.param == "port");
    CHECK(e.message == "port: expected an integer 0..65535, got \"8080\"");
  }
  SUBCASE("fractional number") {
    auto e = parse_error(R"({"threads": 1.5})");
    CHECK(e.param == "threads");
    CHECK(e.message == "threads: expected an integer >= 0, got 1.5");
  }
  SUBCASE("zero attempts") { CHECK(parse_error(R"({"max_attempts": 0})").param == "max_attempts"); }
  SUBCASE("unknown io mode") { CHECK(parse_error(R"({"io": "uring"})").param == "io"); }
  SUBCASE("threads above 32 bits") {
    auto e = parse_error(R"({"threads": 4294967296})");
    CHECK(e.param == "threads");
    CHECK(e.message == "threads: expected an integer 0..4294967295, got 4294967296");
  }
  SUBCASE("zero timeout") {
    auto e = parse_error(R"({"timeouts": {"connect_ms": 10, "read_ms": 0}})");
    CHECK(e.param == "timeouts.read_ms");
    CHECK(e.message == "timeouts.read_ms: expected an integer >= 1, got 0");
  }
  SUBCASE("zero max_attempts") {
    CHECK(parse_error(R"({"max_attempts": 0})").param == "max_attempts");
  }
  SUBCASE("zero client timeout") {
    CHECK(parse_error(R"({"client_timeout_ms": 0})").param == "client_timeout_ms");
  }
  SUBCASE("zero body limit") {
    CHECK(parse_error(R"({"max_body_bytes": 0})").param == "max_body_bytes");
  }
  SUBCASE("negative max_connections") {
    CHECK(parse_error(R"({"max_connections": -1})").param == "max_connections");
  }
  SUBCASE("bad log level") {
    auto e = parse_error(R"({"log_level": "verbose"})");
    CHECK(e.param == "log_level");
    CHECK(e.message == "log_level: expected one of \"error\", \"warn\", \"info\", \"debug\", got \"verbose\"");
  }
  SUBCASE("log level of the wrong type") {
    CHECK(parse_error(R"({"log_level": 3})").param == "log_level");
  }
  SUBCASE("host of the wrong type") {
    auto e = parse_error(R"({"host": 1})");
    CHECK(e.param == "host");
    CHECK(e.message == "host: expected a non-empty string, got 1");
  }
  SUBCASE("empty host") { CHECK(parse_error(R"({"host": ""})").param == "host"); }
  SUBCASE("api_keys not an array") {
    auto e = parse_error(R"({"api_keys": "k1"})");
    CHECK(e.param == "api_keys");
    CHECK(e.message == "api_keys: expected an array of strings, got \"k1\"");
  }
  SUBCASE("api key element of the wrong type") {
    CHECK(parse_error(R"({"api_keys": ["k1", 2]})").param == "api_keys[1]");
  }
  SUBCASE("alias element of the wrong type") {
    auto e = parse_error(with_model(R"({"name": "b", "aliases": ["x", null], "endpoints": []})"));
    CHECK(e.param == "models[1].aliases[1]");
    CHECK(e.message == "models[1].aliases[1]: expected a string, got null");
  }
  SUBCASE("loras not an array") {
    CHECK(parse_error(with_model(R"({"name": "b", "loras": {}})")).param == "models[1].loras");
  }
  SUBCASE("model not an object") {
    auto e = parse_error(R"({"models": ["llama"]})");
    CHECK(e.param == "models[0]");
    CHECK(e.message == "models[0]: expected an object, got \"llama\"");
  }
  SUBCASE("models not an array") { CHECK(parse_error(R"({"models": {}})").param == "models"); }
  SUBCASE("empty model name") {
    CHECK(parse_error(R"({"models": [{"name": ""}]})").param == "models[0].name");
  }
  SUBCASE("endpoint of the wrong type") {
    auto e = parse_error(with_model(R"({"name": "b", "endpoints": [8000]})"));
    CHECK(e.param == "models[1].endpoints[0]");
  }
  SUBCASE("endpoint object without url") {
    auto e = parse_error(with_model(R"({"name": "b", "endpoints": [{"weight": 2}]})"));
    CHECK(e.param == "models[1].endpoints[0].url");
    CHECK(e.message == "models[1].endpoints[0].url: missing required key");
  }
  SUBCASE("endpoint api_key of the wrong type") {
    auto e = parse_error(
        with_model(R"({"name": "b", "endpoints": [{"url": "http://h", "api_key": 1}]})"));
    CHECK(e.param == "models[1].endpoints[0].api_key");
  }
  SUBCASE("timeouts not an object") {
    CHECK(parse_error(R"({"timeouts": 5})").param == "timeouts");
  }
  SUBCASE("top level not an object") {
    auto e = parse_error("[1, 2]");
    CHECK(e.param.empty());
    CHECK(e.message == "expected a JSON object at the top level, got an array");
  }
  SUBCASE("top level a scalar") {
    auto e = parse_error("42");
    CHECK(e.param.empty());
    CHECK(e.message == "expected a JSON object at the top level, got 42");
  }
}

TEST_CASE("config: unknown and duplicate keys are errors") {
  SUBCASE("top level") {
    auto e = parse_error(R"({"port": 1, "prot": 2})");
    CHECK(e.param == "prot");
    CHECK(e.message.find("unknown key") != std::string::npos);
    CHECK(e.message.find("port") != std::string::npos);  // lists what is accepted
  }
  SUBCASE("in timeouts") {
    CHECK(parse_error(R"({"timeouts": {"connect": 1}})").param == "timeouts.connect");
  }
  SUBCASE("in a model") {
    CHECK(parse_error(with_model(R"({"name": "b", "replicas": []})")).param ==
          "models[1].replicas");
  }
  SUBCASE("in an endpoint") {
    auto e = parse_error(
        with_model(R"({"name": "b", "endpoints": [{"url": "http://h", "wieght": 2}]})"));
    CHECK(e.param == "models[1].endpoints[0].wieght");
  }
  SUBCASE("duplicate key") {
    auto e = parse_error(R"({"port": 1, "port": 2})");
    CHECK(e.param == "port");
    CHECK(e.message == "port: duplicate key");
  }
}

TEST_CASE("config: invalid JSON is a config error carrying simdjson's text") {
  for (const char* text : {"", "{", R"({"port": 1,})", R"({"port" 1})", R"({"host": "x)",
                           R"({"port": 1} {"port": 2})", R"({"port": 1} x)", "nul"}) {
    CAPTURE(text);
    auto result = parse_app_config(text);
    REQUIRE_FALSE(result.ok());
    CHECK(result.code() == Errc::config);
    CHECK(result.error().message.find("JSON") != std::string::npos);
  }
  auto result = parse_app_config("{");
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().message.size() > std::string("invalid JSON: ").size());
}

TEST_CASE("config: validate accepts a good config and the defaults") {
  CHECK(validate(valid_router(), kPolicies).ok());
  CHECK(validate(RouterConfig{}, kPolicies).ok());
}

TEST_CASE("config: validate catches duplicate names across models, aliases and adapters") {
  SUBCASE("two models") {
    RouterConfig c = valid_router();
    c.models[1].name = c.models[0].name;
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == Errc::config);
    CHECK(r.error().param == "models[1].name");
    CHECK(r.error().message.find("models[0].name") != std::string::npos);
  }
  SUBCASE("alias equal to another model's name") {
    RouterConfig c = valid_router();
    c.models[1].aliases.push_back("meta-llama/Llama-2-7b-chat-hf");
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().param == "models[1].aliases[0]");
  }
  SUBCASE("lora equal to an alias") {
    RouterConfig c = valid_router();
    c.models[1].loras.push_back("llama-7b");
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().param == "models[1].loras[0]");
    CHECK(r.error().message.find("models[0].aliases[0]") != std::string::npos);
  }
  SUBCASE("same alias twice in one model") {
    RouterConfig c = valid_router();
    c.models[0].aliases.push_back("llama-7b");
    CHECK(validate(c, kPolicies).error().param == "models[0].aliases[1]");
  }
  SUBCASE("empty alias") {
    RouterConfig c = valid_router();
    c.models[0].aliases.push_back("");
    CHECK(validate(c, kPolicies).error().param == "models[0].aliases[1]");
  }
}

TEST_CASE("config: validate checks models and endpoints") {
  SUBCASE("empty name") {
    RouterConfig c = valid_router();
    c.models[1].name.clear();
    CHECK(validate(c, kPolicies).error().param == "models[1].name");
  }
  SUBCASE("no endpoints") {
    RouterConfig c = valid_router();
    c.models[1].endpoints.clear();
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().param == "models[1].endpoints");
  }
  SUBCASE("bad URL") {
    RouterConfig c = valid_router();
    c.models[0].endpoints[1].url = "not a url";
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == Errc::config);
    CHECK(r.error().param == "models[0].endpoints[1].url");
    CHECK(r.error().message.find("not a url") != std::string::npos);
  }
  SUBCASE("empty URL") {
    RouterConfig c = valid_router();
    c.models[0].endpoints[0].url.clear();
    CHECK(validate(c, kPolicies).error().param == "models[0].endpoints[0].url");
  }
  SUBCASE("same URL twice in one model") {
    RouterConfig c = valid_router();
    c.models[0].endpoints[1].url = c.models[0].endpoints[0].url;
    CHECK(validate(c, kPolicies).error().param == "models[0].endpoints[1].url");
  }
  SUBCASE("zero weight set programmatically") {
    RouterConfig c = valid_router();
    c.models[0].endpoints[0].weight = 0;
    CHECK(validate(c, kPolicies).error().param == "models[0].endpoints[0].weight");
  }
  SUBCASE("zero timeout set programmatically") {
    RouterConfig c = valid_router();
    c.timeouts.connect_ms = 0;
    CHECK(validate(c, kPolicies).error().param == "timeouts.connect_ms");
  }
}

TEST_CASE("config: validate checks policy names and the default model") {
  SUBCASE("unknown default policy") {
    RouterConfig c = valid_router();
    c.policy = "random";
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().param == "policy");
    CHECK(r.error().message.find("'random'") != std::string::npos);
    CHECK(r.error().message.find("least_requests") != std::string::npos);
  }
  SUBCASE("unknown model policy") {
    RouterConfig c = valid_router();
    c.models[1].policy = "random";
    CHECK(validate(c, kPolicies).error().param == "models[1].policy");
  }
  SUBCASE("registry without the policy") {
    CHECK_FALSE(validate(valid_router(), {"round_robin"}).ok());
  }
  SUBCASE("unknown default model") {
    RouterConfig c = valid_router();
    c.default_model = "gpt-4";
    auto r = validate(c, kPolicies);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().param == "default_model");
    CHECK(r.error().message.find("gpt-4") != std::string::npos);
  }
  SUBCASE("default model may be a model, an alias or an adapter") {
    RouterConfig c = valid_router();
    for (const char* name : {"qwen", "llama-7b", "sql-lora"}) {
      c.default_model = name;
      CHECK(validate(c, kPolicies).ok());
    }
  }
}

TEST_CASE("config: resilience, policy options and queue sections") {
  auto result = parse_app_config(R"({
    "retry": {"on_503": false, "on_first_byte_timeout": false, "budget_percent": 50, "min_concurrent": 1},
    "health_check": {"enabled": true, "path": "/ping", "interval_ms": 100, "timeout_ms": 50,
                     "healthy_threshold": 2, "unhealthy_threshold": 3},
    "outlier_detection": {"consecutive_failures": 2, "base_ejection_ms": 10, "max_ejection_ms": 40,
                          "max_ejection_percent": 100},
    "panic_threshold_percent": 0,
    "policy_options": {"session_header": "x-user", "session_load_factor": 1.5, "prefix_chunk_chars": 64,
                       "prefix_replica_affinity": true, "prefix_replica_load_factor": 1.5},
    "timeouts": {"first_byte_ms": 100, "idle_ms": 200, "total_ms": 300},
    "queue_max": 7, "queue_timeout_ms": 70, "watch_config": true,
    "models": [{"name": "m", "endpoints": ["http://h:1"], "max_in_flight_per_endpoint": 4,
                "health_check": {"enabled": false}}]
  })");
  REQUIRE(result.ok());
  const RouterConfig& r = result->router;
  CHECK_FALSE(r.retry.on_503);
  CHECK(r.retry.budget_percent == 50u);
  CHECK(r.health_check.path == "/ping");
  CHECK(r.health_check.unhealthy_threshold == 3u);
  CHECK(r.outlier_detection.max_ejection_ms == 40u);
  CHECK(r.panic_threshold_percent == 0u);
  CHECK(r.policy_options.session_header == "x-user");
  CHECK(r.policy_options.session_load_factor == doctest::Approx(1.5));
  CHECK(r.policy_options.prefix_replica_affinity);
  CHECK_FALSE(vllm_router::PolicyOptions{}.prefix_replica_affinity);  // off unless asked for
  CHECK(r.policy_options.prefix_replica_load_factor == doctest::Approx(1.5));
  CHECK(r.timeouts.first_byte() == 100u);
  CHECK(r.timeouts.idle() == 200u);
  CHECK(r.timeouts.total_ms == 300u);
  CHECK(r.queue_max == 7u);
  CHECK(result->watch_config);
  REQUIRE(r.models.size() == 1);
  CHECK(r.models[0].max_in_flight_per_endpoint == 4u);
  REQUIRE(r.models[0].health_check.has_value());
  CHECK_FALSE(r.models[0].health_check->enabled);

  CHECK(parse_app_config(R"({"health_check": {"path": "health"}})").error().param == "health_check.path");
  CHECK(parse_app_config(R"({"outlier_detection": {"max_ejection_percent": 101}})").error().param ==
        "outlier_detection.max_ejection_percent");
  CHECK(parse_app_config(R"({"retry": {"on_503": 1}})").error().param == "retry.on_503");
  CHECK(parse_app_config(R"({"policy_options": {"session_load_factor": 0.5}})").error().param ==
        "policy_options.session_load_factor");
  CHECK(parse_app_config(R"({"policy_options": {"prefix_replica_affinity": 1}})").error().param ==
        "policy_options.prefix_replica_affinity");
  CHECK(parse_app_config(R"({"policy_options": {"prefix_replica_load_factor": 0.9}})").error().param ==
        "policy_options.prefix_replica_load_factor");
}

TEST_CASE("config: routes: the default is vLLM's inference routes; a deployment's own list is checked") {
  const RouterConfig defaults;
  for (const char* r : {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/tokenize"}) {
    CAPTURE(r);
    CHECK(std::find(defaults.routes.begin(), defaults.routes.end(), r) != defaults.routes.end());
  }
  for (const char* admin : {"/sleep", "/reset_prefix_cache", "/v1/load_lora_adapter", "*"}) {
    CAPTURE(admin);
    CHECK(std::find(defaults.routes.begin(), defaults.routes.end(), admin) == defaults.routes.end());
  }
  auto parsed = parse_router_config(R"({"routes": ["/v1/completions", "/custom/*", "*"]})");
  REQUIRE(parsed.ok());
  CHECK(parsed->routes == std::vector<std::string>{"/v1/completions", "/custom/*", "*"});
  for (const char* bad : {R"({"routes": ["v1/completions"]})", R"({"routes": ["/a?b=1"]})",
                          R"({"routes": ["/a/*/b"]})", R"({"routes": [""]})", R"({"routes": "/a"})"}) {
    CAPTURE(bad);
    auto r = parse_router_config(bad);
    const vllm_router::Error e = r.ok() ? validate(*r, kPolicies).error() : r.error();
    CHECK(e.code == Errc::config);
    CHECK(e.param.rfind("routes", 0) == 0);
  }
}

TEST_CASE("config: https endpoints and upstream_tls") {
  auto parsed = parse_app_config(R"({"upstream_tls": {"ca_file": "/etc/ca.pem", "insecure_skip_verify": true},
    "models": [{"name": "m", "endpoints": ["https://api.example.com/v1", "https://10.0.0.1:8443", "http://h"]}]})");
  REQUIRE(parsed.ok());
  const RouterConfig& c = parsed->router;
  CHECK(c.upstream_tls.ca_file == "/etc/ca.pem");
  CHECK(c.upstream_tls.insecure_skip_verify);
  CHECK(validate(c, kPolicies).ok());
  CHECK(RouterConfig{}.upstream_tls == vllm_router::UpstreamTlsConfig{});  // verification on, system CAs

  auto url = vllm_router::parse_url("https://api.example.com/v1");
  REQUIRE(url.ok());
  CHECK(url->scheme == "https");
  CHECK(url->port == 443);
  CHECK(url->prefix == "/v1");
  CHECK(vllm_router::uses_tls(url.value()));
  CHECK(vllm_router::endpoint_id(url.value()) == "https://api.example.com:443/v1");
  // http and https on one host and port are two endpoints.
  CHECK(vllm_router::endpoint_id(vllm_router::parse_url("http://h:443").value()) !=
        vllm_router::endpoint_id(vllm_router::parse_url("https://h").value()));
  auto ftp = vllm_router::parse_url("ftp://h");
  REQUIRE_FALSE(ftp.ok());
  CHECK(ftp.error().message.find("only http:// and https:// are supported") != std::string::npos);

  CHECK(parse_error(R"({"upstream_tls": {"ca_file": ""}})").param == "upstream_tls.ca_file");
  CHECK(parse_error(R"({"upstream_tls": {"verify": false}})").param == "upstream_tls.verify");
  CHECK(parse_error(R"({"upstream_tls": {"insecure_skip_verify": "yes"}})").param ==
        "upstream_tls.insecure_skip_verify");
  CHECK(parse_error(R"({"upstream_tls": true})").param == "upstream_tls");
}

TEST_CASE("config: the listener's TLS files are read by the executable's extension") {
  auto parsed = parse_app_config(R"({"tls_cert_file": "/c.pem", "tls_key_file": "/k.pem"})");
  REQUIRE(parsed.ok());
  CHECK(parsed->tls_cert_file == "/c.pem");
  CHECK(parsed->tls_key_file == "/k.pem");
  CHECK(parse_error(R"({"tls_key_file": 3})").param == "tls_key_file");
}
