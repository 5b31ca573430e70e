// ReplicaSync: UDP datagrams between router replicas (loads and prefix placements).
#include "vllm_router/replica_sync.h"

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "host_port.h"
#include "net.h"
#include "policies/hash_detail.h"
#include "replica_channel.h"
#include "replica_wire.h"
#include "router_impl.h"
#include "vllm_router/router.h"
#include "vllm_router/snapshot.h"

VLLM_ROUTER_BEGIN_NAMESPACE

namespace {

using Time = Clock::time_point;
using detail::ReplicaChannel;

using namespace detail::replica_wire;

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// Every address of "HOST:PORT" (port 0 allowed with `any_port`: a socket to bind) of `family`,
// through the project's system resolver (IP literals at once, names by getaddrinfo, IPv4 first).
// `v4_mapped`, for an IPv6 socket (dual-stack): IPv4 addresses too, as ::ffff:a.b.c.d.
std::vector<Address> resolve(std::string_view text, int family, bool any_port, bool v4_mapped = false) {
  const Result<detail::HostPort> hp = detail::split_host_port(text, any_port ? 0 : 1);
  if (!hp) return {};
  Url url;
  url.host = hp.value().host;
  url.port = hp.value().port;
  const auto list = detail::resolve_system(url);
  if (!list) return {};
  std::vector<Address> out;
  for (const sockaddr_storage& ss : list.value()->addresses) {
    Address x;
    if (v4_mapped && ss.ss_family == AF_INET) {  // an IPv4 peer of a dual-stack socket
      const auto& four = reinterpret_cast<const sockaddr_in&>(ss);
      sockaddr_in6 six{};
      six.sin6_family = AF_INET6;
      six.sin6_port = four.sin_port;
      six.sin6_addr.s6_addr[10] = 0xFF;
      six.sin6_addr.s6_addr[11] = 0xFF;
      std::memcpy(&six.sin6_addr.s6_addr[12], &four.sin_addr, 4);
      std::memcpy(&x.addr, &six, sizeof six);
      x.len = sizeof six;
    } else if (family == AF_UNSPEC || ss.ss_family == family) {
      x.addr = ss;
      x.len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    } else {
      continue;  // the socket's family cannot send there
    }
    const bool dup = std::any_of(out.begin(), out.end(), [&](const Address& y) {
      return y.len == x.len && std::memcmp(&y.addr, &x.addr, x.len) == 0;
    });
    if (!dup) out.push_back(x);
  }
  return out;
}

}  // namespace

struct ReplicaSync::Impl {
  Router& router;
  ReplicaSyncConfig config;
  std::shared_ptr<const Clock> clock;
  std::shared_ptr<ReplicaChannel> channel;
  int fd = -1;
  int wake = -1;  // the channel's eventfd: placements are waiting (ReplicaChannel::publish)
  int family = AF_INET;
  std::uint16_t port = 0;
  std::uint64_t sender = 0;

  // Peer addresses (the sending side), resolved when due.
  std::vector<Address> addresses;
  Time resolved_at{};
  bool resolved = false;

  // What each peer reported, with when (the receiving side).
  struct Count {
    std::int64_t value = 0;
    Time seen{};
    std::shared_ptr<EndpointState> state;  // the state the value was added to
  };
  struct Peer {
    Time seen{};
    SeenWindow sequences;                              // signed datagrams: each accepted once
    std::unordered_map<std::uint64_t, Count> counts;  // by endpoint hash
  };
  std::unordered_map<std::uint64_t, Peer> peers;  // by sender id
  std::uint64_t placements_in = 0;  // chain hashes received (the receiving side's own count)
  std::uint64_t sequence = 0;       // the last datagram's sequence number (the sending side)

  // The wall clock in Unix milliseconds, as `clock` moves it: read once at open, then advanced
  // by the (steady, injectable) clock, so tests move both.
  std::int64_t wall_at_open_ms = 0;
  Time steady_at_open{};
  std::int64_t wall_ms(Time now) const {
    return wall_at_open_ms + std::chrono::duration_cast<std::chrono::milliseconds>(now - steady_at_open).count();
  }

  // The router's endpoints by hash, rebuilt when the snapshot changes.
  std::uint64_t snapshot_version = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<EndpointState>> states;

  mutable std::mutex stats_mutex;
  ReplicaSyncStats counters;

  std::mutex thread_mutex;
  std::thread thread;
  std::atomic<bool> stopping{false};

