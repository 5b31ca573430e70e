// EndpointSource: discovery of vLLM endpoints (static, DNS, Kubernetes, /v1/models) and Discovery,
// which merges the configured models with every source's latest set into the Router.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/config.h"
#include "vllm_router/error.h"
#include "vllm_router/export.h"
#include "vllm_router/result.h"
#include "vllm_router/transport.h"

VLLM_ROUTER_BEGIN_NAMESPACE

class Router;

/// One endpoint a source found. Plain value type.
struct DiscoveredEndpoint {
  std::string url;                  ///< base URL, e.g. "http://10.0.0.7:8000"
  /// Served model names (vLLM's --served-model-name values, the first is the primary one).
  /// Empty: the source's configured model (EndpointSource::model()); when that is empty too
  /// the endpoint is not routable yet (e.g. its /v1/models was never read).
  std::vector<std::string> models;
  std::vector<std::string> loras;   ///< LoRA adapter names the endpoint serves
  std::string api_key;              ///< the replica's own vLLM --api-key; empty for none
  std::uint32_t weight = 1;         ///< >= 1
  /// Prefill/decode disaggregation (docs/disaggregation.md): "prefill" puts the endpoint in its
  /// models' prefill pools; anything else (usually empty or "decode"): their own endpoints.
  std::string role;
};

/// A source's complete answer: every endpoint it knows now (never a delta).
using EndpointSet = std::vector<DiscoveredEndpoint>;
/// Receives each new complete set, on the source's own thread.
using EndpointSetCallback = std::function<void(const EndpointSet&)>;
/// Receives errors of a running source (list failed, watch dropped...), on its thread.
using DiscoveryErrorCallback = std::function<void(const Error&)>;

/// Produces whole endpoint sets. Implementations are thread-safe: poll_once() may run while
/// started, start()/stop() are called from one controlling thread.
class VLLM_ROUTER_API EndpointSource {
 public:
  virtual ~EndpointSource();
  /// A short description for logs, e.g. "kubernetes default/endpointslices app=vllm".
  virtual std::string describe() const = 0;
  /// The model of endpoints that name none (config "model"); may be empty.
  virtual const std::string& model() const noexcept = 0;
  /// One synchronous, deterministic round (tests, and --check-style tools): resolves / lists
  /// now and returns the complete set. An error means "no answer": callers keep the last set.
  virtual Result<EndpointSet> poll_once() = 0;
  /// Starts producing on a background thread: `on_set` gets every changed complete set (the
  /// first one as soon as it is known); errors go to `on_error` and the last set stays.
  virtual void start(EndpointSetCallback on_set, DiscoveryErrorCallback on_error = {}) = 0;
  /// Stops and joins the background thread (idempotent). No callback runs after it returns.
  virtual void stop() = 0;
};

/// Resolves a host name to its addresses (IPv4 and IPv6 literals, deduplicated, sorted).
using Resolver = std::function<Result<std::vector<std::string>>(const std::string& host)>;

/// getaddrinfo(host) for TCP. Errc::no_endpoint naming the host when it does not resolve.
/// Thread-safe.
VLLM_ROUTER_API Result<std::vector<std::string>> resolve_host(const std::string& host);

/// "static": the configured URL list (with "discover_models", the way to let /v1/models
/// decide what fixed servers serve).
VLLM_ROUTER_API std::unique_ptr<EndpointSource> make_static_source(const DiscoveryConfig& config);

/// "dns": resolves `dns_name` every interval_ms; each address becomes scheme://addr:port.
/// A failed lookup keeps the last set. `resolver` defaults to resolve_host (tests inject one).
VLLM_ROUTER_API std::unique_ptr<EndpointSource> make_dns_source(const DiscoveryConfig& config,
                                                                Resolver resolver = {});

/// "kubernetes": list + watch of EndpointSlices or Pods matching a label selector in one
/// namespace, through the API server at `api_url` (http or https) or, when empty, in-cluster
/// (KUBERNETES_SERVICE_HOST/PORT, the service-account token and CA under `token_path` /
/// `ca_path`). Only ready addresses; the port by name or number; served names from the
/// `model_annotation` (comma separated) or the `model_label`. Watches resume from the last
/// resourceVersion; 410 Gone or an ERROR event relists; a failed list or watch backs off
/// (doubling from backoff_initial_ms to backoff_max_ms); a full relist every resync_ms.
/// Errc::config when in-cluster settings are missing.
VLLM_ROUTER_API Result<std::unique_ptr<EndpointSource>> make_kubernetes_source(
    const DiscoveryConfig& config);

