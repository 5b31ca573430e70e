// Internal: the epoll loop: dispatch by tag, items and their timers, the upstream socket table,
// the per-loop keep-alive pool, the wait for capacity, hand-over of accepted connections.
#include "loop.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "../router_impl.h"
#include "client_conn.h"

namespace vllm_router::detail {

LoopShared::LoopShared(Router& r, ServerOptions o, std::shared_ptr<const Clock> c)
    : router(r), options(std::move(o)), clock(std::move(c)) {
  if (!options.api_keys.empty()) plain_keys = KeyTable::from_plain(options.api_keys);
  limiter = options.limiter != nullptr ? options.limiter : make_local_rate_limiter();
  set_keys(options.keys);
}

void LoopShared::set_keys(std::shared_ptr<const KeyTable> keys) {
  std::shared_ptr<const KeyTable> table = std::move(keys);
  if (plain_keys != nullptr) {
    if (table == nullptr) {
      table = plain_keys;
    } else {
      std::vector<ApiKey> all = table->keys();
      all.insert(all.end(), plain_keys->keys().begin(), plain_keys->keys().end());
      table = std::make_shared<const KeyTable>(std::move(all));
    }
  }
  std::atomic_store(&key_table_, table);
  keys_version.fetch_add(1, std::memory_order_release);
  keys_on.store(table != nullptr, std::memory_order_release);
}

namespace {

// epoll tags: the low two bits say what the rest is.
constexpr std::uint64_t kItemTag = 0;      // (generation << 34) | (slot << 2)
constexpr std::uint64_t kUpstreamTag = 1;  // (generation << 34) | (fd << 2)
constexpr std::uint64_t kWakeTag = 2;
constexpr std::uint64_t kListenTag = 3;
constexpr std::uint32_t kGenerationMask = 0x3fffffffu;
constexpr int kAcceptBatch = 4;
constexpr std::size_t kReadSize = 64 * 1024;
constexpr std::chrono::milliseconds kMaxWait{1000};

}  // namespace

void LoopShared::tls_handshake_failed(std::string_view peer, std::string_view why, TimePoint now) {
  const std::uint64_t total = tls_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!options.log) return;
  std::string line = "TLS handshake with ";
  line.append(peer.empty() ? "a client" : peer).append(" failed: ").append(why);
  log(3, line);
  // Scanners and misconfigured clients can fail by the thousand: one warning per period.
  constexpr std::int64_t kEveryNs = 10'000'000'000;
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  std::int64_t last = tls_warned_ns_.load(std::memory_order_relaxed);
  if (last != std::numeric_limits<std::int64_t>::min() && now_ns - last < kEveryNs) return;
  if (!tls_warned_ns_.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) return;
  const std::uint64_t since = total - tls_warned_count_.exchange(total, std::memory_order_relaxed);
  log(1, std::to_string(since) + " TLS handshake(s) failed since the last report (" + std::to_string(total) +
             " in all; each at debug level), the latest: " + line.substr(4));
}

void LoopItem::retime() {
  const TimePoint d = deadline();
  if (d < timer_at) {
    timer_at = d;
    loop_.schedule(*this, d);
  }
}

void LoopItem::close_item() {
  if (closed_) return;
  closed_ = true;
  loop_.remove(*this);
}

void Mailbox::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
}

void Mailbox::post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!open) return;
  tasks.push_back(std::move(task));
  wake();
}

Loop::Loop(LoopShared& s)
    : shared(s),
      router(s.router),
      options(s.options),
      scratch(kReadSize),
      mailbox_(std::make_shared<Mailbox>()),
      now_(s.clock->now()) {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  mailbox_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event wev{};
  wev.events = EPOLLIN;
  wev.data.u64 = kWakeTag;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, mailbox_->wake_fd, &wev);
  if (shared.listen_fd >= 0) {
    epoll_event lev{};
    lev.events = EPOLLIN | EPOLLEXCLUSIVE;
    lev.data.u64 = kListenTag;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, shared.listen_fd, &lev);
  }
  // A lease ended anywhere while requests of this loop wait for capacity: wake up and retry.
  capacity_listener_ = router.add_capacity_listener([this] {
    if (!has_waiting_.load(std::memory_order_acquire) || capacity_freed_.exchange(true)) return;
    wake();
  });
}

Loop::~Loop() {
  router.remove_capacity_listener(capacity_listener_);
  items_.clear();
  graveyard_.clear();
  for (int fd : idle_.take_all()) close_upstream(fd);
  {
    std::lock_guard<std::mutex> lock(mailbox_->mutex);
    mailbox_->open = false;  // a late post (a resolver answer) is dropped from now on
    for (int fd : mailbox_->fds) ::close(fd);
    mailbox_->tasks.clear();
    ::close(mailbox_->wake_fd);
  }
  ::close(ep_);
}

void Loop::wake() {
  std::lock_guard<std::mutex> lock(mailbox_->mutex);
  if (mailbox_->open) mailbox_->wake();
}

