// Base URL parsing for endpoints; the process-wide health epoch of endpoint states.
#include <charconv>
#include <string>

#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_state.h"

VLLM_ROUTER_BEGIN_NAMESPACE

std::atomic<std::uint64_t>& health_epoch() noexcept {
  // Its own cache line: written only when a health flag changes, read by every route().
  alignas(64) static std::atomic<std::uint64_t> epoch{0};
  return epoch;
}

Result<Url> parse_url(std::string_view text) {
  Url url;
  const auto bad = [&](std::string_view why) {
    return Result<Url>(Errc::config, "invalid endpoint URL '" + std::string(text) + "': " +
                                         std::string(why));
  };
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad("expected http://host:port or https://host:port");
  url.scheme = std::string(text.substr(0, scheme_end));
  if (url.scheme != "http" && url.scheme != "https") return bad("only http:// and https:// are supported");
  std::string_view rest = text.substr(scheme_end + 3);
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.find_first_of("?#") != std::string_view::npos) return bad("no query or fragment allowed");
  url.prefix = std::string(path);
  if (authority.empty()) return bad("missing host");
  if (authority.find('@') != std::string_view::npos) return bad("credentials in URL not supported");
  std::string_view host;
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after IPv6 literal");
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad("missing host");
  url.host = std::string(host);
  url.port = url.scheme == "https" ? 443 : 80;
  if (!port.empty()) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return bad("port must be 1..65535");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

std::string endpoint_id(const Url& url) {
  std::string id;
  id.reserve(url.scheme.size() + url.host.size() + url.prefix.size() + 12);
  id.append(url.scheme).append("://");
  const bool v6 = url.host.find(':') != std::string::npos;
  if (v6) id.push_back('[');
  id.append(url.host);
  if (v6) id.push_back(']');
  id.push_back(':');
  id.append(std::to_string(url.port)).append(url.prefix);
  return id;
}

VLLM_ROUTER_END_NAMESPACE
