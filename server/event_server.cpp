// EventServer: epoll loops that parse client requests, route them, and relay upstream answers
// without a thread per connection (edge-triggered, non-blocking, bounded buffers).
#include "event_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "http1.h"
#include "net.h"
#include "log.h"
#include "routes.h"

namespace vllm_router::server {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadSize = 64 * 1024;
constexpr std::size_t kMaxPendingOut = 256 * 1024;  // pause the upstream above this backlog
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr int kAcceptBatch = 4;
// epoll tags: 0 the listening socket, kWakeTag the eventfd, (generation << 34) | (fd << 2) |
// kUpstreamTag an upstream socket (its owner is looked up in Loop::upstream), anything else a
// client Conn*.
constexpr std::uintptr_t kUpstreamTag = 1;
constexpr std::uintptr_t kWakeTag = 2;

void close_fd(int fd) {
  if (fd >= 0) ::close(fd);
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

// Appends "name: value\r\n".
void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

// Is `name` one of the comma-separated tokens of `list` (case-insensitive)?
bool listed_in(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (detail::iequals(detail::trim(list.substr(0, comma)), name)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

OutcomeKind outcome_of(Errc code) {
  switch (code) {
    case Errc::connect_failed: return OutcomeKind::connect_failure;
    case Errc::timeout: return OutcomeKind::timeout;
    case Errc::upstream_closed: return OutcomeKind::upstream_closed;
    case Errc::cancelled: return OutcomeKind::cancelled;
    default: return OutcomeKind::error;
  }
}

}  // namespace

class Conn;

/// One epoll loop and the connections it owns. Only its own thread touches its state.
class Loop {
 public:
  explicit Loop(EventServer& server);
  ~Loop();
  void run();
  void wake();

  EventServer& srv;
  const GatewayConfig& cfg;
  int ep = -1;
  int wake_fd = -1;
  Clock::time_point now = Clock::now();
  std::vector<Conn*> conns;       // every open client connection (for timeouts)
  std::vector<Conn*> graveyard;   // closed during this batch; freed after it
  std::unordered_map<std::string, std::vector<int>> idle;  // upstream keep-alive by endpoint id
  // Upstream sockets by fd: which connection one serves (nullptr while it idles in the pool) and
  // a generation, bumped when the socket closes. A socket is registered in epoll once, for its
  // whole life: handing it from one exchange to the next only changes `owner`, never epoll (no
  // epoll_ctl per request). The generation in each event's tag makes an event that was already
  // collected for a socket closed earlier in the same batch harmless, even if a new socket got
  // the same fd number in between.
  struct UpstreamSlot {
    Conn* owner = nullptr;
    std::uint32_t generation = 0;
  };
  std::vector<UpstreamSlot> upstream;
  UpstreamSlot& slot_of(int fd) {
    const auto i = static_cast<std::size_t>(fd);
    if (i >= upstream.size()) upstream.resize(std::max<std::size_t>(i + 1, 2 * upstream.size()));
    return upstream[i];
  }
  std::uint64_t upstream_tag(int fd) {
    return (static_cast<std::uint64_t>(slot_of(fd).generation) << 34) |
           (static_cast<std::uint64_t>(static_cast<std::uint32_t>(fd)) << 2) | kUpstreamTag;
  }
  void close_upstream(int fd) {  // closing the last reference also takes it out of epoll
    if (fd < 0) return;
    UpstreamSlot& s = slot_of(fd);
    s.owner = nullptr;
    s.generation = (s.generation + 1) & 0x3fffffffu;
    close_fd(fd);
  }
  std::vector<char> scratch = std::vector<char>(kReadSize);
  std::deque<Conn*> waiting;  // requests whose endpoints were all full (FIFO)
  bool freed = false;         // a lease ended: waiting requests may find room

  /// Gives waiting requests another try, in order, until one still finds no room.
  void kick_waiting();

  int take_idle(const std::string& id);
  void give_idle(const std::string& id, int fd);  // fd stays registered in epoll
  void on_idle(int fd, std::uint32_t ev);          // an event on a socket without owner
  void accept_all();
  void adopt(int fd);  // a new client connection becomes this loop's
  void take_inbox();   // adopts the connections other loops handed over
  void remove(Conn* c);

  // Connection balance. `open` counts this loop's client connections plus those handed to it and
  // not yet adopted; any loop reads it. The kernel wakes whichever loop it likes for the shared
  // listening socket, so a loop that accepts a connection gives it to the loop with the fewest
  // (Envoy's exact balance): otherwise 64 connections could split 48/16 and the 48 get a third
  // of the service the 16 get.
  std::atomic<std::uint32_t> open{0};
  std::mutex inbox_mu;
  std::vector<int> inbox;
};

/// A client connection and the exchange it is running.
class Conn {
 public:
  enum class State { head, body, queued, upstream, relay, flush, closed };

  Conn(Loop& loop, int fd) : loop_(loop), cfd_(fd), peer_(peer_address(fd)) {
    deadline_ = loop.now + std::chrono::milliseconds(loop.cfg.client_timeout_ms);
  }
  ~Conn() {
    close_fd(cfd_);
    loop_.close_upstream(ufd_);
  }

  std::size_t slot = 0;
  bool closed() const { return state_ == State::closed; }

  void on_client(std::uint32_t ev);
  void on_upstream(std::uint32_t ev);
  void on_timeout();
  Clock::time_point deadline() const { return deadline_; }
  /// Shutdown has begun: close when idle, otherwise after the current answer.
  void drain() {
    close_after_ = true;
    if (state_ == State::head && !head_parsed_ && in_.empty()) close();
  }
  /// Tries to route a queued request again; false when it is still waiting.
  bool retry_queued();
  /// Aborts whatever runs (loop shutdown).
  void abort() {
    if (route_) cancel_exchange();
    close();
  }

 private:
  // Client side.
  void read_client(bool peer_closed = false);  // peer_closed: read on to see the EOF
  void process();
  void dispatch();
  void local(const LocalResponse& r, bool close_after = false);
  void queue(std::string_view data);
  void queue_chunk(std::string_view data);  // one chunk of chunked framing
  void flush();
  void request_done();
  void close();
  bool backlogged() const { return out_.size() - out_off_ > kMaxPendingOut; }

  // Upstream side.
  void start_upstream();
  void connect_upstream();
  void write_upstream();
  void read_upstream();
  bool on_upstream_head();
  bool relay(std::string_view data);
  void finish_upstream();
  void upstream_failed(Error error);
  void cancel_exchange();
  void drop_upstream();
  void complete_lease(OutcomeKind kind, int status);
  void watch_upstream();  // (re)points the upstream socket's events at this connection
  bool retry_elsewhere(const Error& error);
  bool take_retry();
  void release_retry();
  // Sets the deadline `ms` from now, never past the exchange's total deadline.
  void arm(std::uint32_t ms) {
    deadline_ = std::min(loop_.now + std::chrono::milliseconds(ms), total_deadline_);
  }
  const RouterConfig& rcfg() const { return *rcfg_; }

  Loop& loop_;
  int cfd_;
  std::string peer_;
  State state_ = State::head;
  Clock::time_point deadline_;

  // The request being read or served. `head_` views point into `in_`, which is never
  // reallocated while they live (capacity is reserved before the views are taken).
  std::string in_;
  std::string next_;  // bytes of the next (pipelined) request
  detail::RequestHead head_;
  bool head_parsed_ = false;
  std::string chunked_body_;
  detail::ChunkedScanner body_scanner_;
  std::size_t chunked_seen_ = 0;
  std::string_view body_;
  std::size_t body_capacity_ = 0;
  bool continue_sent_ = false;
  bool close_after_ = false;
  std::string request_id_;
  Clock::time_point started_;
  std::string model_;

  std::string out_;
  std::size_t out_off_ = 0;
  bool corked_ = false;  // queue() only collects (see read_upstream)

  // The upstream exchange.
  std::shared_ptr<const RouterConfig> rcfg_;  // routing config in force when the request came
  Clock::time_point total_deadline_ = Clock::time_point::max();
  bool retry_held_ = false;  // holds a slot of the router's retry budget
  bool requeue_ = false;     // start_upstream() called for a request already waiting
  RequestView view_;
  std::string rewritten_;
  std::optional<Route> route_;
  std::vector<std::string> tried_;
  Error last_error_;  // the failure that made us try another replica
  unsigned attempts_ = 0;
  int ufd_ = -1;
  std::size_t u_address_ = 0;  // which of the endpoint's addresses is being tried
  bool u_more_addresses_ = false;
  bool u_reused_ = false;
  bool u_connecting_ = false;
  bool u_registered_ = false;
  bool u_writing_ = false;
  std::string u_head_;
  std::size_t u_written_ = 0;
  std::string uin_;
  bool u_head_done_ = false;
  detail::ResponseHead uresp_;
  detail::ChunkedScanner u_scanner_;
  std::uint64_t u_left_ = 0;
  bool u_paused_ = false;
  bool u_peer_closed_ = false;  // the upstream sent FIN: read to the EOF, no edge will follow
  bool u_extra_ = false;  // bytes after the body: the socket cannot be reused
  bool wrap_chunks_ = false;
  bool event_stream_ = false;
  bool sent_head_ = false;
  std::uint64_t bytes_ = 0;
  Clock::time_point ttfb_at_;
};

// ---------------------------------------------------------------------------------------------
// Loop

Loop::Loop(EventServer& server) : srv(server), cfg(server.config_) {
  ep = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event wev{};
  wev.events = EPOLLIN;
  wev.data.u64 = kWakeTag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &wev);
  epoll_event lev{};
  lev.events = EPOLLIN | EPOLLEXCLUSIVE;
  lev.data.u64 = 0;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, srv.listen_fd_, &lev);
}

Loop::~Loop() {
  for (Conn* c : conns) delete c;
  for (Conn* c : graveyard) delete c;
  for (int fd : inbox) close_fd(fd);
  for (auto& [id, fds] : idle) {
    for (int fd : fds) close_upstream(fd);
  }
  close_fd(wake_fd);
  close_fd(ep);
}

void Loop::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
}

