// Discovery: the composer, the Discovery facade with a scripted source, the DNS source with an
// injected resolver, model discovery with a fake transport, the parsers and the config section.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "discovery/kubernetes_parse.h"
#include "event/cpu_quota.h"
#include "vllm_router/endpoint_source.h"
#include "vllm_router/router.h"

using namespace vllm_router;

namespace {

DiscoveredEndpoint ep(std::string url, std::vector<std::string> models, std::vector<std::string> loras = {}) {
  return DiscoveredEndpoint{std::move(url), std::move(models), std::move(loras), "", 1, ""};
}

const ModelConfig* find(const RouterConfig& c, const std::string& name) {
  for (const auto& m : c.models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::vector<std::string> urls(const ModelConfig& m) {
  std::vector<std::string> out;
  for (const auto& e : m.endpoints) out.push_back(e.url);
  return out;
}

// A source whose answers the test sets.
struct ScriptedSource final : EndpointSource {
  std::string model_;
  Result<EndpointSet> next = EndpointSet{};
  std::string describe() const override { return "scripted"; }
  const std::string& model() const noexcept override { return model_; }
  Result<EndpointSet> poll_once() override { return next; }
  void start(EndpointSetCallback, DiscoveryErrorCallback) override {}
  void stop() override {}
};

struct BodyResponse final : UpstreamResponse {
  int code;
  std::string body;
  Headers none;
  BodyResponse(int c, std::string b) : code(c), body(std::move(b)) {}
  int status() const noexcept override { return code; }
  const Headers& headers() const noexcept override { return none; }
  std::optional<std::uint64_t> content_length() const noexcept override { return body.size(); }
  Result<std::uint64_t> relay(BodySink& sink) override {
    sink.write(body.data(), body.size());
    return std::uint64_t{body.size()};
  }
};

// Answers GET /v1/models per endpoint id (absent: connection refused); records api keys.
struct ModelsTransport final : Transport {
  std::mutex mutex;
  std::map<std::string, std::string> bodies;
  std::map<std::string, std::string> keys;
  Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& e, const UpstreamRequest& req,
                                                 const AliveCheck&) override {
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(req.path == "/v1/models");
    keys[e.id] = e.api_key;
    auto it = bodies.find(e.id);
    if (it == bodies.end()) return Result<std::unique_ptr<UpstreamResponse>>(Errc::connect_failed, "refused");
    return std::unique_ptr<UpstreamResponse>(std::make_unique<BodyResponse>(200, it->second));
  }
};

const char* kModels = R"({"object":"list","data":[
  {"id":"base","object":"model","root":"/w/base","parent":null},
  {"id":"base-alt","object":"model","root":"/w/base","parent":null},
  {"id":"ad1","object":"model","root":"/a/ad1","parent":"base"}]})";

}  // namespace

TEST_CASE("compose: every served name routes to every endpoint serving it") {
  RouterConfig base;
  const RouterConfig out = compose_router_config(
      base, {{ep("http://a:1", {"m", "m2"}), ep("http://b:1", {"m"})}, {ep("http://c:1", {"n"}), ep("http://d:1", {})}});
  REQUIRE(find(out, "m") != nullptr);
  CHECK(urls(*find(out, "m")) == std::vector<std::string>{"http://a:1", "http://b:1"});
  CHECK(urls(*find(out, "m2")) == std::vector<std::string>{"http://a:1"});
  CHECK(urls(*find(out, "n")) == std::vector<std::string>{"http://c:1"});
  CHECK(out.models.size() == 3);  // the endpoint without names is skipped
  auto router = Router::create(out);
  CHECK(router.ok());
}

