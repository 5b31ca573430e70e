// LoRA-aware placement (lib/lora.h): the gauge parser, adapter sets and LRU, the single-flight
// loads with an injected loader, placement, and the `lora` configuration.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "lora.h"
#include "vllm_router/config.h"
#include "vllm_router/snapshot.h"

using namespace vllm_router;
using detail::LoraEndpoint;
using detail::LoraManager;
using detail::LoraPool;

namespace {

// Records the calls; a load blocks until release() when `hold` is set.
struct FakeLoader final : detail::LoraLoader {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> calls;  // "load EP NAME PATH" / "unload EP NAME"
  bool hold = false;
  bool released = false;
  Error fail{Errc::ok, "", ""};

  Result<void> load(const Endpoint& ep, std::string_view name, std::string_view path, std::uint32_t) override {
    std::unique_lock<std::mutex> lock(mutex);
    calls.push_back("load " + ep.id + " " + std::string(name) + " " + std::string(path));
    changed.notify_all();
    changed.wait(lock, [this] { return !hold || released; });
    if (fail.code != Errc::ok) return fail;
    return {};
  }
  Result<void> unload(const Endpoint& ep, std::string_view name, std::uint32_t) override {
    std::lock_guard<std::mutex> lock(mutex);
    calls.push_back("unload " + ep.id + " " + std::string(name));
    return {};
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    released = true;
    changed.notify_all();
  }
  std::size_t wait_calls(std::size_t n) {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait_for(lock, std::chrono::seconds(5), [&] { return calls.size() >= n; });
    return calls.size();
  }
};

// Counts the manager's wake-ups (a load ended) and lets a test wait for them.
struct Wakes {
  std::mutex mutex;
  std::condition_variable changed;
  int count = 0;
  void wake() {
    std::lock_guard<std::mutex> lock(mutex);
    ++count;
    changed.notify_all();
  }
  bool wait(int n) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(5), [&] { return count >= n; });
  }
};

// A pool of `n` endpoints e0..e(n-1) and its LoraPool.
struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<FakeLoader> loader = std::make_shared<FakeLoader>();
  Wakes wakes;
  LoraManager manager{loader, clock, [this] { wakes.wake(); }};
  Pool pool;
  LoraPool lora;
  std::vector<Candidate> candidates;

  explicit Fixture(std::size_t n, bool dynamic = true) {
    clock->advance(std::chrono::seconds(10));
    pool.model = "base";
    lora.config.dynamic_loading = dynamic;
    lora.config.path_template = "/adapters/{name}";
    lora.adapters = {"a", "b", "c"};
    for (std::size_t i = 0; i < n; ++i) {
      auto ep = std::make_shared<Endpoint>();
      ep->id = "e" + std::to_string(i);
      pool.endpoints.push_back(ep);
      pool.states.push_back(std::make_shared<EndpointState>());
      lora.slots.push_back(manager.endpoint(ep->id));
    }
    for (std::size_t i = 0; i < n; ++i) candidates.push_back(Candidate{pool.endpoints[i].get(), pool.states[i].get(), i});
  }
};

}  // namespace

TEST_CASE("lora: the gauge gives max_lora and the adapters of running and waiting requests") {
  auto s = detail::parse_vllm_lora(
      "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
      "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"a,b\",waiting_lora_adapters=\"c\"} 1.7e9\n");
  CHECK(s.max_lora == 4);
  CHECK(s.adapters == std::vector<std::string>{"a", "b", "c"});
  // Several samples: the newest (largest value, a timestamp) wins; escapes are undone.
  s = detail::parse_vllm_lora(
      "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"new\\\"x\",waiting_lora_adapters=\"\"} 20\n"
      "vllm:lora_requests_info{max_lora=\"3\",running_lora_adapters=\"old\",waiting_lora_adapters=\"\"} 10\n");
  CHECK(s.max_lora == 2);
  CHECK(s.adapters == std::vector<std::string>{"new\"x"});
  CHECK(detail::parse_vllm_lora("vllm:num_requests_running{} 1\n").max_lora == -1);
  CHECK(detail::parse_vllm_lora("vllm:lora_requests_info{max_lora=\"4\" 1\n").max_lora == -1);  // malformed
}

TEST_CASE("lora: an endpoint's adapters, least recently used first, and a listing that raced a load") {
  LoraEndpoint e;
  e.add("a", 1);
  e.add("b", 2);
  e.add("c", 3);
  e.touch("a", 10);
  CHECK(e.lru("") == "b");
  CHECK(e.lru("b") == "c");
  e.remove("b");
  CHECK(e.count() == 2);
  // /v1/models listed {a} (GET started at 5): c was added at 3, before it, so it is gone; d,
  // added at 7 while the listing travelled, stays.
  e.add("d", 7);
  const std::vector<std::string> listed{"a"};
  e.replace(listed, 5, 8);
  CHECK(e.has("a"));
  CHECK_FALSE(e.has("c"));
  CHECK(e.has("d"));
}

