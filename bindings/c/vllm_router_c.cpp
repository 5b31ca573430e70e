// C API of vllm_router: opaque handles over Router and Lease, errors as status + thread-local text.
#include "vllm_router_c.h"

#include <vllm_router/vllm_router.h>

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace vr = vllm_router;

// The C enums mirror the C++ ones value for value: a new C++ value must be added here too.
static_assert(VR_RATE_LIMITED == static_cast<int>(vr::Errc::rate_limited));
static_assert(VR_QUOTA_EXCEEDED == static_cast<int>(vr::Errc::quota_exceeded));
static_assert(VR_FORBIDDEN == static_cast<int>(vr::Errc::forbidden));
static_assert(VR_CONFIG == static_cast<int>(vr::Errc::config));
static_assert(VR_HEADERS_TOO_LARGE == static_cast<int>(vr::Errc::headers_too_large));
static_assert(VR_OUTCOME_ERROR == static_cast<int>(vr::OutcomeKind::error));
static_assert(VR_OUTCOME_CANCELLED == static_cast<int>(vr::OutcomeKind::cancelled));

struct vr_router {
  // Shared with every open lease: a lease's Observer* points into the Router, so the Router must
  // outlive it even when the caller destroys its handle first.
  std::shared_ptr<vr::Router> router;
};

struct vr_cancel {
  vr::CancelToken token;
};

struct vr_lease {
  std::shared_ptr<vr::Router> router;
  vr::Route route;
  std::string rewritten;  // non-empty only when the alias rewrite applied
  bool rewrite = false;
};

namespace {

thread_local std::string t_error;
thread_local std::string t_param;

vr_status fail(vr_status status, std::string message, std::string param = {}) noexcept {
  try {
    t_error = std::move(message);
    t_param = std::move(param);
  } catch (...) {  // out of memory while reporting: keep whatever fits
  }
  return status;
}

vr_status fail(const vr::Error& error) noexcept {
  return fail(static_cast<vr_status>(error.code), error.message, error.param);
}

vr_status ok() noexcept {
  t_error.clear();
  t_param.clear();
  return VR_OK;
}

// struct_size must cover at least the fields of the first published version.
template <class T>
bool size_ok(const T* p, std::size_t minimum) noexcept {
  return p == nullptr || p->struct_size >= minimum;
}

class CallbackPolicy final : public vr::Policy {
 public:
  CallbackPolicy(std::string name, vr_pick_fn fn, void* user)
      : name_(std::move(name)), pick_(fn), user_(user) {}
  std::string_view name() const noexcept override { return name_; }
  std::size_t pick(const vr::PickContext& ctx,
                   std::span<const vr::Candidate> candidates) const override {
    std::vector<vr_candidate> values(candidates.size());
    std::vector<const vr_candidate*> pointers(candidates.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto load = candidates[i].state->sample();
      values[i] = vr_candidate{sizeof(vr_candidate), candidates[i].endpoint->id.c_str(),
                               candidates[i].endpoint->weight, load.in_flight, load.requests,
                               load.failures, candidates[i].slot, load.waiting, load.running,
                               load.kv_cache_usage};
      pointers[i] = &values[i];
    }
    const vr::RequestView& r = ctx.request;
    vr_pick_request request{sizeof(vr_pick_request), r.model.c_str(), r.stream ? 1 : 0,
                            r.session_key.c_str(), r.prompt_prefix.data(), r.prompt_prefix.size()};
    return pick_(user_, pointers.data(), pointers.size(), &request);
  }

 private:
  std::string name_;
  vr_pick_fn pick_;
  void* user_;
};

class CallbackObserver final : public vr::Observer {
 public:
  CallbackObserver(vr_outcome_fn fn, void* user) : fn_(fn), user_(user) {}
  void on_outcome(std::string_view model, const vr::Endpoint& endpoint,
                  const vr::Outcome& outcome) override {
    const std::string model_z(model);
    vr_outcome o{sizeof(vr_outcome), static_cast<vr_outcome_kind>(outcome.kind), outcome.status,
                 static_cast<int64_t>(outcome.ttfb.count()),
                 static_cast<int64_t>(outcome.latency.count()), outcome.bytes};
    fn_(user_, model_z.c_str(), endpoint.id.c_str(), &o);
  }