/// Wraps `inner`: polls GET /v1/models of each of its endpoints (with the endpoint's api_key)
/// every interval_ms, and as soon as an endpoint appears, and sets its served names and LoRA
/// adapters from the answer. An endpoint whose poll fails keeps what was last read from it
/// (else what `inner` said). `transport` defaults to the built-in HTTP one.
VLLM_ROUTER_API std::unique_ptr<EndpointSource> make_model_discovery(
    std::unique_ptr<EndpointSource> inner, const ModelDiscoveryConfig& config,
    std::shared_ptr<Transport> transport = {});

/// The source a config entry describes (by `type`), wrapped in make_model_discovery when
/// `discover_models.enabled`.
VLLM_ROUTER_API Result<std::unique_ptr<EndpointSource>> make_endpoint_source(
    const DiscoveryConfig& config);

/// What one /v1/models answer lists: entries without a parent are served names (in order),
/// entries with one are LoRA adapters.
struct ServedModels {
  std::vector<std::string> models;
  std::vector<std::string> loras;
};
/// Parses an OpenAI /v1/models document. Errc::upstream_protocol when it is not one.
VLLM_ROUTER_API Result<ServedModels> parse_served_models(std::string_view json);

/// The ready endpoints of one Kubernetes object (an EndpointSlice or a Pod, per
/// `config.resource`) as JSON, read the way the kubernetes source reads them.
VLLM_ROUTER_API Result<EndpointSet> kubernetes_object_endpoints(std::string_view object_json,
                                                                const DiscoveryConfig& config);

/// The routing configuration for `base` plus discovered endpoint sets (pure function):
/// - every served name of an endpoint routes to every endpoint that serves it (names are sent
///   upstream unchanged); an endpoint without names is skipped;
/// - a name that is a configured model gets the discovered endpoints added to its own (its
///   policy, health check and aliases apply); a configured alias or LoRA name is not taken over;
/// - a LoRA adapter is listed under its parent model when exactly the parent's endpoints serve
///   it, else it becomes a model of its own (so it only reaches endpoints that serve it);
/// - models left without endpoints are dropped (a configured model may list none when
///   discovery fills it), and a default_model that no longer resolves is cleared;
/// - an endpoint found twice for one model (same normalised URL) is kept once.
VLLM_ROUTER_API RouterConfig compose_router_config(const RouterConfig& base,
                                                   const std::vector<EndpointSet>& sets);

/// Merges the configured ("static") routing configuration with the latest set of each source
/// and applies the result with Router::update whenever it changes. Thread-safe; must not
/// outlive the Router; stop() before destroying the sources' owner (the destructor does).
class VLLM_ROUTER_API Discovery {
 public:
  Discovery(Router& router, RouterConfig static_config);
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  /// Adds a source (before start()). Its endpoints without names get source->model().
  void add_source(std::unique_ptr<EndpointSource> source);
  std::size_t source_count() const;

  /// Polls every source once (synchronously), keeps the last set of a source that fails, and
  /// applies the result. Returns the first error (a source's or the update's).
  Result<void> poll_once();
  /// Starts every source; each new set is merged and applied at once. Errors (of sources and
  /// of rejected updates) go to `on_error`.
  void start(DiscoveryErrorCallback on_error = {});
  void stop();

  /// Replaces the configured part (a config reload) and re-applies the discovered sets on top.
  Result<void> set_static(RouterConfig static_config);
  /// Replaces the latest set of source `index` (what a running source does) and applies.
  Result<void> set_endpoints(std::size_t index, EndpointSet set);
  /// The configuration the last apply built (static + discovered).
  RouterConfig composed() const;

  struct Impl;  ///< opaque (pimpl)

 private:
  std::unique_ptr<Impl> impl_;
};

VLLM_ROUTER_END_NAMESPACE
