// Prefix-cache-aware routing: longest chained-chunk match in a bounded LRU index, else by load.
#include "vllm_router/policies/prefix_aware.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <list>
#include <mutex>
#include <unordered_map>

#include "policies/hash_detail.h"
#include "policies/load_detail.h"
#include "policies/pick_detail.h"
#include "replica_channel.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

using ::vllm_router::detail::ReplicaChannel;

std::uint64_t slot_bit(std::size_t slot) { return std::uint64_t{1} << (slot % 64); }

// Which endpoints (by pool slot, as bits) recently served one chain hash. Pools above 64
// endpoints share bits (slot mod 64): matches there are approximate, never wrong enough to break
// routing (a false match is only a preference, still bounded by the load margin).
struct Entry {
  std::uint64_t hash;
  std::uint64_t slots;
};

struct PrefixIndex final : PolicyScratch {
  PrefixIndex(std::size_t max, std::span<const Endpoint* const> pool) : max_entries(max) {
    map.reserve(std::min<std::size_t>(max, 1u << 16) + 1);
    weights.assign(pool);
    id_hashes.reserve(pool.size());
    seen_ns.assign(pool.size(), 0);
    for (const Endpoint* ep : pool) {
      id_hashes.push_back(detail::stable_hash(ep->id));
      uniform_weights = uniform_weights && ep->weight == pool.front()->weight;
    }
  }
  bool uniform_weights = true;  // every endpoint of the pool has the same weight
  detail::SlotWeights weights;  // the pool's, by slot (read-only)
  std::vector<std::uint64_t> id_hashes;  // stable_hash(Endpoint::id) by slot (read-only)
  std::uint64_t id_hash(const Candidate& c) const noexcept {
    return c.slot < id_hashes.size() ? id_hashes[c.slot] : detail::stable_hash(c.endpoint->id);
  }
  std::mutex mutex;
  std::size_t max_entries;
  std::list<Entry> lru;  // front: most recently used
  std::unordered_map<std::uint64_t, std::list<Entry>::iterator> map;

  // prefix_replica_affinity: the share of the engines' requests that are this router's (router
  // replicas behind a round-robin balancer each send a statistically representative share),
  // from the scrapes: decayed sums of this router's in-flight count at each scrape and the
  // engine's running + waiting then, each sample counted once (seen_ns by slot). Under mutex.
  std::vector<std::int64_t> seen_ns;
  double own_sum = 0.0;
  double engine_sum = 0.0;

  void observe(const Candidate& c) {
    if (c.slot >= seen_ns.size()) return;
    const std::int64_t ns = c.state->sampled_ns.load(std::memory_order_acquire);
    if (ns == 0 || ns == seen_ns[c.slot]) return;
    seen_ns[c.slot] = ns;
    const std::int64_t own = c.state->sampled_in_flight.load(std::memory_order_relaxed);
    const std::int32_t running = c.state->running.load(std::memory_order_relaxed);
    const std::int32_t waiting = c.state->waiting.load(std::memory_order_relaxed);
    if (own < 0 || running < 0) return;
    own_sum = own_sum * PrefixAware::kShareDecay + static_cast<double>(own);
    engine_sum = engine_sum * PrefixAware::kShareDecay + static_cast<double>(running + std::max(0, waiting));
  }
  // 1 for a lone router (its count at a scrape is at least the engine's, requests in transit
  // included), about 1/N for one of N replicas; 1 until the scrapes have seen a few requests.
  double share() const noexcept {
    if (engine_sum < PrefixAware::kShareMinRequests) return 1.0;
    return std::clamp(own_sum / engine_sum, PrefixAware::kMinShare, 1.0);
  }

