// Configuration values of a Router (routing only: models, policies, timeouts, health, sources)
// and their JSON parser, with an extension hook for a host program's own keys.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vllm_router/export.h"
#include "vllm_router/result.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// One replica of a model as configured.
struct EndpointConfig {
  std::string url;            ///< base URL, e.g. "http://10.0.0.7:8000"
  std::uint32_t weight = 1;   ///< >= 1
  std::string api_key;        ///< the replica's own vLLM --api-key; empty for none
};

/// Active health checking (HealthChecker): GET `path` on every endpoint every `interval_ms`.
/// An endpoint turns unhealthy after `unhealthy_threshold` failed probes in a row and healthy
/// again after `healthy_threshold` good ones. A newly added endpoint is not used until it
/// passes a probe (vLLM refuses connections while it loads weights).
struct HealthCheckConfig {
  bool enabled = true;
  std::string path = "/health";
  std::uint32_t interval_ms = 5000;
  std::uint32_t timeout_ms = 2000;
  std::uint32_t healthy_threshold = 1;
  std::uint32_t unhealthy_threshold = 2;
};

/// Passive outlier detection (OutlierDetector) from request outcomes: `consecutive_failures`
/// connect failures, timeouts or 5xx in a row eject an endpoint for base_ejection_ms x 2^(n-1)
/// on its n-th ejection, capped at max_ejection_ms; at most max_ejection_percent of a pool is
/// ejected at once (at least one endpoint may always be).
struct OutlierConfig {
  bool enabled = true;
  std::uint32_t consecutive_failures = 5;
  std::uint32_t base_ejection_ms = 10000;
  std::uint32_t max_ejection_ms = 300000;
  std::uint32_t max_ejection_percent = 50;
};

/// When a failed attempt may be tried again on another endpoint (never once a byte reached the
/// client). Connect failures always may. A retry budget bounds retries to budget_percent of
/// the requests in flight (at least min_concurrent), so retries cannot multiply an overload.
struct RetryConfig {
  bool on_503 = true;                 ///< upstream answered 503 (vLLM overloaded or stopping)
  bool on_first_byte_timeout = true;  ///< no answer within timeouts.first_byte_ms
  /// The connection broke before the response head (a replica killed mid-request). vLLM
  /// requests have no side effects beyond compute, so trying another replica is safe.
  bool on_reset = true;
  /// A killed replica takes all its running requests with it: the budget must let them move
  /// (Envoy's 20% / 3 would fail most of them), yet stop a retry storm under overload.
  std::uint32_t budget_percent = 50;
  std::uint32_t min_concurrent = 10;
};

/// Options of the built-in routing policies (issue-6 policies read theirs from here).
struct PolicyOptions {
  std::string session_header = "x-session-id";  ///< session key header (else body `user`)
  double session_load_factor = 1.25;  ///< bounded-load hashing: no endpoint above c x average
  std::uint32_t session_min_capacity = 16;  ///< ...nor spilled below this many in flight
  std::uint32_t prefix_chunk_chars = 256;       ///< characters per hashed prompt chunk
  /// Prompt characters prefix_aware hashes, from the start (the whole conversation: system
  /// prompt, tools, every turn). Memory is bounded by prefix_max_entries, not by this.
  std::uint32_t prefix_window_chars = 1u << 20;
  std::uint32_t prefix_max_entries = 65536;     ///< cap of the per-pool prefix index
  double prefix_load_margin = 4.0;  ///< leave the best prefix match when its load exceeds the least loaded by this
  /// Characters of the prompt's head whose chain hash picks a request's home endpoint
  /// (rendezvous hashing) when prefix_aware has no usable match: every router replica picks the
  /// same home. 0: no home from the prompt (the session key still gives one).
  std::uint32_t prefix_affinity_chars = 256;
  /// A home chosen from the prompt's head is kept while its load score exceeds the least
  /// loaded's by at most this; 0: plain least loaded (the home only breaks ties).
  double prefix_home_load_bound = 0.5;
  /// prefix_aware's bounded-load home for a cold prompt head (docs/configuration.md), for
  /// router replicas in front of the same engines and for one router alike: off by default.
  bool prefix_replica_affinity = false;
  /// With prefix_replica_affinity: a cold head goes to the first endpoint of its rendezvous
  /// order whose estimated fleet load is below this x the pool's average + 1 (>= 1).
  double prefix_replica_load_factor = 1.25;
  std::uint32_t scrape_interval_ms = 1000;      ///< LoadScraper period (/metrics)
  std::uint32_t scrape_timeout_ms = 500;
  std::uint32_t scrape_stale_ms = 5000;         ///< older samples are ignored
};

