// Forwarder: exchanges run on the library's event loops for hosts that have none, answers
// delivered to a handler; cancel from any thread through the loop's mailbox.
#include "vllm_router/forwarder.h"

#include <thread>

#include "loop.h"

namespace vllm_router::detail {

/// Shared by a ForwardHandle and its exchange: where the exchange runs, and whether it ended.
struct ForwardState {
  std::weak_ptr<Mailbox> mailbox;
  Loop* loop = nullptr;
  std::atomic<bool> cancelled{false};
  // Set on the loop thread once the item exists (read there too, by the cancel task).
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;
  bool placed = false;
};

namespace {

// One forward on a loop: the client half of its Exchange calls the host's handler.
class CallbackExchange final : public ExchangeDriver {
 public:
  CallbackExchange(Loop& loop, ForwardRequest request, std::shared_ptr<ForwardHandler> handler,
                   std::shared_ptr<ForwardState> state)
      : ExchangeDriver(loop), request_(std::move(request)), handler_(std::move(handler)), state_(std::move(state)) {}

  void start() {
    fields_.reserve(request_.headers.size());
    for (const Header& h : request_.headers) fields_.push_back(HeaderField{h.name, h.value});
    request_.body.reserve(request_.body.size() + kBodyPadding);  // parsed in place
    ClientRequest req;
    req.method = request_.method;
    req.target = request_.target;
    req.headers = fields_;
    req.body = request_.body;
    req.body_capacity = request_.body.capacity();
    req.request_id = request_.request_id;
    req.client_address = request_.client_address;
    req.timeout = request_.timeout;
    if (state_->cancelled.load()) return complete(Error{Errc::cancelled, "cancelled", ""});
    exchange_.start(req, loop_.now());
    after_upstream_read();
  }

  void cancel() {
    if (closed_) return;
    if (!exchange_.done()) exchange_.cancel(loop_.now());
    after_upstream_read();
  }

  // LoopItem
  void on_event(std::uint32_t) override {}
  void on_timer() override { exchange_timer(); }
  TimePoint deadline() const override { return exchange_.deadline(); }
  void abort() override { cancel(); }

  // ExchangeHost: the client half.
  bool on_head(const ResponseHead& head) override {
    try {
      handler_->on_head(head);
    } catch (...) {  // a host's handler must not take the loop down: it stops its forward
      return false;
    }
    return !state_->cancelled.load(std::memory_order_relaxed);
  }
  bool on_body(std::string_view data) override {
    try {
      return handler_->on_body(data) && !state_->cancelled.load(std::memory_order_relaxed);
    } catch (...) {
      return false;
    }
  }
  void on_end() override { result_ = Result<void>(); }
  void on_abort(const Error& error) override { result_ = Result<void>(error); }
  void on_error(const Error& error) override { result_ = Result<void>(error); }

 private:
  void after_upstream_read() override {
    if (closed_) return;
    // An exchange that ended without a terminal callback was cancelled (the handler refused
    // bytes, or cancel()).
    if (exchange_.done()) return complete(result_ ? *result_ : Result<void>(Errc::cancelled, "cancelled"));
    retime();
  }

  void complete(const Result<void>& result) {
    if (completed_) return;
    completed_ = true;
    release(false);
    try {
      handler_->on_complete(result);
    } catch (...) {  // a host's handler must not take the loop down
    }
    close_item();
  }

  ForwardRequest request_;
  std::vector<HeaderField> fields_;
  std::shared_ptr<ForwardHandler> handler_;
  std::shared_ptr<ForwardState> state_;
  std::optional<Result<void>> result_;
  bool completed_ = false;
};

}  // namespace
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

ForwardHandler::~ForwardHandler() = default;

void ForwardHandle::cancel() const noexcept {
  if (!state_ || state_->cancelled.exchange(true)) return;
  auto mailbox = state_->mailbox.lock();
  if (!mailbox) return;
  try {
    mailbox->post([state = state_] {
      if (!state->placed) return;
      if (auto* item = state->loop->find(state->slot, state->generation)) {
        static_cast<detail::CallbackExchange*>(item)->cancel();
      }
    });
  } catch (...) {  // out of memory: the forward runs to its end
  }
}

struct Forwarder::Impl {
  Impl(Router& router) : shared(router, ServerOptions{}) {}
  detail::LoopShared shared;
  std::vector<std::thread> threads;
  std::atomic<std::uint32_t> next{0};
};

Forwarder::Forwarder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Forwarder>> Forwarder::create(Router& router, ForwarderOptions options) {
  auto impl = std::make_unique<Impl>(router);
  const std::uint32_t n = std::max<std::uint32_t>(1, options.threads);
  for (std::uint32_t i = 0; i < n; ++i) impl->shared.loops.push_back(std::make_unique<detail::Loop>(impl->shared));
  for (auto& loop : impl->shared.loops) impl->threads.emplace_back([l = loop.get()] { l->run(); });
  return std::unique_ptr<Forwarder>(new Forwarder(std::move(impl)));
}

Forwarder::~Forwarder() {
  // Drain with no grace: every loop cancels what still runs (handlers hear cancelled), exits.
  impl_->shared.drain_deadline_ns.store(impl_->shared.clock->now().time_since_epoch().count());
  impl_->shared.draining.store(true);
  for (auto& loop : impl_->shared.loops) loop->wake();
  for (auto& t : impl_->threads) t.join();
}

ForwardHandle Forwarder::forward(ForwardRequest request, std::shared_ptr<ForwardHandler> handler) {
  auto& loops = impl_->shared.loops;
  detail::Loop& loop = *loops[impl_->next.fetch_add(1, std::memory_order_relaxed) % loops.size()];
  auto state = std::make_shared<detail::ForwardState>();
  state->mailbox = loop.mailbox();
  state->loop = &loop;
  loop.post([&loop, request = std::move(request), handler = std::move(handler), state]() mutable {
    if (loop.shared.draining.load()) {  // the forwarder is being destroyed
      try {
        handler->on_complete(Result<void>(Errc::cancelled, "the forwarder was destroyed"));
      } catch (...) {
      }
      return;
    }
    auto& item = loop.add<detail::CallbackExchange>(std::move(request), std::move(handler), state);
    state->slot = item.slot;
    state->generation = item.generation;
    state->placed = true;
    item.start();
  });
  return ForwardHandle(std::move(state));
}

VLLM_ROUTER_END_NAMESPACE
