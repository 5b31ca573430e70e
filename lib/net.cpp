// Internal: address resolution (IPv4 first) and non-blocking connect.
#include "net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace vllm_router::detail {

int start_connect(const Url& url, std::size_t index, bool& more, std::string& why) {
  more = false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    why = std::string("cannot resolve ") + url.host + ": " + ::gai_strerror(rc);
    return -1;
  }
  std::vector<const addrinfo*> order;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) order.push_back(ai);
  }
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET) order.push_back(ai);
  }
  int fd = -1;
  if (index < order.size()) {
    const addrinfo* ai = order[index];
    more = index + 1 < order.size();
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      why = std::strerror(errno);
    } else {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        why = std::strerror(errno);
        ::close(fd);
        fd = -1;
      }
    }
  } else {
    why = "no address for " + url.host;
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace vllm_router::detail