int Loop::take_idle(const std::string& id) {
  auto it = idle.find(id);
  if (it == idle.end() || it->second.empty()) return -1;
  const int fd = it->second.back();
  it->second.pop_back();
  return fd;
}

void Loop::give_idle(const std::string& id, int fd) {
  auto& fds = idle[id];
  if (fds.size() >= srv.config_.router.max_idle_connections) {
    close_upstream(fds.front());  // keep the most recently used ones
    fds.erase(fds.begin());
  }
  // Stays registered, without owner: an upstream closing it is noticed and it leaves the pool.
  slot_of(fd).owner = nullptr;
  fds.push_back(fd);
}

void Loop::on_idle(int fd, std::uint32_t ev) {
  // EPOLLOUT alone is an ACK freeing send space (edge-triggered): nothing to do. Anything else on
  // an idle socket (EOF, an error, bytes nobody asked for) makes it useless.
  if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
  for (auto& [id, fds] : idle) {
    const auto it = std::find(fds.begin(), fds.end(), fd);
    if (it != fds.end()) {
      fds.erase(it);
      close_upstream(fd);
      return;
    }
  }
}

void Loop::accept_all() {
  // A few per wake-up, like nginx without multi_accept: the listening socket is level-triggered
  // and shared, so the rest wake the other loops, and a burst of connections does not hold up
  // this loop's other events. Each connection then goes to the loop with the fewest.
  for (int i = 0; i < kAcceptBatch; ++i) {
    const int fd = ::accept4(srv.listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EMFILE || errno == ENFILE) {
        log(LogLevel::warn, "accept: out of file descriptors");
      }
      return;
    }
    set_nodelay(fd);
    const auto limit = static_cast<std::int64_t>(cfg.max_connections);
    if (limit > 0 && srv.connections_.load(std::memory_order_relaxed) >= limit) {
      // Refuse cleanly rather than queue without bound.
      const std::string body = to_openai_json(
          Error{Errc::overloaded, "the router is at its connection limit; retry later", ""});
      const std::string resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
      [[maybe_unused]] const auto n = ::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL);
      close_fd(fd);
      continue;
    }
    srv.connections_.fetch_add(1, std::memory_order_relaxed);
    // Keep it unless another loop has at least two fewer connections (no hand-over ping-pong).
    // Not while draining: a loop that already finished would never adopt it.
    Loop* target = this;
    std::uint32_t fewest = open.load(std::memory_order_relaxed);
    for (const auto& l : srv.loops_) {
      if (srv.draining()) break;
      const std::uint32_t n = l->open.load(std::memory_order_relaxed);
      if (n + 1 < fewest) {
        fewest = n;
        target = l.get();
      }
    }
    target->open.fetch_add(1, std::memory_order_relaxed);
    if (target == this) {
      adopt(fd);
    } else {
      {
        std::lock_guard<std::mutex> lock(target->inbox_mu);
        target->inbox.push_back(fd);
      }
      target->wake();
    }
  }
}