  Impl(Router& r, ReplicaSyncConfig c, std::shared_ptr<const Clock> k)
      : router(r), config(std::move(c)), clock(std::move(k)) {}

  void refresh_states() {
    const std::shared_ptr<const Snapshot> snap = router.snapshot();
    if (snap == nullptr || snap->version == snapshot_version) return;
    snapshot_version = snap->version;
    states.clear();
    for (const Pool& pool : snap->pools) {
      for (std::size_t i = 0; i < pool.endpoints.size() && i < pool.states.size(); ++i) {
        if (pool.states[i] != nullptr) states.emplace(policies::detail::stable_hash(pool.endpoints[i]->id), pool.states[i]);
      }
    }
  }

  std::string header(std::uint8_t kind, std::uint16_t count, std::int64_t sent_ms, std::uint8_t flags = 0) {
    std::string d(kMagic, 4);
    d.push_back(static_cast<char>(kind));
    d.push_back(static_cast<char>(flags | (config.secret.empty() ? 0 : kSigned)));
    put16(d, count);
    put64(d, sender);
    put64(d, ++sequence);
    put64(d, static_cast<std::uint64_t>(sent_ms));
    return d;
  }
  void sign(std::string& d) const {
    if (config.secret.empty()) return;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), config.secret.data(), static_cast<int>(config.secret.size()),
         reinterpret_cast<const unsigned char*>(d.data()), d.size(), mac, &len);
    d.append(reinterpret_cast<const char*>(mac), kMac);
  }
  std::size_t room() const { return ReplicaSync::kMaxDatagram - kHeader - (config.secret.empty() ? 0 : kMac); }

  // The datagrams of one round: loads, then placements. `in_flight`: a round of placements
  // alone, whose requests no loads datagram has counted yet (kInFlight).
  std::vector<std::string> encode(const std::vector<std::pair<std::uint64_t, std::int64_t>>& loads,
                                  const std::vector<ReplicaChannel::Placement>& placements, Time now,
                                  bool in_flight = false) {
    const std::int64_t sent_ms = wall_ms(now);
    std::vector<std::string> out;
    const std::size_t per = room() / kLoadEntry;
    for (std::size_t at = 0; at < loads.size(); at += per) {
      const std::size_t n = std::min(per, loads.size() - at);
      std::string d = header(kLoads, static_cast<std::uint16_t>(n), sent_ms);
      for (std::size_t i = at; i < at + n; ++i) {
        put64(d, loads[i].first);
        put32(d, static_cast<std::uint32_t>(static_cast<std::int32_t>(
                     std::clamp<std::int64_t>(loads[i].second, 0, INT32_MAX))));
      }
      sign(d);
      out.push_back(std::move(d));
    }
    std::string d;
    std::uint16_t groups = 0;
    const auto flush = [&] {
      if (groups == 0) return;
      d[6] = static_cast<char>(groups & 0xFF);
      d[7] = static_cast<char>(groups >> 8);
      sign(d);
      out.push_back(std::move(d));
      groups = 0;
    };
    // With kInFlight every group counts as one request: a placement split over datagrams goes
    // on in datagrams of its own without the flag.
    for (const ReplicaChannel::Placement& p : placements) {
      bool split = false;
      for (std::size_t at = 0; at < p.hashes.size();) {
        if (groups == 0) d = header(kPlacements, 0, sent_ms, in_flight && at == 0 ? kInFlight : 0);
        const std::size_t used = d.size() - kHeader;
        if (used + 10 + 8 > room()) {
          flush();
          split = at != 0;
          continue;
        }
        const std::size_t n = std::min<std::size_t>({(room() - used - 10) / 8, p.hashes.size() - at, 0xFFFF});
        put64(d, p.endpoint);
        put16(d, static_cast<std::uint16_t>(n));
        for (std::size_t i = at; i < at + n; ++i) put64(d, p.hashes[i]);
        ++groups;
        at += n;
      }
      if (split) flush();  // nothing else joins its unflagged continuation
    }
    flush();
    return out;
  }

  enum class Verdict { accepted, rejected, replayed, own };
  // Applies one datagram: rejected when malformed, unsigned or forged; replayed when signed and
  // seen before or sent more than kMaxAge from now; own when it is this router's (listed among
  // its peers).
  Verdict apply(const unsigned char* p, std::size_t size, Time now) {
    const Verdict ok = Verdict::accepted;
    if (size < kHeader || std::memcmp(p, kMagic, 4) != 0) return Verdict::rejected;
    const std::uint8_t kind = p[4];
    const bool is_signed = (p[5] & kSigned) != 0;
    const std::uint16_t count = get16(p + 6);
    const std::uint64_t from = get64(p + 8);
    const std::uint64_t seq = get64(p + 16);
    const auto sent_ms = static_cast<std::int64_t>(get64(p + 24));
    if (!config.secret.empty()) {
      if (!is_signed || size < kHeader + kMac) return Verdict::rejected;
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      HMAC(EVP_sha256(), config.secret.data(), static_cast<int>(config.secret.size()), p, size - kMac, mac, &len);
      if (CRYPTO_memcmp(mac, p + size - kMac, kMac) != 0) return Verdict::rejected;
      size -= kMac;
    } else if (is_signed) {
      size -= std::min(size, kMac);  // a signing peer and an unsigned one: the signature is not checked
    }
    if (from == sender) return Verdict::own;
    if (!config.secret.empty()) {
      // Only a signed datagram's sequence and time are worth checking (unsigned ones can be
      // forged anyway), and they are checked after its signature, so a forged one cannot
      // advance a peer's window.
      const std::int64_t age = wall_ms(now) - sent_ms;
      if (age > kMaxAge.count() || age < -kMaxAge.count()) return Verdict::replayed;
      if (!peers[from].sequences.accept(seq)) return Verdict::replayed;
    }
    const unsigned char* q = p + kHeader;
    const unsigned char* end = p + size;
    if (kind == kLoads) {
      if (static_cast<std::size_t>(end - q) != std::size_t{count} * kLoadEntry) return Verdict::rejected;
      Peer& peer = peers[from];
      peer.seen = now;
      refresh_states();
      for (std::uint16_t i = 0; i < count; ++i, q += kLoadEntry) {
        const std::uint64_t ep = get64(q);
        const auto value = static_cast<std::int64_t>(static_cast<std::int32_t>(get32(q + 8)));
        set_count(peer, ep, [value](std::int64_t) { return value; }, now);
      }
      return ok;
    }
    if (kind == kPlacements) {
      // Checked whole before any is applied.
      const unsigned char* r = q;
      for (std::uint16_t i = 0; i < count; ++i) {
        if (end - r < 10) return Verdict::rejected;
        const std::size_t n = get16(r + 8);
        r += 10;
        if (static_cast<std::size_t>(end - r) < n * 8) return Verdict::rejected;
        r += n * 8;
      }
      if (r != end) return Verdict::rejected;
      Peer& peer = peers[from];
      peer.seen = now;
      const bool in_flight = (p[5] & kInFlight) != 0;
      if (in_flight) refresh_states();
      std::vector<std::uint64_t> hashes;
      for (std::uint16_t i = 0; i < count; ++i) {
        const std::uint64_t ep = get64(q);
        const std::size_t n = get16(q + 8);
        q += 10;
        hashes.clear();
        for (std::size_t k = 0; k < n; ++k, q += 8) hashes.push_back(get64(q));
        channel->deliver(ep, hashes);
        placements_in += hashes.size();
        // The request is in flight there now; the peer's next loads say so exactly (and replace
        // this count). Without it, a replica would not see a cold prefix its peer sent a busy
        // engine a moment ago, and add one more (bench/fleet/RESULTS.md, issue 14, stop 29).
        if (in_flight) set_count(peer, ep, [](std::int64_t v) { return v + 1; }, now);
      }
      return ok;
    }
    return Verdict::rejected;
  }

  // Sets what `peer` counts in flight on endpoint `ep` to `next(the count so far)`, on this
  // router's state of that endpoint (peer_in_flight moves by the difference).
  template <class Next>
  void set_count(Peer& peer, std::uint64_t ep, Next next, Time now) {
    Count& c = peer.counts[ep];
    const auto it = states.find(ep);
    std::shared_ptr<EndpointState> state = it == states.end() ? nullptr : it->second;
    if (c.state != state) {  // first report, or the endpoint's state was replaced
      take_off(c);
      c.state = std::move(state);
      c.value = 0;
    }
    const std::int64_t value = next(c.value);
    if (c.state != nullptr) c.state->peer_in_flight.fetch_add(value - c.value, std::memory_order_relaxed);
    c.value = value;
    c.seen = now;
  }

  // Takes a peer's reported count off the endpoint it was added to.
  static void take_off(const Count& c) {
    if (c.state != nullptr) c.state->peer_in_flight.fetch_sub(c.value, std::memory_order_relaxed);
  }

  // Takes off the counts of peers (and of single endpoints) not heard from within the timeout.
  // At most once an interval (a pass is O(peers x endpoints)), and always when a test drives it.
  Time expired_at{};
  void expire(Time now, bool always) {
    if (!always && now - expired_at < std::chrono::milliseconds(config.interval_ms)) return;
    expired_at = now;
    const auto timeout = std::chrono::milliseconds(config.peer_timeout_ms);
    for (auto it = peers.begin(); it != peers.end();) {
      Peer& peer = it->second;
      for (auto c = peer.counts.begin(); c != peer.counts.end();) {
        if (now - c->second.seen > timeout) {
          take_off(c->second);
          c = peer.counts.erase(c);
        } else {
          ++c;
        }
      }
      // Kept while a replay of its datagrams would still be young enough to pass the time check.
      if (now - peer.seen > std::max<std::chrono::milliseconds>(timeout, kMaxAge) && peer.counts.empty()) {
        it = peers.erase(it);
      } else {
        ++it;
      }
    }
    const auto alive = static_cast<std::size_t>(
        std::count_if(peers.begin(), peers.end(), [&](const auto& p) { return now - p.second.seen <= timeout; }));
    channel->set_peers(alive != 0);
    std::lock_guard<std::mutex> lock(stats_mutex);
    counters.peers = alive;
  }

  void forget_all() {
    for (auto& [id, peer] : peers) {
      for (auto& [ep, c] : peer.counts) take_off(c);
    }
    peers.clear();
    channel->set_peers(false);
  }

  void run() {
    const auto interval = std::chrono::milliseconds(std::max<std::uint32_t>(1, config.interval_ms));
    Time next = clock->now();
    while (!stopping.load(std::memory_order_relaxed)) {
      const Time now = clock->now();
      if (now >= next) {
        send_round(true);
        next = now + interval;
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - clock->now()).count();
      bool placements = false;
      receive(static_cast<int>(std::clamp<std::int64_t>(wait, 0, 50)), false, &placements);
      if (placements) send_round(false);  // woken by publish(): the placements alone, now
    }
  }

  // `loads`: this router's in-flight counts too (every interval), else only placements.
  std::size_t send_round(bool loads);
  // `expire_always`: forget silent peers now (tests), else at most once an interval.
  // `woken`, when given, is set when publish() signalled placements to send.
  std::size_t receive(int timeout_ms, bool expire_always, bool* woken = nullptr);
};

