// Internal: non-blocking TCP connect shared by the transport and the server's event loop.
#pragma once

#include <cstddef>
#include <string>

#include "vllm_router/endpoint.h"

namespace vllm_router::detail {

/// Starts a non-blocking connect (TCP_NODELAY, CLOEXEC) to the `index`-th address `url.host`
/// resolves to, IPv4 addresses first (vLLM listens on 0.0.0.0 by default, so "localhost" must
/// not stop at ::1). Returns the socket, connecting or connected, or -1 with `why` set.
/// `more` tells whether addresses after `index` remain to try. Name resolution blocks: give
/// endpoints as IP addresses where a stall matters (discovery resolves names for you).
int start_connect(const Url& url, std::size_t index, bool& more, std::string& why);

}  // namespace vllm_router::detail
