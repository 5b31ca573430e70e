// Internal: small HTTP helpers (case-insensitive compare, trimming, hop-by-hop headers).
#pragma once

#include <cctype>
#include <string_view>

namespace vllm_router::detail {

/// ASCII lower case (HTTP tokens are ASCII; no locale lookups on the hot path).
inline constexpr char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
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

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus framing.
inline bool is_hop_by_hop(std::string_view name) noexcept {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "proxy-authenticate") ||
         iequals(name, "proxy-authorization") || iequals(name, "te") ||
         iequals(name, "trailer") || iequals(name, "transfer-encoding") ||
         iequals(name, "upgrade") || iequals(name, "content-length");
}

}  // namespace vllm_router::detail