TEST_CASE("compose: configured models are extended, their aliases and LoRAs kept, empty ones dropped") {
  RouterConfig base;
  base.models.push_back(ModelConfig{"m", {"alias"}, {"lora"}, {{"http://static:1", 1, ""}}, "least_requests", {}, 0, {}, {}});
  base.models.push_back(ModelConfig{"waiting", {}, {}, {}, "", {}, 0, {}, {}});
  base.default_model = "waiting";
  const RouterConfig out = compose_router_config(
      base, {{ep("http://a:1", {"m"}), ep("http://static:1/", {"m"}), ep("http://b:1", {"alias", "lora", "x"})}});
  const ModelConfig* m = find(out, "m");
  REQUIRE(m != nullptr);
  CHECK(urls(*m) == std::vector<std::string>{"http://static:1", "http://a:1"});  // same URL kept once
  CHECK(m->policy == "least_requests");
  CHECK(find(out, "alias") == nullptr);  // a configured alias is not taken over
  CHECK(find(out, "lora") == nullptr);
  CHECK(find(out, "x") != nullptr);
  CHECK(find(out, "waiting") == nullptr);  // no endpoints: dropped, and the default cleared
  CHECK(out.default_model.empty());
  CHECK(Router::create(out).ok());

  // Once discovery finds it, the waiting model and the default come back.
  const RouterConfig later = compose_router_config(base, {{ep("http://w:1", {"waiting"})}});
  CHECK(find(later, "waiting") != nullptr);
  CHECK(later.default_model == "waiting");
}

TEST_CASE("compose: a LoRA sits under its parent only when exactly the parent's endpoints serve it") {
  RouterConfig base;
  RouterConfig out = compose_router_config(
      base, {{ep("http://a:1", {"base"}, {"l1", "l2"}), ep("http://b:1", {"base"}, {"l1"})}});
  const ModelConfig* b = find(out, "base");
  REQUIRE(b != nullptr);
  CHECK(b->loras == std::vector<std::string>{"l1"});
  REQUIRE(find(out, "l2") != nullptr);  // only on a: a model of its own
  CHECK(urls(*find(out, "l2")) == std::vector<std::string>{"http://a:1"});
  CHECK(Router::create(out).ok());
}

TEST_CASE("Discovery: sources fill models; a failing source keeps its last set; set_static re-applies") {
  RouterConfig base;
  base.models.push_back(ModelConfig{"s", {}, {}, {{"http://s:1", 1, ""}}, "", {}, 0, {}, {}});
  auto router = Router::create(base);
  REQUIRE(router.ok());
  Discovery discovery(*router.value(), base);
  auto owned = std::make_unique<ScriptedSource>();
  ScriptedSource* source = owned.get();
  source->model_ = "fallback";
  source->next = EndpointSet{ep("http://a:1", {}), ep("http://b:1", {"named"})};
  discovery.add_source(std::move(owned));
  REQUIRE(discovery.poll_once().ok());
  auto snap = router.value()->snapshot();
  CHECK(snap->pools.size() == 3);
  CHECK(find(discovery.composed(), "fallback") != nullptr);
  const auto version = snap->version;

  source->next = Error{Errc::no_endpoint, "lookup failed", ""};
  CHECK_FALSE(discovery.poll_once().ok());
  CHECK(router.value()->snapshot()->pools.size() == 3);  // kept
  CHECK(router.value()->snapshot()->version == version);  // nothing changed: no update

  RouterConfig reloaded;
  reloaded.models.push_back(ModelConfig{"s2", {}, {}, {{"http://s:2", 1, ""}}, "", {}, 0, {}, {}});
  REQUIRE(discovery.set_static(reloaded).ok());
  CHECK(find(discovery.composed(), "s") == nullptr);
  CHECK(find(discovery.composed(), "s2") != nullptr);
  CHECK(find(discovery.composed(), "named") != nullptr);

  RouterConfig invalid = reloaded;
  invalid.policy = "no-such-policy";
  CHECK_FALSE(discovery.set_static(invalid).ok());
  CHECK(find(discovery.composed(), "s2") != nullptr);  // a rejected reload keeps the table
  CHECK(discovery.set_endpoints(0, {ep("http://c:1", {"named"})}).ok());
  CHECK(find(discovery.composed(), "fallback") == nullptr);
}

TEST_CASE("dns source: one endpoint per address, IPv6 bracketed, last set kept on failure") {
  DiscoveryConfig config;
  config.type = "dns";
  config.dns_name = "vllm.ns.svc";
  config.port = 8000;
  config.model = "m";
  std::vector<std::string> answer{"10.0.0.2", "fd00::1", "10.0.0.1"};
  bool fail = false;
  auto source = make_dns_source(config, [&](const std::string& host) -> Result<std::vector<std::string>> {
    CHECK(host == "vllm.ns.svc");
    if (fail) return Error{Errc::no_endpoint, "SERVFAIL", host};
    return answer;
  });
  auto set = source->poll_once();
  REQUIRE(set.ok());
  REQUIRE(set->size() == 3);
  CHECK(set.value()[0].url == "http://10.0.0.1:8000");
  CHECK(set.value()[2].url == "http://[fd00::1]:8000");
  CHECK(set.value()[0].models.empty());
  CHECK(source->model() == "m");
  fail = true;
  CHECK_FALSE(source->poll_once().ok());
}

