// vllm_router Python module: a thin pybind11 layer over Router (route, lease, streamed forward);
// the streamed Response is response.h.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vllm_router/vllm_router.h>

#include "callbacks.h"
#include "response.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;
namespace vr = vllm_router;
using namespace pybind11::literals;

namespace vllm_router::python {
namespace {

// ------------------------------------------------------------------ errors

// Exception classes, created once at import (module state, not router state).
struct ErrorClasses {
  PyObject* base = nullptr;
  PyObject* bad_request = nullptr;
  PyObject* unknown_model = nullptr;
  PyObject* no_endpoint = nullptr;
  PyObject* upstream = nullptr;
  PyObject* upstream_timeout = nullptr;
  PyObject* config = nullptr;
  PyObject* cancelled = nullptr;
  PyObject* overloaded = nullptr;
};
ErrorClasses g_errors;

PyObject* error_class(vr::Errc code) {
  switch (code) {
    case vr::Errc::invalid_argument:
    case vr::Errc::invalid_json:
    case vr::Errc::missing_model:
    case vr::Errc::body_too_large:
    case vr::Errc::headers_too_large: return g_errors.bad_request;
    case vr::Errc::unknown_model: return g_errors.unknown_model;
    case vr::Errc::no_endpoint: return g_errors.no_endpoint;
    case vr::Errc::timeout: return g_errors.upstream_timeout;
    case vr::Errc::connect_failed:
    case vr::Errc::upstream_protocol:
    case vr::Errc::upstream_closed: return g_errors.upstream;
    case vr::Errc::config: return g_errors.config;
    case vr::Errc::cancelled: return g_errors.cancelled;
    case vr::Errc::overloaded:
    case vr::Errc::rate_limited:
    case vr::Errc::quota_exceeded: return g_errors.overloaded;
    default: return g_errors.base;
  }
}

}  // namespace

// Raises the matching RouterError subclass with .code (errc name), .status (HTTP), .param.
[[noreturn]] void raise_error(const vr::Error& error) {
  py::handle cls(error_class(error.code));
  py::object exc = cls(error.message);
  exc.attr("code") = std::string(vr::errc_name(error.code));
  exc.attr("status") = vr::http_status(error.code);
  exc.attr("param") = error.param.empty() ? py::object(py::none()) : py::object(py::str(error.param));
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw py::error_already_set();
}

namespace {

template <class T>
T unwrap(vr::Result<T>&& result) {
  if (!result) raise_error(result.error());
  return std::move(result).value();
}

// ------------------------------------------------------------------ conversions

// Request bodies and configs: bytes / str as they are, anything else through json.dumps.
std::string to_json_text(const py::handle& value) {
  if (py::isinstance<py::bytes>(value)) return value.cast<std::string>();
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::bytearray>(value) || py::isinstance<py::memoryview>(value)) {
    return py::module_::import("builtins").attr("bytes")(value).cast<std::string>();
  }
  return py::module_::import("json").attr("dumps")(value).cast<std::string>();
}

vr::RouterConfig parse_config(const py::handle& config) {
  const std::string text = to_json_text(config);
  vr::Result<vr::RouterConfig> parsed = vr::Result<vr::RouterConfig>(vr::Errc::internal, "");
  {
    py::gil_scoped_release nogil;
    parsed = vr::parse_router_config(text);
  }
  return unwrap(std::move(parsed));
}

// ------------------------------------------------------------------ Route (route + lease)

class PyRoute {
 public:
  PyRoute(std::shared_ptr<vr::Router> router, vr::Route route, std::string body, std::string rewritten,
          bool rewrite)
      : router_(std::move(router)), route_(std::move(route)), body_(std::move(body)),
        rewritten_(std::move(rewritten)), rewrite_(rewrite) {}

  const std::string& endpoint_url() const { return route_.lease.endpoint().id; }
  const std::string& api_key() const { return route_.lease.endpoint().api_key; }
  const std::string& model() const { return route_.lease.model(); }
  py::bytes body() const { return py::bytes(rewrite_ ? rewritten_ : body_); }
  bool active() const { return route_.lease.active(); }