std::size_t ReplicaSync::Impl::send_round(bool with_loads) {
  const Time now = clock->now();
  if (!resolved || now - resolved_at >= std::chrono::milliseconds(config.resolve_interval_ms)) {
    std::vector<Address> next;
    for (const std::string& peer : config.peers) {
      for (Address& a : resolve(peer, family, false, family == AF_INET6)) next.push_back(a);
    }
    // A name that fails to resolve keeps its old addresses until it resolves again.
    if (!next.empty() || config.peers.empty()) addresses = std::move(next);
    resolved_at = now;
    resolved = true;
  }
  refresh_states();
  std::vector<std::pair<std::uint64_t, std::int64_t>> loads;
  loads.reserve(states.size());
  if (with_loads) {
    for (const auto& [ep, state] : states) loads.emplace_back(ep, state->in_flight.load(std::memory_order_relaxed));
  }
  const std::vector<ReplicaChannel::Placement> placements = channel->take_outbound();
  std::uint64_t hashes = 0;
  for (const ReplicaChannel::Placement& p : placements) hashes += p.hashes.size();
  const std::vector<std::string> datagrams = encode(loads, placements, now, !with_loads);
  std::size_t sent = 0, errors = 0;
  for (const std::string& d : datagrams) {
    for (const Address& a : addresses) {
      const ssize_t n = ::sendto(fd, d.data(), d.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                                 reinterpret_cast<const sockaddr*>(&a.addr), a.len);
      if (n == static_cast<ssize_t>(d.size())) {
        ++sent;
      } else {
        ++errors;
      }
    }
  }
  std::lock_guard<std::mutex> lock(stats_mutex);
  counters.datagrams_sent += sent;
  counters.send_errors += errors;
  counters.peer_addresses = addresses.size();
  counters.placements_sent += hashes;
  return sent;
}

