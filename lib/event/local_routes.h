// Internal: the server's built-in local routes (/health, /ping, /ready, /version, /v1/models).
#pragma once

#include "loop.h"

namespace vllm_router::detail {

/// Answers `req` from the host's routes (ServerOptions::local_routes) or the built-in ones.
/// False when no route matches.
bool answer_local_route(const LocalRequest& req, const LoopShared& shared, LocalResponse& out);

/// GET /v1/models: every name clients may send (models, aliases, LoRA adapters).
std::string models_json(const Snapshot& snapshot, std::int64_t created);

}  // namespace vllm_router::detail