  void complete(const std::string& kind, int status, std::uint64_t bytes, std::optional<double> ttfb,
                std::optional<double> latency) {
    vr::Outcome o;
    o.kind = kind_from(kind);
    o.status = status;
    o.bytes = bytes;
    if (ttfb) o.ttfb = std::chrono::nanoseconds(static_cast<std::int64_t>(*ttfb * 1e9));
    o.latency = latency ? std::chrono::nanoseconds(static_cast<std::int64_t>(*latency * 1e9))
                        : std::chrono::steady_clock::now() - route_.lease.started();
    route_.lease.complete(o);
  }
  void cancel() { complete("cancelled", 0, 0, std::nullopt, std::nullopt); }

 private:
  std::shared_ptr<vr::Router> router_;  // the lease's observer lives in the Router
  vr::Route route_;
  std::string body_;
  std::string rewritten_;
  bool rewrite_ = false;
};

// ------------------------------------------------------------------ Router

class PyRouter {
 public:
  PyRouter(const py::handle& config, const py::dict& policies, const py::object& observer,
           std::uint64_t seed) {
    vr::RouterConfig parsed = parse_config(config);
    vr::RouterOptions options;
    options.seed = seed;
    for (auto [name, fn] : policies) {
      if (!PyCallable_Check(fn.ptr())) throw py::type_error("policies values must be callables");
      auto policy = std::make_shared<PyPolicy>(name.cast<std::string>(), py::reinterpret_borrow<py::object>(fn));
      options.policies.add(name.cast<std::string>(), [policy] { return policy; });
    }
    if (!observer.is_none()) {
      if (!PyCallable_Check(observer.ptr())) throw py::type_error("observer must be a callable");
      options.observer = std::make_shared<PyObserver>(observer);
    }
    vr::Result<std::unique_ptr<vr::Router>> created = vr::Result<std::unique_ptr<vr::Router>>(vr::Errc::internal, "");
    {
      py::gil_scoped_release nogil;
      created = vr::Router::create(parsed, std::move(options));
    }
    router_ = std::shared_ptr<vr::Router>(unwrap(std::move(created)));
  }

  ~PyRouter() {
    // Policies and observer hold Python objects: drop them with the GIL (held here).
    router_.reset();
  }

  void update(const py::handle& config) {
    vr::RouterConfig parsed = parse_config(config);
    vr::Result<void> updated;
    {
      py::gil_scoped_release nogil;
      updated = router_->update(parsed);
    }
    if (!updated) raise_error(updated.error());
  }

  PyRoute route(const py::handle& body_obj, const std::vector<std::string>& exclude) {
    std::string body = to_json_text(body_obj);
    std::vector<std::string_view> excluded(exclude.begin(), exclude.end());
    std::optional<vr::Error> error;
    std::optional<vr::Route> route;
    std::string rewritten;
    bool rewrite = false;
    {
      py::gil_scoped_release nogil;
      auto view = vr::parse_request_padded(body);
      if (!view) {
        error = view.error();
      } else {
        auto r = router_->route(view.value(), excluded);
        if (!r) {
          error = r.error();
        } else {
          if (r->resolution.rewrite && view->has_model) {
            rewritten = vr::rewrite_model(body, view.value(), r->resolution.upstream);
            rewrite = true;
          }
          route.emplace(std::move(r).value());
        }
      }
    }
    reraise_policy_error();
    if (error) raise_error(*error);
    return PyRoute(router_, std::move(*route), std::move(body), std::move(rewritten), rewrite);
  }