std::size_t ReplicaSync::Impl::receive(int timeout_ms, bool expire_always, bool* woken) {
  pollfd p[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
  std::size_t accepted = 0, rejected = 0, replayed = 0;
  const int ready = ::poll(p, woken != nullptr && wake >= 0 ? 2 : 1, timeout_ms);
  if (ready > 0 && (p[1].revents & POLLIN) != 0) {
    std::uint64_t n = 0;
    [[maybe_unused]] const auto r = ::read(wake, &n, sizeof n);
    *woken = true;
  }
  if (ready > 0 && (p[0].revents & POLLIN) != 0) {
    unsigned char buffer[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n < 0) break;  // EAGAIN: none left (or an error: the next round tries again)
      const Verdict v = apply(buffer, static_cast<std::size_t>(n), clock->now());
      accepted += v == Verdict::accepted ? 1 : 0;
      rejected += v == Verdict::rejected ? 1 : 0;
      replayed += v == Verdict::replayed ? 1 : 0;
    }
  }
  expire(clock->now(), expire_always);
  std::lock_guard<std::mutex> lock(stats_mutex);
  counters.datagrams_received += accepted;
  counters.datagrams_rejected += rejected;
  counters.datagrams_replayed += replayed;
  counters.placements_received = placements_in;
  return accepted;
}

