// Internal: W3C trace-context ids for the exchange core: random ids from a per-thread
// generator, hex encoding, the sampling decision.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vllm_router::detail {

/// 64 random bits from this thread's generator (xoshiro256**, seeded once per thread from
/// std::random_device): no system call per id.
std::uint64_t trace_random() noexcept;

/// Writes `v` as 16 lowercase hex digits (inline: a request writes five, on the loop).
inline void write_hex16(char* out, std::uint64_t v) noexcept {
#if defined(__SSE2__)
  // The bytes most significant first, each split into its two nibbles, all 16 turned to
  // digits at once: '0' + n, and 'a' - 10 + n where n > 9.
  const __m128i bytes = _mm_cvtsi64_si128(static_cast<long long>(__builtin_bswap64(v)));
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, low4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  const __m128i nibbles = _mm_unpacklo_epi8(hi, lo);
  const __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8('0')), letters));
#else
  // SWAR: the eight nibbles of each half spread one per byte, then turned to digits.
  const auto hex8 = [](std::uint32_t x) {
    std::uint64_t y = x;
    y = (y | (y << 16)) & 0x0000FFFF0000FFFFull;
    y = (y | (y << 8)) & 0x00FF00FF00FF00FFull;
    y = (y | (y << 4)) & 0x0F0F0F0F0F0F0F0Full;  // byte k (from the low one) = nibble k
    const std::uint64_t letter = ((y + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;  // nibble >= 10
    y += 0x3030303030303030ull + letter * ('a' - '0' - 10);
    return __builtin_bswap64(y);  // the most significant nibble first (little-endian hosts)
  };
  const std::uint64_t hi = hex8(static_cast<std::uint32_t>(v >> 32));
  const std::uint64_t lo = hex8(static_cast<std::uint32_t>(v));
  std::memcpy(out, &hi, 8);
  std::memcpy(out + 8, &lo, 8);
#endif
}

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
