// Internal: the server's built-in local routes and the OpenAI-shaped error answer.
#include "local_routes.h"

#include "../json_writer.h"
#include "vllm_router/version.h"

namespace vllm_router::detail {

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

bool answer_local_route(const LocalRequest& req, const LoopShared& shared, LocalResponse& out) {
  if (shared.options.local_routes && shared.options.local_routes(req, out)) return true;
  const std::string_view path = req.path;
  if (path == "/health" || path == "/ping") {
    out = LocalResponse{200, "text/plain", ""};
  } else if (path == "/ready") {
    if (shared.draining.load(std::memory_order_relaxed)) {
      out = LocalResponse{503, "application/json", R"({"status":"draining"})"};
      return true;
    }
    const auto snap = shared.router.snapshot();
    bool ready = false;
    for (const Pool& pool : snap->pools) ready = ready || !pool.endpoints.empty();
    out = ready ? LocalResponse{200, "application/json", R"({"status":"ready"})"}
                : LocalResponse{503, "application/json", R"({"status":"no usable endpoint"})"};
  } else if (path == "/version") {
    out = LocalResponse{200, "application/json", std::string(R"({"version":")") + version() + "\"}"};
  } else if (path == "/v1/models") {
    out = req.authorized ? LocalResponse{200, "application/json", models_json(*shared.router.snapshot(), shared.created)}
                         : error_response(Error{Errc::unauthorized, "Missing or invalid API key", ""});
  } else {
    return false;
  }
  return true;
}

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

LocalResponse error_response(const Error& error) {
  return LocalResponse{http_status(error.code), "application/json", to_openai_json(error)};
}

VLLM_ROUTER_END_NAMESPACE
