// W3C Trace Context: parsing `traceparent`, new ids, the sampling decision.
#include "trace_context.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <random>

#include "vllm_router/random.h"
#include "vllm_router/tracing.h"

namespace vllm_router::detail {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is invalid in traceparent
}

// `n` lowercase hex digits, not all zeros.
bool valid_id(const char* p, std::size_t n) noexcept {
  bool nonzero = false;
  for (std::size_t i = 0; i < n; ++i) {
    const int v = hex_value(p[i]);
    if (v < 0) return false;
    nonzero = nonzero || v != 0;
  }
  return nonzero;
}

Rng& thread_generator() noexcept {
  thread_local Rng rng([] {
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t seed = 0;
    try {
      std::random_device device;
      seed = (std::uint64_t{device()} << 32) ^ device();
    } catch (...) {
      seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return seed ^ (counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull);
  }());
  return rng;
}

}  // namespace

std::uint64_t trace_random() noexcept { return thread_generator().next(); }

std::uint64_t hex16_value(const char* hex) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 16; ++i) v = (v << 4) | static_cast<std::uint64_t>(hex_value(hex[i]) & 15);
  return v;
}

TraceIdBits new_trace_id(char* out32) noexcept {
  Rng& rng = thread_generator();
  std::uint64_t hi = rng.next();
  std::uint64_t lo = rng.next();
  if (hi == 0 && lo == 0) lo = 1;
  write_hex16(out32, hi);
  write_hex16(out32 + 16, lo);
  return {hi, lo};
}

std::uint64_t new_span_id(char* out16) noexcept {
  std::uint64_t v = thread_generator().next();
  if (v == 0) v = 1;
  write_hex16(out16, v);
  return v;
}

bool ratio_sampled(const char* trace_id32, double ratio) noexcept {
  if (ratio >= 1.0) return true;
  if (!(ratio > 0.0)) return false;
  std::uint64_t low = 0;
  for (int i = 16; i < 32; ++i) low = (low << 4) | static_cast<std::uint64_t>(hex_value(trace_id32[i]) & 15);
  const auto bound = static_cast<std::uint64_t>(ratio * 9223372036854775808.0);  // ratio x 2^63
  return (low >> 1) < bound;
}

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

std::optional<TraceParent> parse_traceparent(std::string_view v) noexcept {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
  if (v.size() < 55) return std::nullopt;
  const int v0 = detail::hex_value(v[0]);
  const int v1 = detail::hex_value(v[1]);
  if (v0 < 0 || v1 < 0 || (v0 == 15 && v1 == 15)) return std::nullopt;  // version ff is invalid
  const bool version00 = v0 == 0 && v1 == 0;
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (version00 ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  if (!detail::valid_id(v.data() + 3, 32) || !detail::valid_id(v.data() + 36, 16)) return std::nullopt;
  const int f0 = detail::hex_value(v[53]);
  const int f1 = detail::hex_value(v[54]);
  if (f0 < 0 || f1 < 0) return std::nullopt;
  TraceParent tp;
  std::copy_n(v.data() + 3, 32, tp.trace_id.begin());
  std::copy_n(v.data() + 36, 16, tp.parent_id.begin());
  tp.flags = static_cast<std::uint8_t>(f0 * 16 + f1);
  return tp;
}

VLLM_ROUTER_END_NAMESPACE