TEST_CASE("resolve_host: localhost resolves on loopback") {
  auto addresses = resolve_host("localhost");
  REQUIRE(addresses.ok());
  CHECK(std::find(addresses->begin(), addresses->end(), "127.0.0.1") != addresses->end());
  CHECK_FALSE(resolve_host("no-such-host.invalid").ok());
}

TEST_CASE("model discovery: names and LoRAs from /v1/models, last answer kept when a poll fails") {
  auto transport = std::make_shared<ModelsTransport>();
  transport->bodies["http://a:1"] = kModels;
  DiscoveryConfig config;
  config.type = "static";
  config.endpoints = {"http://a:1", "http://b:1"};
  config.api_key = "secret";
  config.model = "fallback";
  auto source = make_model_discovery(make_static_source(config), ModelDiscoveryConfig{true, 1000, 500}, transport);
  auto set = source->poll_once();
  REQUIRE(set.ok());
  REQUIRE(set->size() == 2);
  CHECK(set.value()[0].models == std::vector<std::string>{"base", "base-alt"});
  CHECK(set.value()[0].loras == std::vector<std::string>{"ad1"});
  CHECK(set.value()[1].models.empty());  // never answered: the source's model applies
  CHECK(transport->keys["http://a:1"] == "secret");
  transport->bodies.erase("http://a:1");
  set = source->poll_once();
  REQUIRE(set.ok());
  CHECK(set.value()[0].models == std::vector<std::string>{"base", "base-alt"});
}

TEST_CASE("parse_served_models") {
  auto served = parse_served_models(kModels);
  REQUIRE(served.ok());
  CHECK(served->models == std::vector<std::string>{"base", "base-alt"});
  CHECK(served->loras == std::vector<std::string>{"ad1"});
  CHECK_FALSE(parse_served_models("{}").ok());
  CHECK_FALSE(parse_served_models("not json").ok());
}

TEST_CASE("kubernetes objects: ready addresses, port by name, names from annotation or label") {
  DiscoveryConfig config;
  config.type = "kubernetes";
  config.port_name = "http";
  const char* slice = R"({"metadata":{"name":"s","labels":{"vllm-router.io/model":"label-name"},
    "annotations":{"vllm-router.io/served-model-names":"org/a, a2"}},
    "addressType":"IPv4","ports":[{"name":"metrics","port":9000},{"name":"http","port":8000}],
    "endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},
                 {"addresses":["10.0.0.2"],"conditions":{"ready":false}},
                 {"addresses":["10.0.0.3","10.0.0.33"]}]})";
  auto set = kubernetes_object_endpoints(slice, config);
  REQUIRE(set.ok());
  REQUIRE(set->size() == 2);
  CHECK(set.value()[0].url == "http://10.0.0.1:8000");
  CHECK(set.value()[1].url == "http://10.0.0.3:8000");  // ready unknown counts as ready
  CHECK(set.value()[0].models == std::vector<std::string>{"org/a", "a2"});
  config.model_annotation.clear();
  CHECK(kubernetes_object_endpoints(slice, config).value()[0].models == std::vector<std::string>{"label-name"});
  config.port_name = "grpc";
  CHECK(kubernetes_object_endpoints(slice, config).value().empty());  // no such port

  DiscoveryConfig pods = config;
  pods.resource = "pods";
  pods.port_name.clear();
  pods.port = 8001;
  const char* pod = R"({"metadata":{"name":"p","labels":{"vllm-router.io/model":"m"}},
    "spec":{"containers":[{"ports":[{"name":"http","containerPort":8000}]}]},
    "status":{"phase":"Running","podIP":"fd00::5","conditions":[{"type":"Ready","status":"True"}]}})";
  set = kubernetes_object_endpoints(pod, pods);
  REQUIRE(set.ok());
  REQUIRE(set->size() == 1);
  CHECK(set.value()[0].url == "http://[fd00::5]:8001");
  CHECK(set.value()[0].models == std::vector<std::string>{"m"});
  pods.port = 0;
  pods.port_name = "http";
  CHECK(kubernetes_object_endpoints(pod, pods).value()[0].url == "http://[fd00::5]:8000");
  const char* unready = R"({"metadata":{"name":"p"},"status":{"phase":"Running","podIP":"10.0.0.9",
    "conditions":[{"type":"Ready","status":"False"}]}})";
  CHECK(kubernetes_object_endpoints(unready, pods).value().empty());
  const char* deleting = R"({"metadata":{"name":"p","deletionTimestamp":"2024-01-01T00:00:00Z"},
    "spec":{"containers":[{"ports":[{"name":"http","containerPort":8000}]}]},
    "status":{"phase":"Running","podIP":"10.0.0.9","conditions":[{"type":"Ready","status":"True"}]}})";
  // Being deleted but still Ready: serving while it drains, so a fallback (alone here: used).
  CHECK(kubernetes_object_endpoints(deleting, pods).value().size() == 1);
  // Not JSON. An empty view with no data once reached simdjson's memcpy from nullptr (undefined;
  // UBSan in tests/fuzz kube_watch reports it, this build does not).
  CHECK_FALSE(kubernetes_object_endpoints(std::string_view(), pods).ok());
  CHECK_FALSE(kubernetes_object_endpoints("", pods).ok());
  CHECK_FALSE(kubernetes_object_endpoints("{\"metadata\":", pods).ok());
}