  std::unique_ptr<PyResponse> forward(const std::string& path, const py::handle& body_obj,
                                      const py::object& headers_obj, const std::string& method,
                                      const py::object& timeout_obj) {
    std::chrono::milliseconds timeout{0};
    if (!timeout_obj.is_none()) {
      const double seconds = timeout_obj.cast<double>();
      if (!(seconds > 0)) throw py::value_error("timeout must be a positive number of seconds");
      timeout = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
    }
    if (path.empty() || path.front() != '/') throw py::value_error("path must start with '/'");
    std::string body = to_json_text(body_obj);
    vr::Headers headers;
    if (!headers_obj.is_none()) {
      py::object items = py::hasattr(headers_obj, "items") ? headers_obj.attr("items")() : headers_obj;
      for (py::handle item : items) {
        auto pair = item.cast<std::pair<std::string, std::string>>();
        if (pair.second.find_first_of("\r\n") != std::string::npos) {
          raise_error(vr::Error{vr::Errc::invalid_argument, "header '" + pair.first + "' has an invalid value",
                                pair.first});
        }
        headers.push_back(vr::Header{std::move(pair.first), std::move(pair.second)});
      }
    }
    if (body.empty()) raise_error(vr::Error{vr::Errc::invalid_json, "request body is empty; expected a JSON object", ""});
    std::optional<vr::Error> error;
    std::optional<vr::Response> exchange;
    auto cancel = std::make_shared<vr::CancelToken>();
    {
      py::gil_scoped_release nogil;
      auto view = vr::parse_request_padded(body);
      if (!view) {
        error = view.error();
      } else {
        vr::UpstreamRequest up;
        up.method = method;
        up.path = path;
        up.headers = &headers;
        up.body = body;
        vr::ForwardOptions options;
        options.cancel = cancel.get();
        options.timeout = timeout;
        auto forwarded = router_->forward(view.value(), up, options);
        if (!forwarded) {
          error = forwarded.error();
        } else {
          exchange.emplace(std::move(forwarded).value());
        }
      }
    }
    reraise_policy_error();
    if (error) raise_error(*error);
    return std::make_unique<PyResponse>(router_, std::move(*exchange), std::move(cancel));
  }

  std::vector<std::string> policy_names() const { return router_->policies().names(); }

  py::list models() const {
    py::list out;
    auto snap = router_->snapshot();
    for (const vr::CatalogEntry& e : snap->catalog.entries()) {
      const char* kind = e.kind == vr::NameKind::model ? "model" : e.kind == vr::NameKind::alias ? "alias" : "lora";
      std::vector<std::string> endpoints;
      for (const auto& ep : snap->pools[e.pool].endpoints) endpoints.push_back(ep->id);
      out.append(py::dict("name"_a = e.name, "kind"_a = kind, "upstream"_a = e.upstream,
                          "endpoints"_a = endpoints));
    }
    return out;
  }

  py::list endpoints() const {
    py::list out;
    auto snap = router_->snapshot();
    for (const vr::Pool& pool : snap->pools) {
      // role: "prefill" for a model's prefill pool (disaggregation), "decode" for the pool
      // beside it, None for a pool that runs requests whole.
      py::object role = py::none();
      if (pool.prefill_role) {
        role = py::str("prefill");
      } else if (pool.prefill != vr::Pool::kNoPrefill) {
        role = py::str("decode");
      }
      for (std::size_t i = 0; i < pool.endpoints.size(); ++i) {
        const auto load = pool.states[i]->sample();
        out.append(py::dict("model"_a = pool.model, "id"_a = pool.endpoints[i]->id,
                            "weight"_a = pool.endpoints[i]->weight, "in_flight"_a = load.in_flight,
                            "requests"_a = load.requests, "failures"_a = load.failures, "role"_a = role));
      }
    }
    return out;
  }

  std::uint64_t version() const { return router_->snapshot()->version; }

 private:
  std::shared_ptr<vr::Router> router_;
};

PyObject* new_error(py::module_& m, const char* name, PyObject* base, const char* doc) {
  const std::string qualified = std::string("vllm_router.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base, nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(cls));  // add_object steals nothing: keep our reference
  return cls;
}

}  // namespace
}  // namespace vllm_router::python

using namespace vllm_router::python;  // NOLINT: the module's classes

