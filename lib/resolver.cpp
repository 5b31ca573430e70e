// Internal: the resolver thread (c-ares over poll + an eventfd), its work queue and TTL cache.
#include "resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

namespace vllm_router::detail {
namespace {

using TimePoint = Clock::time_point;
using Ms = std::chrono::milliseconds;

void set_port(sockaddr_storage& ss, std::uint16_t port) {
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in&>(ss).sin_port = htons(port);
  } else if (ss.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6&>(ss).sin6_port = htons(port);
  }
}

// Host names are case-insensitive: one cache entry per name however it is spelled.
std::string cache_key(const std::string& host) {
  std::string key = host;
  for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return key;
}

// RFC 6761: "localhost" and names under it are loopback even without an /etc/hosts entry.
bool is_localhost(std::string_view key) {
  if (!key.empty() && key.back() == '.') key.remove_suffix(1);
  constexpr std::string_view kLocal = "localhost";
  return key == kLocal || (key.size() > kLocal.size() + 1 && key.ends_with(kLocal) &&
                           key[key.size() - kLocal.size() - 1] == '.');
}

AddressList loopback_list() {
  AddressList list;
  sockaddr_storage v4{};
  auto& sin = reinterpret_cast<sockaddr_in&>(v4);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  list.addresses.push_back(v4);
  sockaddr_storage v6{};
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(v6);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  list.addresses.push_back(v6);
  return list;
}

// Failures where no server gave an answer (RFC 8767 serves stale data for these); a definite
// "no such name" or "no address" is an answer and is not papered over.
bool is_transient(int status) { return status != ARES_ENOTFOUND && status != ARES_ENODATA; }

bool is_cancellation(int status) { return status == ARES_EDESTRUCTION || status == ARES_ECANCELLED; }

Error cancelled_error(const std::string& host) {
  return Error{Errc::cancelled, "cannot resolve " + host + ": the resolver is shutting down", {}};
}

}  // namespace

std::optional<AddressList> parse_ip_literal(const std::string& host, std::uint16_t port) {
  std::string_view h = host;
  const bool bracketed = h.size() >= 2 && h.front() == '[' && h.back() == ']';
  if (bracketed) h = h.substr(1, h.size() - 2);
  if (h.empty() || h.size() >= INET6_ADDRSTRLEN + IF_NAMESIZE) return std::nullopt;
  sockaddr_storage ss{};
  if (!bracketed) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    const std::string text(h);
    if (::inet_pton(AF_INET, text.c_str(), &sin.sin_addr) == 1) {
      sin.sin_family = AF_INET;
      sin.sin_port = htons(port);
      return AddressList{{ss}, false};
    }
  }
  // IPv6, with an optional zone ("fe80::1%eth0" or "%2").
  const std::size_t pct = h.find('%');
  const std::string addr(h.substr(0, pct));
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
  if (::inet_pton(AF_INET6, addr.c_str(), &sin6.sin6_addr) != 1) return std::nullopt;
  if (pct != std::string_view::npos) {
    const std::string zone(h.substr(pct + 1));
    if (zone.empty()) return std::nullopt;
    unsigned index = ::if_nametoindex(zone.c_str());
    if (index == 0) {
      char* end = nullptr;
      const unsigned long n = std::strtoul(zone.c_str(), &end, 10);
      if (end == zone.c_str() || *end != '\0' || n == 0 || n > UINT_MAX) return std::nullopt;
      index = static_cast<unsigned>(n);
    }
    sin6.sin6_scope_id = index;
  }
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  return AddressList{{ss}, false};
}

