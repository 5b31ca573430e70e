// ReplicaSync: router replicas in front of the same engines share their loads and placements.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vllm_router/clock.h"
#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// What a ReplicaSync has done since it started.
struct ReplicaSyncStats {
  std::uint64_t datagrams_sent = 0;
  std::uint64_t datagrams_received = 0;  ///< accepted (a peer's, well-formed, signed if required)
  std::uint64_t datagrams_rejected = 0;  ///< malformed, unsigned or forged, or of an unknown version
  std::uint64_t datagrams_replayed = 0;  ///< signed, but seen before or sent more than 10 s from now
  std::uint64_t send_errors = 0;
  std::uint64_t placements_sent = 0;      ///< chain hashes sent (once per peer address counts once)
  std::uint64_t placements_received = 0;  ///< chain hashes received from peers
  std::uint64_t placements_dropped = 0;  ///< outbound placements lost because sending fell behind
  std::size_t peers = 0;                 ///< peers heard from within peer_timeout_ms
  std::size_t peer_addresses = 0;        ///< addresses datagrams go to (names resolved)
};

/// Replica sync (ReplicaSyncConfig; docs/configuration.md, "replica_sync"). N router processes
/// behind one balancer each see only their share of the requests: each judges an engine's load
/// by its own in-flight count and learns prefix placements from its own requests, so together
/// they pile more on a busy engine and spread a prefix over more engines than one router would
/// (bench/fleet/RESULTS.md, issue 14, stop 26). With a ReplicaSync attached, a router sends its
/// peers UDP datagrams, off the request path: every interval_ms its in-flight count on every
/// engine, and every prefix-index placement as it makes it (the chain hashes new for an engine;
/// the request's thread queues them and wakes the sync thread). From
/// the peers' datagrams it keeps EndpointState::peer_in_flight (load scores count the fleet's
/// requests) and feeds the placements to prefix_aware's index at the next pick. No store is
/// shared: a lost datagram costs one interval's freshness or one match.
///
/// Datagrams (little-endian): "VRS2", kind (1 loads, 2 placements), flags (1: signed; 2, on
/// placements sent as they are made: each entry is a request in flight on its endpoint, counted
/// by the receiver until the sender's next loads), count
/// (u16), the sender's random 64-bit id, its sequence number (u64, from 1) and send time (Unix
/// ms, u64), then `count` entries (loads: endpoint hash u64, in-flight i32; placements: endpoint
/// hash u64, n u16, n chain hashes u64), then with a secret the HMAC-SHA256 of everything
/// before it. At most kMaxDatagram bytes; more entries go in more datagrams. Endpoints are
/// named by a hash of Endpoint::id, the same in every replica. With a secret, a datagram is
/// accepted once (a 64-wide window over each sender's sequence numbers) and only within 10 s of
/// its send time on the receiver's clock: a recorded one replayed is dropped.
///
/// Ownership: `router` must outlive the sync. Thread-safety: start()/stop() from one thread;
/// send_once()/receive_once() from one thread at a time when the background thread is not
/// running (tests drive them directly, with a ManualClock).
class VLLM_ROUTER_API ReplicaSync {
 public:
  static constexpr std::size_t kMaxDatagram = 1400;  ///< fits an Ethernet MTU with headers

  /// Binds the UDP socket at config.listen (port 0: any free one) and attaches to `router`.
  /// Errors: Errc::config for a bad address or a failed bind.
  static Result<std::unique_ptr<ReplicaSync>> open(Router& router, ReplicaSyncConfig config,
                                                   std::shared_ptr<const Clock> clock);
  ~ReplicaSync();  ///< stops the thread; the peers' counts are taken off the engines
  ReplicaSync(const ReplicaSync&) = delete;
  ReplicaSync& operator=(const ReplicaSync&) = delete;

  /// The UDP port bound (the chosen one for port 0).
  std::uint16_t port() const noexcept;
  /// Starts the thread: sends counts every interval_ms and placements as they are queued,
  /// receives as datagrams arrive, resolves peer names every resolve_interval_ms, forgets peers
  /// silent for peer_timeout_ms.
  void start();
  /// Stops and joins the thread. Idempotent.
  void stop();

  /// One round of sending: this router's in-flight counts and its pending placements to every
  /// peer address (names resolved first when due). Returns the datagrams sent.
  std::size_t send_once();
  /// The pending placements alone, as the thread sends them when a pick queues one: the peers
  /// count each as a request in flight until this router's next counts. Returns the datagrams sent.
  std::size_t send_placements_once();
  /// Reads the datagrams waiting (up to `timeout_ms` for the first), applies them and forgets
  /// silent peers. Returns the datagrams accepted.
  std::size_t receive_once(int timeout_ms);
  ReplicaSyncStats stats() const;

  struct Impl;  ///< opaque (pimpl)

 private:
  explicit ReplicaSync(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
