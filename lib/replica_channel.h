// Internal: what a Router's policies and its ReplicaSync hand each other (replica sync,
// include/vllm_router/replica_sync.h). Placements made here go out to the peers; placements the
// peers made come in, and every prefix index reads them at its next pick. Thread-safe.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

namespace vllm_router::detail {

class ReplicaChannel {
 public:
  /// Placements of one endpoint: the chain hashes this router (or a peer) newly recorded for it.
  struct Placement {
    std::uint64_t endpoint = 0;  ///< stable_hash(Endpoint::id)
    std::vector<std::uint64_t> hashes;
  };
  /// One inbound (endpoint, hash) pair, in the order the peer recorded them.
  struct Inbound {
    std::uint64_t endpoint;
    std::uint64_t hash;
  };
  /// Inbound pairs kept for readers that fall behind (older ones are lost: a missed placement
  /// only costs a match, never a wrong route).
  static constexpr std::size_t kInboundCapacity = 1u << 16;
  /// Outbound hashes waiting for the sync thread; past this, new ones are dropped (counted).
  static constexpr std::size_t kOutboundCapacity = 1u << 16;

  /// A policy recorded `hashes` for `endpoint` (only the ones new for it). Any thread. The
  /// first placement after the sync thread took the last ones wakes it (one eventfd write):
  /// placements go out at once, not at the next interval, so replicas that receive the same
  /// cold prefix a moment apart agree on its engine.
  void publish(std::uint64_t endpoint, std::span<const std::uint64_t> hashes) {
    if (hashes.empty()) return;
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(out_mutex_);
      if (outbound_size_ + hashes.size() > kOutboundCapacity) {
        dropped_.fetch_add(hashes.size(), std::memory_order_relaxed);
        return;
      }
      first = outbound_size_ == 0;
      outbound_size_ += hashes.size();
      outbound_.push_back(Placement{endpoint, std::vector<std::uint64_t>(hashes.begin(), hashes.end())});
    }
    if (first && wake_on_.load(std::memory_order_relaxed) && wake_fd_ >= 0) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);  // full counter: already woken
    }
  }
  ReplicaChannel() : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~ReplicaChannel() {
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }
  ReplicaChannel(const ReplicaChannel&) = delete;
  ReplicaChannel& operator=(const ReplicaChannel&) = delete;
  /// The eventfd publish() signals while a sync thread waits on it (set_wake(true)); owned by
  /// the channel, which outlives every pick. -1 when it could not be made (the sync thread then
  /// sends at its interval only).
  int wake_fd() const noexcept { return wake_fd_; }
  void set_wake(bool on) noexcept { wake_on_.store(on, std::memory_order_relaxed); }
  /// Everything published since the last call (the sync thread sends it).
  std::vector<Placement> take_outbound() {
    std::lock_guard<std::mutex> lock(out_mutex_);
    outbound_size_ = 0;
    return std::exchange(outbound_, {});
  }

  /// A peer's placements arrived (the sync thread).
  void deliver(std::uint64_t endpoint, std::span<const std::uint64_t> hashes) {
    if (hashes.empty()) return;
    std::lock_guard<std::mutex> lock(in_mutex_);
    if (inbound_.size() < kInboundCapacity) inbound_.resize(kInboundCapacity);
    std::uint64_t end = end_.load(std::memory_order_relaxed);
    for (std::uint64_t h : hashes) inbound_[end++ % kInboundCapacity] = Inbound{endpoint, h};
    end_.store(end, std::memory_order_release);
  }
  /// The inbound sequence's end: a reader whose cursor equals it has nothing new (one load).
  std::uint64_t inbound_end() const noexcept { return end_.load(std::memory_order_acquire); }
  /// Appends the pairs from `cursor` to the end to `out` (the ones still kept) and returns the
  /// new cursor.
  std::uint64_t read(std::uint64_t cursor, std::vector<Inbound>& out) const {
    std::lock_guard<std::mutex> lock(in_mutex_);
    const std::uint64_t end = end_.load(std::memory_order_relaxed);
    if (end - cursor > kInboundCapacity) cursor = end - kInboundCapacity;
    for (; cursor < end; ++cursor) out.push_back(inbound_[cursor % kInboundCapacity]);
    return end;
  }

  /// Whether some peer is alive now: load scores then hold the fleet's counts (this router's
  /// plus the peers'), so prefix_aware no longer scales its own by its share. The sync thread.
  void set_peers(bool any) noexcept { peers_.store(any, std::memory_order_relaxed); }
  bool peers() const noexcept { return peers_.load(std::memory_order_relaxed); }
  /// Outbound hashes dropped because the sync thread fell behind.
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::mutex out_mutex_;
  std::vector<Placement> outbound_;
  std::size_t outbound_size_ = 0;
  mutable std::mutex in_mutex_;
  std::vector<Inbound> inbound_;  // a ring of kInboundCapacity (sized at the first delivery)
  std::atomic<std::uint64_t> end_{0};
  std::atomic<bool> peers_{false};
  int wake_fd_;
  std::atomic<bool> wake_on_{false};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace vllm_router::detail
