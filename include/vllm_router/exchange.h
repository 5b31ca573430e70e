// Exchange: the I/O-free core of one proxied request: routing, retries and their budget,
// timeouts, the wait for capacity, response framing and the in-band error, lease completion.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/endpoint.h"
#include "vllm_router/error.h"
#include "vllm_router/export.h"
#include "vllm_router/header_field.h"
#include "vllm_router/observer.h"
#include "vllm_router/request.h"
#include "vllm_router/tenants.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// The client request an exchange forwards. Every view must stay valid until the exchange is
/// done (or reset).
struct ClientRequest {
  std::string_view method = "POST";
  std::string_view target;                ///< origin-form path and query, e.g. "/v1/completions"
  std::span<const HeaderField> headers;   ///< as received; the exchange filters what goes upstream
  std::string_view body;
  /// Readable bytes at body.data() (>= body.size() + kBodyPadding lets the JSON body be parsed
  /// in place); 0: unknown, the parser copies the body once.
  std::size_t body_capacity = 0;
  /// Already parsed routing facts of `body`; null: the exchange parses the body itself (JSON, or
  /// multipart/form-data by the Content-Type header). Must outlive the exchange when set.
  const RequestView* view = nullptr;
  std::string_view request_id;      ///< sent upstream as X-Request-Id; empty: none
  std::string_view client_address;  ///< sent upstream as X-Forwarded-For; empty: none
  /// Whole-exchange limit for this request (from start to the end of the body); 0: the
  /// routing table's timeouts.total_ms. The shorter of the two wins.
  std::chrono::milliseconds timeout{0};
  /// An event stream that breaks at an event boundary ends with vLLM's in-band error event and
  /// `data: [DONE]` (on_body + on_end), as an HTTP client expects; false: on_abort instead (an
  /// API caller that reports errors its own way).
  bool in_band_errors = true;
  /// Longest time the client may stop reading (Exchange::on_client_paused) before the exchange
  /// is given up as cancelled. A stalled client never counts against the upstream. 0: 60 s.
  std::chrono::milliseconds client_stall{0};
  /// The client's API key (Server front door; a host that authenticates may set it too): its
  /// model scope is enforced (403 outside it), it opens RouterConfig::admin_routes when admin,
  /// and its id goes to the summary. Null: no key (every model, no admin route). Must outlive
  /// the exchange.
  const ApiKey* key = nullptr;
};

/// The head of the answer the client gets (an upstream answer relayed). Views are valid during
/// the ExchangeHost::on_head call only.
struct ResponseHead {
  int status = 0;
  const Endpoint* endpoint = nullptr;  ///< the endpoint that answered
  unsigned attempts = 0;               ///< endpoints tried, this one included
  /// End-to-end headers to send (framing and hop-by-hop ones removed; X-Request-Id included).
  std::span<const HeaderField> headers;
  /// The body's length when known (the client gets Content-Length); empty: unknown, the body
  /// is sent chunked (HTTP/1.1) and ends with ExchangeHost::on_end.
  std::optional<std::uint64_t> content_length;
  bool event_stream = false;  ///< Content-Type text/event-stream
};

/// What a driver (an event loop, a blocking caller, a host's own loop) does for an exchange.
/// The exchange calls these from inside its event methods, on the driver's thread.
///
/// The contract (examples/asio_host.cpp follows it; docs/embedding.md explains it):
/// - A callback must not call an event method of the same exchange; report what happens later
///   as an event (read-only queries such as deadline() or endpoint() are fine).
/// - Connection completions after release() belong to nobody: ignore them (a driver tells its
///   connections apart itself, e.g. by a per-connection object or counter).
/// - Failures carry these codes: on_connect_failed: Errc::connect_failed (refused, unreachable,
///   a name that does not resolve) or Errc::timeout; on_upstream_error: Errc::upstream_closed
///   (reset, a failed write or read). The retry rules depend on them.
/// - After every event, re-arm your timer to Exchange::deadline().
class VLLM_ROUTER_API ExchangeHost {
 public:
  virtual ~ExchangeHost();

  enum class Connect : std::uint8_t {
    pooled,     ///< a kept-alive connection is ready (it may turn out closed: the exchange retries fresh)
    connected,  ///< a new connection is ready
    pending,    ///< connecting: report on_connected() or on_connect_failed() later
    failed,     ///< could not even start; `error` says why (Errc::connect_failed)
  };
  /// Opens a connection to `endpoint` within Exchange::deadline(). `fresh`: a kept-alive one
  /// must not be used (the last one was found closed).
  virtual Connect connect(const Endpoint& endpoint, bool fresh, Error& error) = 0;

  enum class Send : std::uint8_t { done, pending, failed };
  /// Writes `head` then `body` on the upstream connection (a gathered write). pending: report
  /// on_sent() or on_upstream_error() later. failed: `error` (upstream_closed) says why. Both
  /// views stay valid until on_sent(), on_upstream_error() or release().
  virtual Send send(std::string_view head, std::string_view body, Error& error) = 0;
  /// Done with the upstream connection: keep it for another request (`reusable`, a permission:
  /// close it anyway if the driver has reasons, e.g. a write still pending) or close it.
  virtual void release(bool reusable) = 0;

