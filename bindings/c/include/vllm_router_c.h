/* vllm_router_c.h: the C API of vllm_router (opaque handles, vr_ prefix, status codes). */
#ifndef VLLM_ROUTER_C_H
#define VLLM_ROUTER_C_H

/*
 * Conventions (read once, they hold for every function below):
 *
 * - Errors: every fallible function returns a vr_status. VR_OK is 0. On failure a message (and
 *   the offending field, when known) is kept per thread: vr_last_error(), vr_last_error_param().
 *   No C++ exception ever crosses this API.
 * - Ownership is stated per pointer. "Borrowed" means the library does not keep it past the
 *   call; "owned by X" means the pointer stays valid exactly as long as X.
 * - Option and callback structs start with `size_t struct_size`: set it to sizeof(the struct)
 *   (the *_INIT macros do). New fields are only ever appended, so a program built against an
 *   older header keeps working with a newer library. Passing NULL for an options pointer means
 *   "all defaults".
 * - Thread safety: a vr_router may be used from any number of threads at once (route, forward,
 *   update). A vr_lease belongs to one thread at a time.
 * - Strings are UTF-8. Functions taking (pointer, length) accept data without a NUL terminator.
 */

#include <stddef.h>
#include <stdint.h>

#if defined(VLLM_ROUTER_C_STATIC)
#define VR_API
#elif defined(_WIN32)
#if defined(VLLM_ROUTER_C_BUILDING)
#define VR_API __declspec(dllexport)
#else
#define VR_API __declspec(dllimport)
#endif
#else
#define VR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status codes and errors */

/** What went wrong. Values equal the C++ vllm_router::Errc values and never change. */
typedef enum vr_status {
  VR_OK = 0,
  VR_INVALID_ARGUMENT = 1,   /**< a caller passed something unusable (NULL handle, bad struct_size) */
  VR_INVALID_JSON = 2,       /**< request body or config is not valid JSON */
  VR_MISSING_MODEL = 3,      /**< request has no `model` and there is no default model */
  VR_UNKNOWN_MODEL = 4,      /**< `model` resolves to nothing */
  VR_BODY_TOO_LARGE = 5,
  VR_NO_ENDPOINT = 6,        /**< the model's pool has no usable endpoint */
  VR_CONNECT_FAILED = 7,     /**< every tried endpoint refused before the request was sent */
  VR_TIMEOUT = 8,            /**< upstream connect/read timeout */
  VR_UPSTREAM_PROTOCOL = 9,  /**< upstream answered something that is not HTTP/1.1 */
  VR_UPSTREAM_CLOSED = 10,   /**< upstream closed the connection mid-answer */
  VR_CANCELLED = 11,         /**< a callback asked to stop, or the client went away */
  VR_CONFIG = 12,            /**< invalid configuration; vr_last_error_param() names the field */
  VR_UNAUTHORIZED = 13,
  VR_OVERLOADED = 14,
  VR_INTERNAL = 15,          /**< a bug or out of memory; please report */
  VR_NOT_FOUND = 16,
  /* 17: retired (was VR_METHOD_NOT_ALLOWED, never returned) */
  VR_REQUEST_TIMEOUT = 18,
  VR_HEADERS_TOO_LARGE = 19,
  VR_RATE_LIMITED = 20,      /**< too many requests waiting: back off (HTTP 429) */
  VR_QUOTA_EXCEEDED = 21,    /**< the API key's rate limit (HTTP 429) */
  VR_FORBIDDEN = 22          /**< the API key may not do this (HTTP 403) */
} vr_status;

/** The message of the last failed vr_ call on this thread ("" if none). Owned by the library,
 *  valid until the next vr_ call on the same thread. Never NULL. */
VR_API const char* vr_last_error(void);

/** The field or parameter the last failure on this thread was about ("" if none), e.g.
 *  "models[0].endpoints[1]" for a config error or "model" for a request. Same lifetime rules. */
VR_API const char* vr_last_error_param(void);

/** Stable snake_case name of a status, e.g. "unknown_model". Static storage. Never NULL. */
VR_API const char* vr_status_name(vr_status status);