struct Resolver::Impl {
  struct Waiter {
    std::uint16_t port;
    Callback done;
  };
  // A copy of an entry's addresses with a port applied, handed out until the next answer.
  struct View {
    std::uint16_t port;
    bool stale;
    std::shared_ptr<const AddressList> list;
  };
  struct Entry {
    std::shared_ptr<const AddressList> base;  // last good answer, port 0; null if none yet
    TimePoint expires{};
    TimePoint prefetch_at{};
    std::optional<Error> failure;  // the last query's failure, answered until failure_until
    bool failure_transient = false;
    TimePoint failure_until{};
    bool in_flight = false;
    std::vector<Waiter> waiters;
    std::vector<View> views;
  };
  // One ares_getaddrinfo call; owned by c-ares until its callback, which runs exactly once.
  struct Query {
    Impl* impl;
    std::string key;
    std::string host;
  };

  Impl(ResolverOptions options, std::shared_ptr<const Clock> clock)
      : options_(std::move(options)), clock_(std::move(clock)) {}

  void init();
  void stop();
  void run();
  void start_queued();
  void shut_down();
  std::optional<Answer> lookup(const std::string& host, std::uint16_t port, Callback done);
  void complete(const Query& query, int status, const ares_addrinfo* result);

  // Guarded by mu_.
  Entry& entry(const std::string& key, TimePoint now);
  std::optional<Answer> serve(Entry& e, std::uint16_t port, TimePoint now);
  std::shared_ptr<const AddressList> view(Entry& e, std::uint16_t port, bool stale);
  void start(Entry& e, const std::string& key, const std::string& host);
  void sweep(TimePoint now);

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* result);

  const ResolverOptions options_;
  const std::shared_ptr<const Clock> clock_;
  std::optional<Error> init_error_;  // written before the thread starts, then read-only
  ares_channel channel_ = nullptr;   // resolver thread only once it runs
  int wake_fd_ = -1;
  std::unordered_map<int, short> sockets_;  // c-ares's sockets and their poll events; resolver thread

  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;               // by cache_key(host)
  std::vector<std::pair<std::string, std::string>> queued_;    // (key, host) to start
  bool stopping_ = false;
  std::size_t sweep_at_ = 64;

  std::thread thread_;
};

void Resolver::Impl::init() {
  // Process-wide and not thread-safe in c-ares 1.18; never cleaned up (other channels may live).
  static std::once_flag library_once;
  static int library_status = ARES_SUCCESS;
  std::call_once(library_once, [] { library_status = ::ares_library_init(ARES_LIB_INIT_ALL); });
  if (library_status != ARES_SUCCESS) {
    init_error_ = Error{Errc::internal, std::string("c-ares: ") + ::ares_strerror(library_status), {}};
    return;
  }
  ares_options o{};
  int mask = 0;
  o.timeout = static_cast<int>(std::clamp<std::uint32_t>(options_.timeout_ms, 1, INT_MAX));
  mask |= ARES_OPT_TIMEOUTMS;
  o.tries = static_cast<int>(std::clamp<std::uint32_t>(options_.tries, 1, INT_MAX));
  mask |= ARES_OPT_TRIES;
  char lookups[] = "fb";  // /etc/hosts first, then DNS, whatever nsswitch.conf says
  o.lookups = lookups;
  mask |= ARES_OPT_LOOKUPS;
  o.sock_state_cb = &Impl::on_socket_state;
  o.sock_state_cb_data = this;
  mask |= ARES_OPT_SOCK_STATE_CB;
  if (const int rc = ::ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS) {
    channel_ = nullptr;
    init_error_ = Error{Errc::internal, std::string("c-ares: ") + ::ares_strerror(rc), {}};
    return;
  }
  if (!options_.servers.empty()) {
    std::string csv;
    for (const std::string& s : options_.servers) {
      if (!csv.empty()) csv += ',';
      csv += s;
    }
    if (const int rc = ::ares_set_servers_ports_csv(channel_, csv.c_str()); rc != ARES_SUCCESS) {
      init_error_ = Error{Errc::config, "invalid DNS servers \"" + csv + "\": " + ::ares_strerror(rc),
                          "servers"};
      return;
    }
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    init_error_ = Error{Errc::internal, std::string("resolver eventfd: ") + std::strerror(errno), {}};
    return;
  }
  thread_ = std::thread([this] { run(); });
}

