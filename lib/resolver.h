// Internal: asynchronous DNS resolution (c-ares on its own thread) with a TTL-honouring cache.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vllm_router/clock.h"
#include "vllm_router/result.h"

namespace vllm_router::detail {

/// How the resolver asks and how long it remembers. Plain value type.
struct ResolverOptions {
  /// DNS servers as "IP:PORT" or "IP" ("[IPv6]:PORT" for IPv6). Empty: /etc/resolv.conf's.
  /// The search domains and ndots of /etc/resolv.conf apply either way.
  std::vector<std::string> servers;
  /// Per try. c-ares doubles it on each round over the servers, so with one server and the
  /// defaults a silent server costs 2 s + 4 s before the lookup fails.
  std::uint32_t timeout_ms = 2000;
  std::uint32_t tries = 2;
  std::uint32_t min_ttl_ms = 1000;  ///< lower clamp of an answer's TTL (/etc/hosts answers have 0)
  std::uint32_t max_ttl_ms = 300000;
  std::uint32_t negative_ttl_ms = 1000;  ///< how long a failure is remembered (and answered)
  /// After a refresh fails for want of an answer (timeout, SERVFAIL, refused: RFC 8767's
  /// "authorities cannot be reached"), the expired addresses are served, marked `stale`, up to
  /// this long past their expiry. A definite "no such name" (NXDOMAIN, NODATA) is not.
  std::uint32_t stale_ms = 30000;
  /// Called on the resolver thread after each DNS query's outcome is in the cache (prefetches
  /// included), with the host as looked up and Errc::ok or the error. For logs, metrics and
  /// tests; must be quick and must not throw. May be empty.
  std::function<void(const std::string& host, const Result<void>& outcome)> on_query_done;
};

/// The addresses a name resolved to, each with the port applied: IPv4 first, then IPv6, each
/// family in the order the answer gave. Never empty when handed out. Immutable once shared.
struct AddressList {
  std::vector<sockaddr_storage> addresses;
  /// Past its TTL, served because the refresh could not get an answer (see stale_ms).
  bool stale = false;
};

/// Resolves host names without blocking the caller: c-ares runs on the resolver's own thread
/// (poll over its sockets plus an eventfd for new work); answers are cached by host for their
/// TTL (the smallest of the answer's records, clamped), failures for negative_ttl_ms.
///
/// Thread-safety: lookup() and resolve_blocking() may be called from any thread, concurrently.
/// Callbacks run on the resolver thread, never inside lookup(), and must not block on the
/// resolver (calling lookup() from a callback is fine; resolve_blocking() answers an error).
/// TTLs are measured with the injected clock; c-ares's own per-try timeouts use real time.
class Resolver {
 public:
  using Answer = Result<std::shared_ptr<const AddressList>>;
  using Callback = std::function<void(Answer)>;

  /// Starts the resolver thread. If c-ares cannot be set up (e.g. a malformed server), every
  /// lookup answers that error at once (see init_error()).
  Resolver(ResolverOptions options, std::shared_ptr<const Clock> clock);
  /// Stops and joins the resolver thread. Lookups still waiting get their callback, on the
  /// resolver thread and before the destructor returns, with Errc::cancelled. Must not be
  /// called from a callback.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  /// Never blocks. Answers at once (and never calls `done`) when `host` is an IP literal (IPv4,
  /// or IPv6 with or without brackets), when the cache holds a fresh answer for it, a fresh
  /// failure, or a stale answer after a failed refresh. A fresh answer in the last 10% of its
  /// TTL also starts a background refresh (prefetch). Otherwise returns nullopt, starts a query
  /// (or joins the one in flight for the same host) and calls `done` exactly once, on the
  /// resolver thread, when it completes. Errors are Errc::connect_failed, "cannot resolve HOST:
  /// reason" (Errc::cancelled once the resolver is being destroyed).
  std::optional<Answer> lookup(const std::string& host, std::uint16_t port, Callback done);

  /// lookup(), waiting up to `timeout` (real time) for the answer. For threads that may block
  /// (the blocking forward path, probes), never for an event loop. A timeout answers
  /// Errc::connect_failed; the query keeps running and its answer is cached.
  Answer resolve_blocking(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);

  /// Why c-ares could not be set up, or nullopt when it was.
  const std::optional<Error>& init_error() const noexcept;

  /// Hosts the cache holds (answers, failures, queries in flight). Entries dead for good
  /// (past stale_ms and negative_ttl_ms) are dropped once the count doubles. For metrics, tests.
  std::size_t cached_hosts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The address list for `host` when it is an IP literal (IPv4, or IPv6 with or without
/// brackets), with `port` applied; nullopt otherwise. Pure, no I/O.
std::optional<AddressList> parse_ip_literal(const std::string& host, std::uint16_t port);

}  // namespace vllm_router::detail
