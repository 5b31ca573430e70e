// Internal: "HOST:PORT" strings (replica_sync's `listen` and `peers`) split and checked; an IPv6
// literal goes in brackets ("[::1]:7071"). Header only, so the executable's flags use it too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vllm_router/error.h"
#include "vllm_router/result.h"

namespace vllm_router::detail {

struct HostPort {
  std::string host;  ///< a name, an IPv4 literal or an IPv6 literal without its brackets
  std::uint16_t port = 0;
};

/// `text` as HOST:PORT with a port in [min_port, 65535] (min_port 0: "any free port", for a
/// socket to bind). The host is a DNS name or IPv4 literal (letters, digits, '.', '-', '_') or a
/// bracketed IPv6 literal (hex digits, ':', '.', and a "%zone"). Errors: Errc::config, the message
/// naming what was expected and quoting `text`; the caller prefixes the field's name.
inline Result<HostPort> split_host_port(std::string_view text, std::uint16_t min_port = 1) {
  const auto bad = [&](std::string_view why) {
    return Result<HostPort>(Errc::config, std::string("expected HOST:PORT") + std::string(why) + " (e.g. \"10.0.0.7:7071\", "
                                          "\"router.ns.svc.cluster.local:7071\", \"[::1]:7071\"), got \"" +
                                          std::string(text) + "\"");
  };
  if (text.find("://") != std::string_view::npos) return bad(" (no scheme)");
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return bad("");
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    const std::size_t zone = host.find('%');
    const std::string_view address = host.substr(0, zone);
    if (address.find(':') == std::string_view::npos) return bad(" (brackets hold an IPv6 address)");
    for (const char c : address) {
      const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      if (!hex && c != ':' && c != '.') return bad(" (brackets hold an IPv6 address)");
    }
    if (zone != std::string_view::npos && zone + 1 == host.size()) return bad(" (an empty IPv6 zone)");
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad(" (an IPv6 address goes in brackets)");
    for (const char c : host) {
      const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!alnum && c != '.' && c != '-' && c != '_') return bad(" (a host: letters, digits, '.', '-', '_')");
    }
  }
  if (host.empty()) return bad(" (an empty host)");
  unsigned port = 0;
  if (port_text.empty() || port_text.size() > 5) return bad("");
  for (const char c : port_text) {
    if (c < '0' || c > '9') return bad("");
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port < static_cast<unsigned>(min_port) || port > 65535) {
    return bad(std::string(" with a port ") + std::to_string(min_port) + "..65535");
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(port)};
}

}  // namespace vllm_router::detail