/** The HTTP status a gateway should answer for `status` (e.g. VR_UNKNOWN_MODEL -> 404). */
VR_API int vr_status_http(vr_status status);

/** The library version, "MAJOR.MINOR.PATCH". Static storage. Thread-safe. */
VR_API const char* vr_version(void);

/* ---------------------------------------------------------------- outcomes and observers */

/** How one attempt on one endpoint ended (values equal vllm_router::OutcomeKind). */
typedef enum vr_outcome_kind {
  VR_OUTCOME_SUCCESS = 0,          /**< upstream answered (any status) and the body was relayed */
  VR_OUTCOME_CONNECT_FAILURE = 1,  /**< refused/unreachable before the request was sent */
  VR_OUTCOME_TIMEOUT = 2,
  VR_OUTCOME_UPSTREAM_CLOSED = 3,
  VR_OUTCOME_CANCELLED = 4,
  VR_OUTCOME_ERROR = 5
} vr_outcome_kind;

/** The facts of one attempt. Initialise with VR_OUTCOME_INIT. */
typedef struct vr_outcome {
  size_t struct_size;
  vr_outcome_kind kind;
  int status;           /**< upstream HTTP status, 0 if none */
  int64_t ttfb_ns;      /**< request start to first upstream byte; 0 if unknown */
  int64_t latency_ns;   /**< request start to end; 0 in vr_lease_complete: measured from vr_route */
  uint64_t bytes;       /**< body bytes relayed */
} vr_outcome;
#define VR_OUTCOME_INIT {sizeof(vr_outcome), VR_OUTCOME_SUCCESS, 0, 0, 0, 0}

/** Observer callback: one attempt ended. Called on the thread that completed it, possibly many
 *  threads at once: it must be thread-safe and fast. All pointers are borrowed for the call. */
typedef void (*vr_outcome_fn)(void* user, const char* model, const char* endpoint_id,
                              const vr_outcome* outcome);

/* ---------------------------------------------------------------- custom policies */

/** One endpoint a policy may choose. Borrowed for the duration of the pick call. */
typedef struct vr_candidate {
  size_t struct_size;
  const char* endpoint_id;  /**< the normalised base URL, e.g. "http://10.0.0.7:8000" */
  uint32_t weight;
  int64_t in_flight;        /**< requests this router has open on it now */
  uint64_t requests;        /**< attempts completed since start */
  uint64_t failures;
  size_t slot;              /**< position in its pool, stable for one routing table */
  int32_t waiting;          /**< vLLM's scraped vllm:num_requests_waiting; -1 when unknown */
  int32_t running;          /**< vllm:num_requests_running; -1 when unknown */
  float kv_cache_usage;     /**< vllm:kv_cache_usage_perc in 0..1; negative when unknown */
} vr_candidate;

/** What a pick sees of the request. Borrowed for the duration of the pick call. */
typedef struct vr_pick_request {
  size_t struct_size;
  const char* model;        /**< as the client sent it ("" when absent) */
  int stream;               /**< nonzero for `"stream": true` */
  const char* session_key;  /**< body `user`, "" when absent */
  const char* prompt_prefix;      /**< raw JSON of `prompt`/`messages` (whole), not NUL-terminated */
  size_t prompt_prefix_len;
} vr_pick_request;

/** Returns the index into `candidates` of the chosen one (out of range: the first is used).
 *  `candidates` holds `count` >= 1 pointers. Called concurrently from routing threads: it must be
 *  thread-safe and must not call back into the same router. */
typedef size_t (*vr_pick_fn)(void* user, const vr_candidate* const* candidates, size_t count,
                             const vr_pick_request* request);

/** A policy registered by name for one router (config "policy" fields may then name it). */
typedef struct vr_policy {
  size_t struct_size;
  const char* name;  /**< borrowed during vr_router_create_from_json (copied) */
  vr_pick_fn pick;
  void* user;        /**< passed to pick; must stay valid while the router lives */
} vr_policy;
#define VR_POLICY_INIT {sizeof(vr_policy), NULL, NULL, NULL}

