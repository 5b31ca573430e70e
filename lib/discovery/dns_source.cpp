// DNS endpoint source: resolves a name (e.g. a headless Service) periodically; one endpoint per address.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "source_detail.h"
#include "vllm_router/endpoint_source.h"

VLLM_ROUTER_BEGIN_NAMESPACE

Result<std::vector<std::string>> resolve_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    return Error{Errc::no_endpoint, "DNS lookup of '" + host + "' failed: " + ::gai_strerror(rc), host};
  }
  std::vector<std::string> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr, text, sizeof text);
    } else if (ai->ai_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    out.emplace_back(text);
  }
  ::freeaddrinfo(list);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

class DnsSource final : public EndpointSource {
 public:
  DnsSource(const DiscoveryConfig& config, Resolver resolver)
      : config_(config), resolver_(resolver ? std::move(resolver) : Resolver(resolve_host)) {}
  ~DnsSource() override { stop(); }

  std::string describe() const override {
    return "dns " + config_.dns_name + ":" + std::to_string(config_.port);
  }
  const std::string& model() const noexcept override { return config_.model; }

  Result<EndpointSet> poll_once() override {
    auto addresses = resolver_(config_.dns_name);
    if (!addresses) return std::move(addresses).error();
    EndpointSet set;
    for (const std::string& address : addresses.value()) {
      set.push_back(DiscoveredEndpoint{
          config_.scheme + "://" + detail::url_host(address) + ":" + std::to_string(config_.port), {}, {},
          config_.api_key, config_.weight, ""});
    }
    detail::normalise_set(set);
    return set;
  }

  void start(EndpointSetCallback on_set, DiscoveryErrorCallback on_error) override {
    ticker_.start([this, on_set = std::move(on_set), on_error = std::move(on_error)] {
      bool have = false;
      EndpointSet last;
      do {
        auto set = poll_once();
        if (!set) {
          // Keep the last good set: a flaky resolver must not empty the pool.
          if (on_error) on_error(set.error());
        } else if (!have || !detail::same_set(last, set.value())) {
          have = true;
          last = std::move(set).value();
          if (on_set) on_set(last);
        }
      } while (ticker_.wait(std::chrono::milliseconds(config_.interval_ms)));
    });
  }
  void stop() override { ticker_.stop(); }

 private:
  DiscoveryConfig config_;
  Resolver resolver_;
  detail::Ticker ticker_;
};

}  // namespace

std::unique_ptr<EndpointSource> make_dns_source(const DiscoveryConfig& config, Resolver resolver) {
  return std::make_unique<DnsSource>(config, std::move(resolver));
}

VLLM_ROUTER_END_NAMESPACE
