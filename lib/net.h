// Internal: non-blocking TCP connects to resolved addresses, and the system resolver (getaddrinfo)
// for threads that may block.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <string>

#include "resolver.h"
#include "vllm_router/endpoint.h"

namespace vllm_router::detail {

/// Starts a non-blocking connect (TCP_NODELAY, CLOEXEC) to `address`. Returns the socket,
/// connecting or connected, or -1 with `why` set.
int connect_address(const sockaddr_storage& address, std::string& why);

/// The addresses `url.host` has, IPv4 first, with the URL's port: an IP literal at once, a name
/// through getaddrinfo (blocking: never on an event loop; loops use a Resolver).
Result<std::shared_ptr<const AddressList>> resolve_system(const Url& url);

}  // namespace vllm_router::detail
