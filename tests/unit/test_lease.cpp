// Tests for Lease accounting: one outcome per pick, on every path.
#include <doctest/doctest.h>

#include <vector>

#include "vllm_router/lease.h"

using namespace vllm_router;

namespace {
struct Recorder final : Observer {
  std::vector<OutcomeKind> kinds;
  void on_outcome(std::string_view, const Endpoint&, const Outcome& o) override { kinds.push_back(o.kind); }
};
}  // namespace

TEST_CASE("lease counts in flight and records exactly one outcome") {
  auto ep = std::make_shared<Endpoint>();
  auto state = std::make_shared<EndpointState>();
  auto rec = std::make_shared<Recorder>();
  {
    Lease lease(ep, state, "m", rec);
    CHECK(state->in_flight == 1);
    Outcome ok;
    ok.kind = OutcomeKind::success;
    ok.status = 200;
    lease.complete(ok);
    CHECK(state->in_flight == 0);
    lease.complete(ok);  // ignored
  }
  CHECK(state->in_flight == 0);
  CHECK(state->requests == 1);
  CHECK(rec->kinds == std::vector<OutcomeKind>{OutcomeKind::success});
}

TEST_CASE("a dropped lease records cancelled; a moved lease records once") {
  auto ep = std::make_shared<Endpoint>();
  auto state = std::make_shared<EndpointState>();
  auto rec = std::make_shared<Recorder>();
  {
    Lease a(ep, state, "m", rec);
    Lease b(std::move(a));
    CHECK_FALSE(a.active());
    CHECK(b.active());
    CHECK(state->in_flight == 1);
  }
  CHECK(state->in_flight == 0);
  CHECK(rec->kinds == std::vector<OutcomeKind>{OutcomeKind::cancelled});
}

TEST_CASE("failures count and a success resets the consecutive count") {
  auto ep = std::make_shared<Endpoint>();
  auto state = std::make_shared<EndpointState>();
  for (int i = 0; i < 3; ++i) {
    Lease l(ep, state, "m", nullptr);
    Outcome o;
    o.kind = OutcomeKind::connect_failure;
    l.complete(o);
  }
  CHECK(state->failures == 3);
  CHECK(state->consecutive_failures == 3);
  Lease l(ep, state, "m", nullptr);
  Outcome o;
  o.kind = OutcomeKind::success;
  o.status = 200;
  l.complete(o);
  CHECK(state->consecutive_failures == 0);
  CHECK(state->failures == 3);
}