  // Marks the endpoint at `slot` as a server of every hash of `chain` (deepest first, so the
  // shallow entries, shared by more requests, are the most recent) and evicts past the cap.
  // With replica sync (`channel`), the hashes new for it are published for the peers, in the
  // same order.
  void record(std::span<const std::uint64_t> chain, std::size_t slot, ReplicaChannel* channel) {
    if (max_entries == 0) return;
    const std::uint64_t bit = slot_bit(slot);
    std::uint64_t fresh_inline[64];
    std::vector<std::uint64_t> fresh_heap;
    std::uint64_t* fresh = fresh_inline;
    if (channel != nullptr && chain.size() > 64) {
      fresh_heap.resize(chain.size());
      fresh = fresh_heap.data();
    }
    std::size_t n_fresh = 0;
    for (auto h = chain.rbegin(); h != chain.rend(); ++h) {
      if (!mark(*h, bit)) continue;
      if (channel != nullptr) fresh[n_fresh++] = *h;
    }
    evict();
    if (n_fresh != 0 && slot < id_hashes.size()) channel->publish(id_hashes[slot], {fresh, n_fresh});
  }
  // Marks `bit` as a server of `hash` (the most recent entry); true when it was not one.
  bool mark(std::uint64_t hash, std::uint64_t bit) {
    auto it = map.find(hash);
    if (it != map.end()) {
      const bool fresh = (it->second->slots & bit) == 0;
      it->second->slots |= bit;
      lru.splice(lru.begin(), lru, it->second);
      return fresh;
    }
    lru.push_front(Entry{hash, bit});
    map.emplace(hash, lru.begin());
    return true;
  }
  void evict() {
    while (map.size() > max_entries) {
      map.erase(lru.back().hash);
      lru.pop_back();
    }
  }

  // Replica sync: the peers' placements since the last pick, applied in their order (those of
  // endpoints outside this pool are skipped). Under mutex.
  std::uint64_t inbound_cursor = 0;
  std::vector<ReplicaChannel::Inbound> inbound;
  void learn(const ReplicaChannel& channel) {
    if (channel.inbound_end() == inbound_cursor || max_entries == 0) return;
    inbound.clear();
    inbound_cursor = channel.read(inbound_cursor, inbound);
    std::uint64_t last_endpoint = 0;
    std::uint64_t bit = 0;
    for (const ReplicaChannel::Inbound& p : inbound) {
      if (p.endpoint != last_endpoint || bit == 0) {
        last_endpoint = p.endpoint;
        bit = 0;
        for (std::size_t s = 0; s < id_hashes.size(); ++s) {
          if (id_hashes[s] == p.endpoint) {
            bit = slot_bit(s);
            break;
          }
        }
      }
      if (bit != 0) mark(p.hash, bit);
    }
    evict();
  }
};


// Rendezvous (highest random weight) rank of an endpoint for `key`: the highest rank wins; the
// same in every process. Weighted like Resch's logarithmic method: weight / -ln(u), u uniform
// in (0, 1) from the hash, so an endpoint of weight 2 is the home of twice as many keys. In a
// pool of equal weights the order is u's own (no logarithm per candidate).
double rendezvous_rank(std::uint64_t key, std::uint64_t id_hash, std::uint32_t weight, bool uniform) noexcept {
  const std::uint64_t h = detail::mix64(key ^ id_hash);
  const double u = (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
  if (uniform) return u;
  return static_cast<double>(std::max<std::uint32_t>(weight, 1)) / -std::log(u);
}

}  // namespace

PrefixAware::PrefixAware(const PolicyOptions& options)
    : chunk_chars_(std::max<std::uint32_t>(1, options.prefix_chunk_chars)),
      window_chars_(std::max<std::uint32_t>(1, options.prefix_window_chars)),
      max_entries_(options.prefix_max_entries),
      load_margin_(options.prefix_load_margin),
      stale_ms_(options.scrape_stale_ms),
      affinity_chars_(options.prefix_affinity_chars),
      home_bound_(options.prefix_home_load_bound),
      replica_affinity_(options.prefix_replica_affinity),
      replica_load_factor_(std::max(1.0, options.prefix_replica_load_factor)),
      session_load_factor_(options.session_load_factor),
      session_min_capacity_(options.session_min_capacity) {}

