// Internal: the event loop of the library's data plane: one epoll instance per thread, items
// (client connections, callback exchanges) with timers on a heap, upstream sockets in a table
// with generations, a keep-alive pool per loop, and the drivers that run Exchanges on it.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "../idle_pool.h"
#include "../resolver.h"
#include "../tls.h"
#include "vllm_router/clock.h"
#include "vllm_router/exchange.h"
#include "vllm_router/router.h"
#include "vllm_router/server.h"

namespace vllm_router::detail {

using TimePoint = std::chrono::steady_clock::time_point;

class Loop;
class ClientConn;

/// What the loops of one Server (or one async client) share. Read-only after start except the
/// atomics.
struct LoopShared {
  LoopShared(Router& r, ServerOptions o, std::shared_ptr<const Clock> c = std::make_shared<SteadyClock>());
  Router& router;
  ServerOptions options;
  std::shared_ptr<const Clock> clock;  // the loops' time (tests inject a ManualClock)
  int listen_fd = -1;  // -1: no listener (a client's loops)
  std::int64_t created = 0;  // unix seconds, for /v1/models
  std::atomic<std::int64_t> connections{0};
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> drain_deadline_ns{0};  // steady clock since its epoch
  std::vector<std::unique_ptr<Loop>> loops;
  // Client keys: options.api_keys as a table, merged with options.keys or set_keys()'s; read
  // with key_table() (null: no authentication).
  std::shared_ptr<const KeyTable> plain_keys;
  std::shared_ptr<const KeyTable> key_table_;  // std::atomic_load/store only
  std::atomic<bool> keys_on{false};
  std::atomic<std::uint64_t> keys_version{0};  // bumped by set_keys: connections re-read the table
  std::shared_ptr<RateLimiter> limiter;
  void set_keys(std::shared_ptr<const KeyTable> keys);
  std::shared_ptr<const KeyTable> key_table() const {
    return keys_on.load(std::memory_order_acquire) ? std::atomic_load(&key_table_) : nullptr;
  }
  void log(int level, std::string_view message) const {
    if (options.log) options.log(level, message);
  }

  // TLS on the listener: `tls` is fixed at start; the context is replaced by a reload (new
  // connections take the current one; a session keeps its own alive).
  bool tls = false;
  std::shared_ptr<const TlsContext> tls_context() const { return std::atomic_load(&tls_context_); }
  void set_tls_context(std::shared_ptr<const TlsContext> context) { std::atomic_store(&tls_context_, std::move(context)); }
  /// A handshake failed: counted, logged at debug level, summed up in a warning at most every 10 s.
  void tls_handshake_failed(std::string_view peer, std::string_view why, TimePoint now);
  std::atomic<std::uint64_t> tls_failures{0};

 private:
  std::shared_ptr<const TlsContext> tls_context_;
  std::atomic<std::int64_t> tls_warned_ns_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> tls_warned_count_{0};
};

/// Something a loop owns and times: a client connection, a callback exchange. Identified in
/// epoll tags and timers by slot + generation, so an event for an item that ended is ignored.
class LoopItem {
 public:
  explicit LoopItem(Loop& loop) : loop_(loop) {}
  virtual ~LoopItem() = default;
  LoopItem(const LoopItem&) = delete;
  LoopItem& operator=(const LoopItem&) = delete;
  /// An epoll event on the item's own descriptor.
  virtual void on_event(std::uint32_t events) = 0;
  /// The item's deadline may have passed (or the loop stops: `now` is then TimePoint::max()).
  virtual void on_timer() = 0;
  /// When on_timer is due; TimePoint::max() for never.
  virtual TimePoint deadline() const = 0;
  /// The server drains: finish what runs, then close.
  virtual void drain() {}
  /// The loop stops now: end whatever runs.
  virtual void abort() = 0;
  bool closed() const noexcept { return closed_; }

  std::uint32_t slot = 0;
  std::uint32_t generation = 0;
  TimePoint timer_at = TimePoint::max();  // earliest entry of this item on the timer heap

  /// Re-checks the item's deadline against the heap (call after anything that moved it).
  void retime();

