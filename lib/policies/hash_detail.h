// Stable 64-bit hashing for policies: identical in every process and on every run (no std::hash).
#pragma once

#include <cstdint>
#include <string_view>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies::detail {

inline constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
inline constexpr std::uint64_t kFnvPrime = 1099511628211ull;

/// FNV-1a 64 over `data`, continuing from `h` (pass kFnvOffset to start).
inline std::uint64_t fnv1a64(std::string_view data, std::uint64_t h = kFnvOffset) noexcept {
  for (const char ch : data) {
    h ^= static_cast<unsigned char>(ch);
    h *= kFnvPrime;
  }
  return h;
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word (ring positions).
inline std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The stable hash of a key: FNV-1a 64 then mix64. Fixed seeds: same value in every process.
inline std::uint64_t stable_hash(std::string_view data) noexcept { return mix64(fnv1a64(data)); }

/// Ring position of virtual node `replica` of the endpoint `id`.
inline std::uint64_t vnode_hash(std::string_view id, std::uint32_t replica) noexcept {
  std::uint64_t h = fnv1a64(id);
  h = fnv1a64("#", h);
  for (int i = 0; i < 4; ++i) {
    h ^= (replica >> (8 * i)) & 0xFFu;
    h *= kFnvPrime;
  }
  return mix64(h);
}

}  // namespace policies::detail
VLLM_ROUTER_END_NAMESPACE
