// ModelCatalog: name -> pool lookup.
#include "vllm_router/model_catalog.h"

VLLM_ROUTER_BEGIN_NAMESPACE

bool ModelCatalog::add(std::string name, NameKind kind, std::size_t pool, std::string upstream) {
  if (index_.find(name) != index_.end()) return false;
  index_.emplace(name, entries_.size());
  entries_.push_back(CatalogEntry{std::move(name), kind, pool, std::move(upstream)});
  return true;
}

bool ModelCatalog::set_default(std::string_view name) {
  const auto it = index_.find(name);
  if (it == index_.end()) return false;
  default_ = static_cast<std::ptrdiff_t>(it->second);
  return true;
}

bool ModelCatalog::resolve(std::string_view name, Resolution& out) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return false;
  const CatalogEntry& e = entries_[it->second];
  out.pool = e.pool;
  out.upstream = e.upstream;
  out.rewrite = e.upstream != name;
  return true;
}

bool ModelCatalog::resolve_default(Resolution& out) const {
  if (default_ < 0) return false;
  const CatalogEntry& e = entries_[static_cast<std::size_t>(default_)];
  out.pool = e.pool;
  out.upstream = e.upstream;
  out.rewrite = false;  // the body names no model: nothing to rewrite
  return true;
}

VLLM_ROUTER_END_NAMESPACE
