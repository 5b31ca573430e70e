// Internal: JSON string escaping for the documents the library and the server write (error
// bodies, model lists, log lines, the status page), and the UTF-8 check it rests on.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vllm_router::detail {

/// Length of the valid UTF-8 sequence at p[0..n) whose lead byte is >= 0x80, 0 when invalid
/// (RFC 3629: no overlong form, no surrogate, nothing above U+10FFFF).
inline std::size_t utf8_length(const unsigned char* p, std::size_t n) noexcept {
  const unsigned char c = p[0];
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  }
  if (len == 0 || len > n) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

namespace json {
// Bytes a JSON string holds as they are: printable ASCII but '"' and '\\'.
inline constexpr auto kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return t;
}();
}  // namespace json

/// Appends `s` as a quoted JSON string. Quotes, backslashes and control characters are escaped,
/// valid UTF-8 is copied, and a byte that is not part of valid UTF-8 is written as the code
/// point of the byte (\u00XX): whatever bytes a client sent (a request target, a header), the
/// document stays valid JSON in valid UTF-8, and the byte can still be read back.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  out.push_back('"');
  std::size_t i = 0;
  while (i < n) {
    if (json::kPlain[p[i]]) {  // a run of plain bytes, copied at once
      std::size_t j = i + 1;
      while (j < n && json::kPlain[p[j]]) ++j;
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    const unsigned char c = p[i];
    if (c >= 0x80) {
      if (const std::size_t len = utf8_length(p + i, n - i); len != 0) {
        out.append(s.data() + i, len);
        i += len;
        continue;
      }
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:  // other control bytes, and bytes that are not UTF-8
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
    ++i;
  }
  out.push_back('"');
}

}  // namespace vllm_router::detail