void Resolver::Impl::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    const std::uint64_t one = 1;
    while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
    thread_.join();  // shut_down() has destroyed the channel on the resolver thread
  } else if (channel_ != nullptr) {
    ::ares_destroy(channel_);
    channel_ = nullptr;
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

void Resolver::Impl::run() {
  ::pthread_setname_np(::pthread_self(), "vr-resolver");
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    for (const auto& [fd, events] : sockets_) fds.push_back(pollfd{fd, events, 0});
    timeval tv{};
    const timeval* next = ::ares_timeout(channel_, nullptr, &tv);
    const int timeout_ms =
        next == nullptr ? -1 : static_cast<int>(next->tv_sec * 1000 + (next->tv_usec + 999) / 1000);
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno != EINTR) ::poll(nullptr, 0, 10);  // ENOMEM: back off instead of spinning
      continue;
    }
    if (fds[0].revents != 0) {
      std::uint64_t count = 0;
      while (::read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) {
      }
      bool stopping = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        stopping = stopping_;
      }
      if (stopping) break;
      start_queued();
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      const short re = fds[i].revents;
      if (re == 0) continue;
      const bool error = (re & (POLLERR | POLLHUP | POLLNVAL)) != 0;
      const bool wants_read = (fds[i].events & POLLIN) != 0;
      const ares_socket_t r = (re & POLLIN) != 0 || (error && wants_read) ? fds[i].fd : ARES_SOCKET_BAD;
      const ares_socket_t w = (re & POLLOUT) != 0 || (error && !wants_read) ? fds[i].fd : ARES_SOCKET_BAD;
      ::ares_process_fd(channel_, r, w);
    }
    ::ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // expire timed-out tries
  }
  shut_down();
}

void Resolver::Impl::start_queued() {
  std::vector<std::pair<std::string, std::string>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(queued_);
  }
  for (auto& [key, host] : batch) {
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    // Our own order (IPv4 first) replaces RFC 6724 sorting, which costs a UDP connect() per
    // address.
    hints.ai_flags = ARES_AI_NOSORT;
    auto* query = new Query{this, key, host};
    // The callback may run before this returns (an /etc/hosts answer); no lock is held here.
    ::ares_getaddrinfo(channel_, key.c_str(), nullptr, &hints, &Impl::on_addrinfo, query);
  }
}

void Resolver::Impl::shut_down() {
  std::vector<std::pair<std::string, std::string>> never_started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    never_started.swap(queued_);
  }
  for (const auto& [key, host] : never_started) {
    complete(Query{this, key, host}, ARES_EDESTRUCTION, nullptr);
  }
  // Queries in flight complete with ARES_EDESTRUCTION, on this thread, inside ares_destroy.
  ::ares_destroy(channel_);
  channel_ = nullptr;
}

void Resolver::Impl::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<Impl*>(data);
  if (readable == 0 && writable == 0) {
    self->sockets_.erase(fd);
  } else {
    self->sockets_[fd] = static_cast<short>((readable != 0 ? POLLIN : 0) | (writable != 0 ? POLLOUT : 0));
  }
}

void Resolver::Impl::on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
  const std::unique_ptr<Query> query(static_cast<Query*>(arg));
  query->impl->complete(*query, status, result);
  if (result != nullptr) ::ares_freeaddrinfo(result);
}

std::optional<Resolver::Answer> Resolver::Impl::lookup(const std::string& host, std::uint16_t port,
                                                       Callback done) {
  if (init_error_) return Answer(*init_error_);
  if (host.empty()) return Answer(Errc::connect_failed, "cannot resolve an empty host name");
  const std::string key = cache_key(host);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Answer(cancelled_error(host));
  const TimePoint now = clock_->now();
  Entry& e = entry(key, now);
  if (auto ready = serve(e, port, now)) {
    const bool fresh = e.base && now < e.expires;
    const bool recent_failure = e.failure && now < e.failure_until;
    if (fresh && now >= e.prefetch_at && !e.in_flight && !recent_failure) start(e, key, host);
    return ready;
  }
  e.waiters.push_back(Waiter{port, std::move(done)});
  if (!e.in_flight) start(e, key, host);
  return std::nullopt;
}

