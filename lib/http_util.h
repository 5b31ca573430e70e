// Internal: small HTTP helpers (case-insensitive compare, trimming, hop-by-hop headers).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <string_view>

namespace vllm_router::detail {

/// ASCII lower case (HTTP tokens are ASCII; no locale lookups on the hot path).
inline constexpr char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

/// ASCII case-insensitive equality. Bytes that are equal cost one compare (header names are
/// compared on every request, mostly against names spelt the same or differing in case only).
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i];
    if (x == b[i]) continue;
    // Differing in case only: the 0x20 bit, and both are letters.
    const char lower = static_cast<char>(x | 0x20);
    if ((x ^ b[i]) != 0x20 || lower < 'a' || lower > 'z') return false;
  }
  return true;
}

inline bool icontains(std::string_view hay, std::string_view needle) noexcept {
  if (needle.size() > hay.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

/// `s` without leading and trailing characters of `space` (HTTP's optional white space by
/// default). The one trim of the project: the library, the executable and its tests use it.
inline std::string_view trim(std::string_view s, std::string_view space = " \t") noexcept {
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

/// A fixed set of lower-case header names, looked up case-insensitively among the names of the
/// same length only: every header crossing the router is checked against such sets.
template <std::size_t N>
class NameSet {
 public:
  static constexpr std::size_t kMaxLength = 31;
  constexpr explicit NameSet(std::array<std::string_view, N> names) : names_(names) {
    std::sort(names_.begin(), names_.end(), [](std::string_view a, std::string_view b) { return a.size() < b.size(); });
    if (N != 0 && names_[N - 1].size() > kMaxLength) throw "NameSet: name too long";  // compile-time error
    std::size_t k = 0;
    for (std::size_t length = 0; length < first_.size(); ++length) {
      while (k < N && names_[k].size() < length) ++k;
      first_[length] = static_cast<std::uint8_t>(k);
    }
  }
  bool contains(std::string_view name) const noexcept {
    if (name.size() > kMaxLength) return false;
    for (std::size_t i = first_[name.size()]; i < first_[name.size() + 1]; ++i) {
      if (iequals(name, names_[i])) return true;
    }
    return false;
  }

 private:
  std::array<std::string_view, N> names_{};
  std::array<std::uint8_t, kMaxLength + 2> first_{};  // names of length L: [first_[L], first_[L + 1])
};

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus framing.
inline constexpr NameSet kHopByHop{std::to_array<std::string_view>(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length"})};

inline bool is_hop_by_hop(std::string_view name) noexcept { return kHopByHop.contains(name); }

}  // namespace vllm_router::detail