 protected:
  /// Ends the item: its slot is freed after the current batch of events.
  void close_item();
  Loop& loop_;
  bool closed_ = false;
};

/// Runs an Exchange on a loop: the ExchangeHost's upstream half (pooled or fresh non-blocking
/// sockets, the gathered write, reads into the loop's buffer, backpressure). The client half
/// (on_head, on_body, ...) is the subclass's.
class ExchangeDriver : public LoopItem, public ExchangeHost {
 public:
  explicit ExchangeDriver(Loop& loop);
  ~ExchangeDriver() override;

  Connect connect(const Endpoint& endpoint, bool fresh, Error& error) override;
  Send send(std::string_view head, std::string_view body, Error& error) override;
  void release(bool reusable) override;
  void on_wait() override;

  /// An epoll event on the upstream socket.
  void on_upstream_event(std::uint32_t events);
  /// The resolver answered the lookup numbered `lookup`.
  void on_resolved(std::uint64_t lookup, Result<std::shared_ptr<const AddressList>> answer);
  /// Waiting for capacity: try again (the loop calls it when a lease ended somewhere).
  /// Returns false while it still waits.
  bool retry_wait();

 protected:
  /// The client cannot take more for now: stop reading the upstream (its timers stop too).
  void pause_upstream();
  /// The client drained: read on.
  void resume_upstream();
  /// Called after each batch of upstream bytes went through the exchange (one socket read).
  virtual void after_upstream_read() = 0;
  /// The exchange's deadline passed (or may have): run its timer.
  void exchange_timer();

  Exchange exchange_;

 private:
  void read_upstream();
  void read_upstream_tls();
  Send write_upstream(Error& error);  // continues the gathered write from written_
  Send write_upstream_tls(Error& error);
  // https: starts the session on the connected socket, then drives the handshake.
  void start_tls(TimePoint now);
  void continue_tls(TimePoint now);
  void tls_connect_failed(std::string_view why, TimePoint now);
  // Connects to the next untried address; false (with `why`) when none is left.
  bool connect_next(std::string& why);
  Error connect_error(std::string_view why) const;

  int fd_ = -1;
  bool connecting_ = false;
  bool writing_ = false;
  bool paused_ = false;
  bool peer_closed_ = false;  // the upstream sent FIN: read to the EOF, no edge will follow
  // https: the socket's session (owned by the loop's table), the handshake before on_connected,
  // and a read or write that waits for the other direction.
  TlsSession* tls_ = nullptr;
  bool handshaking_ = false;
  bool tls_read_wants_write_ = false;
  bool tls_write_wants_read_ = false;
  std::string_view head_;
  std::string_view body_;
  std::size_t written_ = 0;
  std::shared_ptr<const AddressList> addresses_;
  std::size_t address_ = 0;   // which of them is being tried
  bool resolving_ = false;
  std::uint64_t lookup_ = 0;  // numbers lookups: an answer to an abandoned one is ignored
  const Endpoint* endpoint_ = nullptr;
};

/// Where other threads leave work for a loop (tasks, handed-over sockets). Shared with whoever
/// may post late (a resolver callback): once the loop is gone, posts are dropped.
struct Mailbox {
  std::mutex mutex;
  std::vector<int> fds;
  std::vector<std::function<void()>> tasks;
  int wake_fd = -1;
  bool open = true;
  void wake();
  void post(std::function<void()> task);
};

/// One epoll loop and everything it owns. Only its own thread touches its state, except
/// wake(), post(), hand_over() and the atomics.
class Loop {
 public:
  explicit Loop(LoopShared& shared);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// Runs until the server drains and its connections end (or the drain deadline), then ends
  /// whatever still runs.
  void run();
  /// One round: waits up to `max_wait_ms` for events (less when a timer is due sooner),
  /// handles them, then runs due timers and retries waiting exchanges. For run() and tests.
  void poll(int max_wait_ms);
  void wake();
  /// Runs `task` on the loop's thread (thread-safe).
  void post(std::function<void()> task) { mailbox_->post(std::move(task)); }
  const std::shared_ptr<Mailbox>& mailbox() const noexcept { return mailbox_; }
  /// The live item in `slot` of `generation`, or null.
  LoopItem* find(std::uint32_t slot, std::uint32_t generation) const { return item_at(slot, generation); }
  /// Gives a freshly accepted client socket to this loop (thread-safe).
  void hand_over(int fd);
  /// Makes `fd` (a connected socket) a client connection of this loop, on its thread.
  void adopt(int fd);
  /// Registers `fd` (a connected upstream socket) and keeps it idle in the pool for `id`.
  void pool_upstream(const std::string& id, int fd);