void Loop::pool_upstream(const std::string& id, int fd) {
  own_upstream(fd, nullptr, /*register_now=*/true);
  give_idle(id, fd);
}

void Loop::hand_over(int fd) {
  std::lock_guard<std::mutex> lock(mailbox_->mutex);
  mailbox_->fds.push_back(fd);
  mailbox_->wake();
}

// ---------------------------------------------------------------------------------------------
// Items and timers

void Loop::place(std::unique_ptr<LoopItem> item) {
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(items_.size());
    items_.emplace_back();
    generations_.push_back(0);
  }
  item->slot = slot;
  item->generation = generations_[slot];
  items_[slot] = std::move(item);
  ++live_items_;
}

void Loop::remove(LoopItem& item) {
  const std::uint32_t slot = item.slot;
  if (slot >= items_.size() || items_[slot].get() != &item) return;
  generations_[slot] = (generations_[slot] + 1) & kGenerationMask;
  graveyard_.push_back(std::move(items_[slot]));
  free_slots_.push_back(slot);
  --live_items_;
}

LoopItem* Loop::item_at(std::uint32_t slot, std::uint32_t generation) const {
  if (slot >= items_.size() || generations_[slot] != generation) return nullptr;
  LoopItem* item = items_[slot].get();
  return item != nullptr && !item->closed() ? item : nullptr;
}

std::uint64_t Loop::item_tag(const LoopItem& item) const noexcept {
  return (static_cast<std::uint64_t>(item.generation) << 34) | (static_cast<std::uint64_t>(item.slot) << 2) | kItemTag;
}

void Loop::schedule(LoopItem& item, TimePoint when) {
  if (when == TimePoint::max()) return;
  timers_.push(Timer{when, item.slot, item.generation});
}

void Loop::run_timers() {
  // Lazy: an item keeps one entry at its earliest deadline; a deadline that moved later is
  // found when that entry comes due, and the item is put back for the new one.
  while (!timers_.empty() && timers_.top().when <= now_) {
    const Timer t = timers_.top();
    timers_.pop();
    LoopItem* item = item_at(t.slot, t.generation);
    if (item == nullptr || item->timer_at != t.when) continue;
    item->timer_at = TimePoint::max();
    if (item->deadline() <= now_) item->on_timer();
    if (!item->closed()) item->retime();
  }
}

int Loop::timeout_ms() const {
  if (timers_.empty()) return static_cast<int>(kMaxWait.count());
  const auto left = timers_.top().when - now_;
  if (left <= std::chrono::nanoseconds::zero()) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left + std::chrono::microseconds(999));
  return static_cast<int>(std::min(ms, kMaxWait).count());
}

// ---------------------------------------------------------------------------------------------
// Upstream sockets and the keep-alive pool

void Loop::grow_upstream(std::size_t index) {
  upstream_.resize(std::max<std::size_t>(index + 1, 2 * upstream_.size()));
}

std::uint64_t Loop::upstream_tag(int fd) {
  return (static_cast<std::uint64_t>(slot_of(fd).generation) << 34) |
         (static_cast<std::uint64_t>(static_cast<std::uint32_t>(fd)) << 2) | kUpstreamTag;
}

