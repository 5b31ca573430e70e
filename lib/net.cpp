// Internal: non-blocking connect to one address; blocking system resolution for probe threads.
#include "net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vllm_router::detail {

int connect_address(const sockaddr_storage& address, std::string& why) {
  const socklen_t len = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), len) != 0 && errno != EINPROGRESS) {
    why = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

Result<std::shared_ptr<const AddressList>> resolve_system(const Url& url) {
  if (auto literal = parse_ip_literal(url.host, url.port)) {
    return std::shared_ptr<const AddressList>(std::make_shared<AddressList>(std::move(*literal)));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Result<std::shared_ptr<const AddressList>>(Errc::connect_failed,
                                                      "cannot resolve " + url.host + ": " + ::gai_strerror(rc));
  }
  auto list = std::make_shared<AddressList>();
  // IPv4 first: vLLM listens on 0.0.0.0 by default, so "localhost" must not stop at ::1.
  for (int pass = 0; pass < 2; ++pass) {
    for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      if ((ai->ai_family == AF_INET) != (pass == 0)) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, ai->ai_addr, std::min<std::size_t>(ai->ai_addrlen, sizeof ss));
      list->addresses.push_back(ss);
    }
  }
  ::freeaddrinfo(res);
  if (list->addresses.empty()) {
    return Result<std::shared_ptr<const AddressList>>(Errc::connect_failed, "no address for " + url.host);
  }
  return std::shared_ptr<const AddressList>(std::move(list));
}

}  // namespace vllm_router::detail
