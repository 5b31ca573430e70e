// Tenants: API keys with an id, a model scope and limits (requests and tokens per minute,
// concurrent requests, expiry), and the rate limiter that holds them (in process, or shared by
// router replicas through Redis).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// One client API key: who it is and what it may do. The key itself is never kept, only its
/// SHA-256.
struct VLLM_ROUTER_API ApiKey {
  std::string id;                           ///< shown in metrics and logs (never the key)
  std::array<unsigned char, 32> sha256{};   ///< SHA-256 of the key's bytes
  /// Models it may use: exact names or patterns with `*` (any run of characters), matched
  /// against the name the client sent and the model it resolved to. Empty: every model.
  std::vector<std::string> models;
  std::uint32_t rpm = 0;             ///< requests per minute; 0: unlimited
  std::uint64_t tpm = 0;             ///< tokens (prompt + completion) per minute; 0: unlimited
  std::uint32_t max_concurrent = 0;  ///< requests running at once; 0: unlimited
  std::int64_t expires_at = 0;       ///< Unix seconds after which it is refused; 0: never
  bool admin = false;                ///< may read /metrics and use the admin routes

  /// Whether `model` (a requested or resolved name) is in scope.
  bool allows_model(std::string_view model) const noexcept;
  bool expired(std::int64_t now_unix_seconds) const noexcept { return expires_at != 0 && now_unix_seconds >= expires_at; }
  bool limited() const noexcept { return rpm != 0 || tpm != 0 || max_concurrent != 0; }
};

/// The accepted keys: immutable, shared, swapped whole on reload. Lookups hash the presented
/// key (SHA-256) and compare digests in constant time.
class VLLM_ROUTER_API KeyTable {
 public:
  /// Parses a keys file: `{"keys": [{"id": "team-a", "sha256": "<64 hex>", "models": ["llama-*"],
  /// "rpm": 600, "tpm": 100000, "max_concurrent": 8, "expires": "2027-01-01T00:00:00Z",
  /// "admin": false}, ...]}`. Ids and digests must be unique. Errc::config names the field.
  static Result<std::shared_ptr<const KeyTable>> parse(std::string_view json);
  /// Plain keys (the `api_keys` option): ids "key-1", "key-2"... in order, every model, no
  /// limits, admin (they could always read /metrics).
  static std::shared_ptr<const KeyTable> from_plain(const std::vector<std::string>& keys);
  explicit KeyTable(std::vector<ApiKey> keys);

  /// The key `presented` is, or null. `presented` is the bare key (no "Bearer ").
  const ApiKey* find(std::string_view presented) const noexcept;
  /// The key named by an `Authorization` header value (`Bearer KEY`, scheme case-insensitive),
  /// or null.
  const ApiKey* find_bearer(std::string_view authorization) const noexcept;
  const std::vector<ApiKey>& keys() const noexcept { return keys_; }
  bool empty() const noexcept { return keys_.empty(); }

 private:
  std::vector<ApiKey> keys_;
  std::vector<std::uint32_t> by_digest_;  // indexes into keys_, sorted by digest
};

/// SHA-256 of `key` as 64 lowercase hex digits (what a keys file stores).
VLLM_ROUTER_API std::string sha256_hex(std::string_view key);

/// A rate limiter's answer.
struct LimitDecision {
  bool allowed = true;
  /// Why not: "rpm", "tpm" or "concurrency"; empty when allowed.
  std::string_view reason;
  std::chrono::seconds retry_after{0};  ///< when trying again may succeed (429's Retry-After)
};

/// Holds keys to their limits. Windows are one minute long and slide (the previous minute's
/// count weighs in proportion to how much of it the window still covers), on wall-clock time
/// so router replicas agree.
///
/// Thread-safety: every method may be called from any thread.
class VLLM_ROUTER_API RateLimiter {
 public:
  using Done = std::function<void(LimitDecision)>;
  virtual ~RateLimiter();

  /// Asks to start one request of `key` at `now_ms` (Unix milliseconds). Returns true with
  /// `decision` set when decided at once. Otherwise it calls `later()` once for the callback
  /// that gets the answer (on another thread, exactly once, within the limiter's timeout) and
  /// returns false. An allowed request holds one of the key's concurrent places until finish().
  virtual bool admit(const ApiKey& key, std::int64_t now_ms, LimitDecision& decision,
                     const std::function<Done()>& later) = 0;
  /// An allowed request ended: frees its concurrent place and counts its tokens. `refund`: it
  /// was refused after admission (e.g. a model outside the key's scope) and does not count as
  /// a request.
  virtual void finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund = false) = 0;
};

/// The in-process limiter (one router).
VLLM_ROUTER_API std::shared_ptr<RateLimiter> make_local_rate_limiter();

/// Where a shared limiter keeps its counters.
struct RedisLimiterOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string password;                     ///< AUTH when set
  std::string prefix = "vllm-router:";      ///< key prefix of every counter
  /// Longest wait for Redis's answer; past it (or when Redis is unreachable) the local limiter
  /// decides, and Redis is tried again after `retry_ms`.
  std::chrono::milliseconds timeout{50};
  std::chrono::milliseconds retry{1000};
  /// Logs (level 0 error .. 3 debug); default: none. Thread-safe.
  std::function<void(int level, std::string_view message)> log;
};

/// A limiter whose request and token counts live in Redis (RESP over TCP, one connection,
/// pipelined, on its own thread), so router replicas share them; concurrent places stay per
/// router. While Redis cannot answer, an in-process limiter decides (each router then holds a
/// key to its whole limit alone).
VLLM_ROUTER_API std::shared_ptr<RateLimiter> make_redis_rate_limiter(RedisLimiterOptions options);

VLLM_ROUTER_END_NAMESPACE
