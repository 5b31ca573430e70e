// otlp_sink: the cheapest OTLP/HTTP collector stand-in for bench/features.sh. It answers every
// POST with 200 "{}" after reading (and discarding) its body, in 1 MiB reads, one thread per
// connection (the router's exporter keeps one). A real collector runs on other machines; on the
// bench's 2 cores whatever the stand-in spends comes out of the router's throughput, and how it
// reads matters: nginx discards a body in 4 KiB reads, each a system call that also makes the
// kernel acknowledge a little more to the router's exporter (~1.3 us of nginx per request).
//
//   otlp_sink [PORT]    prints "listening on http://127.0.0.1:PORT" (0: any free port)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kBuffer = 1 << 20;

// Content-Length of a request head ("name: value" lines), case-insensitive; 0 when absent.
std::size_t content_length(std::string_view head) {
  constexpr std::string_view kName = "content-length:";
  for (std::size_t at = head.find("\r\n"); at != std::string_view::npos; at = head.find("\r\n", at + 2)) {
    const std::string_view line = head.substr(at + 2, kName.size());
    if (line.size() < kName.size()) break;
    bool match = true;
    for (std::size_t i = 0; i < kName.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (match) return std::strtoull(head.data() + at + 2 + kName.size(), nullptr, 10);
  }
  return 0;
}

bool send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void serve(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<char> buffer(kBuffer);
  std::size_t have = 0;  // unread bytes at the buffer's start
  constexpr std::string_view kAnswer =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
  for (;;) {
    // The head.
    std::size_t head_end;
    for (;;) {
      const std::string_view seen(buffer.data(), have);
      head_end = seen.find("\r\n\r\n");
      if (head_end != std::string_view::npos) break;
      if (have == buffer.size()) return ::close(fd), void();  // a head of 1 MiB: not a client of ours
      const ssize_t n = ::recv(fd, buffer.data() + have, buffer.size() - have, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ::close(fd), void();
      have += static_cast<std::size_t>(n);
    }
    std::size_t body = content_length(std::string_view(buffer.data(), head_end + 2));
    std::size_t used = head_end + 4;
    // The body: what came with the head, then reads into the whole buffer, discarded.
    const std::size_t in_buffer = std::min(body, have - used);
    used += in_buffer;
    body -= in_buffer;
    std::memmove(buffer.data(), buffer.data() + used, have - used);
    have -= used;
    while (body > 0) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ::close(fd), void();
      const auto got = static_cast<std::size_t>(n);
      if (got <= body) {
        body -= got;
      } else {  // the next request's first bytes
        std::memmove(buffer.data(), buffer.data() + body, got - body);
        have = got - body;
        body = 0;
      }
    }
    if (!send_all(fd, kAnswer)) return ::close(fd), void();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 64) != 0) {
    std::perror("otlp_sink: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("listening on http://127.0.0.1:%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  for (;;) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::perror("otlp_sink: accept");
      return 1;
    }
    std::thread(serve, fd).detach();
  }
}