Result<std::unique_ptr<ReplicaSync>> ReplicaSync::open(Router& router, ReplicaSyncConfig config,
                                                        std::shared_ptr<const Clock> clock) {
  if (clock == nullptr) clock = std::make_shared<SteadyClock>();
  const std::vector<Address> listen = resolve(config.listen, AF_UNSPEC, true);
  if (listen.empty()) {
    return Error{Errc::config, "replica_sync.listen: expected HOST:PORT, got \"" + config.listen + "\"",
                 "replica_sync.listen"};
  }
  auto impl = std::make_unique<Impl>(router, std::move(config), std::move(clock));
  const Address& a = listen.front();
  impl->family = a.addr.ss_family;
  impl->fd = ::socket(impl->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (impl->fd >= 0 && impl->family == AF_INET6) {  // "[::]:PORT" takes IPv4 peers too
    const int off = 0;
    ::setsockopt(impl->fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (impl->fd < 0 || ::bind(impl->fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) != 0) {
    const std::string why = std::strerror(errno);
    if (impl->fd >= 0) ::close(impl->fd);
    impl->fd = -1;
    return Error{Errc::config, "replica_sync.listen: cannot bind " + impl->config.listen + ": " + why,
                 "replica_sync.listen"};
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(impl->fd, reinterpret_cast<sockaddr*>(&bound), &len);
  impl->port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::random_device device;
  impl->sender = (std::uint64_t{device()} << 32) ^ device();
  impl->steady_at_open = impl->clock->now();
  impl->wall_at_open_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  Router::Impl& r = detail::RouterAccess::impl(router);
  {
    std::lock_guard<std::mutex> lock(r.update_mutex);
    if (r.replica_channel == nullptr) r.replica_channel = std::make_shared<ReplicaChannel>();
    impl->channel = r.replica_channel;
  }
  impl->wake = impl->channel->wake_fd();
  impl->channel->set_wake(true);
  r.replica.store(impl->channel.get(), std::memory_order_release);
  return std::unique_ptr<ReplicaSync>(new ReplicaSync(std::move(impl)));
}

ReplicaSync::ReplicaSync(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplicaSync::~ReplicaSync() {
  stop();
  detail::RouterAccess::impl(impl_->router).replica.store(nullptr, std::memory_order_release);
  impl_->forget_all();
  impl_->channel->set_wake(false);
  if (impl_->fd >= 0) ::close(impl_->fd);
}

std::uint16_t ReplicaSync::port() const noexcept { return impl_->port; }

void ReplicaSync::start() {
  std::lock_guard<std::mutex> lock(impl_->thread_mutex);
  if (impl_->thread.joinable()) return;
  impl_->stopping.store(false);
  impl_->thread = std::thread([this] { impl_->run(); });
}

void ReplicaSync::stop() {
  std::lock_guard<std::mutex> lock(impl_->thread_mutex);
  if (!impl_->thread.joinable()) return;
  impl_->stopping.store(true);
  impl_->thread.join();
}

std::size_t ReplicaSync::send_once() { return impl_->send_round(true); }

std::size_t ReplicaSync::send_placements_once() { return impl_->send_round(false); }

std::size_t ReplicaSync::receive_once(int timeout_ms) { return impl_->receive(timeout_ms, true); }

ReplicaSyncStats ReplicaSync::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mutex);
  ReplicaSyncStats s = impl_->counters;
  s.placements_dropped = impl_->channel->dropped();
  return s;
}

VLLM_ROUTER_END_NAMESPACE