void Loop::adopt(int fd) {
  auto* c = new Conn(*this, fd);
  c->slot = conns.size();
  conns.push_back(c);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = c;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

void Loop::take_inbox() {
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> lock(inbox_mu);
    fds.swap(inbox);
  }
  for (int fd : fds) adopt(fd);
}

void Loop::remove(Conn* c) {
  const std::size_t i = c->slot;
  if (i < conns.size() && conns[i] == c) {
    conns[i] = conns.back();
    conns[i]->slot = i;
    conns.pop_back();
  }
  open.fetch_sub(1, std::memory_order_relaxed);
  srv.connections_.fetch_sub(1, std::memory_order_relaxed);
  graveyard.push_back(c);
}

void Loop::run() {
  std::vector<epoll_event> events(512);
  auto next_tick = Clock::now() + kTick;
  bool drain_started = false;
  for (;;) {
    if (srv.draining()) {
      if (!drain_started) {
        drain_started = true;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, srv.listen_fd_, nullptr);
      }
      for (Conn* c : std::vector<Conn*>(conns)) c->drain();
      const Clock::time_point deadline{Clock::duration(srv.drain_deadline_ns_.load())};
      if (conns.empty() || now >= deadline) break;
    }
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(kTick.count()));
    now = Clock::now();
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[static_cast<std::size_t>(i)].data.u64;
      const std::uint32_t ev = events[static_cast<std::size_t>(i)].events;
      if (tag == 0) {
        accept_all();
      } else if (tag == kWakeTag) {
        std::uint64_t v = 0;
        [[maybe_unused]] const auto r = ::read(wake_fd, &v, sizeof v);
        take_inbox();
      } else if ((tag & 3) == kUpstreamTag) {
        const int fd = static_cast<int>((tag >> 2) & 0xffffffffu);
        const UpstreamSlot& s = slot_of(fd);
        if (s.generation != (tag >> 34)) {
          // collected for a socket closed earlier in this batch: stale
        } else if (s.owner == nullptr) {
          on_idle(fd, ev);
        } else if (!s.owner->closed()) {
          s.owner->on_upstream(ev);
        }
      } else {
        auto* c = static_cast<Conn*>(events[static_cast<std::size_t>(i)].data.ptr);
        if (!c->closed()) c->on_client(ev);
      }
    }
    if (now >= next_tick) {
      next_tick = now + kTick;
      if (!waiting.empty()) kick_waiting();
      for (std::size_t i = 0; i < conns.size();) {
        Conn* c = conns[i];
        if (!c->closed() && c->deadline() <= now) c->on_timeout();
        // on_timeout may remove c (swapping another into slot i): only advance when c stays.
        if (i < conns.size() && conns[i] == c) ++i;
      }
    }
    // Leases ended here: queued requests may fit now (the tick also tries, for other loops').
    if (freed && !waiting.empty()) kick_waiting();
    for (Conn* c : graveyard) delete c;
    graveyard.clear();
  }
  for (Conn* c : std::vector<Conn*>(conns)) c->abort();
  for (Conn* c : graveyard) delete c;
  graveyard.clear();
}

// ---------------------------------------------------------------------------------------------
// Client side

void Conn::close() {
  if (state_ == State::closed) return;
  if (state_ == State::queued) {
    auto& w = loop_.waiting;
    w.erase(std::remove(w.begin(), w.end(), this), w.end());
  }
  release_retry();
  drop_upstream();
  state_ = State::closed;
  ::epoll_ctl(loop_.ep, EPOLL_CTL_DEL, cfd_, nullptr);
  loop_.remove(this);
}

