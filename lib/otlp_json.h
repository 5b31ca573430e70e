// Internal: the spans of one traced exchange, owned (copied from an ExchangeSummary on the
// request's thread), and their OTLP/HTTP JSON encoding (written on the exporter's thread).
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <memory>
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

/// A growing JSON text written through a cursor: each write makes room for its worst case, then
/// copies bytes (most of a size known at compile time) with no call per piece and no zero-fill.
class JsonText {
 public:
  std::string_view view() const noexcept { return {data_.get(), size_}; }
  std::size_t size() const noexcept { return size_; }
  void clear() noexcept { size_ = 0; }

  template <std::size_t N>
  void lit(const char (&text)[N]) {
    room(N);
    std::memcpy(data_.get() + size_, text, N - 1);
    size_ += N - 1;
  }
  void raw(std::string_view v) {
    room(v.size());
    if (!v.empty()) std::memcpy(data_.get() + size_, v.data(), v.size());
    size_ += v.size();
  }
  void ch(char c) {
    room(1);
    data_[size_++] = c;
  }
  void integer(std::int64_t v) {
    room(24);
    size_ = static_cast<std::size_t>(std::to_chars(data_.get() + size_, data_.get() + size_ + 24, v).ptr - data_.get());
  }
  /// Nanoseconds as milliseconds with three decimals ("12.345"), a JSON number.
  void milliseconds(std::int64_t ns) {
    if (ns < 0) ns = 0;
    integer(ns / 1000000);
    const auto us = static_cast<int>(ns / 1000 % 1000);
    const char frac[4] = {'.', static_cast<char>('0' + us / 100), static_cast<char>('0' + us / 10 % 10),
                          static_cast<char>('0' + us % 10)};
    raw(std::string_view(frac, 4));
  }
  /// `v` quoted and escaped (append_json_utf8's rules).
  void string(std::string_view v) {
    ch('"');
    escaped(v);
    ch('"');
  }
  /// `a` and `b` as one quoted string, with `sep` between them when both are given.
  void string(std::string_view a, std::string_view sep, std::string_view b) {
    ch('"');
    escaped(a);
    if (!a.empty() && !b.empty()) raw(sep);
    escaped(b);
    ch('"');
  }
  /// `v` escaped, without quotes.
  void escaped(std::string_view v);

 private:
  void room(std::size_t more) {
    if (size_ + more > cap_) grow(more);
  }
  void grow(std::size_t more);
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
};

/// Copies what the spans need from a sampled summary (summary.sampled, trace ids set).
OtlpTrace capture_trace(const ExchangeSummary& summary);

/// Appends the trace's spans as OTLP JSON Span objects, comma separated (a leading comma when
/// `out` already holds spans: `first` false).
void append_spans_json(JsonText& out, const OtlpTrace& trace, bool first);

/// An ExportTraceServiceRequest: one resource (service.name and the SDK's attributes), one
/// scope (vllm-router, its version), then spans (append_spans_json), then the close.
void otlp_request_open(JsonText& out, std::string_view service_name);
void otlp_request_close(JsonText& out);
/// The same as one string, around `spans_json`.
std::string otlp_request_json(std::string_view service_name, std::string_view spans_json);

/// Appends `s` as a JSON string; bytes that are not valid UTF-8 become U+FFFD (OTLP receivers
/// reject invalid UTF-8, and model names come from clients).
void append_json_utf8(std::string& out, std::string_view s);

}  // namespace vllm_router::detail
