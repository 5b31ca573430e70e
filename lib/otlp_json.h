// Internal: the spans of one traced exchange, owned (copied from an ExchangeSummary on the
// request's thread), and their OTLP/HTTP JSON encoding (written on the exporter's thread).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/observer.h"

namespace vllm_router::detail {

/// One routing decision and its attempt, owned. Times are Unix nanoseconds.
struct OtlpAttempt {
  std::array<char, 16> route_span{};
  std::array<char, 16> span{};
  bool routed = false;  // an endpoint was picked (else routing failed: no attempt span)
  std::string endpoint_id, host, model, policy, error;
  std::uint16_t port = 0;
  std::size_t candidates = 0;
  bool panic = false;
  std::int64_t prefix_match = -1;
  std::int64_t route_start = 0, route_end = 0, start = 0, end = 0;
  OutcomeKind outcome = OutcomeKind::cancelled;
  int status = 0;
  bool retried = false;
  RetryReason retry_reason = RetryReason::connect_failure;
};

/// One sampled exchange: the request's span and its children, owned.
struct OtlpTrace {
  std::array<char, 32> trace_id{};
  std::array<char, 16> span_id{};
  std::array<char, 16> parent_id{};
  bool has_parent = false;
  std::string trace_state, method, path, request_id, client_address, requested_model, model, key_id, error;
  std::int64_t start = 0, end = 0;  // Unix nanoseconds
  int status = 0;
  ExchangeEnd outcome = ExchangeEnd::ok;
  unsigned attempts = 0;
  TokenUsage usage;
  bool stream = false;
  std::uint64_t bytes = 0, bytes_in = 0;
  std::int64_t queue_wait = 0, ttft = 0;  // nanoseconds; ttft 0: no body
  std::vector<OtlpAttempt> children;

  /// Spans it encodes to: the request, a routing span per decision, an attempt span per routed one.
  std::size_t span_count() const noexcept;
};

/// Copies what the spans need from a sampled summary (summary.sampled, trace ids set).
OtlpTrace capture_trace(const ExchangeSummary& summary);

/// Appends the trace's spans as OTLP JSON Span objects, comma separated (a leading comma when
/// `out` already holds spans: `first` false).
void append_spans_json(std::string& out, const OtlpTrace& trace, bool first);

/// An ExportTraceServiceRequest: one resource (service.name and the SDK's attributes), one
/// scope (vllm-router, its version), `spans_json` (from append_spans_json) as its spans.
std::string otlp_request_json(std::string_view service_name, std::string_view spans_json);

/// Appends `s` as a JSON string; bytes that are not valid UTF-8 become U+FFFD (OTLP receivers
/// reject invalid UTF-8, and model names come from clients).
void append_json_utf8(std::string& out, std::string_view s);

}  // namespace vllm_router::detail
