// Internal: replica sync's datagram format (ReplicaSync, include/vllm_router/replica_sync.h:
// the layout) and the window that drops replayed signed datagrams.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace vllm_router::detail::replica_wire {

constexpr char kMagic[4] = {'V', 'R', 'S', '2'};  // 2: the sequence number and send time
constexpr std::uint8_t kLoads = 1, kPlacements = 2;
constexpr std::uint8_t kSigned = 1;
// Placements only: each group is one request the sender has just placed and has not yet counted
// in a loads datagram (sent in a round of placements alone, between two rounds of loads). The
// receiver counts it in flight on its endpoint until the sender's next loads, which carry it.
constexpr std::uint8_t kInFlight = 2;
constexpr std::size_t kHeader = 32;    // magic, kind, flags, count, sender, sequence, send time
constexpr std::size_t kMac = 32;       // HMAC-SHA256
constexpr std::size_t kLoadEntry = 12;  // endpoint u64, in-flight i32

inline void put64(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
inline void put32(std::string& out, std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}
inline void put16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>(v >> 8));
}
inline std::uint64_t get64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline std::uint32_t get32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
inline std::uint16_t get16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }

// A signed datagram is accepted only once, and only within kMaxAge of its send time on this
// router's wall clock (either way: the clocks of two pods differ a little). A recorded datagram
// replayed later, or again, is dropped: a captured stream cannot keep a stopped replica's counts
// alive or resend old placements.
constexpr std::chrono::milliseconds kMaxAge{10000};

// The sequence numbers seen from one sender: the highest and the 63 below it (IPsec's sliding
// window, RFC 4303 3.4.3). UDP may reorder a little; older than the window is a replay.
struct SeenWindow {
  std::uint64_t top = 0;
  std::uint64_t bits = 0;  // bit i: top - i was seen
  // True, and `seq` marked seen, when it was not seen before and is within the window.
  bool accept(std::uint64_t seq) noexcept {
    if (seq > top) {
      const std::uint64_t shift = seq - top;
      bits = shift >= 64 ? 1 : (bits << shift) | 1;
      top = seq;
      return true;
    }
    const std::uint64_t back = top - seq;
    if (back >= 64 || (bits >> back & 1) != 0) return false;
    bits |= std::uint64_t{1} << back;
    return true;
  }
};

}  // namespace vllm_router::detail::replica_wire