TEST_CASE("kubernetes slices: names by label value, address families, terminating fallback") {
  DiscoveryConfig config;
  config.type = "kubernetes";
  config.port_name = "http";
  config.model_label_names["llama-7b"] = {"meta-llama/Llama-2-7B-chat-hf", "llama"};
  // What the EndpointSlice controller makes of a model's Service: its labels, no annotations.
  const auto slice = [](const char* name, const char* family, const std::string& endpoints) {
    return std::string(R"({"metadata":{"name":")") + name +
           R"(","namespace":"llm","labels":{"vllm-router.io/model":"llama-7b"}},"addressType":")" + family +
           R"(","ports":[{"name":"http","port":8000}],"endpoints":[)" + endpoints + "]}";
  };
  const std::string v4 = slice("s4", "IPv4",
                               R"({"addresses":["10.0.0.1"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"llm","name":"p1","uid":"u1"}},
       {"addresses":["10.0.0.2"],"conditions":{"ready":false,"serving":true,"terminating":true},"targetRef":{"kind":"Pod","name":"p2","uid":"u2"}},
       {"addresses":["10.0.0.3"],"conditions":{"ready":false,"serving":false,"terminating":true},"targetRef":{"kind":"Pod","name":"p3","uid":"u3"}})");
  const std::string v6 = slice("s6", "IPv6",
                               R"({"addresses":["fd00::1"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"llm","name":"p1","uid":"u1"}},
       {"addresses":["fd00::2"],"conditions":{"ready":false,"serving":true,"terminating":true},"targetRef":{"kind":"Pod","name":"p2","uid":"u2"}})");
  const std::string list = R"({"metadata":{"resourceVersion":"7"},"items":[)" + v4 + "," + v6 + "]}";
  const auto urls = [](const EndpointSet& set) {
    std::vector<std::string> out;
    for (const auto& e : set) out.push_back(e.url);
    return out;
  };
  detail::KubernetesObjects objects;
  std::string cont;
  REQUIRE(detail::read_kubernetes_list_page(list, config, objects, cont));
  // Both families list pod p1: counted once, by its IPv4 address; p2 (terminating) is not used
  // while p1 is ready; p3 is not serving. The label value maps to the served names.
  EndpointSet set = detail::flatten_kubernetes(objects);
  CHECK(urls(set) == std::vector<std::string>{"http://10.0.0.1:8000"});
  CHECK(set[0].models == std::vector<std::string>{"meta-llama/Llama-2-7B-chat-hf", "llama"});
  config.address_type = "IPv6";
  objects = {};
  REQUIRE(detail::read_kubernetes_list_page(list, config, objects, cont));
  CHECK(urls(detail::flatten_kubernetes(objects)) == std::vector<std::string>{"http://[fd00::1]:8000"});
  // p1 gone (its successor not ready yet): the serving-terminating p2 carries the model.
  bool gone = false;
  CHECK(detail::apply_kubernetes_watch_event(
      R"({"type":"MODIFIED","object":)" + slice("s6", "IPv6",
      R"({"addresses":["fd00::2"],"conditions":{"ready":false,"serving":true,"terminating":true},"targetRef":{"kind":"Pod","name":"p2","uid":"u2"}})") + "}",
      config, objects, gone));
  CHECK(urls(detail::flatten_kubernetes(objects)) == std::vector<std::string>{"http://[fd00::2]:8000"});
  // Unmapped label values are the name; FQDN slices are skipped.
  config.address_type.clear();
  config.model_label_names.clear();
  auto one = kubernetes_object_endpoints(v4, config);
  REQUIRE(one.ok());
  CHECK(one.value()[0].models == std::vector<std::string>{"llama-7b"});
  CHECK(kubernetes_object_endpoints(slice("f", "FQDN", R"({"addresses":["a.example"]})"), config).value().empty());
}

