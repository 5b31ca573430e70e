// Tracing: W3C Trace Context for the requests a Router forwards, and a small OTLP/HTTP exporter
// of their spans (an Observer).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "vllm_router/export.h"
#include "vllm_router/observer.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Whether a Router takes part in W3C Trace Context (RouterOptions::tracing).
///
/// Off (the default): the router is not a participant: `traceparent` and `tracestate` pass
/// upstream like any end-to-end header and ExchangeSummary carries no trace.
/// On: every exchange continues the client's trace (a valid `traceparent`) or starts one, sends
/// upstream a `traceparent` naming its attempt's span (the client's is replaced; its
/// `tracestate` is passed on when its trace is continued, dropped otherwise), and reports the
/// trace in ExchangeSummary: ids always, spans' facts (AttemptTrace) when sampled.
struct TracingOptions {
  bool enabled = false;
  /// Share of the traces this router starts that are sampled (recorded), 0.0..1.0, decided from
  /// the trace id like OpenTelemetry's TraceIdRatioBased. A continued trace follows the client's
  /// sampled flag (parent based), whatever the ratio.
  double sampling = 1.0;
};

/// A parsed `traceparent` header (W3C Trace Context, level 1). Ids are lowercase hex digits.
struct TraceParent {
  std::array<char, 32> trace_id{};
  std::array<char, 16> parent_id{};
  std::uint8_t flags = 0;
  bool sampled() const noexcept { return (flags & 1) != 0; }
};

/// Parses a `traceparent` value strictly: version 00 is exactly
/// "00-<32 hex>-<16 hex>-<2 hex>" (lowercase), trace id and parent id not all zeros; a higher
/// version (not ff) is read the same way when at least that long and followed by '-' or
/// nothing (the specification's forward compatibility). nullopt when invalid.
VLLM_ROUTER_API std::optional<TraceParent> parse_traceparent(std::string_view value) noexcept;

/// Where and how an OtlpExporter sends spans.
struct OtlpOptions {
  /// The collector's base URL (http:// or https://, as OTEL_EXPORTER_OTLP_ENDPOINT): spans are
  /// POSTed to `<endpoint>/v1/traces`.
  std::string endpoint;
  std::string service_name = "vllm-router";  ///< the resource's service.name
  std::uint32_t batch_size = 512;            ///< spans per request; a batch is sent when this many wait
  std::chrono::milliseconds interval{5000};  ///< ...or this long after the first one waited
  std::uint32_t queue_size = 8192;           ///< spans held at most; beyond, new ones are dropped
  std::chrono::milliseconds timeout{10000};  ///< per export request
  /// Log sink (level 0 error .. 3 debug, as ServerOptions::log): failed exports and, at most
  /// every 10 s, spans dropped. Optional; called on the exporter's thread.
  std::function<void(int level, std::string_view message)> log;
};

/// Counters of an OtlpExporter.
struct OtlpStats {
  std::uint64_t exported = 0;  ///< spans the collector accepted
  std::uint64_t dropped = 0;   ///< spans dropped because the queue was full
  std::uint64_t failed = 0;    ///< spans lost to failed exports (after one retry)
};

/// An Observer that exports the spans of sampled exchanges (ExchangeSummary::sampled) over
/// OTLP/HTTP, binary protobuf encoding (`Content-Type: application/x-protobuf`, an
/// ExportTraceServiceRequest). Per exchange: the request (kind SERVER), each routing decision
/// (INTERNAL) and each upstream attempt (CLIENT), with OpenTelemetry HTTP and GenAI
/// semantic-convention attributes.
///
/// on_exchange encodes the spans on the calling thread and appends them to a bounded queue
/// (never blocks on the network: when the queue is full the exchange's spans are dropped and
/// counted); a thread of the exporter's own sends batches. Thread-safe. The destructor sends
/// what is queued (within `timeout`) and joins the thread.
class VLLM_ROUTER_API OtlpExporter final : public Observer {
 public:
  /// Errc::config when the endpoint is not an http(s) URL or a size is 0.
  static Result<std::shared_ptr<OtlpExporter>> create(OtlpOptions options);
  ~OtlpExporter() override;
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void on_exchange(const ExchangeSummary& summary) override;
  OtlpStats stats() const noexcept;
  /// Sends what is queued now and waits until it was sent (or failed). For tests and shutdown.
  void flush();

  struct Impl;

 private:
  explicit OtlpExporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