void Resolver::Impl::complete(const Query& query, int status, const ares_addrinfo* result) {
  auto list = std::make_shared<AddressList>();
  std::int64_t ttl_s = -1;
  if (status == ARES_SUCCESS && result != nullptr) {
    // IPv4 first: vLLM listens on 0.0.0.0 by default, so a dual-stack name must not stop at ::1.
    for (const int family : {AF_INET, AF_INET6}) {
      for (const ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
        if (n->ai_family != family || n->ai_addr == nullptr) continue;
        const auto len = static_cast<std::size_t>(n->ai_addrlen);
        if (len > sizeof(sockaddr_storage)) continue;
        sockaddr_storage ss{};
        std::memcpy(&ss, n->ai_addr, len);
        set_port(ss, 0);
        list->addresses.push_back(ss);
        ttl_s = ttl_s < 0 ? n->ai_ttl : std::min<std::int64_t>(ttl_s, n->ai_ttl);
      }
    }
    // A CNAME on the way caps the answer's life too.
    for (const ares_addrinfo_cname* c = result->cnames; c != nullptr; c = c->next) {
      ttl_s = ttl_s < 0 ? c->ttl : std::min<std::int64_t>(ttl_s, c->ttl);
    }
  }
  if (status == ARES_SUCCESS && list->addresses.empty()) status = ARES_ENODATA;  // never hand out none
  if (status != ARES_SUCCESS && !is_cancellation(status) && is_localhost(query.key)) {
    *list = loopback_list();
    ttl_s = 0;
    status = ARES_SUCCESS;
  }
  const bool cancelled = is_cancellation(status);

  std::vector<std::pair<Callback, Answer>> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const TimePoint now = clock_->now();
    Entry& e = cache_[query.key];
    e.in_flight = false;
    if (status == ARES_SUCCESS) {
      const std::uint64_t answer_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(ttl_s, 0)) * 1000;
      const std::uint64_t ttl_ms =
          std::max<std::uint64_t>(std::min<std::uint64_t>(answer_ms, options_.max_ttl_ms), options_.min_ttl_ms);
      const auto ttl = Ms(ttl_ms);
      e.base = std::move(list);
      e.expires = now + ttl;
      e.prefetch_at = e.expires - ttl / 10;
      e.failure.reset();
      e.views.clear();
    } else if (!cancelled) {
      e.failure = Error{Errc::connect_failed, "cannot resolve " + query.host + ": " + ::ares_strerror(status), {}};
      e.failure_transient = is_transient(status);
      e.failure_until = now + Ms(options_.negative_ttl_ms);
    }
    calls.reserve(e.waiters.size());
    for (Waiter& w : e.waiters) {
      std::optional<Answer> answer;
      if (cancelled) {
        answer = Answer(cancelled_error(query.host));
      } else if (status == ARES_SUCCESS) {
        answer = Answer(view(e, w.port, false));  // even with a zero TTL (min_ttl_ms = 0)
      } else {
        answer = serve(e, w.port, now);  // stale addresses, or the error
        // negative_ttl_ms == 0: the failure is not remembered, but this query's waiters get it.
        if (!answer) answer = Answer(*e.failure);
      }
      calls.emplace_back(std::move(w.done), std::move(*answer));
    }
    e.waiters.clear();
  }
  for (auto& [done, answer] : calls) {
    if (done) done(std::move(answer));
  }
  if (!cancelled && options_.on_query_done) {
    options_.on_query_done(query.host, status == ARES_SUCCESS
                                           ? Result<void>()
                                           : Result<void>(Errc::connect_failed,
                                                          "cannot resolve " + query.host + ": " +
                                                              ::ares_strerror(status)));
  }
}