TEST_CASE("config: the discovery section") {
  auto ok = parse_router_config(R"({"discovery":[
    {"type":"kubernetes","namespace":"llm","label_selector":"a=b","port":"http","resource":"pods",
     "discover_models":{"interval_ms":500},"resync_ms":1000},
    {"type":"dns","name":"vllm.svc","port":8000,"model":"m","interval_ms":100},
    {"type":"static","endpoints":["http://a:1"],"discover_models":true,"api_key":"k","weight":2}]})");
  REQUIRE(ok.ok());
  const auto& d = ok->discovery;
  REQUIRE(d.size() == 3);
  CHECK(d[0].type == "kubernetes");
  CHECK(d[0].port_name == "http");
  CHECK(d[0].resource == "pods");
  CHECK(d[0].discover_models.enabled);
  CHECK(d[0].discover_models.interval_ms == 500);
  CHECK(d[1].port == 8000);
  CHECK(d[1].dns_name == "vllm.svc");
  CHECK(d[2].discover_models.enabled);
  CHECK(d[2].weight == 2);
  auto mapped = parse_router_config(R"({"discovery":[{"type":"kubernetes","port":"http","address_type":"IPv6",
    "model_label_names":{"a":"org/a","b":["org/b","b2"]}}]})");
  REQUIRE(mapped.ok());
  CHECK(mapped->discovery[0].address_type == "IPv6");
  CHECK(mapped->discovery[0].model_label_names ==
        std::map<std::string, std::vector<std::string>>{{"a", {"org/a"}}, {"b", {"org/b", "b2"}}});

  struct Bad {
    const char* json;
    const char* param;
  };
  for (const Bad& bad : {
           Bad{R"({"discovery":{}})", "discovery"},
           Bad{R"({"discovery":[{"port":1}]})", "discovery[0].type"},
           Bad{R"({"discovery":[{"type":"consul"}]})", "discovery[0].type"},
           Bad{R"({"discovery":[{"type":"dns","name":"x"}]})", "discovery[0].port"},
           Bad{R"({"discovery":[{"type":"dns","name":"x","port":"http"}]})", "discovery[0].port"},
           Bad{R"({"discovery":[{"type":"dns","name":"x","port":70000}]})", "discovery[0].port"},
           Bad{R"({"discovery":[{"type":"dns","name":"x","port":1,"namespace":"n"}]})", "discovery[0].namespace"},
           Bad{R"({"discovery":[{"type":"static","endpoints":[]}]})", "discovery[0].endpoints"},
           Bad{R"({"discovery":[{"type":"static","endpoints":["ftp://x"]}]})", "discovery[0].endpoints[0]"},
           Bad{R"({"discovery":[{"type":"kubernetes","port":"http","resource":"nodes"}]})", "discovery[0].resource"},
           Bad{R"({"discovery":[{"type":"kubernetes","port":"http","api_url":"x:1"}]})", "discovery[0].api_url"},
           Bad{R"({"discovery":[{"type":"kubernetes"}]})", "discovery[0].port"},
           Bad{R"({"discovery":[{"type":"kubernetes","port":"http","address_type":"ipv4"}]})", "discovery[0].address_type"},
           Bad{R"({"discovery":[{"type":"kubernetes","port":"http","model_label_names":{"a":[]}}]})",
               "discovery[0].model_label_names.a"},
           Bad{R"({"discovery":[{"type":"kubernetes","port":"http","model_label_names":{"a":1}}]})",
               "discovery[0].model_label_names.a"},
           Bad{R"({"discovery":[{"type":"dns","name":"x","port":1,"address_type":"IPv4"}]})", "discovery[0].address_type"},
           Bad{R"({"discovery":[{"type":"static","endpoints":["http://a:1"],"discover_models":{"x":1}}]})",
               "discovery[0].discover_models.x"},
       }) {
    auto r = parse_router_config(bad.json);
    REQUIRE_MESSAGE(!r.ok(), bad.json);
    CHECK_MESSAGE(r.error().param == bad.param, bad.json, " -> ", r.error().message);
    CHECK(r.error().code == Errc::config);
  }
}