namespace {

// The chain hashes of the full chunks of `text` into `out` (room for text.size() / chunk_chars).
void chain_hashes_into(std::string_view text, std::uint32_t chunk_chars, std::uint64_t* out) {
  const std::size_t n = text.size() / chunk_chars;
  std::uint64_t h = detail::kFnvOffset;
  for (std::size_t k = 0; k < n; ++k) {
    h = detail::chain_chunk(text.substr(k * chunk_chars, chunk_chars), h);
    out[k] = detail::mix64(h);  // the chain continues from the unmixed state
  }
}

// A request's chain: on the stack up to kInline hashes (the default 256-character chunks of a
// 4 KiB prompt prefix need 16), beyond in one buffer per thread, kept.
class Chain {
 public:
  static constexpr std::size_t kInline = 64;
  Chain(std::string_view text, std::uint32_t chunk_chars) : size_(text.size() / chunk_chars) {
    if (size_ > kInline) {
      thread_local std::vector<std::uint64_t> buffer;
      if (buffer.size() < size_) buffer.resize(size_);
      data_ = buffer.data();
    }
    chain_hashes_into(text, chunk_chars, data_);
  }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
  std::span<const std::uint64_t> span() const noexcept { return {data_, size_}; }

 private:
  std::uint64_t inline_[kInline];
  std::uint64_t* data_ = inline_;
  std::size_t size_;
};

}  // namespace

std::vector<std::uint64_t> PrefixAware::chain_hashes(std::string_view text,
                                                     std::uint32_t chunk_chars) {
  if (chunk_chars == 0) return {};
  std::vector<std::uint64_t> out(text.size() / chunk_chars);
  chain_hashes_into(text, chunk_chars, out.data());
  return out;
}

std::unique_ptr<PolicyScratch> PrefixAware::carry_scratch(std::span<const Endpoint* const> pool,
                                                          const PolicyScratch& previous,
                                                          std::span<const Endpoint* const> previous_pool) const {
  auto next = std::make_unique<PrefixIndex>(max_entries_, pool);
  auto* old = dynamic_cast<const PrefixIndex*>(&previous);
  if (old == nullptr || max_entries_ == 0) return next;
  // Old bit -> new bits: every old slot with that bit whose endpoint is still in the pool.
  std::unordered_map<std::string_view, std::size_t> slot_of;
  for (std::size_t j = 0; j < pool.size(); ++j) slot_of.emplace(pool[j]->id, j);
  std::uint64_t moved[64] = {};
  for (std::size_t i = 0; i < previous_pool.size(); ++i) {
    const auto it = slot_of.find(previous_pool[i]->id);
    if (it != slot_of.end()) moved[i % 64] |= slot_bit(it->second);
  }
  std::lock_guard<std::mutex> lock(const_cast<PrefixIndex*>(old)->mutex);  // picks may still run
  next->own_sum = old->own_sum;  // the share estimate is the router's, not the pool's
  next->engine_sum = old->engine_sum;
  // Most recent first, appended: the order is kept, and a smaller cap keeps the most recent.
  for (auto e = old->lru.begin(); e != old->lru.end() && next->map.size() < max_entries_; ++e) {
    std::uint64_t bits = 0;
    for (std::uint64_t m = e->slots; m != 0; m &= m - 1) bits |= moved[__builtin_ctzll(m)];
    if (bits == 0) continue;
    next->lru.push_back(Entry{e->hash, bits});
    next->map.emplace(e->hash, std::prev(next->lru.end()));
  }
  return next;
}

std::size_t PrefixAware::index_size(const PolicyScratch* scratch) {
  auto* index = dynamic_cast<const PrefixIndex*>(scratch);
  if (index == nullptr) return 0;
  std::lock_guard<std::mutex> lock(const_cast<PrefixIndex*>(index)->mutex);
  return index->map.size();
}