Resolver::Impl::Entry& Resolver::Impl::entry(const std::string& key, TimePoint now) {
  if (const auto it = cache_.find(key); it != cache_.end()) return it->second;
  if (cache_.size() >= sweep_at_) {
    sweep(now);
    sweep_at_ = std::max<std::size_t>(64, cache_.size() * 2);
  }
  return cache_[key];
}

std::optional<Resolver::Answer> Resolver::Impl::serve(Entry& e, std::uint16_t port, TimePoint now) {
  if (e.base && now < e.expires) return Answer(view(e, port, false));
  if (e.failure && now < e.failure_until) {
    if (e.failure_transient && e.base && now < e.expires + Ms(options_.stale_ms)) {
      return Answer(view(e, port, true));
    }
    return Answer(*e.failure);
  }
  return std::nullopt;
}

std::shared_ptr<const AddressList> Resolver::Impl::view(Entry& e, std::uint16_t port, bool stale) {
  for (const View& v : e.views) {
    if (v.port == port && v.stale == stale) return v.list;
  }
  auto list = std::make_shared<AddressList>(*e.base);
  for (sockaddr_storage& ss : list->addresses) set_port(ss, port);
  list->stale = stale;
  e.views.push_back(View{port, stale, list});
  return list;
}

void Resolver::Impl::start(Entry& e, const std::string& key, const std::string& host) {
  e.in_flight = true;
  queued_.emplace_back(key, host);
  const std::uint64_t one = 1;
  // A full eventfd counter (EAGAIN) still wakes the thread; nothing else can fail here.
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Resolver::Impl::sweep(TimePoint now) {
  for (auto it = cache_.begin(); it != cache_.end();) {
    const Entry& e = it->second;
    const bool busy = e.in_flight || !e.waiters.empty();
    const bool positive_live = e.base && now < e.expires + Ms(options_.stale_ms);
    const bool negative_live = e.failure && now < e.failure_until;
    if (!busy && !positive_live && !negative_live) {
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

Resolver::Resolver(ResolverOptions options, std::shared_ptr<const Clock> clock)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(clock))) {
  impl_->init();
}

Resolver::~Resolver() { impl_->stop(); }

std::optional<Resolver::Answer> Resolver::lookup(const std::string& host, std::uint16_t port, Callback done) {
  if (auto literal = parse_ip_literal(host, port)) {
    return Answer(std::shared_ptr<const AddressList>(std::make_shared<AddressList>(std::move(*literal))));
  }
  return impl_->lookup(host, port, std::move(done));
}

Resolver::Answer Resolver::resolve_blocking(const std::string& host, std::uint16_t port, Ms timeout) {
  if (impl_->thread_.joinable() && std::this_thread::get_id() == impl_->thread_.get_id()) {
    return Answer(Errc::connect_failed, "cannot resolve " + host + ": resolve_blocking on the resolver thread");
  }
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Answer> answer;
  };
  auto slot = std::make_shared<Slot>();
  auto ready = lookup(host, port, [slot](Answer answer) {
    std::lock_guard<std::mutex> lock(slot->mu);
    slot->answer = std::move(answer);
    slot->cv.notify_all();
  });
  if (ready) return std::move(*ready);
  std::unique_lock<std::mutex> lock(slot->mu);
  if (!slot->cv.wait_for(lock, timeout, [&] { return slot->answer.has_value(); })) {
    return Answer(Errc::connect_failed,
                  "cannot resolve " + host + ": no answer within " + std::to_string(timeout.count()) + " ms");
  }
  return std::move(*slot->answer);
}

const std::optional<Error>& Resolver::init_error() const noexcept { return impl_->init_error_; }

std::size_t Resolver::cached_hosts() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->cache_.size();
}

}  // namespace vllm_router::detail