 private:
  vr_outcome_fn fn_;
  void* user_;
};

class CallbackSink final : public vr::BodySink {
 public:
  explicit CallbackSink(const vr_forward_callbacks* cb) : cb_(cb) {}
  bool write(const char* data, std::size_t size) override {
    if (cb_ == nullptr || cb_->on_chunk == nullptr) return true;
    return cb_->on_chunk(cb_->user, data, size) == 0;
  }
  bool alive() override {
    if (cb_ == nullptr || cb_->alive == nullptr) return true;
    return cb_->alive(cb_->user) != 0;
  }

 private:
  const vr_forward_callbacks* cb_;
};

vr::Result<vr::RouterConfig> parse_config(const char* json, std::size_t len) {
  if (json == nullptr) return vr::Result<vr::RouterConfig>(vr::Errc::invalid_argument, "json is NULL");
  return vr::parse_router_config(std::string_view(json, len));
}

}  // namespace

// Every extern "C" body runs inside these: no exception crosses the C boundary.
#define VR_TRY try {
#define VR_CATCH                                                          \
  }                                                                       \
  catch (const std::bad_alloc&) {                                         \
    return fail(VR_INTERNAL, "out of memory");                            \
  }                                                                       \
  catch (const std::exception& e) {                                       \
    return fail(VR_INTERNAL, std::string("internal error: ") + e.what()); \
  }                                                                       \
  catch (...) {                                                           \
    return fail(VR_INTERNAL, "internal error: unknown exception");        \
  }