namespace {

// prefix_replica_affinity's home of a cold head (bounded-load consistent hashing, Mirrokni,
// Thorup and Zadimoghaddam 2017): the first endpoint in `key`'s rendezvous order whose load is
// below `factor` x the pool's average + 1 request. The load is this router's in-flight count
// scaled to the fleet (divided by its share of the engines' requests, from the scrapes): fresh,
// on the same scale in every replica and for a lone router (share 1), so N replicas behind a
// balancer make one router's decisions in expectation, and a busy home's prefixes spill along
// their own orders (the same second home in every replica, not everyone's least loaded).
std::size_t bounded_home(std::span<const Candidate> candidates, const PrefixIndex& index, std::uint64_t key,
                         double factor, double scale) {
  double total = 0.0;
  double weights = 0.0;
  for (const Candidate& c : candidates) {
    total += static_cast<double>(std::max<std::int64_t>(0, c.state->fleet_in_flight()));
    weights += static_cast<double>(std::max<std::uint32_t>(1, index.weights.of(c)));
  }
  const double bound = factor * total * scale / weights + 1.0;  // per unit of weight
  std::size_t chosen = 0;
  double best_rank = -1.0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    const double w = static_cast<double>(std::max<std::uint32_t>(1, index.weights.of(c)));
    const double load =
        static_cast<double>(std::max<std::int64_t>(0, c.state->fleet_in_flight())) * scale / w;
    if (load >= bound) continue;  // the least loaded is always below: average <= bound - 1
    const double r = rendezvous_rank(key, index.id_hash(c), index.weights.of(c), index.uniform_weights);
    if (r > best_rank) {
      best_rank = r;
      chosen = i;
    }
  }
  return chosen;
}

}  // namespace

std::unique_ptr<PolicyScratch> PrefixAware::make_scratch(std::span<const Endpoint* const> pool) const {
  return std::make_unique<PrefixIndex>(max_entries_, pool);
}

