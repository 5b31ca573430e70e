// Example (and test): two independent Routers in one process — separate tables, live counters,
// policies and observers; nothing global. Target `example_two_routers`.
//
// A host serving two tenants (or a canary next to production) can hold one Router each. This
// program checks that they do not interfere, including while both are used from many threads
// (routing decisions and their outcomes only: no network needed).
#include <vllm_router/vllm_router.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace vr = vllm_router;

namespace {

int g_failures = 0;
#define EXPECT(cond)                                                    \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                     \
    }                                                                   \
  } while (0)

class CountingObserver final : public vr::Observer {
 public:
  std::atomic<int> outcomes{0};
  void on_outcome(std::string_view, const vr::Endpoint&, const vr::Outcome&) override { outcomes.fetch_add(1); }
};

// Always the first candidate.
class FirstPolicy final : public vr::Policy {
 public:
  std::string_view name() const noexcept override { return "first"; }
  std::size_t pick(const vr::PickContext&, std::span<const vr::Candidate>) const override { return 0; }
};

struct NullSink final : vr::BodySink {
  bool write(const char*, std::size_t) override { return true; }
};

vr::RouterConfig config(const std::string& policy, std::vector<std::string> urls) {
  vr::RouterConfig c;
  vr::ModelConfig m;
  m.name = "org/m";
  for (auto& u : urls) m.endpoints.push_back(vr::EndpointConfig{std::move(u), 1, ""});
  m.policy = policy;
  c.models.push_back(std::move(m));
  return c;
}

std::vector<std::int64_t> in_flight(const vr::Router& router) {
  std::vector<std::int64_t> out;
  for (const auto& state : router.snapshot()->pools.at(0).states) out.push_back(state->sample().in_flight);
  return out;
}

}  // namespace

int main() {
  const std::vector<std::string> urls = {"http://10.0.0.1:8000", "http://10.0.0.2:8000"};
  auto observer_a = std::make_shared<CountingObserver>();
  auto observer_b = std::make_shared<CountingObserver>();

  vr::RouterOptions options_a;
  options_a.observer = observer_a;
  options_a.seed = 1;
  vr::RouterOptions options_b;
  options_b.observer = observer_b;
  options_b.seed = 1;
  options_b.policies.add("first", [] { return std::make_shared<const FirstPolicy>(); });

  // B's policy is B's: A's registry does not know it.
  EXPECT(vr::Router::create(config("first", urls), options_a).code() == vr::Errc::config);
  auto a = vr::Router::create(config("round_robin", urls), options_a);
  auto b = vr::Router::create(config("first", urls), options_b);
  if (!a || !b) {
    std::fprintf(stderr, "create failed\n");
    return 1;
  }
  vr::Router& ra = *a.value();
  vr::Router& rb = *b.value();

  const std::string body = R"({"model":"org/m","prompt":"hi"})";
  const auto view = vr::parse_request(body).value();

  // Live counters: same endpoint URLs, separate state.
  std::vector<vr::Route> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::move(ra.route(view).value()));
  EXPECT((in_flight(ra) == std::vector<std::int64_t>{2, 2}));  // round robin on A
  EXPECT((in_flight(rb) == std::vector<std::int64_t>{0, 0}));
  auto rb_route = rb.route(view);
  EXPECT(rb_route && rb_route->lease.endpoint().id == urls[0]);  // B's own policy
  held.clear();                                                   // cancels A's four leases
  rb_route = vr::Result<vr::Route>(vr::Errc::cancelled, "dropped");  // and B's one
  EXPECT(observer_a->outcomes == 4 && observer_b->outcomes == 1);

  // Round-robin cursors live in A's pools: B's picks never move them.
  for (int i = 0; i < 3; ++i) (void)rb.route(view);
  const std::string next_a = ra.route(view)->lease.endpoint().id;
  EXPECT(next_a == urls[0]);  // A picked 0,1,0,1 before: 0 again

  // update() on A leaves B's table alone.
  const auto version_b = rb.snapshot()->version;
  EXPECT(ra.update(config("round_robin", {"http://10.0.0.9:8000"})).ok());
  EXPECT(rb.snapshot()->version == version_b);
  EXPECT(rb.snapshot()->pools.at(0).endpoints.size() == 2);

  // Both used at once from many threads: each observer sees only its own router.
  const int before_a = observer_a->outcomes, before_b = observer_b->outcomes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    vr::Router& r = t % 2 == 0 ? ra : rb;
    threads.emplace_back([&r, &view] {
      for (int i = 0; i < 500; ++i) {
        auto route = r.route(view);
        if (!route) continue;
        vr::Outcome ok;
        ok.kind = vr::OutcomeKind::success;
        ok.status = 200;
        route->lease.complete(ok);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT(observer_a->outcomes - before_a == 2000 && observer_b->outcomes - before_b == 2000);
  EXPECT((in_flight(ra) == std::vector<std::int64_t>{0}));
  EXPECT((in_flight(rb) == std::vector<std::int64_t>{0, 0}));

  if (g_failures == 0) std::printf("two routers in one process: independent (OK)\n");
  return g_failures == 0 ? 0 : 1;
}