extern "C" {

const char* vr_last_error(void) { return t_error.c_str(); }
const char* vr_last_error_param(void) { return t_param.c_str(); }

const char* vr_status_name(vr_status status) {
  // errc_name returns views of string literals: NUL-terminated, static.
  return vr::errc_name(static_cast<vr::Errc>(status)).data();
}

int vr_status_http(vr_status status) { return vr::http_status(static_cast<vr::Errc>(status)); }

const char* vr_version(void) { return vr::version(); }

vr_status vr_router_create_from_json(const char* json, size_t json_len,
                                     const vr_router_options* options, vr_router** out) {
  VR_TRY
  if (out == nullptr) return fail(VR_INVALID_ARGUMENT, "out is NULL");
  *out = nullptr;
  if (!size_ok(options, sizeof(vr_router_options))) {
    return fail(VR_INVALID_ARGUMENT, "vr_router_options.struct_size is too small");
  }
  auto config = parse_config(json, json_len);
  if (!config) return fail(config.error());
  vr::RouterOptions ro;
  if (options != nullptr) {
    ro.seed = options->seed;
    if (options->policy_count > 0 && options->policies == nullptr) {
      return fail(VR_INVALID_ARGUMENT, "policies is NULL but policy_count > 0", "policies");
    }
    for (std::size_t i = 0; i < options->policy_count; ++i) {
      const vr_policy& p = options->policies[i];
      if (p.struct_size < sizeof(vr_policy) || p.name == nullptr || *p.name == '\0' ||
          p.pick == nullptr) {
        return fail(VR_INVALID_ARGUMENT, "policy needs struct_size, a name and a pick function",
                    "policies[" + std::to_string(i) + "]");
      }
      auto policy = std::make_shared<CallbackPolicy>(p.name, p.pick, p.user);
      ro.policies.add(p.name, [policy] { return policy; });
    }
    if (options->on_outcome != nullptr) {
      ro.observer = std::make_shared<CallbackObserver>(options->on_outcome, options->observer_user);
    }
  }
  auto router = vr::Router::create(config.value(), std::move(ro));
  if (!router) return fail(router.error());
  *out = new vr_router{std::shared_ptr<vr::Router>(std::move(router).value())};
  return ok();
  VR_CATCH
}

void vr_router_destroy(vr_router* router) { delete router; }  // never throws

vr_status vr_router_update_json(vr_router* router, const char* json, size_t json_len) {
  VR_TRY
  if (router == nullptr) return fail(VR_INVALID_ARGUMENT, "router is NULL");
  auto config = parse_config(json, json_len);
  if (!config) return fail(config.error());
  auto updated = router->router->update(config.value());
  if (!updated) return fail(updated.error());
  return ok();
  VR_CATCH
}

vr_status vr_route(vr_router* router, const char* body, size_t body_len,
                   const vr_route_options* options, vr_lease** out) {
  VR_TRY
  if (out == nullptr) return fail(VR_INVALID_ARGUMENT, "out is NULL");
  *out = nullptr;
  if (router == nullptr || body == nullptr) return fail(VR_INVALID_ARGUMENT, "router or body is NULL");
  if (!size_ok(options, sizeof(vr_route_options))) {
    return fail(VR_INVALID_ARGUMENT, "vr_route_options.struct_size is too small");
  }
  const std::string_view text(body, body_len);
  auto view = vr::parse_request(text);
  if (!view) return fail(view.error());
  std::vector<std::string_view> exclude;
  if (options != nullptr && options->exclude_count > 0) {
    if (options->exclude == nullptr) return fail(VR_INVALID_ARGUMENT, "exclude is NULL", "exclude");
    for (std::size_t i = 0; i < options->exclude_count; ++i) {
      if (options->exclude[i] != nullptr) exclude.emplace_back(options->exclude[i]);
    }
  }
  auto route = router->router->route(view.value(), exclude);
  if (!route) return fail(route.error());
  auto lease = std::make_unique<vr_lease>();
  lease->router = router->router;
  lease->route = std::move(route).value();
  if (lease->route.resolution.rewrite && view->has_model) {
    lease->rewritten = vr::rewrite_model(text, view.value(), lease->route.resolution.upstream);
    lease->rewrite = true;
  }
  *out = lease.release();
  return ok();
  VR_CATCH
}

const char* vr_lease_endpoint_url(const vr_lease* lease) {
  return lease == nullptr ? "" : lease->route.lease.endpoint().id.c_str();
}

const char* vr_lease_api_key(const vr_lease* lease) {
  return lease == nullptr ? "" : lease->route.lease.endpoint().api_key.c_str();
}

const char* vr_lease_model(const vr_lease* lease) {
  return lease == nullptr ? "" : lease->route.lease.model().c_str();
}

const char* vr_lease_rewritten_body(const vr_lease* lease, size_t* size) {
  if (lease == nullptr || !lease->rewrite) {
    if (size != nullptr) *size = 0;
    return nullptr;
  }
  if (size != nullptr) *size = lease->rewritten.size();
  return lease->rewritten.data();
}

vr_status vr_lease_complete(vr_lease* lease, const vr_outcome* outcome) {
  VR_TRY
  if (lease == nullptr) return fail(VR_INVALID_ARGUMENT, "lease is NULL");
  std::unique_ptr<vr_lease> owned(lease);  // freed on every path
  vr::Outcome o;
  o.kind = vr::OutcomeKind::success;
  if (outcome != nullptr) {
    if (outcome->struct_size < sizeof(vr_outcome)) {
      owned->route.lease.complete(vr::Outcome{});  // still end it: the handle is gone
      return fail(VR_INVALID_ARGUMENT, "vr_outcome.struct_size is too small");
    }
    if (static_cast<int>(outcome->kind) < 0 || outcome->kind > VR_OUTCOME_ERROR) {
      owned->route.lease.complete(vr::Outcome{});
      return fail(VR_INVALID_ARGUMENT, "unknown outcome kind", "kind");
    }
    o.kind = static_cast<vr::OutcomeKind>(outcome->kind);
    o.status = outcome->status;
    o.ttfb = std::chrono::nanoseconds(outcome->ttfb_ns);
    o.latency = std::chrono::nanoseconds(outcome->latency_ns);
    o.bytes = outcome->bytes;
  }
  if (o.latency.count() == 0) {
    o.latency = std::chrono::steady_clock::now() - owned->route.lease.started();
  }
  owned->route.lease.complete(o);
  return ok();
  VR_CATCH
}

void vr_lease_cancel(vr_lease* lease) {
  // The lease's destructor records OutcomeKind::cancelled; it never throws.
  delete lease;
}

vr_status vr_cancel_create(vr_cancel** out) {
  VR_TRY
  if (out == nullptr) return fail(VR_INVALID_ARGUMENT, "out is NULL");
  *out = new vr_cancel();
  return ok();
  VR_CATCH
}

void vr_cancel_trigger(vr_cancel* cancel) {
  if (cancel != nullptr) cancel->token.cancel();  // noexcept
}

void vr_cancel_destroy(vr_cancel* cancel) { delete cancel; }

vr_status vr_forward(vr_router* router, const vr_forward_request* request,
                     const vr_forward_callbacks* callbacks) {
  VR_TRY
  if (router == nullptr || request == nullptr) return fail(VR_INVALID_ARGUMENT, "router or request is NULL");
  // The first published version ended at header_count: callers built against it still work.
  if (request->struct_size < offsetof(vr_forward_request, timeout_ms)) {
    return fail(VR_INVALID_ARGUMENT, "vr_forward_request.struct_size is too small");
  }
  if (!size_ok(callbacks, sizeof(vr_forward_callbacks))) {
    return fail(VR_INVALID_ARGUMENT, "vr_forward_callbacks.struct_size is too small");
  }
  if (request->path == nullptr || request->path[0] != '/') {
    return fail(VR_INVALID_ARGUMENT, "path must start with '/'", "path");
  }
  if (request->body == nullptr && request->body_len > 0) {
    return fail(VR_INVALID_ARGUMENT, "body is NULL", "body");
  }
  if (request->header_count > 0 && request->headers == nullptr) {
    return fail(VR_INVALID_ARGUMENT, "headers is NULL", "headers");
  }
  const std::string_view body(request->body == nullptr ? "" : request->body, request->body_len);
  if (body.empty()) return fail(VR_INVALID_JSON, "request body is empty; expected a JSON object");
  auto view = vr::parse_request(body);
  if (!view) return fail(view.error());

  vr::Headers headers;
  headers.reserve(request->header_count);
  for (std::size_t i = 0; i < request->header_count; ++i) {
    const vr_header& h = request->headers[i];
    if (h.name == nullptr || h.value == nullptr) {
      return fail(VR_INVALID_ARGUMENT, "header name or value is NULL", "headers");
    }
    const std::string_view value(h.value);
    if (value.find_first_of("\r\n") != std::string_view::npos) {
      return fail(VR_INVALID_ARGUMENT, std::string("header '") + h.name + "' has an invalid value", h.name);
    }
    headers.push_back(vr::Header{h.name, std::string(value)});
  }
  vr::UpstreamRequest up;
  up.method = request->method == nullptr ? std::string_view("POST") : std::string_view(request->method);
  up.path = request->path;
  up.headers = &headers;
  up.body = body;

  vr::ForwardOptions options;
  if (request->struct_size >= offsetof(vr_forward_request, cancel) + sizeof(vr_cancel*)) {
    if (request->timeout_ms < 0) return fail(VR_INVALID_ARGUMENT, "timeout_ms must be >= 0", "timeout_ms");
    options.timeout = std::chrono::milliseconds(request->timeout_ms);
    if (request->cancel != nullptr) options.cancel = &request->cancel->token;
  }
  if (callbacks != nullptr && callbacks->alive != nullptr) {
    options.alive = [callbacks] { return callbacks->alive(callbacks->user) != 0; };
  }
  auto forwarded = router->router->forward(view.value(), up, options);
  if (!forwarded) return fail(forwarded.error());
  vr::Response& exchange = forwarded.value();

  if (callbacks != nullptr && callbacks->on_head != nullptr) {
    std::vector<vr_header> hs;
    hs.reserve(exchange.headers().size());
    for (const vr::Header& h : exchange.headers()) hs.push_back(vr_header{h.name.c_str(), h.value.c_str()});
    const auto length = exchange.content_length();
    vr_response_head head{sizeof(vr_response_head), exchange.status(), hs.data(), hs.size(),
                          length ? static_cast<int64_t>(*length) : -1,
                          exchange.endpoint().id.c_str(), exchange.model().c_str(),
                          exchange.attempts()};
    if (callbacks->on_head(callbacks->user, &head) != 0) {
      return fail(VR_CANCELLED, "on_head asked to stop");  // ~Response records cancelled
    }
  }
  CallbackSink sink(callbacks);
  auto relayed = exchange.relay(sink);
  if (!relayed) return fail(relayed.error());
  return ok();
  VR_CATCH
}

}  // extern "C"