TEST_CASE("cpu quota: cgroup v2 cpu.max and v1 cfs files, rounded up") {
  using detail::cpus_from_cfs;
  using detail::cpus_from_cpu_max;
  CHECK(cpus_from_cpu_max("max 100000\n") == std::nullopt);
  CHECK(cpus_from_cpu_max("100000 100000") == 1u);
  CHECK(cpus_from_cpu_max("150000 100000\n") == 2u);
  CHECK(cpus_from_cpu_max("50000 100000") == 1u);  // half a CPU: one loop
  CHECK(cpus_from_cpu_max("800000 100000") == 8u);
  CHECK(cpus_from_cpu_max("") == std::nullopt);
  CHECK(cpus_from_cpu_max("x 100000") == std::nullopt);
  CHECK(cpus_from_cpu_max("100000 0") == std::nullopt);
  CHECK(cpus_from_cfs("-1", "100000") == std::nullopt);
  CHECK(cpus_from_cfs("250000\n", "100000\n") == 3u);
  CHECK(detail::available_cpus() >= 1u);
}

TEST_CASE("prefill/decode roles: a pod's role label puts it in its model's prefill pool") {
  DiscoveryConfig pods;
  pods.type = "kubernetes";
  pods.resource = "pods";
  pods.port = 8000;
  const char* prefill_pod = R"({"metadata":{"name":"p","labels":{"vllm-router.io/model":"m","vllm-router.io/role":"prefill"}},
    "status":{"phase":"Running","podIP":"10.0.0.7","conditions":[{"type":"Ready","status":"True"}]}})";
  auto set = kubernetes_object_endpoints(prefill_pod, pods);
  REQUIRE(set.ok());
  REQUIRE(set->size() == 1);
  CHECK(set.value()[0].role == "prefill");
  pods.role_label.clear();  // not read: a plain endpoint
  CHECK(kubernetes_object_endpoints(prefill_pod, pods).value()[0].role.empty());

  DiscoveredEndpoint p = ep("http://p:1", {"m"});
  p.role = "prefill";
  DiscoveredEndpoint d = ep("http://d:1", {"m"});
  d.role = "decode";
  RouterConfig out = compose_router_config(RouterConfig{}, {{p, d}});
  const ModelConfig* m = find(out, "m");
  REQUIRE(m != nullptr);
  CHECK(urls(*m) == std::vector<std::string>{"http://d:1"});
  REQUIRE(m->prefill);
  REQUIRE(m->prefill->endpoints.size() == 1);
  CHECK(m->prefill->endpoints[0].url == "http://p:1");
  auto router = Router::create(out);
  REQUIRE(router.ok());
  CHECK(router.value()->snapshot()->disaggregated);

  // A configured prefill pool with no endpoint yet: the model is colocated until one appears.
  RouterConfig base;
  base.models.push_back(ModelConfig{"m", {}, {}, {}, "", {}, 0, PrefillConfig{{}, "prefix_aware", true}, {}});
  out = compose_router_config(base, {{d}});
  REQUIRE(find(out, "m") != nullptr);
  CHECK_FALSE(find(out, "m")->prefill);
  out = compose_router_config(base, {{d, p}});
  REQUIRE(find(out, "m")->prefill);
  CHECK(find(out, "m")->prefill->policy == "prefix_aware");
  CHECK(find(out, "m")->prefill->endpoints.size() == 1);
}