/* ---------------------------------------------------------------- router */

/** A router: a routing table built from a JSON config, policies, the HTTP transport. Opaque. */
typedef struct vr_router vr_router;

/** Options of vr_router_create_from_json. Initialise with VR_ROUTER_OPTIONS_INIT. */
typedef struct vr_router_options {
  size_t struct_size;
  uint64_t seed;                 /**< policy RNG seed; 0 = random */
  const vr_policy* policies;     /**< borrowed array of policy_count extra policies (copied) */
  size_t policy_count;
  vr_outcome_fn on_outcome;      /**< observer; NULL for none */
  void* observer_user;           /**< passed to on_outcome; must outlive the router */
} vr_router_options;
#define VR_ROUTER_OPTIONS_INIT {sizeof(vr_router_options), 0, NULL, 0, NULL, NULL}

/** Creates a router from a JSON config (docs/configuration.md: "models", "policy", "timeouts",
 *  ...). On success *out receives a router owned by the caller: release it with
 *  vr_router_destroy. On failure *out is NULL. Errors: VR_CONFIG (also for malformed JSON;
 *  vr_last_error_param() names the field), VR_INVALID_ARGUMENT. */
VR_API vr_status vr_router_create_from_json(const char* json, size_t json_len,
                                            const vr_router_options* options, vr_router** out);

/** Releases the caller's reference. Leases still open keep what they need alive, so destroying
 *  a router with leases outstanding is safe. NULL is ignored. */
VR_API void vr_router_destroy(vr_router* router);

/** Replaces the routing table from a JSON config (same format). On error the current table
 *  stays. Live counters survive for endpoints that stay. Thread-safe. */
VR_API vr_status vr_router_update_json(vr_router* router, const char* json, size_t json_len);

/* ---------------------------------------------------------------- routing decisions */

/** One routing decision: an endpoint picked for a request and its in-flight accounting. Every
 *  lease must end with exactly one vr_lease_complete or vr_lease_cancel, which frees it. */
typedef struct vr_lease vr_lease;

/** Options of vr_route. Initialise with VR_ROUTE_OPTIONS_INIT. */
typedef struct vr_route_options {
  size_t struct_size;
  const char* const* exclude;  /**< borrowed: endpoint ids not to pick (e.g. already tried) */
  size_t exclude_count;
} vr_route_options;
#define VR_ROUTE_OPTIONS_INIT {sizeof(vr_route_options), NULL, 0}

/** Parses the request body, resolves its model and picks an endpoint. On success *out is a
 *  lease owned by the caller (end it with vr_lease_complete or vr_lease_cancel). `body` is
 *  borrowed for the call. Errors: VR_INVALID_JSON, VR_MISSING_MODEL, VR_UNKNOWN_MODEL,
 *  VR_NO_ENDPOINT. Thread-safe. */
VR_API vr_status vr_route(vr_router* router, const char* body, size_t body_len,
                          const vr_route_options* options, vr_lease** out);

/** Base URL of the picked endpoint, e.g. "http://10.0.0.7:8000". Owned by the lease. */
VR_API const char* vr_lease_endpoint_url(const vr_lease* lease);
/** The endpoint's own API key to send as "Authorization: Bearer", "" if none. Owned by the lease. */
VR_API const char* vr_lease_api_key(const vr_lease* lease);
/** The served model name of the picked pool. Owned by the lease. */
VR_API const char* vr_lease_model(const vr_lease* lease);
/** The body to send when the client used an alias (`model` rewritten to the served name), or
 *  NULL when the original body goes as it is. Owned by the lease; *size receives its length. */
VR_API const char* vr_lease_rewritten_body(const vr_lease* lease, size_t* size);

/** Records how the attempt ended and frees the lease (NULL outcome: success, status 0). A
 *  zero latency_ns is measured from vr_route. The observer sees the outcome. */
VR_API vr_status vr_lease_complete(vr_lease* lease, const vr_outcome* outcome);

