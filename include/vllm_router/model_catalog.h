// ModelCatalog: pure lookup from a requested model name (exact, alias, LoRA adapter) to a pool.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// How a requested name resolved.
struct Resolution {
  std::size_t pool = 0;         ///< index into Snapshot::pools()
  std::string_view upstream;    ///< the name to send upstream (owned by the catalog)
  bool rewrite = false;         ///< true when upstream differs from what the client sent
};

/// What kind of name an entry is, for listings.
enum class NameKind { model, alias, lora };

/// One listed name.
struct CatalogEntry {
  std::string name;
  NameKind kind = NameKind::model;
  std::size_t pool = 0;
  std::string upstream;  ///< served name sent upstream
};

/// Immutable after build; lookups are thread-safe.
class VLLM_ROUTER_API ModelCatalog {
 public:
  /// Adds a name. Returns false if the name is already taken.
  bool add(std::string name, NameKind kind, std::size_t pool, std::string upstream);
  /// Sets the model used when a request names none. Returns false if unknown.
  bool set_default(std::string_view name);

  /// Looks `name` up; nullptr-free: returns false when unknown.
  bool resolve(std::string_view name, Resolution& out) const;
  /// The default model, when set.
  bool resolve_default(Resolution& out) const;

  /// Every name in insertion order.
  const std::vector<CatalogEntry>& entries() const noexcept { return entries_; }

 private:
  std::vector<CatalogEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> entries_ position
  std::ptrdiff_t default_ = -1;
};

VLLM_ROUTER_END_NAMESPACE