/// Replica sync (docs/configuration.md, "replica_sync"): router processes in front of the same
/// engines tell each other, over UDP datagrams off the request path, how many requests each has
/// in flight on every engine and where each placed which prompt prefixes, so that every replica
/// routes as one router would (load scores count the fleet's requests; prefix_aware's index
/// learns the peers' placements). Off while `listen` is empty.
struct ReplicaSyncConfig {
  /// "HOST:PORT" of the UDP socket peers send to (e.g. "0.0.0.0:7071"); empty: off.
  std::string listen;
  /// "HOST:PORT" of every peer (this router's own address may be listed: it ignores itself).
  /// A name is resolved every resolve_interval_ms and every address it has is a peer (a
  /// Kubernetes headless Service names all router pods).
  std::vector<std::string> peers;
  std::uint32_t interval_ms = 10;          ///< this router's in-flight counts sent this often
  std::uint32_t peer_timeout_ms = 1000;    ///< a peer silent this long no longer counts
  std::uint32_t resolve_interval_ms = 5000;  ///< peer names resolved again this often
  /// Shared key: datagrams are signed (HMAC-SHA256) and unsigned or forged ones dropped.
  /// Empty: unsigned (only where the network is trusted).
  std::string secret;
};

/// Prefill/decode disaggregation of a model (docs/disaggregation.md): its prefill pool. The
/// model's own `endpoints` are then the decode pool.
struct PrefillConfig {
  std::vector<EndpointConfig> endpoints;
  std::string policy;  ///< empty: the model's policy
  /// With no prefill endpoint left (down, or every one failed the request), a decode endpoint
  /// runs the whole request (colocated); false: 503.
  bool colocated_fallback = true;
};

/// LoRA-aware placement of one model's adapters (issue 14; docs/configuration.md, "lora"): a
/// request for an adapter goes to the replicas that have it loaded.
struct LoraConfig {
  /// When no replica has the adapter: load it on the least loaded one through vLLM's runtime
  /// API (POST /v1/load_lora_adapter; vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), the
  /// least recently used adapter unloaded first on a replica at max_lora. Off: any replica.
  bool dynamic_loading = false;
  std::map<std::string, std::string> paths;  ///< adapter -> lora_path (names join `loras`)
  /// lora_path of an adapter without a `paths` entry: "{name}" becomes the adapter's name;
  /// empty: only adapters in `paths` can be loaded.
  std::string path_template;
  std::uint32_t load_timeout_ms = 60000;  ///< one load (or unload) call
  /// With dynamic loading: when every replica with the adapter has at least this many more
  /// requests (router in flight + vLLM's waiting) than the least loaded replica without it, the
  /// adapter is also loaded there if it has a free adapter place (the request is not held for
  /// it; nothing is unloaded for it). 0: never.
  std::uint32_t replicate_margin = 0;
};

/// One model: the name clients send, other names that resolve to it, and its replicas.
struct ModelConfig {
  std::string name;                    ///< served model name (sent upstream unchanged)
  std::vector<std::string> aliases;    ///< extra names; rewritten to `name` before forwarding
  std::vector<std::string> loras;      ///< LoRA adapter names served by the same replicas
  std::vector<EndpointConfig> endpoints;
  std::string policy;                  ///< empty: RouterConfig::policy
  std::optional<HealthCheckConfig> health_check;  ///< empty: RouterConfig::health_check
  /// Requests in flight per endpoint of this model before it counts as full; 0: unbounded.
  std::uint32_t max_in_flight_per_endpoint = 0;
  /// Prefill/decode disaggregation: a completion first runs its prompt on a prefill endpoint,
  /// then generates on one of `endpoints` (docs/disaggregation.md). Empty: colocated.
  std::optional<PrefillConfig> prefill;
  std::optional<LoraConfig> lora;  ///< absent: adapters go to any replica of the model
};

/// Upstream timeouts, in milliseconds.
struct TimeoutConfig {
  std::uint32_t connect_ms = 3000;
  /// Longest wait for any upstream byte (first byte and gaps between chunks) unless the two
  /// below say otherwise. Default 10 minutes: a loaded vLLM can take a minute to its first token.
  std::uint32_t read_ms = 600000;
  std::uint32_t first_byte_ms = 0;  ///< request sent to response head; 0: read_ms
  std::uint32_t idle_ms = 0;        ///< longest gap between body bytes; 0: read_ms
  std::uint32_t total_ms = 0;       ///< whole exchange; 0: no limit
  std::uint32_t write_ms = 30000;