PYBIND11_MODULE(vllm_router, m) {
  m.doc() = "Route and forward OpenAI-compatible requests across a fleet of vLLM servers.";
  m.attr("__version__") = vr::version();
  m.def("version", [] { return std::string(vr::version()); }, "The linked library's version.");

  g_errors.base = new_error(m, "RouterError", PyExc_Exception,
                            "Base of every vllm_router error. Attributes: code (e.g. 'unknown_model'), "
                            "status (the HTTP status a gateway would answer), param (field or None).");
  g_errors.bad_request = new_error(m, "BadRequestError", g_errors.base,
                                   "The request body is unusable: invalid JSON, no model, too large.");
  g_errors.unknown_model = new_error(m, "UnknownModelError", g_errors.base, "The model resolves to nothing.");
  g_errors.no_endpoint = new_error(m, "NoEndpointError", g_errors.base, "The model has no usable endpoint.");
  g_errors.upstream = new_error(m, "UpstreamError", g_errors.base,
                                "The upstream failed: unreachable, broke the connection, or not HTTP.");
  g_errors.upstream_timeout = new_error(m, "UpstreamTimeoutError", g_errors.upstream,
                                        "The upstream did not answer within the configured timeout.");
  g_errors.config = new_error(m, "ConfigError", g_errors.base, "Invalid configuration; param names the field.");
  g_errors.cancelled = new_error(m, "CancelledError", g_errors.base, "The request was cancelled.");
  g_errors.overloaded = new_error(m, "OverloadedError", g_errors.base,
                                  "A configured limit refused the request (rate limited, full): back off.");

  py::class_<PyCandidate>(m, "Candidate", "An endpoint a custom policy may choose (a snapshot copy).")
      .def_readonly("endpoint_id", &PyCandidate::endpoint_id, "Normalised base URL.")
      .def_readonly("weight", &PyCandidate::weight)
      .def_readonly("in_flight", &PyCandidate::in_flight, "Requests this router has open on it.")
      .def_readonly("requests", &PyCandidate::requests)
      .def_readonly("failures", &PyCandidate::failures)
      .def_readonly("slot", &PyCandidate::slot, "Position in its pool.")
      .def_readonly("waiting", &PyCandidate::waiting, "Scraped vllm:num_requests_waiting; -1 unknown.")
      .def_readonly("running", &PyCandidate::running, "Scraped vllm:num_requests_running; -1 unknown.")
      .def_readonly("kv_cache_usage", &PyCandidate::kv_cache_usage, "Scraped KV-cache usage 0..1; <0 unknown.")
      .def("__repr__", [](const PyCandidate& c) {
        return "Candidate(" + c.endpoint_id + ", in_flight=" + std::to_string(c.in_flight) + ")";
      });

  py::class_<PyPickRequest>(m, "PickRequest", "What a custom policy sees of the request.")
      .def_readonly("model", &PyPickRequest::model)
      .def_readonly("stream", &PyPickRequest::stream)
      .def_readonly("session_key", &PyPickRequest::session_key, "Body `user`, '' when absent.")
      .def_readonly("prompt_prefix", &PyPickRequest::prompt_prefix,
                    "Raw JSON of `prompt`/`messages` (whole).");

  py::class_<PyRoute>(m, "Route",
                      "A routing decision and its lease. Use as a context manager: leaving the block "
                      "completes the lease (success, or error if the block raised) unless complete() "
                      "or cancel() ran. Not for concurrent use.")
      .def_property_readonly("endpoint_url", &PyRoute::endpoint_url, "Base URL of the picked endpoint.")
      .def_property_readonly("api_key", &PyRoute::api_key, "The endpoint's own API key ('' if none).")
      .def_property_readonly("model", &PyRoute::model, "Served model name of the picked pool.")
      .def_property_readonly("body", &PyRoute::body,
                             "The body to send (bytes; `model` rewritten when an alias was used).")
      .def_property_readonly("active", &PyRoute::active, "True until the lease is completed.")
      .def("complete", &PyRoute::complete, "kind"_a = "success", "status"_a = 200, "bytes"_a = 0,
           "ttfb"_a = py::none(), "latency"_a = py::none(),
           "Records how the attempt ended (kind: success, connect_failure, timeout, upstream_closed, "
           "cancelled, error; ttfb/latency in seconds, latency measured when omitted). Once only.")
      .def("cancel", &PyRoute::cancel, "Records the attempt as cancelled.")
      .def("__enter__", [](PyRoute& r) -> PyRoute& { return r; }, py::return_value_policy::reference)
      .def("__exit__", [](PyRoute& r, const py::object& type, const py::object&, const py::object&) {
        if (r.active()) r.complete(type.is_none() ? "success" : "error", type.is_none() ? 200 : 0, 0,
                                   std::nullopt, std::nullopt);
        return false;
      })
      .def("__repr__", [](const PyRoute& r) { return "Route(" + r.model() + " -> " + r.endpoint_url() + ")"; });

  py::class_<PyResponse>(m, "Response",
                         "An upstream answer being streamed: status and headers known, body chunks "
                         "by iteration (bytes, as they arrive). close() (or leaving a `with` block) "
                         "before the end cancels the upstream request.")
      .def_property_readonly("status", &PyResponse::status)
      .def_property_readonly("headers", &PyResponse::headers, "List of (name, value).")
      .def_property_readonly("endpoint_id", &PyResponse::endpoint_id)
      .def_property_readonly("model", &PyResponse::model)
      .def_property_readonly("attempts", &PyResponse::attempts)
      .def_property_readonly("content_length", &PyResponse::content_length)
      .def("__iter__", [](PyResponse& r) -> PyResponse& { return r; }, py::return_value_policy::reference)
      .def("__next__", &PyResponse::next)
      .def("read", &PyResponse::read, "The rest of the body as one bytes object.")
      .def("close", &PyResponse::close)
      .def("__enter__", [](PyResponse& r) -> PyResponse& { return r; }, py::return_value_policy::reference)
      .def("__exit__", [](PyResponse& r, const py::object&, const py::object&, const py::object&) {
        r.close();
        return false;
      });

  py::class_<PyRouter>(m, "Router",
                       "Routes requests to a fleet of vLLM servers. Thread-safe: route/forward from "
                       "any thread while update() swaps the table. Each Router is independent.")
      .def(py::init<const py::handle&, const py::dict&, const py::object&, std::uint64_t>(), "config"_a,
           py::kw_only(), "policies"_a = py::dict(), "observer"_a = py::none(), "seed"_a = 0)
      .def_static(
          "from_config",
          [](const py::handle& config, const py::dict& policies, const py::object& observer, std::uint64_t seed) {
            return std::make_unique<PyRouter>(config, policies, observer, seed);
          },
          "config"_a, py::kw_only(), "policies"_a = py::dict(), "observer"_a = py::none(), "seed"_a = 0,
          "Builds a router from a config dict or JSON text (docs/configuration.md). policies: "
          "name -> callable(candidates, request) -> index, usable by name in the config. observer: "
          "callable(model, endpoint_id, outcome_dict) called on any thread after each attempt.")
      .def("update", &PyRouter::update, "config"_a, "Replaces the routing table; on error the old one stays.")
      .def("route", &PyRouter::route, "body"_a, "exclude"_a = std::vector<std::string>{},
           "Resolves the body's model and picks an endpoint (not one of `exclude`). Returns a Route.")
      .def("forward", &PyRouter::forward, "path"_a, "body"_a, "headers"_a = py::none(), "method"_a = "POST",
           "timeout"_a = py::none(),
           "Routes and sends the request with the router's rules (retries within the retry budget, "
           "timeouts, the wait for capacity); returns a Response once the upstream head arrived. "
           "`timeout` (seconds) bounds the whole exchange. The GIL is released while waiting; "
           "closing the Response cancels it at once.")
      .def_property_readonly("policy_names", &PyRouter::policy_names)
      .def_property_readonly("version", &PyRouter::version, "Routing table version (grows on update).")
      .def("models", &PyRouter::models, "Every name the router resolves (models, aliases, LoRAs).")
      .def("endpoints", &PyRouter::endpoints, "Endpoints per pool with their live counters and role (prefill, decode or None).");
}