TEST_CASE("lora: concurrent first requests for an adapter start one load") {
  Fixture f(2);
  f.loader->hold = true;
  auto first = f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates);
  REQUIRE(first);
  CHECK(first.value() == true);
  for (int i = 0; i < 5; ++i) {
    auto again = f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates);
    REQUIRE(again);
    CHECK(again.value() == false);  // joined the load in progress
  }
  CHECK(f.loader->wait_calls(1) == 1);
  CHECK(f.manager.loading() == 1);
  f.loader->release();
  REQUIRE(f.wakes.wait(1));
  CHECK(f.loader->calls == std::vector<std::string>{"load e0 a /adapters/a"});
  CHECK(f.lora.slots[0]->has("a"));
  CHECK(f.manager.counters.loads.load() == 1);
  CHECK(f.manager.loading() == 0);
}

TEST_CASE("lora: the load goes to the least loaded candidate") {
  Fixture f(3);
  f.pool.states[0]->in_flight = 5;
  f.pool.states[1]->in_flight = 1;
  f.pool.states[2]->in_flight = 1;
  f.pool.states[2]->waiting = 3;  // vLLM's queue counts too
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "b", f.candidates));
  REQUIRE(f.wakes.wait(1));
  CHECK(f.loader->calls == std::vector<std::string>{"load e1 b /adapters/b"});
}

TEST_CASE("lora: a replica at max_lora unloads its least recently used adapter first") {
  Fixture f(1);
  auto& ep = *f.lora.slots[0];
  ep.set_max_lora(2);
  ep.add("a", 1);
  ep.add("b", 2);
  ep.touch("a", 50);  // b is now the least recently used
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "c", f.candidates));
  REQUIRE(f.wakes.wait(1));
  CHECK(f.loader->calls == std::vector<std::string>{"unload e0 b", "load e0 c /adapters/c"});
  CHECK(ep.has("a"));
  CHECK_FALSE(ep.has("b"));
  CHECK(ep.has("c"));
  CHECK(f.manager.counters.unloads.load() == 1);
}

TEST_CASE("lora: making room never unloads an adapter a request is running on") {
  Fixture f(1);
  auto& ep = *f.lora.slots[0];
  ep.set_max_lora(2);
  ep.add("a", 1);
  ep.add("b", 2);
  auto held = LoraEndpoint::use(f.lora.slots[0], "a", 3);  // a request runs on a, the least recently used
  REQUIRE(held != nullptr);
  CHECK(LoraEndpoint::use(f.lora.slots[0], "zzz", 3) == nullptr);  // not loaded there: nothing held
  ep.touch("b", 10);         // a is the least recently used...
  CHECK(ep.lru("") == "b");  // ...but in use: passed over while held
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "c", f.candidates));
  REQUIRE(f.wakes.wait(1));
  CHECK(f.loader->calls == std::vector<std::string>{"unload e0 b", "load e0 c /adapters/c"});
  CHECK(ep.has("a"));
  {
    auto second = LoraEndpoint::use(f.lora.slots[0], "a", 20);  // two requests on a, then one
    auto c = LoraEndpoint::use(f.lora.slots[0], "c", 20);
    CHECK(ep.lru("") == "");  // everything in use: nothing to unload
  }
  CHECK(ep.lru("") == "c");  // c released; a still held by the first request
  held.reset();
  CHECK(ep.lru("") == "a");
}

TEST_CASE("lora: a failed load is answered for a second, then tried again") {
  Fixture f(1);
  f.loader->fail = Error{Errc::unknown_model, "loading LoRA adapter `a` failed (404): No adapter found", "model"};
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates));
  REQUIRE(f.wakes.wait(1));
  CHECK(f.manager.counters.load_failures.load() == 1);
  auto held = f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates);
  REQUIRE_FALSE(held);
  CHECK(held.code() == Errc::unknown_model);
  CHECK(held.error().message.find("No adapter found") != std::string::npos);
  f.clock->advance(std::chrono::milliseconds(1001));
  f.loader->fail = Error{Errc::ok, "", ""};
  auto retried = f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates);
  REQUIRE(retried);
  CHECK(retried.value() == true);
  REQUIRE(f.wakes.wait(2));
  CHECK(f.lora.slots[0]->has("a"));
}

TEST_CASE("lora: an adapter without a path cannot be loaded") {
  Fixture f(1);
  f.lora.config.path_template.clear();
  f.lora.config.paths["b"] = "/p/b";
  CHECK(f.lora.path_of("b") == "/p/b");
  auto r = f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates);
  REQUIRE_FALSE(r);
  CHECK(http_status(r.code()) == 503);
  CHECK(f.loader->calls.empty());
}