  std::uint32_t first_byte() const noexcept { return first_byte_ms != 0 ? first_byte_ms : read_ms; }
  std::uint32_t idle() const noexcept { return idle_ms != 0 ? idle_ms : read_ms; }
};

/// How https:// endpoints are verified (the data path and the HealthChecker/LoadScraper probes of
/// a transport made with HttpTransportOptions::router).
struct UpstreamTlsConfig {
  /// PEM file of the CAs to trust; empty: the system's store (/etc/ssl/certs; OpenSSL's
  /// SSL_CERT_FILE and SSL_CERT_DIR apply).
  std::string ca_file;
  /// Accept any certificate for any name: encryption without authentication, for tests and
  /// development only. The name says what it costs.
  bool insecure_skip_verify = false;
  bool operator==(const UpstreamTlsConfig&) const = default;
};

/// Polling of each discovered endpoint's GET /v1/models (see make_model_discovery).
struct ModelDiscoveryConfig {
  bool enabled = false;
  std::uint32_t interval_ms = 10000;
  std::uint32_t timeout_ms = 2000;
};

/// One endpoint source (config "discovery" array; see docs/configuration.md). Fields apply to
/// the `type` named; the parser rejects keys of another type.
struct DiscoveryConfig {
  std::string type;              ///< "static", "dns" or "kubernetes"
  std::string model;             ///< model of endpoints that name none; may be empty
  std::string api_key;           ///< the replicas' vLLM --api-key (sent upstream)
  /// A file holding that key (e.g. a mounted Secret), read when the source is made; it wins
  /// over api_key. Keeps the key out of the configuration itself.
  std::string api_key_file;
  std::uint32_t weight = 1;
  std::string scheme = "http";   ///< of the endpoint URLs built from addresses
  ModelDiscoveryConfig discover_models;
  // static
  std::vector<std::string> endpoints;  ///< base URLs
  // dns and kubernetes
  std::uint16_t port = 0;        ///< dns: required; kubernetes: a port number (or port_name)
  std::string port_name;         ///< kubernetes: a named port ("http")
  // dns
  std::string dns_name;          ///< e.g. a headless Service "vllm.default.svc.cluster.local"
  std::uint32_t interval_ms = 5000;
  // kubernetes
  std::string api_url;           ///< empty: in-cluster
  std::string namespace_name;    ///< empty: the service account's namespace, else "default"
  std::string label_selector;    ///< e.g. "app.kubernetes.io/component=model"
  std::string resource = "endpointslices";  ///< or "pods"
  std::string model_label = "vllm-router.io/model";
  std::string model_annotation = "vllm-router.io/served-model-names";
  /// Prefill/decode disaggregation: the label whose value "prefill" puts an endpoint in its
  /// model's prefill pool (a pod's label, or a slice's: its Service's); empty: not read.
  std::string role_label = "vllm-router.io/role";
  /// Served names by value of `model_label`: a label value cannot hold a served name such as
  /// "org/model", and an EndpointSlice carries its Service's labels but not its annotations, so
  /// this is how slices name the models they serve ({"llama-7b": ["meta-llama/Llama-2-7b-hf"]}).
  /// A label value not listed here is the name itself.
  std::map<std::string, std::vector<std::string>> model_label_names;
  /// EndpointSlices of this address family only: "IPv4" or "IPv6". Empty: either family, one
  /// address per pod (a dual-stack Service has a slice per family; the IPv4 address is kept).
  std::string address_type;
  std::string token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_path = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::uint32_t resync_ms = 300000;     ///< full relist period
  std::uint32_t backoff_initial_ms = 500;
  std::uint32_t backoff_max_ms = 30000;
};

