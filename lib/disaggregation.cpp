// Prefill/decode disaggregation: the bodies of the two legs and the prefill answer's
// kv_transfer_params (simdjson On-Demand; members the router does not touch are copied as the
// client wrote them, never re-serialised).
#include "disaggregation.h"

#include <simdjson.h>

#include <array>

#include "event/http_out.h"
#include "exchange_state.h"

namespace vllm_router::detail {
namespace {

namespace od = simdjson::ondemand;

od::parser& thread_parser() {
  thread_local od::parser parser;
  return parser;
}

Error bad_json(std::string_view what, simdjson::error_code ec) {
  return Error{Errc::invalid_json, std::string(what) + " is not valid JSON: " + simdjson::error_message(ec), ""};
}

// The bytes of a member's value as written (an array or object whole; a scalar's token without
// the whitespace after it).
simdjson::error_code raw_value(od::value& value, std::string_view& out) {
  od::json_type type;
  if (auto ec = value.type().get(type)) return ec;
  if (type == od::json_type::array) {
    od::array a;
    if (auto ec = value.get_array().get(a)) return ec;
    return a.raw_json().get(out);
  }
  if (type == od::json_type::object) {
    od::object o;
    if (auto ec = value.get_object().get(o)) return ec;
    return o.raw_json().get(out);
  }
  out = value.raw_json_token();
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t' || out.back() == '\n' || out.back() == '\r')) {
    out.remove_suffix(1);
  }
  if (type == od::json_type::string) {
    std::string_view s;
    if (auto ec = value.get_string().get(s)) return ec;  // validates the string
  }
  return simdjson::SUCCESS;
}

// Copies the members of the JSON object `body` into `out` ("{" + members), each as written,
// except those `drop` says; `seen` is told every key. Returns whether a member was written.
template <class Drop>
Result<bool> copy_members(std::string_view body, std::string& out, Drop drop) {
  simdjson::padded_string copy(body);
  od::document doc;
  if (auto ec = thread_parser().iterate(copy).get(doc)) return bad_json("the request body", ec);
  od::object root;
  if (auto ec = doc.get_object().get(root)) return bad_json("the request body", ec);
  out.clear();
  out.reserve(body.size() + 256);
  out.push_back('{');
  bool any = false;
  for (auto field : root) {
    od::field f;
    if (auto ec = std::move(field).get(f)) return bad_json("the request body", ec);
    const char* key_start = reinterpret_cast<const char*>(f.key().raw()) - 1;  // the opening quote
    std::string_view key;
    if (auto ec = f.unescaped_key().get(key)) return bad_json("the request body", ec);
    if (drop(key)) continue;  // the iterator skips the value
    od::value v = f.value();
    std::string_view raw;
    if (auto ec = raw_value(v, raw)) return bad_json("the request body", ec);
    const std::size_t from = static_cast<std::size_t>(key_start - copy.data());
    const std::size_t to = static_cast<std::size_t>(raw.data() + raw.size() - copy.data());
    if (any) out.push_back(',');
    out.append(body.substr(from, to - from));
    any = true;
  }
  const char* trailing = nullptr;
  if (doc.current_location().get(trailing) == simdjson::SUCCESS) {
    return Error{Errc::invalid_json, "the request body is not valid JSON: trailing content", ""};
  }
  return any;
}

}  // namespace

std::string_view pd_leg_name(PdLeg leg) noexcept {
  switch (leg) {
    case PdLeg::prefill: return "prefill";
    case PdLeg::decode: return "decode";
    case PdLeg::colocated: return "colocated";
  }
  return "prefill";
}

bool pd_splits(std::string_view path) noexcept {
  return path == "/v1/completions" || path == "/v1/chat/completions";
}

Result<void> pd_prefill_body(std::string_view body, std::string& out) {
  bool max_completion_tokens = false;
  static constexpr std::array<std::string_view, 7> kReplaced{"stream", "max_tokens", "max_completion_tokens",
                                                             "stream_options", "min_tokens",
                                                             "min_completion_tokens", "kv_transfer_params"};
  auto any = copy_members(body, out, [&](std::string_view key) {
    if (key == "max_completion_tokens") max_completion_tokens = true;
    for (const std::string_view k : kReplaced) {
      if (key == k) return true;
    }
    return false;
  });
  if (!any) return any.error();
  if (any.value()) out.push_back(',');
  out.append("\"stream\":false,\"max_tokens\":1,");
  if (max_completion_tokens) out.append("\"max_completion_tokens\":1,");
  out.append(
      "\"kv_transfer_params\":{\"do_remote_decode\":true,\"do_remote_prefill\":false,\"remote_engine_id\":null,"
      "\"remote_block_ids\":null,\"remote_host\":null,\"remote_port\":null}}");
  return {};
}

Result<std::string_view> pd_transfer_params(std::string& answer) {
  const std::size_t size = answer.size();
  answer.reserve(size + simdjson::SIMDJSON_PADDING);
  const simdjson::padded_string_view input(answer.data(), size, answer.capacity());
  od::document doc;
  if (auto ec = thread_parser().iterate(input).get(doc)) return bad_json("the prefill answer", ec);
  od::object root;
  if (auto ec = doc.get_object().get(root)) return bad_json("the prefill answer", ec);
  for (auto field : root) {
    od::field f;
    if (auto ec = std::move(field).get(f)) return bad_json("the prefill answer", ec);
    std::string_view key;
    if (auto ec = f.unescaped_key().get(key)) return bad_json("the prefill answer", ec);
    if (key != "kv_transfer_params") continue;
    od::object params;
    if (f.value().get_object().get(params) != simdjson::SUCCESS) continue;  // null: a later one may follow
    std::string_view raw;
    if (auto ec = params.raw_json().get(raw)) return bad_json("the prefill answer", ec);
    return raw;
  }
  return Error{Errc::upstream_protocol, "the prefill answer has no kv_transfer_params object", ""};
}

Result<void> pd_decode_body(std::string_view body, std::string_view params, std::string& out) {
  auto any = copy_members(body, out, [](std::string_view key) { return key == "kv_transfer_params"; });
  if (!any) return any.error();
  if (any.value()) out.push_back(',');
  out.append("\"kv_transfer_params\":").append(params).push_back('}');
  return {};
}

}  // namespace vllm_router::detail

// ---- the exchange's side ----------------------------------------------------------------------

VLLM_ROUTER_BEGIN_NAMESPACE

std::optional<Error> Exchange::State::pd_begin(const Snapshot& snap) {
  if (view->form || !detail::pd_splits(request.target.substr(0, request.target.find('?')))) return std::nullopt;
  Resolution res;
  const bool known = view->has_model ? snap.catalog.resolve(view->model, res) : snap.catalog.resolve_default(res);
  if (!known || snap.pools[res.pool].prefill == Pool::kNoPrefill) return std::nullopt;  // routing says the rest
  if (pd) {
    pd->reset();
  } else {
    pd = std::make_unique<detail::PdState>();
  }
  pd->fallback_allowed = snap.pools[res.pool].colocated_fallback;
  if (res.rewrite && view->has_model) {
    rewritten = rewrite_model(request.body, *view, res.upstream);
    body = rewritten;
  }
  if (auto r = detail::pd_prefill_body(body, pd->prefill_body); !r) return std::move(r).error();
  // Both legs carry one request id (vLLM's connectors pair the legs' work by it).
  if (request.request_id.empty()) {
    pd->request_id = detail::new_request_id();
    request.request_id = pd->request_id;
  }
  body = pd->prefill_body;
  pd_on = true;
  return std::nullopt;
}

VLLM_ROUTER_END_NAMESPACE
