// Shared gateway behaviour: GET routes, OpenAI errors, auth, header policy, request ids.
#include "routes.h"

#include <chrono>

#include "http_util.h"
#include "json_writer.h"
#include "vllm_router/random.h"
#include "vllm_router/version.h"

namespace vllm_router::server {
namespace {

using detail::append_json_string;

std::string models_json(const Snapshot& snap, std::int64_t created) {
  std::string out = R"({"object":"list","data":[)";
  bool first = true;
  for (const CatalogEntry& e : snap.catalog.entries()) {
    if (!first) out += ',';
    first = false;
    const std::string& model = snap.pools[e.pool].model;
    out += R"({"id":)";
    append_json_string(out, e.name);
    out += R"(,"object":"model","created":)";
    out += std::to_string(created);
    out += R"(,"owned_by":"vllm-router","root":)";
    append_json_string(out, e.kind == NameKind::lora ? e.upstream : model);
    out += R"(,"parent":)";
    if (e.kind == NameKind::lora) {
      append_json_string(out, model);
    } else {
      out += "null";
    }
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace

LocalResponse error_response(const Error& error) {
  return LocalResponse{http_status(error.code), "application/json", to_openai_json(error)};
}

bool answer_get(std::string_view path, bool is_authorized, const Router& router, const Metrics& metrics,
                std::int64_t created, LocalResponse& out, bool draining) {
  if (path == "/health" || path == "/ping") {
    out = LocalResponse{200, "text/plain", ""};
  } else if (path == "/ready" && draining) {
    out = LocalResponse{503, "application/json", R"({"status":"draining"})"};
  } else if (path == "/ready") {
    const auto snap = router.snapshot();
    bool ready = false;
    for (const Pool& pool : snap->pools) ready = ready || !pool.endpoints.empty();
    out = ready ? LocalResponse{200, "application/json", R"({"status":"ready"})"}
                : LocalResponse{503, "application/json", R"({"status":"no usable endpoint"})"};
  } else if (path == "/metrics") {
    out = LocalResponse{200, "text/plain; version=0.0.4", metrics.render(*router.snapshot())};
  } else if (path == "/version") {
    out = LocalResponse{200, "application/json", std::string(R"({"version":")") + version() + "\"}"};
  } else if (path == "/v1/models") {
    out = is_authorized ? LocalResponse{200, "application/json", models_json(*router.snapshot(), created)}
                        : error_response(Error{Errc::unauthorized, "Missing or invalid API key", ""});
  } else {
    return false;
  }
  return true;
}

bool authorized(const std::vector<std::string>& keys, std::string_view authorization) {
  if (keys.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() || authorization.substr(0, kBearer.size()) != kBearer) {
    return false;
  }
  const std::string_view key = authorization.substr(kBearer.size());
  bool ok = false;
  for (const std::string& k : keys) {
    if (k.size() != key.size()) continue;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < k.size(); ++i) diff |= static_cast<unsigned char>(k[i] ^ key[i]);
    ok = ok || diff == 0;
  }
  return ok;
}

bool forward_request_header(std::string_view name) {
  static constexpr std::string_view kDropped[] = {
      "host", "content-length", "transfer-encoding", "connection", "keep-alive",
      "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
      "upgrade", "expect", "authorization", "accept-encoding", "x-request-id",
      "x-forwarded-for", "REMOTE_ADDR", "REMOTE_PORT", "LOCAL_ADDR", "LOCAL_PORT"};
  for (std::string_view d : kDropped) {
    if (detail::iequals(name, d)) return false;
  }
  return true;
}

bool relay_response_header(std::string_view name) {
  return !(detail::is_hop_by_hop(name) || detail::iequals(name, "x-request-id") ||
           detail::iequals(name, "content-encoding") || detail::iequals(name, "date") ||
           detail::iequals(name, "server"));
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 256) return false;
  for (char c : id) {
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

std::string new_request_id() {
  thread_local Rng rng(static_cast<std::uint64_t>(
                           std::chrono::steady_clock::now().time_since_epoch().count()) ^
                       reinterpret_cast<std::uintptr_t>(&rng));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (std::size_t half = 0; half < 2; ++half) {
    std::uint64_t v = rng.next();
    for (std::size_t i = 0; i < 16; ++i, v >>= 4) id[half * 16 + i] = kHex[v & 15];
  }
  return id;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

}  // namespace vllm_router::server
