// The HTTP side of an Exchange: which headers cross the router, the upstream request head, the
// client's answer head, and the request body's routing facts.
#include <algorithm>

#include "exchange_state.h"
#include "http_util.h"

namespace vllm_router::detail {

bool forward_request_header(std::string_view name) noexcept {
  static constexpr NameSet kDropped{std::to_array<std::string_view>(
      {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
       "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade", "expect", "authorization",
       "accept-encoding", "x-request-id",
       // The client's claims about who it is: the router is the front door, it says that itself
       // (X-Forwarded-For with the peer's address); engines and their logs must not be fooled.
       "forwarded", "x-real-ip", "x-client-ip", "true-client-ip"})};
  if (name.size() > 12 && iequals(name.substr(0, 12), "x-forwarded-")) return false;
  return !kDropped.contains(name);
}

bool relay_response_header(std::string_view name) noexcept {
  static constexpr NameSet kSetByRouter{std::to_array<std::string_view>({"x-request-id", "date", "server"})};
  return !(is_hop_by_hop(name) || kSetByRouter.contains(name));
}

bool listed_in(std::string_view list, std::string_view name) noexcept {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), name)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

}  // namespace

namespace {

bool route_allowed(const std::vector<std::string>& routes, std::string_view path) noexcept {
  for (const std::string& r : routes) {
    if (!r.empty() && r.back() == '*') {
      if (path.substr(0, r.size() - 1) == std::string_view(r).substr(0, r.size() - 1)) return true;
    } else if (path == r) {
      return true;
    }
  }
  return false;
}

}  // namespace