/// Everything a Router needs.
struct RouterConfig {
  std::vector<ModelConfig> models;
  std::string default_model;           ///< used when a body has no `model`; empty: 400 instead
  std::string policy = "round_robin";  ///< default policy name
  TimeoutConfig timeouts;
  std::uint32_t max_attempts = 3;      ///< endpoints tried per request (see RetryConfig)
  std::uint32_t max_idle_connections = 64;  ///< idle keep-alive sockets kept per endpoint
  RetryConfig retry;
  HealthCheckConfig health_check;
  OutlierConfig outlier_detection;
  /// Below this share of healthy endpoints a pool ignores health (panic mode) and uses all.
  std::uint32_t panic_threshold_percent = 50;
  /// When every candidate endpoint is full (max_in_flight_per_endpoint): at most queue_max
  /// requests of this router wait for capacity (more get 429), each at most queue_timeout_ms
  /// (then 503). 0: no wait, 429 at once.
  std::uint32_t queue_max = 1024;
  std::uint32_t queue_timeout_ms = 5000;
  PolicyOptions policy_options;
  /// Request paths (the target without its query) the router forwards; any other is 404. An
  /// entry ending in `*` matches by prefix; `"*"` alone forwards every path, vLLM's
  /// administrative routes too (/sleep, /reset_prefix_cache, /v1/load_lora_adapter...): only
  /// where every client is trusted. Default: the inference routes vLLM serves.
  std::vector<std::string> routes{"/v1/completions", "/v1/chat/completions", "/v1/embeddings",
                                  "/v1/responses", "/v1/audio/transcriptions", "/v1/audio/translations",
                                  "/v1/score", "/score", "/v1/rerank", "/rerank", "/v2/rerank",
                                  "/pooling", "/classify", "/tokenize", "/detokenize"};
  /// Request paths only an admin API key may use (tenants' keys with `admin`), forwarded like
  /// the others (e.g. "/v1/load_lora_adapter"); with no keys configured they are refused (403).
  /// Same matching as `routes`. Default: none.
  std::vector<std::string> admin_routes;
  /// DNS servers that resolve endpoint host names ("IP" or "IP:PORT"); empty: the system's
  /// (/etc/resolv.conf). Names are resolved off the event loops, cached for their TTL.
  std::vector<std::string> dns_servers;
  /// TLS to https:// endpoints: certificate and host name checked (SNI sent) against the
  /// system's CAs or `ca_file`. A failed handshake is a connect failure (another endpoint is
  /// tried; 502 when none is left). Read from the current table at each new connection; pooled
  /// connections keep the verification they were made with.
  UpstreamTlsConfig upstream_tls;
  /// Endpoint sources merged with `models` by a Discovery (static, DNS, Kubernetes,
  /// /v1/models); the Router itself does not read it.
  std::vector<DiscoveryConfig> discovery;
  /// Router replicas' sync (ReplicaSync); the Router itself does not read it.
  ReplicaSyncConfig replica_sync;
};

class ConfigField;

/// Keys of a configuration document that belong to the program around the Router (listener,
/// logging...): the parser hands each such top-level member to `read`, which must consume it
/// with one ConfigField::read call and report errors in the same shape.
struct ConfigExtension {
  std::vector<std::string_view> keys;
  std::function<Result<void>(ConfigField& field)> read;
};

/// One top-level member of a configuration document handed to a ConfigExtension. Each read
/// checks the JSON type and range and fails with Errc::config naming the key ("port: expected
/// an integer 0..65535, got \"x\""). Valid during the call only.
class VLLM_ROUTER_API ConfigField {
 public:
  std::string_view key() const noexcept;
  Result<void> read(std::string& out, bool non_empty = false);
  Result<void> read(bool& out);
  Result<void> read(std::uint16_t& out, std::uint16_t min = 0);
  Result<void> read(std::uint32_t& out, std::uint32_t min = 0);
  Result<void> read(std::uint64_t& out, std::uint64_t min = 0);
  Result<void> read(std::vector<std::string>& out);
  /// A number in [min, max].
  Result<void> read(double& out, double min, double max);
  /// A string that must be one of `choices`.
  Result<void> read_choice(std::string& out, std::span<const std::string_view> choices);
  /// An object whose members (each one of `keys`, at most once) are handed to `read` in turn,
  /// with errors naming them by path ("rate_limit.backend: ...").
  Result<void> read_object(std::span<const std::string_view> keys,
                           const std::function<Result<void>(ConfigField& member)>& read);

  struct Impl;
  explicit ConfigField(Impl& impl) noexcept : impl_(impl) {}

 private:
  Impl& impl_;
};

/// Parses a JSON configuration document (the config file's format, see docs/configuration.md)
/// on top of `base` (fields the document omits keep their values in `base`). Unknown keys are
/// errors, except those of `extension`. Errors are Errc::config with `param` naming the bad
/// field as a JSON path (e.g. "models[1].endpoints[0].url").
VLLM_ROUTER_API Result<RouterConfig> parse_router_config(std::string_view json, RouterConfig base = {},
                                                         const ConfigExtension* extension = nullptr);

/// Checks cross-field rules (names unique across models/aliases/loras, URLs parse, weights >= 1,
/// known policy names given `policy_names`, default model exists). Errc::config names the field.
VLLM_ROUTER_API Result<void> validate(const RouterConfig& config,
                                      const std::vector<std::string>& policy_names);

VLLM_ROUTER_END_NAMESPACE
