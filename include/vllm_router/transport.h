// Transport: the only I/O boundary for upstream calls, and the built-in HTTP/1.1 keep-alive one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// One HTTP header as sent or received (name case as received).
struct Header {
  std::string name;
  std::string value;
};
using Headers = std::vector<Header>;

/// Returns false once the downstream client is gone; polled while waiting on the upstream.
using AliveCheck = std::function<bool()>;

/// An upstream request. Views must outlive the call that takes it.
struct UpstreamRequest {
  std::string_view method = "POST";
  std::string_view path;           ///< path and query, e.g. "/v1/chat/completions"
  const Headers* headers = nullptr;  ///< end-to-end headers to send (already filtered; no Host,
                                     ///< Content-Length, Connection, Authorization)
  std::string_view body;
  /// Overrides the transport's connect timeout and its wait for the response head for this
  /// request (0: the transport's defaults). Body reads keep the transport's read timeout.
  std::uint32_t timeout_ms = 0;
};

/// Receives body bytes as they arrive.
class VLLM_ROUTER_API BodySink {
 public:
  virtual ~BodySink();
  /// Writes one piece; false stops the relay (client gone).
  virtual bool write(const char* data, std::size_t size) = 0;
  /// False once the client is gone; polled between reads so a leaving client cancels at once.
  virtual bool alive() { return true; }
};

/// An upstream answer whose status and headers have arrived; the body is pulled by relay().
/// Destroying it before the body ended closes the upstream connection (cancels the request).
class VLLM_ROUTER_API UpstreamResponse {
 public:
  virtual ~UpstreamResponse();
  virtual int status() const noexcept = 0;
  /// Response headers minus framing and hop-by-hop ones (Content-Length, Transfer-Encoding,
  /// Connection, Keep-Alive).
  virtual const Headers& headers() const noexcept = 0;
  /// The upstream Content-Length, when it sent one.
  virtual std::optional<std::uint64_t> content_length() const noexcept = 0;
  /// Relays the rest of the body into `sink` as it arrives (one write per upstream read).
  /// Returns the bytes relayed. Errors: timeout (read gap over the read timeout), upstream_closed,
  /// cancelled (sink refused or went dead), upstream_protocol. Call at most once.
  virtual Result<std::uint64_t> relay(BodySink& sink) = 0;
};

/// Sends requests to endpoints. Implementations must be thread-safe.
class VLLM_ROUTER_API Transport {
 public:
  virtual ~Transport();
  /// Sends `request` to `endpoint` and waits for the response head. Errc::connect_failed means
  /// the request was certainly not delivered (safe to retry elsewhere); timeout, upstream_closed,
  /// upstream_protocol and cancelled (alive() turned false) may follow a delivered request.
  virtual Result<std::unique_ptr<UpstreamResponse>> send(const Endpoint& endpoint,
                                                         const UpstreamRequest& request,
                                                         const AliveCheck& alive) = 0;
};

/// Options of the built-in HTTP/1.1 transport.
struct HttpTransportOptions {
  std::uint32_t connect_timeout_ms = 3000;
  std::uint32_t read_timeout_ms = 600000;  ///< max wait for any byte (first byte, chunk gaps)
  std::uint32_t write_timeout_ms = 30000;
  std::uint32_t max_idle_per_endpoint = 64;  ///< keep-alive sockets kept per endpoint
  std::uint32_t alive_poll_ms = 50;          ///< how often a waiting request checks its client
  /// https:// endpoints are verified as this Router's current RouterConfig::upstream_tls says
  /// (an update applies to new connections). Must outlive the transport. Null: `tls` below.
  const Router* router = nullptr;
  /// Verification of https:// endpoints when `router` is null (default: the system's CAs).
  UpstreamTlsConfig tls;
};

/// The built-in transport: blocking HTTP/1.1 over TCP with TCP_NODELAY (TLS for https://
/// endpoints) and a bounded keep-alive pool per endpoint; a stale pooled socket is retried once
/// on a fresh connection. Thread-safe.
VLLM_ROUTER_API std::shared_ptr<Transport> make_http_transport(const HttpTransportOptions& options);

VLLM_ROUTER_END_NAMESPACE