std::size_t PrefixAware::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  const std::size_t n = candidates.size();
  auto* index = dynamic_cast<PrefixIndex*>(ctx.scratch);
  if (index == nullptr) return n <= 1 ? 0 : detail::least_loaded(ctx, candidates, stale_ms_);
  const std::string_view prompt = ctx.request.prompt_prefix.substr(0, window_chars_);
  const Chain hashes(prompt, chunk_chars_);  // chunk_chars_ >= 1
  const std::span<const std::uint64_t> chain = hashes.span();

  // The request's affinity key: its session key, else the chain hash of its head (none when
  // the prompt is shorter than prefix_affinity_chars).
  const bool keyed = !ctx.request.session_key.empty();
  bool has_key = keyed;
  std::uint64_t key = 0;
  if (keyed) {
    key = detail::stable_hash(ctx.request.session_key);
  } else if (affinity_chars_ > 0 && prompt.size() >= affinity_chars_) {
    key = detail::mix64(detail::chain_chunk(prompt.substr(0, affinity_chars_), detail::kFnvOffset));
    has_key = true;
  }

  std::unique_lock<std::mutex> lock(index->mutex, std::defer_lock);
  if (!chain.empty()) lock.lock();  // shorter than a chunk: nothing to match or record
  ReplicaChannel* const channel = ctx.replica;
  if (channel != nullptr && lock.owns_lock()) index->learn(*channel);
  std::size_t chosen = 0;
  std::size_t depth_of[64] = {};
  if (n > 1) {
    // Longest contiguous match per candidate: cumulative AND of the slot sets down the chain.
    std::size_t depth = 0;
    std::uint64_t cum = ~std::uint64_t{0};
    for (; depth < chain.size(); ++depth) {
      auto it = index->map.find(chain[depth]);
      const std::uint64_t slots = it == index->map.end() ? 0 : it->second->slots;
      const std::uint64_t next = cum & slots;
      if (next == 0) break;
      for (std::uint64_t m = next; m != 0; m &= m - 1) depth_of[__builtin_ctzll(m)] = depth + 1;
      cum = next;
    }

    // One pass: the least loaded (ties kept), and among the longest matches the least loaded
    // (ties kept) and the key's rendezvous winner.
    const std::int64_t now = detail::pick_now_ns(ctx);
    detail::TieBuffer<0> least_ties(n);
    detail::TieBuffer<1> matched_ties(depth > 0 ? n : 0);
    std::uint32_t* least = least_ties.data();
    std::uint32_t* matched = matched_ties.data();
    std::size_t n_least = 0;
    std::size_t n_matched = 0;
    double least_load = 0.0;
    double least_below = std::numeric_limits<double>::infinity();  // a load under this is a new least
    double least_tie = 0.0;    // a load up to this ties it
    std::size_t best_len = 0;
    double best_load = 0.0;
    double key_rank = -1.0;  // ranks are > 0
    std::size_t key_pick = 0;
    double key_load = 0.0;
    // A home from the prompt's head.
    const bool head_home = has_key && !keyed;
    // prefix_replica_affinity: what one of this router's requests counts for in the cold
    // bound (1 / its share of the engines' requests; 1 for a lone router). Only there: counting
    // the fleet's load in the match margins too made each of 3 replicas spill warm prefixes
    // three times as often (hit rate 79 % -> 70-72 %, TTFT p99 no better; stop 24).
    double scale = 1.0;
    if (replica_affinity_ && head_home) {
      if (!lock.owns_lock()) lock.lock();  // the share estimate is the index's (a head shorter than a chunk)
      for (const Candidate& c : candidates) index->observe(c);
      // With replica sync the load scores already hold the peers' requests.
      scale = channel != nullptr && channel->peers() ? 1.0 : 1.0 / index->share();
    }
    for (std::size_t i = 0; i < n; ++i) {
      const Candidate& c = candidates[i];
      const double load = detail::load_score(*c.state, index->weights.of(c), now, stale_ms_);
      if (load < least_below) {  // loads are finite
        least_load = load;
        least_below = load - detail::kScoreEpsilon;
        least_tie = load + detail::kScoreEpsilon;
        n_least = 0;
      }
      least[n_least] = static_cast<std::uint32_t>(i);
      n_least += load <= least_tie ? 1 : 0;
      if (depth == 0) continue;
      const std::size_t len = depth_of[c.slot % 64];
      if (len == 0 || len < best_len) continue;
      if (len > best_len) {
        best_len = len;
        best_load = std::numeric_limits<double>::infinity();
        n_matched = 0;
        key_rank = -1.0;
      }
      if (load < best_load - detail::kScoreEpsilon) {
        best_load = load;
        n_matched = 0;
      }
      matched[n_matched] = static_cast<std::uint32_t>(i);
      n_matched += load <= best_load + detail::kScoreEpsilon ? 1 : 0;
      if (keyed) {
        const double r = rendezvous_rank(key, index->id_hash(c), index->weights.of(c), index->uniform_weights);
        if (r > key_rank) {
          key_rank = r;
          key_pick = i;
          key_load = load;
        }
      }
    }

    // The key's rendezvous winner among `count` candidates at `at` (all when at == nullptr):
    // the same endpoint in every router process, and only its own keys move when the set
    // changes. Without a key: one of them at random.
    const auto by_key = [&](const std::uint32_t* at, std::size_t count, auto& ties) -> std::size_t {
      if (!has_key) return ties.draw(count, ctx.rng);
      std::size_t best = 0;
      double best_rank = -1.0;
      for (std::size_t j = 0; j < count; ++j) {
        const std::size_t i = at != nullptr ? at[j] : j;
        const Candidate& c = candidates[i];
        const double r = rendezvous_rank(key, index->id_hash(c), index->weights.of(c), index->uniform_weights);
        if (r > best_rank) {
          best_rank = r;
          best = i;
        }
      }
      return best;
    };
    const bool usable_match =
        n_matched > 0 && static_cast<double>(best_len) >= kMinMatchRatio * static_cast<double>(chain.size());
    // The home: the key's rendezvous winner over all candidates (every router agrees).
    const std::size_t home = has_key ? by_key(nullptr, n, least_ties) : 0;
    const Candidate& h = candidates[home];
    const double home_load = has_key ? detail::load_score(*h.state, index->weights.of(h), now, stale_ms_) : 0.0;
    const std::size_t home_depth = depth_of[h.slot % 64];
    if (keyed && keeps_session(h, candidates, now)) {
      // A session stays on its home like `session` keeps it, whatever else matches: a match
      // elsewhere is mostly a head shared with other sessions (a tool prompt), and following it
      // herds sessions while each router sees only its own share of the load.
      chosen = home;
    } else if (usable_match && keyed && key_load - least_load <= load_margin_) {
      chosen = key_pick;  // the home is full: where the session's history is (spilled earlier)
    } else if (replica_affinity_ && head_home && !usable_match) {
      chosen = bounded_home(candidates, *index, key, replica_load_factor_, scale);
    } else if (head_home && usable_match && home_depth == best_len && home_load - least_load <= load_margin_) {
      chosen = home;  // the home holds the longest match: it first, as every router does
    } else if (head_home && home_depth == 0 &&
               home_load - least_load <= (usable_match ? load_margin_ : home_bound_) + detail::kScoreEpsilon) {
      // This router never sent this head to its home. A cold prefix: the home while within the
      // small bound of the least loaded (an unrelated prompt should still go where the load is
      // least). A prefix this router served elsewhere while the home was busy, which the other
      // routers keep sending home: back home within the load margin, as a match would be. So
      // the routers converge on one engine per prefix.
      chosen = home;
    } else if (usable_match && best_load - least_load <= load_margin_) {
      chosen = by_key(matched, n_matched, matched_ties);
    } else if (!has_key) {
      chosen = least_ties.draw(n_least, ctx.rng);
    } else {
      // The home, while within the bound of the least loaded, else the least loaded.
      const bool keep = head_home && home_load - least_load <= home_bound_ + detail::kScoreEpsilon;
      chosen = keep ? home : by_key(least, n_least, least_ties);
    }
    if (ctx.notes != nullptr) {
      ctx.notes->prefix_match = static_cast<std::int64_t>(depth_of[candidates[chosen].slot % 64] * chunk_chars_);
    }
  }
  if (!chain.empty()) index->record(chain, candidates[chosen].slot, channel);
  return chosen;
}

bool PrefixAware::keeps_session(const Candidate& home, std::span<const Candidate> candidates,
                                std::int64_t now_ns) const noexcept {
  if (session_load_factor_ <= 1.0) return true;  // session's bound off: pure hashing
  const std::int64_t in_flight = home.state->fleet_in_flight();
  LoadSample s;
  s.sampled_ns = home.state->sampled_ns.load(std::memory_order_relaxed);
  s.waiting = home.state->waiting.load(std::memory_order_relaxed);
  const bool queued = s.sampled_ns != 0 && s.waiting > 0 && detail::sample_fresh(s, now_ns, stale_ms_);
  if (!queued && in_flight < static_cast<std::int64_t>(session_min_capacity_)) return true;
  std::int64_t total = 0;
  for (const Candidate& c : candidates) total += std::max<std::int64_t>(0, c.state->fleet_in_flight());
  const auto fair = static_cast<std::int64_t>(
      std::ceil(session_load_factor_ * static_cast<double>(total + 1) / static_cast<double>(candidates.size())));
  const std::int64_t cap = queued ? fair : std::max<std::int64_t>(session_min_capacity_, fair);
  return in_flight < cap;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
