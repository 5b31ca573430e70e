// Internal: the OTLP/HTTP protobuf encoding (opentelemetry-proto's ExportTraceServiceRequest) of
// a traced exchange's spans, written straight from its ExchangeSummary on the request's thread
// (no copy of the summary's strings), and the request that wraps a batch of them.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "byte_buffer.h"
#include "vllm_router/observer.h"

namespace vllm_router::detail {

/// A growing protobuf message written front to back. Nested messages reserve one byte for their
/// length and move their bytes when the length needs more (open/close).
/// Client-sourced strings in spans are cut at this many bytes (a span's size stays bounded).
inline constexpr std::size_t kMaxString = 512;

class ProtoWriter : public ByteBuffer {
 public:
  enum Wire : std::uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

  std::string_view view() const noexcept { return {data_.get(), size_}; }

  void raw(std::string_view v) {
    room(v.size());
    if (!v.empty()) std::memcpy(data_.get() + size_, v.data(), v.size());
    size_ += v.size();
  }
  void varint(std::uint64_t v) {
    room(10);
    char* p = data_.get() + size_;
    while (v >= 0x80) {
      *p++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p++ = static_cast<char>(v);
    size_ = static_cast<std::size_t>(p - data_.get());
  }
  void tag(std::uint32_t field, Wire wire) { varint((std::uint64_t{field} << 3) | wire); }
  void varint_field(std::uint32_t field, std::uint64_t v) {
    tag(field, kVarint);
    varint(v);
  }
  void fixed64_field(std::uint32_t field, std::uint64_t v) {
    tag(field, kFixed64);
    put_fixed(extend(8), v);
  }
  void fixed32_field(std::uint32_t field, std::uint32_t v) {
    tag(field, kFixed32);
    put_fixed(extend(4), v);
  }
  /// `v` little-endian at `p` (protobuf's fixed32/fixed64/double).
  template <typename T>
  static void put_fixed(char* p, T v) noexcept {
    static_assert(std::is_unsigned_v<T>);
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(p, &v, sizeof v);
    } else {
      for (std::size_t i = 0; i < sizeof v; ++i) p[i] = static_cast<char>(v >> (8 * i));
    }
  }
  /// A `bytes` field, or a `string` field whose value is known to be valid UTF-8.
  void bytes_field(std::uint32_t field, std::string_view v) {
    tag(field, kLen);
    varint(v.size());
    raw(v);
  }
  /// A `string` field from anywhere (a client's bytes): cut at `limit` bytes (on a character
  /// boundary), bytes that are not valid UTF-8 replaced by U+FFFD (receivers reject them).
  void string_field(std::uint32_t field, std::string_view v, std::size_t limit = kMaxString);
  /// The bytes of string_field's value alone (no tag, no length).
  void utf8(std::string_view v, std::size_t limit = kMaxString);

  /// Opens a nested message (field `field`, wire type LEN); close() with the returned mark.
  /// `reserve`: bytes kept for its length (1: under 128 bytes needs no move; 2: under 16 KiB).
  std::size_t open(std::uint32_t field, std::size_t reserve = 1) {
    tag(field, kLen);
    room(reserve);
    const std::size_t mark = size_;
    size_ += reserve;
    return mark;
  }
  void close(std::size_t mark) { close(mark, 1); }
  /// close() for a message opened with `reserve` bytes.
  void close(std::size_t mark, std::size_t reserve);

  /// Room for at most `n` more bytes: the caller writes from the pointer returned, then
  /// commit()s where it stopped. No other write in between.
  char* begin(std::size_t n) {
    room(n);
    return data_.get() + size_;
  }
  void commit(const char* end) noexcept { size_ = static_cast<std::size_t>(end - data_.get()); }
};

/// Writes `v` as a varint at `p`; returns the byte after it.
inline char* put_varint(char* p, std::uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

/// Bytes of `v` as a varint.
constexpr std::size_t varint_size(std::uint64_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

/// Appends the spans of a sampled summary (summary.sampled, ids set) to `out` as ScopeSpans'
/// `spans` fields: the request (SERVER), a routing span (INTERNAL) per decision and an attempt
/// span (CLIENT) per routed one. Returns how many spans it wrote.
std::size_t append_spans(ProtoWriter& out, const ExchangeSummary& summary);

/// The head of an ExportTraceServiceRequest: one ResourceSpans with the resource (service.name
/// and the SDK's attributes) and one ScopeSpans (vllm-router, its version), encoded once. Written
/// in place just before a run of spans (append_spans' output), so a batch is sent with no copy.
class OtlpHeader {
 public:
  explicit OtlpHeader(std::string_view service_name);
  /// Bytes write_before() may need.
  std::size_t max_size() const noexcept;
  /// Writes the head ending at `spans` (max_size() bytes before it must be writable) for
  /// `spans_size` bytes of spans; returns its size: the request is [spans - n, spans + spans_size).
  std::size_t write_before(char* spans, std::size_t spans_size) const;

 private:
  std::string resource_;  // Resource's content
  std::string scope_;     // InstrumentationScope's content
};

/// A whole request around `spans` into `out` (cleared first). For tests.
void otlp_request(ProtoWriter& out, std::string_view service_name, std::string_view spans);

}  // namespace vllm_router::detail
