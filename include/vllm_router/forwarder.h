// Forwarder: non-blocking forwarding for hosts without an event loop of their own: requests run
// as Exchanges on the library's event loop(s); answers come back through a handler.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vllm_router/exchange.h"
#include "vllm_router/export.h"
#include "vllm_router/result.h"
#include "vllm_router/transport.h"

namespace vllm_router::detail {
struct ForwardState;
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// Receives one forwarded answer. Called on the Forwarder's loop thread, one call at a time:
/// must not block (hand the bytes to your own thread or queue if you need to).
class VLLM_ROUTER_API ForwardHandler {
 public:
  virtual ~ForwardHandler();
  /// The answer's head (an upstream status, any of them). Views are valid during the call.
  virtual void on_head(const ResponseHead& head) = 0;
  /// Body bytes, in order, as they arrive. Return false to stop (the forward is cancelled).
  virtual bool on_body(std::string_view data) = 0;
  /// The end, exactly once: ok after the whole body; otherwise the error. Before on_head it is
  /// what a gateway would answer (http_status(), to_openai_json()); after it, why the body broke
  /// off. Errc::cancelled when cancelled (ForwardHandle::cancel, on_body returning false, the
  /// Forwarder destroyed).
  virtual void on_complete(const Result<void>& result) = 0;
};

/// A request for Forwarder::forward. Owned: the forwarder keeps it for the request's life.
struct ForwardRequest {
  std::string method = "POST";
  std::string target;        ///< path and query, e.g. "/v1/chat/completions"
  Headers headers;           ///< the client's headers (the exchange filters what goes upstream)
  std::string body;          ///< the JSON (or multipart) body; routed by its `model`
  /// Whole-exchange limit; 0: the routing table's timeouts.total_ms. The shorter one wins.
  std::chrono::milliseconds timeout{0};
  std::string request_id;      ///< sent upstream as X-Request-Id; empty: none
  std::string client_address;  ///< sent upstream as X-Forwarded-For; empty: none
};

/// Cancels one forward from any thread. Copyable; an empty handle does nothing.
class VLLM_ROUTER_API ForwardHandle {
 public:
  ForwardHandle() = default;
  explicit ForwardHandle(std::shared_ptr<detail::ForwardState> state) noexcept : state_(std::move(state)) {}
  /// Stops the forward at once: the upstream connection closes (vLLM aborts the request) and the
  /// handler gets on_complete(cancelled), on the loop thread, unless it already ended.
  /// Idempotent; safe after the end and after the Forwarder is gone.
  void cancel() const noexcept;

 private:
  std::shared_ptr<detail::ForwardState> state_;
};

/// Settings of a Forwarder.
struct ForwarderOptions {
  std::uint32_t threads = 1;  ///< event loops (one thread each); requests are spread over them
};

/// Runs forwards without blocking the caller: each request is an Exchange (every rule: retries
/// and their budget, timeouts, the wait for capacity, the in-band stream error) on one of the
/// forwarder's event loops, with keep-alive connection pools per loop. forward() returns at
/// once; the handler is called on the loop thread.
///
/// Thread-safety: forward() from any thread. Ownership: the Router must outlive the
/// Forwarder; destroying the Forwarder cancels what still runs (handlers get
/// on_complete(cancelled) before the destructor returns) and joins its threads.
class VLLM_ROUTER_API Forwarder {
 public:
  static Result<std::unique_ptr<Forwarder>> create(Router& router, ForwarderOptions options = {});
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  /// Starts forwarding `request`; `handler` (must not be null) receives the answer.
  ForwardHandle forward(ForwardRequest request, std::shared_ptr<ForwardHandler> handler);

  struct Impl;  ///< opaque (pimpl)

 private:
  explicit Forwarder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