void Loop::own_upstream(int fd, ExchangeDriver* owner, bool register_now) {
  slot_of(fd).owner = owner;
  if (register_now) {
    // Edge-triggered IN and OUT for the socket's whole life: handing it to the next exchange
    // changes `owner` only, never epoll (no epoll_ctl per request).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = upstream_tag(fd);
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void Loop::close_upstream(int fd) {
  if (fd < 0) return;
  UpstreamSlot& s = slot_of(fd);
  s.owner = nullptr;
  s.generation = (s.generation + 1) & kGenerationMask;
  s.tls.reset();
  ::close(fd);  // closing the last reference also takes it out of epoll
}

int Loop::take_idle(const std::string& id) { return idle_.take(id); }

void Loop::give_idle(const std::string& id, int fd) {
  // Stays registered, without owner: an upstream closing it is noticed and it leaves the pool.
  slot_of(fd).owner = nullptr;
  const int evicted = idle_.give(id, fd, router.snapshot()->config->max_idle_connections);
  if (evicted >= 0) close_upstream(evicted);
}

void Loop::on_idle(int fd, std::uint32_t events) {
  // EPOLLOUT alone is an ACK freeing send space: nothing to do. Anything else on an idle socket
  // (EOF, an error, bytes nobody asked for) makes it useless.
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
  if (idle_.remove(fd)) close_upstream(fd);
}

// ---------------------------------------------------------------------------------------------
// The wait for capacity

void Loop::add_waiting(ExchangeDriver& driver) {
  waiting_.emplace_back(driver.slot, driver.generation);
  has_waiting_.store(true, std::memory_order_release);
}

void Loop::remove_waiting(ExchangeDriver& driver) {
  std::erase(waiting_, std::make_pair(driver.slot, driver.generation));
}

void Loop::kick_waiting() {
  while (!waiting_.empty()) {
    const auto [slot, generation] = waiting_.front();
    waiting_.pop_front();
    auto* driver = static_cast<ExchangeDriver*>(item_at(slot, generation));
    if (driver == nullptr) continue;
    if (!driver->retry_wait()) {  // still no room: keep the order and stop here
      waiting_.emplace_front(slot, generation);
      break;
    }
  }
  if (waiting_.empty()) has_waiting_.store(false, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Accepting and balancing client connections

void Loop::accept_all() {
  // A few per wake-up, like nginx without multi_accept: the listening socket is level-triggered
  // and shared, so the rest wake the other loops, and a burst does not hold up this loop.
  for (int i = 0; i < kAcceptBatch; ++i) {
    const int fd = ::accept4(shared.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EMFILE || errno == ENFILE) shared.log(1, "accept: out of file descriptors");
      return;
    }
    const auto limit = static_cast<std::int64_t>(options.max_connections);
    if (limit > 0 && shared.connections.load(std::memory_order_relaxed) >= limit) {
      ClientConn::refuse(fd, shared.tls);  // cleanly, rather than queue without bound
      continue;
    }
    shared.connections.fetch_add(1, std::memory_order_relaxed);
    // Envoy's exact balance: the kernel wakes whichever loop it likes for the shared socket
    // (an idle router gave all of 60 sequential connections to one loop), so the connection
    // goes to the loop with the fewest when that one has at least two fewer. Not while
    // draining: a loop that already finished would never adopt it.
    Loop* target = this;
    std::uint32_t fewest = open.load(std::memory_order_relaxed);
    for (const auto& l : shared.loops) {
      if (shared.draining.load(std::memory_order_relaxed)) break;
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
      target->hand_over(fd);
    }
  }
}

void Loop::adopt(int fd) {
  ClientConn& c = add<ClientConn>(fd);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = item_tag(c);
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  c.start();
}

void Loop::take_inbox() {
  std::vector<int> fds;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mailbox_->mutex);
    fds.swap(mailbox_->fds);
    tasks.swap(mailbox_->tasks);
  }
  for (int fd : fds) adopt(fd);
  for (auto& task : tasks) task();
}

// ---------------------------------------------------------------------------------------------
// The loop

void Loop::poll(int max_wait_ms) {
  const int n = ::epoll_wait(ep_, events_.data(), static_cast<int>(events_.size()), std::min(timeout_ms(), max_wait_ms));
  now_ = shared.clock->now();
  for (int i = 0; i < n; ++i) {
    const std::uint64_t tag = events_[static_cast<std::size_t>(i)].data.u64;
    const std::uint32_t ev = events_[static_cast<std::size_t>(i)].events;
    switch (tag & 3) {
      case kItemTag: {
        LoopItem* item = item_at(static_cast<std::uint32_t>((tag >> 2) & 0xffffffffu), static_cast<std::uint32_t>(tag >> 34));
        if (item != nullptr) item->on_event(ev);
        break;
      }
      case kUpstreamTag: {
        const int fd = static_cast<int>((tag >> 2) & 0xffffffffu);
        const UpstreamSlot& s = slot_of(fd);
        if (s.generation != (tag >> 34)) break;  // collected for a socket closed earlier in this batch
        if (s.owner == nullptr) {
          on_idle(fd, ev);
        } else if (!s.owner->closed()) {
          s.owner->on_upstream_event(ev);
        }
        break;
      }
      case kWakeTag: {
        std::uint64_t v = 0;
        [[maybe_unused]] const auto r = ::read(mailbox_->wake_fd, &v, sizeof v);
        take_inbox();
        break;
      }
      case kListenTag:
        accept_all();
        break;
    }
  }
  run_timers();
  if (capacity_freed_.exchange(false) && !waiting_.empty()) kick_waiting();
  graveyard_.clear();
}

void Loop::run() {
  bool drain_started = false;
  for (;;) {
    if (shared.draining.load(std::memory_order_relaxed)) {
      if (!drain_started) {
        drain_started = true;
        if (shared.listen_fd >= 0) ::epoll_ctl(ep_, EPOLL_CTL_DEL, shared.listen_fd, nullptr);
      }
      for (std::size_t i = 0; i < items_.size(); ++i) {
        if (items_[i] && !items_[i]->closed()) items_[i]->drain();
      }
      graveyard_.clear();
      const TimePoint deadline{std::chrono::steady_clock::duration(shared.drain_deadline_ns.load())};
      if (live_items_ == 0 || now_ >= deadline) break;
    }
    poll(static_cast<int>(kMaxWait.count()));
  }
  take_inbox();  // work posted before the end still hears about it (a forwarder's handlers)
  for (std::size_t i = 0; i < items_.size(); ++i) {
    if (items_[i] && !items_[i]->closed()) items_[i]->abort();
  }
  graveyard_.clear();
}

}  // namespace vllm_router::detail
