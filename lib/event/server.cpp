// Server: binds the listening socket, runs one event loop per thread, drains on stop.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

#include "cpu_quota.h"
#include "loop.h"

VLLM_ROUTER_BEGIN_NAMESPACE

struct Server::Impl {
  explicit Impl(Router& router, ServerOptions options) : shared(router, std::move(options)) {}
  ~Impl() {
    shared.loops.clear();
    if (shared.listen_fd >= 0) ::close(shared.listen_fd);
  }
  detail::LoopShared shared;
  std::uint16_t port = 0;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(Router& router, ServerOptions options) {
  auto impl = std::make_unique<Impl>(router, std::move(options));
  detail::LoopShared& shared = impl->shared;
  const ServerOptions& o = shared.options;
  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    auto context = detail::TlsContext::server(o.tls_cert_file, o.tls_key_file);
    if (!context) return context.error();
    shared.tls = true;
    shared.set_tls_context(std::move(context).value());
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  if (const int rc = ::getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Result<std::unique_ptr<Server>>(Errc::config,
                                           "cannot resolve listen address " + o.host + ": " + ::gai_strerror(rc), "host");
  }
  std::string why = "no address";
  // "::" means every address of both families: IPV6_V6ONLY off whatever net.ipv6.bindv6only
  // says (IPv4 clients arrive as ::ffff:a.b.c.d); on a kernel without IPv6, 0.0.0.0 instead.
  const bool dual_stack = o.host == "::";
  bool v6_unsupported = false;
  for (addrinfo* ai = res; ai != nullptr && shared.listen_fd < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      v6_unsupported = v6_unsupported || (ai->ai_family == AF_INET6 && errno == EAFNOSUPPORT);
      why = std::strerror(errno);
      continue;
    }
    int yes = 1;
    // SO_REUSEADDR only: SO_REUSEPORT would let a second process silently share the port.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (dual_stack && ai->ai_family == AF_INET6) {
      int no = 0;
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);
    }
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 4096) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    shared.listen_fd = fd;
  }
  ::freeaddrinfo(res);
  if (shared.listen_fd < 0 && dual_stack && v6_unsupported) {
    ServerOptions v4 = o;
    v4.host = "0.0.0.0";
    return create(router, std::move(v4));
  }
  if (shared.listen_fd < 0) {
    return Result<std::unique_ptr<Server>>(Errc::config, "cannot listen on " + o.host + ":" + port + ": " + why, "port");
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(shared.listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  impl->port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  shared.created = static_cast<std::int64_t>(std::time(nullptr));
  for (const std::string& k : o.api_keys) {
    if (k.empty()) return Result<std::unique_ptr<Server>>(Errc::config, "api_keys: an empty key would accept anyone", "api_keys");
  }
  unsigned n = o.threads;
  if (n == 0) n = detail::available_cpus();  // a container's CPU limit, not the node's CPU count
  for (unsigned i = 0; i < n; ++i) shared.loops.push_back(std::make_unique<detail::Loop>(shared));
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Result<void> Server::check_tls(const ServerOptions& options) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) return {};
  auto context = detail::TlsContext::server(options.tls_cert_file, options.tls_key_file);
  if (!context) return context.error();
  return {};
}

std::uint16_t Server::port() const noexcept { return impl_->port; }

bool Server::tls() const noexcept { return impl_->shared.tls; }

Result<void> Server::reload_tls() {
  detail::LoopShared& shared = impl_->shared;
  if (!shared.tls) return Result<void>(Errc::invalid_argument, "the listener does not use TLS");
  auto context = detail::TlsContext::server(shared.options.tls_cert_file, shared.options.tls_key_file);
  if (!context) return context.error();
  shared.set_tls_context(std::move(context).value());
  return {};
}

std::uint64_t Server::tls_handshake_failures() const noexcept {
  return impl_->shared.tls_failures.load(std::memory_order_relaxed);
}

void Server::run() {
  auto& loops = impl_->shared.loops;
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < loops.size(); ++i) threads.emplace_back([&loops, i] { loops[i]->run(); });
  loops[0]->run();
  for (auto& t : threads) t.join();
}

void Server::stop(std::chrono::milliseconds grace) {
  detail::LoopShared& shared = impl_->shared;
  shared.drain_deadline_ns.store((shared.clock->now() + grace).time_since_epoch().count());
  // New connections are refused from now on (Linux resets a listening socket on shutdown);
  // the descriptor itself is closed when the server is destroyed.
  if (!shared.draining.exchange(true) && shared.listen_fd >= 0) ::shutdown(shared.listen_fd, SHUT_RDWR);
  for (auto& loop : shared.loops) loop->wake();
}

void Server::set_keys(std::shared_ptr<const KeyTable> keys) { impl_->shared.set_keys(std::move(keys)); }

bool Server::draining() const noexcept { return impl_->shared.draining.load(std::memory_order_relaxed); }

std::int64_t Server::connections() const noexcept {
  return impl_->shared.connections.load(std::memory_order_relaxed);
}

std::vector<std::uint32_t> Server::connections_per_loop() const {
  std::vector<std::uint32_t> out;
  for (const auto& l : impl_->shared.loops) out.push_back(l->open.load(std::memory_order_relaxed));
  return out;
}

VLLM_ROUTER_END_NAMESPACE
