// LoRA-aware placement inside a Router: the LoraPool of a model, the manager made on first use,
// what the LoadScraper feeds in, and the public stats (lib/lora.h has the logic).
#include <algorithm>

#include "router_impl.h"
#include "vllm_router/endpoint_source.h"
#include "vllm_router/lora.h"

VLLM_ROUTER_BEGIN_NAMESPACE

std::shared_ptr<const detail::LoraPool> Router::Impl::make_lora_pool(const ModelConfig& model, const Pool& pool) {
  if (!lora) {
    std::weak_ptr<detail::LeaseHooks> weak = hooks;
    lora = std::make_shared<detail::LoraManager>(nullptr, options.clock, [weak] {
      if (auto h = weak.lock()) h->admission.notify();
    });
    HttpTransportOptions transport;
    transport.tls = applied_config.upstream_tls;
    lora->set_loader(detail::make_http_lora_loader(make_http_transport(transport), &lora->stopping()));
  }
  auto out = std::make_shared<detail::LoraPool>();
  out->config = *model.lora;
  out->adapters = model.loras;
  std::sort(out->adapters.begin(), out->adapters.end());
  for (const auto& ep : pool.endpoints) out->slots.push_back(lora->endpoint(ep->id));
  return out;
}

VLLM_ROUTER_END_NAMESPACE

namespace vllm_router::detail {

bool pool_has_lora(const Pool& pool) { return pool.lora != nullptr; }

void observe_lora_metrics(const Router& router, const Endpoint& endpoint, std::string_view metrics_text) {
  const auto& impl = RouterAccess::impl(router);
  if (!impl.lora) return;
  const ScrapedLora scraped = parse_vllm_lora(metrics_text);
  if (scraped.max_lora < 0) return;
  auto state = impl.lora->endpoint(endpoint.id);
  state->set_max_lora(scraped.max_lora);
  const std::int64_t now = impl.lora->now_ns();
  for (const std::string& name : scraped.adapters) state->add(name, now);
}

void observe_lora_models(const Router& router, const Endpoint& endpoint, std::string_view models_json,
                         std::int64_t since_ns) {
  const auto& impl = RouterAccess::impl(router);
  if (!impl.lora) return;
  auto served = parse_served_models(models_json);
  if (!served) return;
  impl.lora->endpoint(endpoint.id)->replace(served.value().loras, since_ns, impl.lora->now_ns());
}

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE

LoraStats lora_stats(const Router& router) {
  LoraStats out;
  const auto& impl = detail::RouterAccess::impl(router);
  if (!impl.lora) return out;
  const detail::LoraCounters& c = impl.lora->counters;
  out.enabled = true;
  out.loads = c.loads.load(std::memory_order_relaxed);
  out.unloads = c.unloads.load(std::memory_order_relaxed);
  out.load_failures = c.load_failures.load(std::memory_order_relaxed);
  out.placed_loaded = c.placed_loaded.load(std::memory_order_relaxed);
  out.placed_load = c.placed_load.load(std::memory_order_relaxed);
  out.placed_any = c.placed_any.load(std::memory_order_relaxed);
  out.loading = impl.lora->loading();
  return out;
}

std::vector<std::string> lora_loaded(const Router& router, std::string_view endpoint_id) {
  const auto& impl = detail::RouterAccess::impl(router);
  if (!impl.lora) return {};
  return impl.lora->endpoint(std::string(endpoint_id))->names();
}

VLLM_ROUTER_END_NAMESPACE
