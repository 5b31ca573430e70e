// Endpoint: the immutable description of one vLLM server, and URL parsing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// A parsed `http://host:port[/prefix]` or `https://host:port[/prefix]` base URL. Plain value
/// type.
struct Url {
  std::string scheme;  ///< "http" or "https" (TLS, verified as RouterConfig::upstream_tls says)
  std::string host;    ///< host name or IPv4/IPv6 literal, without brackets
  std::uint16_t port = 80;  ///< 80 or 443 when the URL names none
  std::string prefix;  ///< path prefix without trailing '/', usually empty
};

/// Parses a base URL. Fails with Errc::config naming what is wrong.
VLLM_ROUTER_API Result<Url> parse_url(std::string_view text);

/// True for an https:// URL.
inline bool uses_tls(const Url& url) noexcept { return std::string_view(url.scheme) == "https"; }

/// The identity of the server `url` names: "scheme://host:port/prefix" with the port always
/// written and an IPv6 host in brackets, so two spellings of one server compare equal
/// ("http://10.0.0.5" and "http://10.0.0.5:80/"). Endpoint::id, the key of live endpoint state
/// and of de-duplication everywhere.
VLLM_ROUTER_API std::string endpoint_id(const Url& url);

/// One upstream vLLM server. Immutable once built; shared by snapshots via shared_ptr<const>.
struct Endpoint {
  std::string id;        ///< stable identity: endpoint_id(url)
  Url url;
  std::uint32_t weight = 1;  ///< relative share for weighted policies (>= 1)
  std::string api_key;   ///< sent upstream as `Authorization: Bearer` when not empty
};

VLLM_ROUTER_END_NAMESPACE