  LoopShared& shared;
  Router& router;
  const ServerOptions& options;
  TimePoint now() const noexcept { return now_; }

  // Items.
  template <class T, class... Args>
  T& add(Args&&... args) {
    auto item = std::make_unique<T>(*this, std::forward<Args>(args)...);
    T& ref = *item;
    place(std::move(item));
    return ref;
  }
  void schedule(LoopItem& item, TimePoint when);
  void remove(LoopItem& item);  // freed after the current batch
  std::uint64_t item_tag(const LoopItem& item) const noexcept;

  // Upstream sockets: registered in epoll once for life; `owner` says which driver it serves
  // (null while it idles in the pool). The generation in each event's tag makes an event
  // collected for a socket closed earlier in the same batch harmless.
  void own_upstream(int fd, ExchangeDriver* owner, bool register_now);
  void close_upstream(int fd);
  // The TLS session of an https upstream socket lives beside it in the table, so a pooled
  // connection keeps its session; closing the socket frees it.
  TlsSession* upstream_tls(int fd) { return slot_of(fd).tls.get(); }
  TlsSession* set_upstream_tls(int fd, std::unique_ptr<TlsSession> session) {
    return (slot_of(fd).tls = std::move(session)).get();
  }
  int take_idle(const std::string& id);
  void give_idle(const std::string& id, int fd);

  // Exchanges waiting for capacity (FIFO).
  void add_waiting(ExchangeDriver& driver);
  void remove_waiting(ExchangeDriver& driver);

  std::vector<char> scratch;                 // the read buffer of every socket on this loop
  std::string out_batch;                     // the write buffer of the batch being answered
  std::string tls_out;                       // pieces joined for one TLS write (held during the call only)
  ClientConn* out_batch_owner = nullptr;     // whose pieces out_batch holds (one at a time)
  std::atomic<std::uint32_t> open{0};        // client connections (incl. handed over, not adopted)

 private:
  friend class LoopItem;
  struct UpstreamSlot {
    ExchangeDriver* owner = nullptr;
    std::uint32_t generation = 0;
    std::unique_ptr<TlsSession> tls;  // https only
  };
  struct Timer {
    TimePoint when;
    std::uint32_t slot;
    std::uint32_t generation;
    bool operator>(const Timer& o) const noexcept { return when > o.when; }
  };
  void place(std::unique_ptr<LoopItem> item);
  void accept_all();
  void take_inbox();
  void run_timers();
  void kick_waiting();
  void on_idle(int fd, std::uint32_t events);
  // The slot of `fd`, the table grown when needed (out of line: slots hold sessions, and a
  // vector of them is no longer trivial to grow, which kept every caller from inlining this).
  UpstreamSlot& slot_of(int fd) {
    const auto i = static_cast<std::size_t>(fd);
    if (i >= upstream_.size()) grow_upstream(i);
    return upstream_[i];
  }
  void grow_upstream(std::size_t index);
  std::uint64_t upstream_tag(int fd);
  int timeout_ms() const;
  LoopItem* item_at(std::uint32_t slot, std::uint32_t generation) const;

  int ep_ = -1;
  std::shared_ptr<Mailbox> mailbox_;
  std::vector<epoll_event> events_ = std::vector<epoll_event>(512);
  TimePoint now_;
  std::vector<std::unique_ptr<LoopItem>> items_;
  std::vector<std::uint32_t> generations_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::unique_ptr<LoopItem>> graveyard_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::vector<UpstreamSlot> upstream_;
  IdlePool idle_;
  std::deque<std::pair<std::uint32_t, std::uint32_t>> waiting_;  // slot, generation
  std::atomic<bool> capacity_freed_{false};
  std::atomic<bool> has_waiting_{false};  // read by the capacity listener on other threads
  int capacity_listener_ = 0;
  std::uint32_t live_items_ = 0;
};

}  // namespace vllm_router::detail
