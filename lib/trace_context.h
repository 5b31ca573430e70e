// Internal: W3C trace-context ids for the exchange core: random ids from a per-thread
// generator, hex encoding, the sampling decision.
#pragma once

#include <cstdint>

namespace vllm_router::detail {

/// 64 random bits from this thread's generator (xoshiro256**, seeded once per thread from
/// std::random_device): no system call per id.
std::uint64_t trace_random() noexcept;

/// Writes `v` as 16 lowercase hex digits.
void write_hex16(char* out, std::uint64_t v) noexcept;

/// 16 lowercase hex digits (valid ones: parse_traceparent checked them) as a number.
std::uint64_t hex16_value(const char* hex) noexcept;

/// A trace id's two halves as numbers (the first 16 hex digits are `high`).
struct TraceIdBits {
  std::uint64_t high = 0, low = 0;
};
/// A new random trace id (32 hex digits, never all zeros); returns it as numbers too.
TraceIdBits new_trace_id(char* out32) noexcept;
/// A new random span id (16 hex digits, never all zeros); returns it as a number too.
std::uint64_t new_span_id(char* out16) noexcept;

/// OpenTelemetry's TraceIdRatioBased decision: the trace id's last 16 hex digits (the random
/// part), read as a number and halved, below ratio x 2^63.
bool ratio_sampled(const char* trace_id32, double ratio) noexcept;

}  // namespace vllm_router::detail
