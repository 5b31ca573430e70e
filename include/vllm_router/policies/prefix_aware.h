// prefix_aware: send a prompt where its prefix was recently served (vLLM prefix-cache reuse).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/export.h"
#include "vllm_router/policy.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {

/// Prefix-cache-aware routing without a tokenizer.
///
/// The prompt text (RequestView::prompt_prefix: the raw JSON of `prompt` or of `messages`, in
/// order, up to PolicyOptions::prefix_window_chars) is cut into chunks of PolicyOptions::prefix_chunk_chars characters; chunk k's hash
/// chains all chunks before it, so equal hashes mean equal prefixes (like vLLM's block hashes).
/// Each pool keeps an index chain-hash -> endpoints that recently served it: an LRU bounded by
/// PolicyOptions::prefix_max_entries entries (oldest forgotten first; memory stays bounded).
///
/// pick: a request with a session key goes to its **home** (the key's rendezvous winner over
/// all candidates: the same endpoint in every router process, no shared state) while `session`
/// would keep it there: fewer than session_min_capacity in flight and no fresh scraped waiting
/// requests, or under session_load_factor x the average in flight. A match elsewhere is then
/// mostly a head shared with other sessions (a tool prompt); following it would herd sessions,
/// worse with N routers each seeing a share of the load. Otherwise the candidate with the
/// longest matching chain wins (among them: a keyed request's rendezvous winner, else the home
/// of the prompt's head below when it is one of them, else the least loaded, ties by that
/// home's key) unless
///   - the match covers less than kMinMatchRatio (a quarter) of the request's chunks (a shared
///     system prompt alone should not herd everyone onto one replica), or
///   - its load score exceeds the least-loaded candidate's by more than
///     PolicyOptions::prefix_load_margin (in requests).
/// Then (no usable match: a cold prefix, or a router replica that has not seen it) an unkeyed
/// request goes to the rendezvous winner of the chain hash of its first
/// PolicyOptions::prefix_affinity_chars characters while that home's load score is within
/// PolicyOptions::prefix_home_load_bound of the least loaded's (a small bound: unrelated prompts
/// still go where the load is least), else (and a keyed request whose home is full) to the least
/// loaded, ties by the key. A prompt this router served elsewhere while its home was busy goes
/// back home once the home is within prefix_load_margin (the other routers kept sending it
/// there). The chosen endpoint's chain is then recorded. So N routers behind a round-robin
/// balancer send a prefix or a session where one router would.
/// Router replicas (PolicyOptions::prefix_replica_affinity, off by default): an unkeyed
/// request without a usable match goes to the first endpoint of its head's rendezvous order
/// whose estimated fleet load (this router's in-flight count divided by its share of the
/// engines' requests, estimated from the scrapes; 1 for a lone router) is below
/// prefix_replica_load_factor x the pool's average + 1 (bounded-load consistent hashing): every
/// replica computes the same home and the same spill, and one router decides by the same rule.
/// Load scores are load_aware's (in flight + fresh scraped waiting + 4 x KV usage).
/// Thread-safe: the index (the pool's scratch) has its own mutex, held only for the lookup and
/// the record (no allocation beyond the new entries).
class VLLM_ROUTER_API PrefixAware final : public Policy {
 public:
  /// A match must cover at least this share of the request's chunks to count.
  static constexpr double kMinMatchRatio = 0.25;
  /// prefix_replica_affinity's estimate of this router's share of the engines' requests:
  /// each scraped sample decays the sums by this (8 engines scraped every 200 ms: ~1 s).
  static constexpr double kShareDecay = 0.98;
  /// The share stays 1 until the decayed sum of the engines' requests reaches this.
  static constexpr double kShareMinRequests = 4.0;
  /// The smallest share believed (at most 20 replicas' worth of scaling).
  static constexpr double kMinShare = 0.05;

  explicit PrefixAware(const PolicyOptions& options = {});
  std::string_view name() const noexcept override { return "prefix_aware"; }
  std::size_t pick(const PickContext& ctx, std::span<const Candidate> candidates) const override;
  std::unique_ptr<PolicyScratch> make_scratch(std::span<const Endpoint* const> pool) const override;
  /// The previous table's index, its slots moved to where the same endpoints (by id) are now;
  /// endpoints that left are forgotten, entries nobody serves any more are dropped, recency kept.
  std::unique_ptr<PolicyScratch> carry_scratch(std::span<const Endpoint* const> pool,
                                               const PolicyScratch& previous,
                                               std::span<const Endpoint* const> previous_pool) const override;

  /// The chained hashes of the full chunks of `text` (hash k covers chunks 0..k; a trailing
  /// partial chunk is left out, as vLLM caches full blocks only). Stable across processes.
  static std::vector<std::uint64_t> chain_hashes(std::string_view text, std::uint32_t chunk_chars);

  /// Entries held by a scratch made by this policy (tests and introspection).
  static std::size_t index_size(const PolicyScratch* scratch);

 private:
  // `session`'s bound: whether a session's home keeps a new request (fresh scraped waiting =
  // full; else below session_min_capacity in flight or session_load_factor x the average).
  bool keeps_session(const Candidate& home, std::span<const Candidate> candidates, std::int64_t now_ns) const noexcept;
  std::uint32_t chunk_chars_;
  std::uint32_t window_chars_;
  std::uint32_t max_entries_;
  double load_margin_;
  std::uint32_t stale_ms_;
  std::uint32_t affinity_chars_;
  double home_bound_;
  bool replica_affinity_;
  double replica_load_factor_;
  double session_load_factor_;
  std::uint32_t session_min_capacity_;
};

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