void Conn::on_client(std::uint32_t ev) {
  if ((ev & EPOLLIN) != 0 || (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
    read_client((ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
  }
  if (closed()) return;
  if ((ev & EPOLLOUT) != 0 && out_off_ < out_.size()) flush();
}

void Conn::read_client(bool peer_closed) {
  char* buf = loop_.scratch.data();
  for (;;) {
    const ssize_t n = ::recv(cfd_, buf, kReadSize, 0);
    if (n > 0) {
      const std::string_view data(buf, static_cast<std::size_t>(n));
      if (state_ == State::head || state_ == State::body) {
        in_.append(data);
      } else {
        next_.append(data);  // pipelined while an exchange runs
        if (next_.size() > loop_.cfg.max_body_bytes + 64 * 1024) {
          if (route_) cancel_exchange();
          return close();
        }
      }
      // A short read emptied the socket: later data raises a new edge, no need to see EAGAIN
      // (unless the peer closed: then the EOF must be read now, no edge will follow).
      if (static_cast<std::size_t>(n) < kReadSize && !peer_closed) break;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      // The client is gone: stop its upstream request at once.
      if (route_) cancel_exchange();
      return close();
    }
    if (errno == EINTR) continue;
    break;
  }
  if (state_ == State::head || state_ == State::body) process();
}

void Conn::process() {
  if (!head_parsed_) {
    std::string error;
    const auto r = detail::parse_request_head(in_, head_, error);
    if (r == detail::Parse::incomplete) return;
    if (r == detail::Parse::error) {
      request_id_ = new_request_id();
      started_ = loop_.now;
      const Errc code = error.find("too large") != std::string::npos ? Errc::headers_too_large
                                                                      : Errc::invalid_argument;
      return local(error_response(Error{code, "malformed HTTP request: " + error, ""}), true);
    }
    started_ = loop_.now;
    // Reserve room for the whole body plus simdjson's padding, then take the views again: the
    // reservation may have moved the buffer.
    const std::size_t need = head_.size +
                             (head_.framing == detail::Framing::length ? head_.content_length : 0) +
                             kBodyPadding;
    if (head_.framing == detail::Framing::length && head_.content_length > loop_.cfg.max_body_bytes) {
      request_id_ = new_request_id();
      return local(error_response(Error{Errc::body_too_large,
                                        "request body of " + std::to_string(head_.content_length) +
                                            " bytes is larger than the limit of " +
                                            std::to_string(loop_.cfg.max_body_bytes),
                                        ""}),
                   true);
    }
    if (in_.capacity() < need) {
      in_.reserve(need);
      std::string ignored;
      (void)detail::parse_request_head(in_, head_, ignored);
    }
    head_parsed_ = true;
    state_ = State::body;
    if (!head_.keep_alive) close_after_ = true;
  }
  std::size_t end = head_.size;
  if (head_.framing == detail::Framing::length) {
    end = head_.size + static_cast<std::size_t>(head_.content_length);
    if (in_.size() < end) {
      if (head_.expect_continue && !continue_sent_) {
        continue_sent_ = true;
        queue("HTTP/1.1 100 Continue\r\n\r\n");
      }
      deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
      return;
    }
    body_ = std::string_view(in_).substr(head_.size, static_cast<std::size_t>(head_.content_length));
    body_capacity_ = in_.capacity() - head_.size;
  } else if (head_.framing == detail::Framing::chunked) {
    if (head_.expect_continue && !continue_sent_) {
      continue_sent_ = true;
      queue("HTTP/1.1 100 Continue\r\n\r\n");
    }
    const std::string_view fresh = std::string_view(in_).substr(head_.size + chunked_seen_);
    const std::size_t used = body_scanner_.feed(fresh, &chunked_body_);
    if (used == std::string::npos) {
      return local(error_response(Error{Errc::invalid_argument, "malformed chunked request body", ""}), true);
    }
    chunked_seen_ += used;
    if (chunked_body_.size() > loop_.cfg.max_body_bytes) {
      return local(error_response(Error{Errc::body_too_large, "request body is larger than the configured limit", ""}),
                   true);
    }
    if (!body_scanner_.done()) {
      deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
      return;
    }
    end = head_.size + chunked_seen_;
    chunked_body_.reserve(chunked_body_.size() + kBodyPadding);
    body_ = chunked_body_;
    body_capacity_ = chunked_body_.capacity();
  } else {
    body_ = {};
    body_capacity_ = 0;
  }
  // Bytes past this request belong to the next one.
  if (in_.size() > end) {
    next_.insert(0, in_, end, std::string::npos);
    in_.resize(end);
  }
  dispatch();
}

void Conn::dispatch() {
  state_ = State::upstream;
  request_id_.clear();
  std::string_view authorization;
  for (const auto& h : head_.headers) {
    if (detail::iequals(h.name, "x-request-id")) {
      if (valid_request_id(h.value)) request_id_.assign(h.value);
    } else if (detail::iequals(h.name, "authorization")) {
      authorization = h.value;
    }
  }
  if (request_id_.empty()) request_id_ = new_request_id();
  const bool is_authorized = authorized(loop_.cfg.api_keys, authorization);
  std::string_view path = head_.target;
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  if (head_.method == "GET" || head_.method == "HEAD") {
    LocalResponse resp;
    if (!answer_get(path, is_authorized, loop_.srv.router_, *loop_.srv.metrics_, loop_.srv.created_, resp,
                    loop_.srv.draining())) {
      resp = error_response(Error{Errc::not_found, "Not Found: GET " + std::string(path), ""});
    }
    if (head_.method == "HEAD") resp.body.clear();
    return local(resp);
  }
  if (head_.method != "POST") {
    return local(error_response(
        Error{Errc::not_found, "Not Found: " + std::string(head_.method) + " " + std::string(path), ""}));
  }
  const auto fail = [this](const Error& e) {
    loop_.srv.metrics_->on_response(e.code == Errc::unknown_model ? std::string_view{} : model_,
                                    http_status(e.code),
                                    std::chrono::duration<double>(loop_.now - started_).count());
    local(error_response(e));
  };
  if (!is_authorized) return fail(Error{Errc::unauthorized, "Missing or invalid API key", ""});
  if (body_.empty()) return fail(Error{Errc::invalid_json, "request body is empty; expected a JSON object", ""});
  rcfg_ = loop_.srv.router_.snapshot()->config;
  // One pass over the headers: the body's type, and the session header
  // (policy_options.session_header), which beats the body's `user` as session key.
  std::string_view content_type;
  const detail::HeaderView* session = nullptr;
  for (const auto& h : head_.headers) {
    if (detail::iequals(h.name, "content-type")) content_type = h.value;
    if (session == nullptr && detail::iequals(h.name, rcfg().policy_options.session_header)) session = &h;
  }
  auto view = is_form_content_type(content_type) ? parse_form_request(body_, content_type)
                                                 : parse_request(body_, body_capacity_);
  if (!view) return fail(view.error());
  view_ = std::move(view.value());
  if (session != nullptr) view_.session_key.assign(session->value);
  model_ = view_.model;
  attempts_ = 0;
  tried_.clear();
  total_deadline_ = rcfg().timeouts.total_ms != 0
                        ? started_ + std::chrono::milliseconds(rcfg().timeouts.total_ms)
                        : Clock::time_point::max();
  start_upstream();
}

void Conn::local(const LocalResponse& r, bool close_after) {
  if (close_after) close_after_ = true;
  std::string head;
  head.reserve(160 + r.body.size());
  head += "HTTP/1.1 ";
  head += std::to_string(r.status);
  head += ' ';
  head += reason_phrase(r.status);
  head += "\r\nContent-Type: ";
  head += r.content_type;
  head += "\r\nContent-Length: ";
  head += std::to_string(r.body.size());
  if (!request_id_.empty()) {
    head += "\r\nX-Request-Id: ";
    head += request_id_;
  }
  if (r.status == 503 || r.status == 429) head += "\r\nRetry-After: 1";
  if (close_after_) head += "\r\nConnection: close";
  head += "\r\n\r\n";
  head += r.body;
  state_ = State::flush;
  deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
  queue(head);
  if (!closed() && out_off_ == out_.size()) request_done();
}

void Conn::queue(std::string_view data) {
  if (corked_) {  // collecting the head and the first body bytes for one write
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
    out_.append(data);
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
    // Nothing waiting: write straight from the caller's buffer.
    while (!data.empty()) {
      const ssize_t n = ::send(cfd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (route_) cancel_exchange();
      close();
      return;
    }
  }
  out_.append(data);
}

void Conn::queue_chunk(std::string_view data) {
  char size_line[24];
  const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  queue(std::string_view(size_line, static_cast<std::size_t>(len)));
  if (!closed()) queue(data);
  if (!closed()) queue("\r\n");
}

void Conn::flush() {
  while (out_off_ < out_.size()) {
    const ssize_t n = ::send(cfd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (route_) cancel_exchange();
    return close();
  }
  out_.clear();
  out_off_ = 0;
  if (state_ == State::flush) {
    request_done();
  } else if (u_paused_ && state_ == State::relay) {
    u_paused_ = false;
    read_upstream();  // edge-triggered: drain what arrived while paused
  }
}

void Conn::request_done() {
  release_retry();
  rcfg_.reset();
  total_deadline_ = Clock::time_point::max();
  if (close_after_) return close();
  // Reset for the next request on this keep-alive connection.
  in_.swap(next_);
  next_.clear();
  head_.headers.clear();  // keeps its capacity for the next request
  head_.size = 0;
  head_parsed_ = false;
  chunked_body_.clear();
  body_scanner_ = detail::ChunkedScanner{};
  chunked_seen_ = 0;
  body_ = {};
  continue_sent_ = false;
  request_id_.clear();
  model_.clear();
  rewritten_.clear();
  view_ = RequestView{};
  state_ = State::head;
  deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
  if (!in_.empty()) process();
}

void Conn::on_timeout() {
  switch (state_) {
    case State::head:
    case State::body:
      if (in_.empty() && !head_parsed_) return close();  // idle keep-alive connection
      request_id_ = new_request_id();
      return local(error_response(Error{Errc::request_timeout, "timed out reading the request", ""}), true);
    case State::queued: {
      auto& w = loop_.waiting;
      w.erase(std::remove(w.begin(), w.end(), this), w.end());
      state_ = State::upstream;
      const Error e{Errc::overloaded,
                    "every replica of model `" + model_ + "` stayed at its request limit; retry later", "model"};
      loop_.srv.metrics_->on_response(model_, http_status(e.code),
                                      std::chrono::duration<double>(loop_.now - started_).count());
      return local(error_response(e));
    }
    case State::upstream:
      if (loop_.now >= total_deadline_) {
        return upstream_failed(Error{Errc::timeout, "the request exceeded its total time limit", ""});
      }
      if (u_connecting_) {
        return upstream_failed(Error{Errc::connect_failed, "connect to upstream timed out", ""});
      }
      return upstream_failed(Error{Errc::timeout, "upstream sent no answer within the first-byte timeout", ""});
    case State::relay:
      if (loop_.now >= total_deadline_) {
        return upstream_failed(Error{Errc::timeout, "the request exceeded its total time limit", ""});
      }
      return upstream_failed(Error{Errc::timeout, "upstream stalled longer than the idle timeout", ""});
    case State::flush:
      return close();  // the client stopped reading
    case State::closed:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream side

void Conn::start_upstream() {
  std::vector<std::string_view> exclude(tried_.begin(), tried_.end());
  auto route = loop_.srv.router_.route(view_, exclude);
  if (!route && route.code() == Errc::overloaded) {
    if (requeue_ || loop_.waiting.size() < loop_.cfg.queue_max) {
      state_ = State::queued;
      if (!requeue_) arm(loop_.cfg.queue_timeout_ms);  // a retry keeps its original deadline
      requeue_ = false;
      loop_.waiting.push_back(this);
      return;
    }
    const Error e{Errc::rate_limited, "too many requests are waiting for model `" + model_ + "`; retry later",
                  "model"};
    loop_.srv.metrics_->on_response(model_, http_status(e.code),
                                    std::chrono::duration<double>(loop_.now - started_).count());
    return local(error_response(e));
  }
  if (!route) {
    Error e = route.error();
    if (attempts_ > 0 && e.code == Errc::no_endpoint) {
      // Every replica was tried: answer with what went wrong on the last one.
      e = last_error_;
      if (e.code == Errc::connect_failed) {
        e.message = "no replica of model `" + model_ + "` could be reached: " + e.message;
      }
    }
    loop_.srv.metrics_->on_response(e.code == Errc::unknown_model ? std::string_view{} : model_,
                                    http_status(e.code),
                                    std::chrono::duration<double>(loop_.now - started_).count());
    if (http_status(e.code) >= 500) {
      log(LogLevel::warn, "request {} failed: {}", request_id_, e.message);
    }
    return local(error_response(e));
  }
  ++attempts_;
  route_.emplace(std::move(route.value()));
  model_ = route_->lease.model();
  const Endpoint& ep = route_->lease.endpoint();
  std::string_view body = body_;
  if (route_->resolution.rewrite && view_.has_model) {
    if (rewritten_.empty()) rewritten_ = rewrite_model(body_, view_, route_->resolution.upstream);
    body = rewritten_;
  }
  u_head_.clear();
  u_head_.reserve(512);
  u_head_ += "POST ";
  u_head_ += ep.url.prefix;
  u_head_ += head_.target;
  u_head_ += " HTTP/1.1\r\nHost: ";
  u_head_ += ep.url.host;
  u_head_ += ':';
  u_head_ += std::to_string(ep.url.port);
  u_head_ += "\r\n";
  // Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
  std::string_view connection;
  for (const auto& h : head_.headers) {
    if (detail::iequals(h.name, "connection")) connection = h.value;
  }
  for (const auto& h : head_.headers) {
    if (!forward_request_header(h.name) || (!connection.empty() && listed_in(connection, h.name))) continue;
    append_header(u_head_, h.name, h.value);
  }
  if (!ep.api_key.empty()) append_header(u_head_, "Authorization", "Bearer " + ep.api_key);
  append_header(u_head_, "X-Request-Id", request_id_);
  append_header(u_head_, "X-Forwarded-For", peer_);
  u_head_ += "Content-Length: ";
  u_head_ += std::to_string(body.size());
  u_head_ += "\r\n\r\n";
  if (body.data() != body_.data()) body_ = body;  // send the rewritten body
  ufd_ = loop_.take_idle(ep.id);
  u_reused_ = ufd_ >= 0;
  u_address_ = 0;
  connect_upstream();
}

void Conn::watch_upstream() {
  // Edge-triggered IN and OUT for the socket's whole life: OUT matters only while u_writing_.
  loop_.slot_of(ufd_).owner = this;
  if (!u_registered_) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = loop_.upstream_tag(ufd_);
    ::epoll_ctl(loop_.ep, EPOLL_CTL_ADD, ufd_, &ev);
    u_registered_ = true;
  }
  u_writing_ = true;
}

void Conn::connect_upstream() {
  uin_.clear();
  u_head_done_ = false;
  u_written_ = 0;
  u_registered_ = u_reused_ && ufd_ >= 0;  // pooled sockets stay registered (without owner)
  u_scanner_ = detail::ChunkedScanner{};
  u_paused_ = false;
  u_peer_closed_ = false;
  u_extra_ = false;
  state_ = State::upstream;
  if (ufd_ < 0) {
    std::string why;
    ufd_ = detail::start_connect(route_->lease.endpoint().url, u_address_, u_more_addresses_, why);
    if (ufd_ < 0) {
      return upstream_failed(Error{Errc::connect_failed,
                                   "cannot connect to " + route_->lease.endpoint().id + ": " + why, ""});
    }
    u_connecting_ = true;
    arm(rcfg().timeouts.connect_ms);
    watch_upstream();
    return;  // EPOLLOUT tells when the connect finished
  }
  u_connecting_ = false;
  watch_upstream();
  write_upstream();
}

void Conn::on_upstream(std::uint32_t ev) {
  if (u_connecting_) {
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(ufd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 && u_more_addresses_) {  // the name has another address: try it first
      drop_upstream();
      ++u_address_;
      return connect_upstream();
    }
    if (err != 0) {
      return upstream_failed(Error{Errc::connect_failed,
                                   "cannot connect to " + route_->lease.endpoint().id + ": " + std::strerror(err),
                                   ""});
    }
    u_connecting_ = false;
    write_upstream();
    return;
  }
  if ((ev & EPOLLOUT) != 0 && u_writing_) write_upstream();
  if (closed() || ufd_ < 0) return;
  if ((ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) u_peer_closed_ = true;
  if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 && !u_paused_) read_upstream();
}

void Conn::write_upstream() {
  const std::size_t total = u_head_.size() + body_.size();
  while (u_written_ < total) {
    iovec iov[2];
    int count = 0;
    if (u_written_ < u_head_.size()) {
      iov[count++] = {u_head_.data() + u_written_, u_head_.size() - u_written_};
      if (!body_.empty()) iov[count++] = {const_cast<char*>(body_.data()), body_.size()};
    } else {
      const std::size_t off = u_written_ - u_head_.size();
      iov[count++] = {const_cast<char*>(body_.data()) + off, body_.size() - off};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    const ssize_t n = ::sendmsg(ufd_, &msg, MSG_NOSIGNAL);
    if (n > 0) {
      u_written_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      arm(rcfg().timeouts.write_ms);
      return;
    }
    if (u_reused_) {  // a pooled socket the upstream had closed: try a fresh one
      drop_upstream();
      u_reused_ = false;
      return connect_upstream();
    }
    return upstream_failed(Error{u_written_ == 0 ? Errc::connect_failed : Errc::upstream_closed,
                                 std::string("writing to upstream failed: ") + std::strerror(errno), ""});
  }
  // Sent. EPOLLOUT stays registered (edge-triggered: it fires only when a full socket drains)
  // and is ignored from now on; the answer arrives as an EPOLLIN edge. No MOD, no early read.
  u_writing_ = false;
  arm(rcfg().timeouts.first_byte());
}

void Conn::read_upstream() {
  char* buf = loop_.scratch.data();
  while (ufd_ >= 0 && !closed()) {
    if (backlogged()) {
      u_paused_ = true;  // resume from flush() once the client caught up
      deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
      return;
    }
    const ssize_t n = ::recv(ufd_, buf, kReadSize, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    }
    if (n <= 0) {
      if (!u_head_done_ && u_reused_ && uin_.empty()) {
        drop_upstream();
        u_reused_ = false;
        return connect_upstream();
      }
      if (u_head_done_ && uresp_.framing == detail::Framing::close) return finish_upstream();
      return upstream_failed(Error{Errc::upstream_closed, "upstream closed the connection", ""});
    }
    if (u_head_done_) arm(rcfg().timeouts.idle());
    std::string_view data(buf, static_cast<std::size_t>(n));
    if (!u_head_done_) {
      uin_.append(data);
      for (;;) {
        std::string error;
        const auto r = detail::parse_response_head(uin_, uresp_, error);
        if (r == detail::Parse::incomplete) break;
        if (r == detail::Parse::error) {
          return upstream_failed(Error{Errc::upstream_protocol, error, ""});
        }
        if (uresp_.status < 200) {  // 100 Continue and friends: wait for the real answer
          uin_.erase(0, uresp_.size);
          continue;
        }
        u_head_done_ = true;
        break;
      }
      if (!u_head_done_) {
        if (static_cast<std::size_t>(n) < kReadSize && !u_peer_closed_) return;  // socket drained
        continue;
      }
      if (uresp_.status == 503 && rcfg().retry.on_503 &&
          retry_elsewhere(Error{Errc::no_endpoint, "upstream answered 503", ""})) {
        return;
      }
      arm(rcfg().timeouts.idle());
      // The head and the body bytes that came with it leave in one write (a small answer is one
      // packet to the client, not two).
      corked_ = true;
      if (!on_upstream_head()) {
        corked_ = false;
        return;
      }
      // Relay what followed the head straight from uin_. When that ends the exchange, uin_
      // belongs to whatever runs next on this connection: leave it alone.
      const std::string_view rest = std::string_view(uin_).substr(uresp_.size);
      const bool more = rest.empty() || relay(rest);
      corked_ = false;
      if (!closed() && out_off_ < out_.size()) flush();
      if (!more || closed() || ufd_ < 0) return;
      uin_.clear();
      if (uresp_.framing == detail::Framing::none) return finish_upstream();
      if (static_cast<std::size_t>(n) < kReadSize && !u_peer_closed_) return;  // socket drained
      continue;
    }
    if (!relay(data)) return;
    if (static_cast<std::size_t>(n) < kReadSize && !u_peer_closed_) return;  // socket drained
  }
}

bool Conn::on_upstream_head() {
  ttfb_at_ = loop_.now;
  state_ = State::relay;
  std::string head;
  head.reserve(256 + uin_.size());
  head += "HTTP/1.1 ";
  head += std::to_string(uresp_.status);
  head += ' ';
  head += reason_phrase(uresp_.status);
  head += "\r\n";
  event_stream_ = false;
  for (const auto& h : uresp_.headers) {
    if (!relay_response_header(h.name)) continue;
    if (detail::iequals(h.name, "content-type") && h.value.substr(0, 17) == "text/event-stream") {
      event_stream_ = true;
    }
    append_header(head, h.name, h.value);
  }
  append_header(head, "X-Request-Id", request_id_);
  wrap_chunks_ = false;
  switch (uresp_.framing) {
    case detail::Framing::length:
      head += "Content-Length: " + std::to_string(uresp_.content_length) + "\r\n";
      u_left_ = uresp_.content_length;
      break;
    case detail::Framing::chunked:
      head += "Transfer-Encoding: chunked\r\n";  // relayed verbatim
      break;
    case detail::Framing::close:
      head += "Transfer-Encoding: chunked\r\n";  // we frame what the upstream delimits by EOF
      wrap_chunks_ = true;
      break;
    case detail::Framing::none:
      if (uresp_.status != 204 && uresp_.status != 304) head += "Content-Length: 0\r\n";
      break;
  }
  if (close_after_) head += "Connection: close\r\n";
  head += "\r\n";
  sent_head_ = true;
  queue(head);
  return !closed();
}

bool Conn::relay(std::string_view data) {
  switch (uresp_.framing) {
    case detail::Framing::length: {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(u_left_, data.size()));
      if (take < data.size()) u_extra_ = true;
      u_left_ -= take;
      bytes_ += take;
      queue(data.substr(0, take));
      if (closed()) return false;
      if (u_left_ == 0) {
        finish_upstream();
        return false;
      }
      return true;
    }
    case detail::Framing::chunked: {
      const std::size_t used = u_scanner_.feed(data, nullptr);
      if (used == std::string::npos) {
        upstream_failed(Error{Errc::upstream_protocol, "upstream sent bad chunked framing", ""});
        return false;
      }
      if (used < data.size()) u_extra_ = true;
      bytes_ += used;
      queue(data.substr(0, used));
      if (closed()) return false;
      if (u_scanner_.done()) {
        finish_upstream();
        return false;
      }
      return true;
    }
    case detail::Framing::close:
      queue_chunk(data);
      bytes_ += data.size();
      return !closed();
    case detail::Framing::none:
      u_extra_ = true;
      return true;
  }
  return true;
}

bool Conn::retry_elsewhere(const Error& error) {
  // With no replica left to try, the upstream's own answer passes through unchanged.
  const bool others = route_ && route_->pool->endpoints.size() > tried_.size() + 1;
  if (!others || attempts_ >= std::max<unsigned>(1, rcfg().max_attempts) || loop_.now >= total_deadline_ ||
      !take_retry()) {
    return false;
  }
  const std::string endpoint = route_ ? route_->lease.endpoint().id : std::string();
  log(LogLevel::debug, "request {}: {} from {}; trying another replica", request_id_, error.message, endpoint);
  last_error_ = Error{Errc::no_endpoint, "every replica of model `" + model_ + "` answered 503", "model"};
  drop_upstream();  // the 503's body is not needed
  complete_lease(OutcomeKind::success, uresp_.status);
  if (!endpoint.empty()) tried_.push_back(endpoint);
  start_upstream();
  return true;
}

bool Conn::take_retry() {
  if (!retry_held_) retry_held_ = loop_.srv.router_.try_acquire_retry(loop_.srv.connections());
  return retry_held_;
}

void Conn::release_retry() {
  if (retry_held_) loop_.srv.router_.release_retry();
  retry_held_ = false;
}

bool Conn::retry_queued() {
  state_ = State::upstream;
  requeue_ = true;
  start_upstream();
  requeue_ = false;
  return state_ != State::queued;
}

void Loop::kick_waiting() {
  freed = false;
  while (!waiting.empty()) {
    Conn* c = waiting.front();
    waiting.pop_front();
    if (!c->retry_queued()) {
      // Still no room: it went to the back; keep the order and stop here.
      waiting.pop_back();
      waiting.push_front(c);
      break;
    }
  }
}

void Conn::complete_lease(OutcomeKind kind, int status) {
  if (!route_) return;
  Outcome o;
  o.kind = kind;
  o.status = status;
  o.bytes = bytes_;
  const auto started = route_->lease.started();
  o.latency = Clock::now() - started;
  if (sent_head_) o.ttfb = ttfb_at_ - started;
  route_->lease.complete(o);
  route_.reset();
  loop_.freed = true;
}

void Conn::drop_upstream() {
  if (ufd_ < 0) return;
  loop_.close_upstream(ufd_);
  ufd_ = -1;
  u_registered_ = false;
  u_connecting_ = false;
}

void Conn::finish_upstream() {
  const std::string id = route_ ? route_->lease.endpoint().id : std::string();
  const bool reusable =
      uresp_.keep_alive && uresp_.framing != detail::Framing::close && !u_extra_ && !u_peer_closed_;
  if (reusable && ufd_ >= 0) {
    loop_.give_idle(id, ufd_);
    ufd_ = -1;
    u_registered_ = false;
  } else {
    drop_upstream();
  }
  if (wrap_chunks_) queue("0\r\n\r\n");
  const int status = uresp_.status;
  complete_lease(OutcomeKind::success, status);
  loop_.srv.metrics_->on_response(model_, status, std::chrono::duration<double>(loop_.now - started_).count());
  sent_head_ = false;
  bytes_ = 0;
  if (closed()) return;
  state_ = State::flush;
  deadline_ = loop_.now + std::chrono::milliseconds(loop_.cfg.client_timeout_ms);
  if (out_off_ == out_.size()) request_done();
}

void Conn::upstream_failed(Error error) {
  drop_upstream();
  const OutcomeKind kind = outcome_of(error.code);
  const int status = sent_head_ ? uresp_.status : 0;
  const std::string endpoint = route_ ? route_->lease.endpoint().id : std::string();
  complete_lease(kind, status);
  if (!sent_head_) {
    if (!endpoint.empty()) tried_.push_back(endpoint);
    const RetryConfig& rc = rcfg().retry;
    const bool total_expired = loop_.now >= total_deadline_;
    // Nothing reached the client: another replica may still answer. A connect failure is always
    // safe; a timeout or a broken connection spends the retry budget.
    const bool may_retry = !total_expired && attempts_ < std::max<unsigned>(1, rcfg().max_attempts) &&
                           (error.code == Errc::connect_failed ||
                            (error.code == Errc::timeout && rc.on_first_byte_timeout && take_retry()) ||
                            (error.code == Errc::upstream_closed && rc.on_reset && take_retry()));
    if (may_retry) {
      last_error_ = error;
      log(LogLevel::debug, "request {}: {}; trying another replica", request_id_, error.message);
      return start_upstream();
    }
    if (error.code == Errc::connect_failed) {
      error.message = "no replica of model `" + model_ + "` could be reached: " + error.message;
    }
    log(LogLevel::warn, "request {} failed: {}", request_id_, error.message);
    loop_.srv.metrics_->on_response(model_, http_status(error.code),
                                    std::chrono::duration<double>(loop_.now - started_).count());
    return local(error_response(error));
  }
  // The answer has started: the status is gone. Report in band the way vLLM does when the
  // client speaks SSE and we are at an event boundary; otherwise cut the connection so the
  // client cannot mistake a truncated body for a complete one.
  log(LogLevel::warn, "request {}: upstream {} failed mid-answer: {}", request_id_, endpoint, error.message);
  loop_.srv.metrics_->on_response(model_, status, std::chrono::duration<double>(loop_.now - started_).count());
  sent_head_ = false;
  close_after_ = true;
  const bool at_boundary = wrap_chunks_ || (uresp_.framing == detail::Framing::chunked &&
                                            u_scanner_.at_chunk_start());
  if (event_stream_ && at_boundary) {
    queue_chunk("data: " + to_openai_json(error) + "\n\ndata: [DONE]\n\n");
    if (!closed()) queue("0\r\n\r\n");
    if (closed()) return;
    state_ = State::flush;
    if (out_off_ == out_.size()) request_done();
    return;
  }
  close();
}

void Conn::cancel_exchange() {
  drop_upstream();
  complete_lease(OutcomeKind::cancelled, 0);
  loop_.srv.metrics_->on_response(model_, 499, std::chrono::duration<double>(loop_.now - started_).count());
}

// ---------------------------------------------------------------------------------------------
// EventServer

EventServer::EventServer(const GatewayConfig& config, Router& router, std::shared_ptr<Metrics> metrics)
    : config_(config), router_(router), metrics_(std::move(metrics)),
      created_(static_cast<std::int64_t>(std::time(nullptr))) {}

EventServer::~EventServer() {
  if (metrics_) metrics_->set_connection_source(nullptr);
  loops_.clear();
  close_fd(listen_fd_);
}

Result<int> EventServer::bind() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(config_.port);
  if (const int rc = ::getaddrinfo(config_.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Result<int>(Errc::config, "cannot resolve listen address " + config_.host + ": " + ::gai_strerror(rc), "host");
  }
  std::string why = "no address";
  for (addrinfo* ai = res; ai != nullptr && listen_fd_ < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int yes = 1;
    // SO_REUSEADDR only: SO_REUSEPORT would let a second process silently share the port.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 4096) != 0) {
      why = std::strerror(errno);
      close_fd(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) {
    return Result<int>(Errc::config, "cannot listen on " + config_.host + ":" + port + ": " + why, "port");
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  const int bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                             : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  unsigned n = config_.threads;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) loops_.push_back(std::make_unique<Loop>(*this));
  if (metrics_) {
    metrics_->set_connection_source([this] {
      std::vector<std::uint32_t> open;
      open.reserve(loops_.size());
      for (const auto& l : loops_) open.push_back(l->open.load(std::memory_order_relaxed));
      return open;
    });
  }
  return bound;
}

void EventServer::run() {
  const auto n = static_cast<unsigned>(loops_.size());
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < n; ++i) threads.emplace_back([this, i] { loops_[i]->run(); });
  loops_[0]->run();
  for (auto& t : threads) t.join();
}

void EventServer::stop(std::chrono::milliseconds grace) {
  drain_deadline_ns_.store((Clock::now() + grace).time_since_epoch().count());
  // New connections are refused from now on (Linux resets a listening socket on shutdown);
  // the descriptor itself is closed when the server is destroyed.
  if (!draining_.exchange(true) && listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  for (auto& loop : loops_) loop->wake();
}

}  // namespace vllm_router::server