  /// The answer's head. Return false when the client is gone (the exchange cancels).
  virtual bool on_head(const ResponseHead& head) = 0;
  /// Body bytes, in order, as they arrive. Return false when the client is gone.
  virtual bool on_body(std::string_view data) = 0;
  /// The body is complete. Terminal.
  virtual void on_end() = 0;
  /// The body was cut after on_head (`error` says why): the client must see a broken message
  /// (write what was already given, then close its connection without ending the body).
  /// Terminal.
  virtual void on_abort(const Error& error) = 0;
  /// No upstream answer: answer the client with `error` (http_status(), to_openai_json();
  /// 429 and 503 deserve a Retry-After). Terminal.
  virtual void on_error(const Error& error) = 0;
  /// Every replica is at its request limit: the exchange waits. Call Exchange::retry() when
  /// capacity may have freed (Router::add_capacity_listener tells when a lease ended),
  /// oldest waiter first, and Exchange::on_timer() at Exchange::deadline().
  virtual void on_wait() = 0;
};

/// One client request forwarded through a Router: the rules of a proxied request, free of I/O
/// (nghttp2's sans-I/O shape). A driver feeds events (connected, bytes, timer, client gone...)
/// with the time they happened, and does what the ExchangeHost callbacks ask. Tested with an
/// injected clock and no sockets; the event loop, the blocking Router::forward and a host's own
/// loop (examples/asio_host.cpp) drive the same rules.
///
/// Rules it owns: model resolution and the pick (Router::route), a lease per attempt completed
/// with its outcome; retries on another endpoint before any byte reached the client (connect
/// failure or connect timeout always; a 503, first-byte timeout or reset before the head as
/// configured, within the router's retry budget; a kept-alive connection found closed is
/// replaced once by a fresh one to the same endpoint); connect, write, first-byte, idle and
/// total timeouts, and the client-stall limit; the wait (bounded queue) when every replica is
/// full; the upstream request head (hop-by-hop and client credentials dropped, the replica's own
/// key, X-Request-Id, X-Forwarded-For added); strict parsing of the upstream answer, framing
/// for the client, the in-band SSE error when an event stream breaks at an event boundary;
/// cancellation when the client leaves; the Observer's pick, retry and exchange events.
///
/// Thread-safety: one thread at a time (the driver's). Ownership: the Router must outlive it.
class VLLM_ROUTER_API Exchange {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  Exchange(Router& router, ExchangeHost& host);
  /// An exchange that is not done is cancelled, which calls host.release(false): a host that
  /// owns its Exchange as a member cancels it in its own destructor first.
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  /// Starts forwarding `request` at `now`. Ends in a host callback sooner or later (on_end,
  /// on_abort or on_error), possibly before start() returns.
  void start(const ClientRequest& request, TimePoint now);
  /// A pending connect finished.
  void on_connected(TimePoint now);
  void on_connect_failed(const Error& error, TimePoint now);
  /// A pending send finished.
  void on_sent(TimePoint now);
  /// Bytes from the upstream connection, in order. The exchange reads them during the call.
  void on_upstream_data(std::string_view data, TimePoint now);
  /// The upstream closed its side (end of a close-delimited body, or a failure).
  void on_upstream_eof(TimePoint now);
  /// The upstream connection failed (reset, send error).
  void on_upstream_error(const Error& error, TimePoint now);
  /// The client stopped taking bytes (its buffer is full): the upstream is paused, its timers
  /// stop and the client-stall limit runs. on_client_resumed() when it drained.
  void on_client_paused(TimePoint now);
  void on_client_resumed(TimePoint now);
  /// Deadline() passed (calling it earlier is harmless).
  void on_timer(TimePoint now);
  /// Waiting (on_wait): capacity may have freed; try to route again.
  void retry(TimePoint now);
  /// The client went away (or the caller gave up): close the upstream, outcome cancelled.
  void cancel(TimePoint now);

  /// When on_timer() is due next; TimePoint::max() when nothing is timed.
  TimePoint deadline() const noexcept;
  /// True once it ended (false before start() and after reset()).
  bool done() const noexcept;
  bool waiting() const noexcept;
  /// True after on_head until the end: the client has the answer's head.
  bool responded() const noexcept;
  /// The last attempt's endpoint (null before the first); valid while the exchange lives.
  const Endpoint* endpoint() const noexcept;
  /// The resolved model (the pool's name) once routed, else empty.
  const std::string& model() const noexcept;
  unsigned attempts() const noexcept;
  /// Tokens of the answer so far: from its `usage` (a JSON body, or an event stream's usage
  /// chunk); an event stream without one counts a completion token per data event and a
  /// prompt token per 4 bytes of the prompt.
  TokenUsage usage() const noexcept;
  /// Forget a finished exchange and keep the buffers for the next one on the same connection.
  void reset();

  struct State;  ///< opaque: the rules' state (pimpl)

 private:
  std::unique_ptr<State> s_;
};

VLLM_ROUTER_END_NAMESPACE