/** Records the attempt as cancelled (nothing sent, or the client left) and frees the lease.
 *  NULL is ignored. */
VR_API void vr_lease_cancel(vr_lease* lease);

/* ---------------------------------------------------------------- forwarding */

/** One HTTP header. NUL-terminated strings. */
typedef struct vr_header {
  const char* name;
  const char* value;
} vr_header;

/** A request to forward. All pointers borrowed for the duration of vr_forward. */
/** A cancel token (opaque; vr_cancel_create). */
typedef struct vr_cancel vr_cancel;

typedef struct vr_forward_request {
  size_t struct_size;
  const char* method;        /**< NULL: "POST" */
  const char* path;          /**< path and query, e.g. "/v1/chat/completions" */
  const char* body;
  size_t body_len;
  const vr_header* headers;  /**< end-to-end headers; no Host, Content-Length, Connection,
                                  Authorization (the endpoint's own key is added) */
  size_t header_count;
  /* Since 0.2 (read only when struct_size covers them): */
  int64_t timeout_ms;        /**< whole-exchange limit; 0: the router's timeouts.total_ms */
  vr_cancel* cancel;         /**< stops the forward when triggered (any thread); may be NULL */
} vr_forward_request;
#define VR_FORWARD_REQUEST_INIT {sizeof(vr_forward_request), NULL, NULL, NULL, 0, NULL, 0, 0, NULL}

/** The upstream answer's head. Borrowed for the duration of the on_head call. */
typedef struct vr_response_head {
  size_t struct_size;
  int status;
  const vr_header* headers;  /**< minus framing and hop-by-hop headers */
  size_t header_count;
  int64_t content_length;    /**< -1 when the upstream sent none (chunked / streamed) */
  const char* endpoint_id;
  const char* model;         /**< served model name of the pool */
  unsigned attempts;         /**< endpoints tried (connect failures are retried elsewhere) */
} vr_response_head;

/** Callbacks of vr_forward; each returns 0 to continue, nonzero to stop (the upstream request is
 *  cancelled and vr_forward returns VR_CANCELLED). Called on the thread calling vr_forward.
 *  Initialise with VR_FORWARD_CALLBACKS_INIT; any callback may be NULL. */
typedef struct vr_forward_callbacks {
  size_t struct_size;
  int (*on_head)(void* user, const vr_response_head* head);
  int (*on_chunk)(void* user, const char* data, size_t size);  /**< data borrowed for the call */
  /** Polled while waiting for the upstream; returns nonzero while the client is still there. */
  int (*alive)(void* user);
  void* user;
} vr_forward_callbacks;
#define VR_FORWARD_CALLBACKS_INIT {sizeof(vr_forward_callbacks), NULL, NULL, NULL, NULL}

/** Creates a cancel token for vr_forward_request.cancel. Owned by the caller: destroy it after
 *  the forward using it returned. */
VR_API vr_status vr_cancel_create(vr_cancel** out);
/** Cancels the forward using `cancel`, at once, from any thread (idempotent; NULL ignored). */
VR_API void vr_cancel_trigger(vr_cancel* cancel);
VR_API void vr_cancel_destroy(vr_cancel* cancel);

/** Routes the request, sends it (retrying connect failures on other endpoints), calls on_head once
 *  the upstream answered, then on_chunk for each piece of the body as it arrives (SSE events as
 *  they stream). Blocks until the body ended. An upstream error status (4xx/5xx) is not a failure
 *  of vr_forward: it arrives in on_head with its body. Returns VR_OK when the body was relayed in
 *  full; routing errors (VR_UNKNOWN_MODEL, ...) before any callback; VR_CONNECT_FAILED,
 *  VR_TIMEOUT, VR_UPSTREAM_CLOSED, VR_CANCELLED. Retries, their budget, every timeout and the
 *  wait for capacity are the router's (the same rules as the vllm-router gateway). Thread-safe. */
VR_API vr_status vr_forward(vr_router* router, const vr_forward_request* request,
                            const vr_forward_callbacks* callbacks);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VLLM_ROUTER_C_H */
