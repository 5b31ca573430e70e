// Prefix-cache-aware routing: longest chained-chunk match in a bounded LRU index, else by load.
#include "vllm_router/policies/prefix_aware.h"

#include <algorithm>
#include <iterator>
#include <list>
#include <mutex>
#include <unordered_map>

#include "policies/hash_detail.h"
#include "policies/load_detail.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace policies {
namespace {

// Which endpoints (by pool slot, as bits) recently served one chain hash. Pools above 64
// endpoints share bits (slot mod 64): matches there are approximate, never wrong enough to break
// routing (a false match is only a preference, still bounded by the load margin).
struct Entry {
  std::uint64_t hash;
  std::uint64_t slots;
};

struct PrefixIndex final : PolicyScratch {
  explicit PrefixIndex(std::size_t max) : max_entries(max) {
    map.reserve(std::min<std::size_t>(max, 1u << 16) + 1);
  }
  std::mutex mutex;
  std::size_t max_entries;
  std::list<Entry> lru;  // front: most recently used
  std::unordered_map<std::uint64_t, std::list<Entry>::iterator> map;

  // Marks `bit` as a server of every hash of `chain` (deepest first, so the shallow entries,
  // shared by more requests, are the most recent) and evicts past the cap.
  void record(const std::vector<std::uint64_t>& chain, std::uint64_t bit) {
    if (max_entries == 0) return;
    for (auto h = chain.rbegin(); h != chain.rend(); ++h) {
      auto it = map.find(*h);
      if (it != map.end()) {
        it->second->slots |= bit;
        lru.splice(lru.begin(), lru, it->second);
      } else {
        lru.push_front(Entry{*h, bit});
        map.emplace(*h, lru.begin());
      }
    }
    while (map.size() > max_entries) {
      map.erase(lru.back().hash);
      lru.pop_back();
    }
  }
};

std::uint64_t slot_bit(std::size_t slot) { return std::uint64_t{1} << (slot % 64); }

}  // namespace

PrefixAware::PrefixAware(const PolicyOptions& options)
    : chunk_chars_(std::max<std::uint32_t>(1, options.prefix_chunk_chars)),
      max_entries_(options.prefix_max_entries),
      load_margin_(options.prefix_load_margin),
      stale_ms_(options.scrape_stale_ms) {}

std::vector<std::uint64_t> PrefixAware::chain_hashes(std::string_view text,
                                                     std::uint32_t chunk_chars) {
  std::vector<std::uint64_t> out;
  if (chunk_chars == 0) return out;
  const std::size_t n = text.size() / chunk_chars;
  out.reserve(n);
  std::uint64_t h = detail::kFnvOffset;
  for (std::size_t k = 0; k < n; ++k) {
    h = detail::fnv1a64(text.substr(k * chunk_chars, chunk_chars), h);
    out.push_back(detail::mix64(h));  // the chain continues from the unmixed FNV state
  }
  return out;
}

std::unique_ptr<PolicyScratch> PrefixAware::carry_scratch(std::span<const Endpoint* const> pool,
                                                          const PolicyScratch& previous,
                                                          std::span<const Endpoint* const> previous_pool) const {
  auto next = std::make_unique<PrefixIndex>(max_entries_);
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

std::unique_ptr<PolicyScratch> PrefixAware::make_scratch(std::span<const Endpoint* const>) const {
  return std::make_unique<PrefixIndex>(max_entries_);
}

std::size_t PrefixAware::pick(const PickContext& ctx, std::span<const Candidate> candidates) const {
  const std::size_t n = candidates.size();
  auto* index = dynamic_cast<PrefixIndex*>(ctx.scratch);
  const std::vector<std::uint64_t> chain = chain_hashes(ctx.request.prompt_prefix, chunk_chars_);
  if (index == nullptr || chain.empty()) {
    return n <= 1 ? 0 : detail::least_loaded(ctx, candidates, stale_ms_);
  }

  std::lock_guard<std::mutex> lock(index->mutex);
  std::size_t chosen = 0;
  if (n > 1) {
    // Longest contiguous match per candidate: cumulative AND of the slot sets down the chain.
    std::size_t depth_of[64] = {};
    std::uint64_t cum = ~std::uint64_t{0};
    std::size_t depth = 0;
    for (; depth < chain.size(); ++depth) {
      auto it = index->map.find(chain[depth]);
      const std::uint64_t slots = it == index->map.end() ? 0 : it->second->slots;
      const std::uint64_t next = cum & slots;
      if (next == 0) break;
      for (std::uint64_t m = next; m != 0; m &= m - 1) depth_of[__builtin_ctzll(m)] = depth + 1;
      cum = next;
    }

    const std::int64_t now = detail::pick_now_ns(ctx);
    std::size_t best = n;
    std::size_t best_len = 0;
    double best_load = 0.0;
    std::uint64_t ties = 0;
    if (depth > 0) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t len = depth_of[candidates[i].slot % 64];
        if (len == 0 || len < best_len) continue;
        const double load = detail::load_score(candidates[i], now, stale_ms_);
        if (len > best_len || load < best_load - 1e-9) {
          best = i;
          best_len = len;
          best_load = load;
          ties = 1;
        } else if (load <= best_load + 1e-9) {
          ++ties;
          if (ctx.rng.below(ties) == 0) best = i;
        }
      }
    }
    double least_load = 0.0;
    const std::size_t least = detail::least_loaded(ctx, candidates, stale_ms_, &least_load);
    const bool use_match =
        best < n && static_cast<double>(best_len) >= kMinMatchRatio * static_cast<double>(chain.size()) &&
        best_load - least_load <= load_margin_;
    chosen = use_match ? best : least;
  }
  index->record(chain, slot_bit(candidates[chosen].slot));
  return chosen;
}

}  // namespace policies
VLLM_ROUTER_END_NAMESPACE