TEST_CASE("lora: placement picks among the replicas with the adapter, else waits or takes any") {
  Fixture f(3);
  f.lora.slots[1]->add("a", 1);
  auto placed = detail::place_lora(f.manager, f.pool, f.lora, "a", f.candidates);
  REQUIRE(placed);
  REQUIRE(placed.value().size() == 1);
  CHECK(placed.value()[0].slot == 1);
  CHECK(f.manager.counters.placed_loaded.load() == 1);

  f.loader->hold = true;
  auto waiting = detail::place_lora(f.manager, f.pool, f.lora, "b", f.candidates);
  REQUIRE_FALSE(waiting);
  CHECK(waiting.code() == Errc::overloaded);  // the request waits for the load
  CHECK(f.manager.counters.placed_load.load() == 1);
  f.loader->release();
  REQUIRE(f.wakes.wait(1));

  Fixture s(3, false);  // without dynamic loading: any replica, nothing loaded
  auto any = detail::place_lora(s.manager, s.pool, s.lora, "c", s.candidates);
  REQUIRE(any);
  CHECK(any.value().size() == 3);
  CHECK(s.manager.counters.placed_any.load() == 1);
  CHECK(s.loader->calls.empty());
}

TEST_CASE("lora: configuration") {
  auto c = parse_router_config(R"({"models":[{"name":"m","loras":["x"],"endpoints":[{"url":"http://127.0.0.1:1"}],
    "lora":{"dynamic_loading":true,"paths":{"y":"/a/y"},"path_template":"/a/{name}","load_timeout_ms":500,"replicate_margin":8}}]})");
  REQUIRE(c);
  const ModelConfig& m = c.value().models[0];
  REQUIRE(m.lora);
  CHECK(m.lora->dynamic_loading);
  CHECK(m.lora->paths.at("y") == "/a/y");
  CHECK(m.lora->path_template == "/a/{name}");
  CHECK(m.lora->load_timeout_ms == 500);
  CHECK(m.lora->replicate_margin == 8);
  CHECK(m.loras == std::vector<std::string>{"x", "y"});  // names in paths are adapters
  auto bad = parse_router_config(R"({"models":[{"name":"m","endpoints":[],"lora":{"dynamic":true}}]})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().param == "models[0].lora.dynamic");
  CHECK_FALSE(parse_router_config(R"({"models":[{"name":"m","endpoints":[],"lora":{"paths":{"y":""}}}]})"));
}

TEST_CASE("lora: loads fill free adapter places before unloading, and count loads on their way") {
  Fixture f(2);
  f.lora.slots[0]->set_max_lora(1);
  f.lora.slots[1]->set_max_lora(1);
  f.pool.states[1]->in_flight = 3;  // busier, but the only one with a free place after e0's load
  f.loader->hold = true;
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "a", f.candidates));
  CHECK(f.loader->wait_calls(1) == 1);
  // e0's place is taken by the load on its way: b goes to e1, though e1 is busier.
  REQUIRE(f.manager.ensure_loaded(f.pool, f.lora, "b", f.candidates));
  f.loader->release();
  REQUIRE(f.wakes.wait(2));
  CHECK(f.lora.slots[0]->has("a"));
  CHECK(f.lora.slots[1]->has("b"));
  CHECK(f.manager.counters.unloads.load() == 0);
}

TEST_CASE("lora: a hot adapter is also loaded on a replica without it, beyond the margin") {
  Fixture f(2);
  f.lora.config.replicate_margin = 4;
  f.lora.slots[0]->add("a", 1);
  f.lora.slots[1]->set_max_lora(1);
  f.lora.slots[1]->add("b", 1);  // e1 is full: no replication into it, whatever the load
  f.pool.states[0]->in_flight = 9;
  REQUIRE(detail::place_lora(f.manager, f.pool, f.lora, "a", f.candidates));
  CHECK(f.manager.loading() == 0);
  CHECK(f.loader->calls.empty());
  f.lora.slots[1]->set_max_lora(2);  // a free place
  f.pool.states[0]->in_flight = 3;  // 3 >= 0 + 4 is false: no replication
  auto placed = detail::place_lora(f.manager, f.pool, f.lora, "a", f.candidates);
  REQUIRE(placed);
  CHECK(placed.value().size() == 1);
  CHECK(f.manager.loading() == 0);
  CHECK(f.loader->calls.empty());
  f.pool.states[0]->in_flight = 4;  // the margin is reached: e1 loads it, this request stays on e0
  placed = detail::place_lora(f.manager, f.pool, f.lora, "a", f.candidates);
  REQUIRE(placed);
  REQUIRE(placed.value().size() == 1);
  CHECK(placed.value()[0].slot == 0);
  REQUIRE(f.wakes.wait(1));
  CHECK(f.loader->calls == std::vector<std::string>{"load e1 a /adapters/a"});
  CHECK(f.lora.slots[1]->has("a"));
  placed = detail::place_lora(f.manager, f.pool, f.lora, "a", f.candidates);
  REQUIRE(placed);
  CHECK(placed.value().size() == 2);  // now balanced among both
}