// The target as the engine will read it must be the target that was checked: origin-form only,
// no control bytes, no dot segments, no encoded dots or slashes, no backslashes; then the path
// must be one the deployment forwards.
std::optional<Error> Exchange::State::check_target() const {
  const std::string_view target = request.target;
  auto bad = [&](std::string_view why) {
    return Error{Errc::invalid_argument, "request target refused: " + std::string(why), ""};
  };
  if (target.empty() || target[0] != '/') return bad("expected a path starting with '/'");
  for (const char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '#' || c == '\\') return bad("a space, control byte, '#' or '\\' in it");
  }
  const std::string_view path = target.substr(0, target.find('?'));
  for (std::size_t i = 0; i + 2 < path.size(); ++i) {
    if (path[i] != '%') continue;
    const char a = path[i + 1];
    const char b = static_cast<char>(path[i + 2] | 0x20);
    if ((a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c')) return bad("an encoded '.', '/' or '\\'");
  }
  for (std::size_t at = 1; at <= path.size();) {
    const std::size_t next = std::min(path.find('/', at), path.size());
    const std::string_view segment = path.substr(at, next - at);
    if (segment == "." || segment == "..") return bad("a '.' or '..' segment");
    at = next + 1;
  }
  if (route_allowed(config->routes, path)) return std::nullopt;
  if (route_allowed(config->admin_routes, path)) {
    if (request.key != nullptr && request.key->admin) return std::nullopt;
    return Error{Errc::forbidden, "an admin API key is needed for " + std::string(path), ""};
  }
  return Error{Errc::not_found, "Not Found: " + std::string(request.method) + " " + std::string(path), ""};
}

// A key's scope names models as clients send them or as they resolve (an alias or an adapter
// in scope is allowed, and so is any name of a model in scope).
std::optional<Error> Exchange::State::check_scope() const {
  const ApiKey* key = request.key;
  if (key == nullptr || key->models.empty()) return std::nullopt;
  if (view->has_model && key->allows_model(view->model)) return std::nullopt;
  const auto snap = router.snapshot();
  Resolution res;
  const bool known = view->has_model ? snap->catalog.resolve(view->model, res) : snap->catalog.resolve_default(res);
  if (known && (key->allows_model(res.upstream) || key->allows_model(snap->pools[res.pool].model))) return std::nullopt;
  if (!known && !view->has_model) return std::nullopt;  // the router's own "missing model" answer follows
  return Error{Errc::forbidden,
               "the API key `" + key->id + "` may not use the model `" + (view->has_model ? view->model : std::string()) + "`",
               "model"};
}

std::optional<Error> Exchange::State::check_headers() const {
  for (const HeaderField& h : request.headers) {
    if (h.value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
      return Error{Errc::invalid_argument, "header '" + std::string(h.name) + "' has an invalid value",
                   std::string(h.name)};
    }
  }
  return std::nullopt;
}

std::optional<Error> Exchange::State::parse_body() {
  std::string_view content_type;
  const HeaderField* session = nullptr;
  const std::string& session_header = config->policy_options.session_header;
  for (const HeaderField& h : request.headers) {
    if (detail::iequals(h.name, "content-type")) content_type = h.value;
    if (session == nullptr && detail::iequals(h.name, session_header)) session = &h;
  }
  if (request.view != nullptr) {
    view = request.view;
    return std::nullopt;
  }
  if (request.body.empty()) {
    return Error{Errc::invalid_json, "request body is empty; expected a JSON object", ""};
  }
  auto parsed = is_form_content_type(content_type) ? parse_form_request(request.body, content_type)
                                                   : parse_request(request.body, request.body_capacity);
  if (!parsed) return std::move(parsed).error();
  own_view = std::move(parsed.value());
  // A session header (policy_options.session_header) beats the body's `user` as session key.
  if (session != nullptr) own_view.session_key.assign(session->value);
  view = &own_view;
  return std::nullopt;
}

void Exchange::State::build_upstream_head() {
  const Endpoint& ep = route->lease.endpoint();
  std::string& h = upstream_head;
  h.clear();
  h.reserve(512);
  detail::append_request_start(h, request.method, ep.url, request.target, ep.api_key);
  // Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
  std::string_view connection;
  for (const HeaderField& f : request.headers) {
    if (detail::iequals(f.name, "connection")) connection = f.value;
  }
  for (const HeaderField& f : request.headers) {
    if (!detail::forward_request_header(f.name)) continue;
    if (!connection.empty() && detail::listed_in(connection, f.name)) continue;
    // Tracing on: the router's traceparent replaces the client's; tracestate goes on with a
    // continued trace only.
    if (trace.on && (detail::is_traceparent(f.name) || (!trace.continued && detail::is_tracestate(f.name)))) continue;
    append_header(h, f.name, f.value);
  }
  if (trace.on) {
    // traceparent: 00-<trace id>-<this attempt's span>-<flags>
    h.append("traceparent: 00-")
        .append(trace.trace_id, 32)
        .append(1, '-')
        .append(trace.attempt_span, 16)
        .append(trace.sampled ? "-01\r\n" : "-00\r\n");
  }
  if (!request.request_id.empty()) append_header(h, "X-Request-Id", request.request_id);
  if (!request.client_address.empty()) append_header(h, "X-Forwarded-For", request.client_address);
  if (request.method != "GET" || !body.empty()) {
    h.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  h.append("\r\n");
}

bool Exchange::State::send_head() {
  detail::ResponseHead& up = reader.head_for_relay();
  ResponseHead head;
  head.status = up.status;
  head.endpoint = last_endpoint.get();
  head.attempts = attempts;
  // The relayed headers, filtered in place in the parsed head (it is not read again).
  std::vector<HeaderField>& fields = up.headers;
  std::size_t kept = 0;
  for (const HeaderField& f : fields) {
    if (!detail::relay_response_header(f.name)) continue;
    if (detail::iequals(f.name, "content-type") && f.value.substr(0, 17) == "text/event-stream") {
      head.event_stream = true;
    }
    fields[kept++] = f;
  }
  fields.resize(kept);
  if (!request.request_id.empty()) fields.push_back(HeaderField{"X-Request-Id", request.request_id});
  event_stream = head.event_stream;
  head.headers = fields;
  switch (up.framing) {
    case detail::Framing::length: head.content_length = up.content_length; break;
    case detail::Framing::none: head.content_length = 0; break;
    case detail::Framing::chunked:
    case detail::Framing::close: break;  // length unknown: chunked to the client
  }
  responded = true;
  return host.on_head(head);
}

VLLM_ROUTER_END_NAMESPACE
