// RequestView parsing with simdjson On-Demand (no DOM, the body is never re-serialised).
#include <simdjson.h>

#include <string>

#include "json_writer.h"
#include "vllm_router/request.h"

namespace vllm_router {
namespace {

namespace od = simdjson::ondemand;

Result<RequestView> invalid(simdjson::error_code ec) {
  return Result<RequestView>(Errc::invalid_json,
                             std::string("request body is not valid JSON: ") +
                                 simdjson::error_message(ec));
}

// One parser per thread: it keeps its buffers between requests.
od::parser& thread_parser() {
  thread_local od::parser parser;
  return parser;
}

}  // namespace

Result<RequestView> parse_request(std::string_view body, std::size_t capacity) {
  simdjson::padded_string copy;
  simdjson::padded_string_view input;
  if (capacity >= body.size() + simdjson::SIMDJSON_PADDING) {
    input = simdjson::padded_string_view(body.data(), body.size(), capacity);
  } else {
    copy = simdjson::padded_string(body);
    input = copy;
  }
  RequestView view;
  od::document doc;
  if (auto ec = thread_parser().iterate(input).get(doc)) return invalid(ec);
  od::object root;
  if (auto ec = doc.get_object().get(root)) {
    if (ec == simdjson::INCORRECT_TYPE) {
      return Result<RequestView>(Errc::invalid_json, "request body must be a JSON object");
    }
    return invalid(ec);
  }
  for (auto field : root) {
    std::string_view key;
    if (auto ec = field.unescaped_key().get(key)) return invalid(ec);
    od::value value;
    if (auto ec = field.value().get(value)) return invalid(ec);
    if (key == "model") {
      od::json_type type;
      if (auto ec = value.type().get(type)) return invalid(ec);
      if (type != od::json_type::string) {
        return Result<RequestView>(Errc::missing_model, "`model` must be a string", "model");
      }
      const std::string_view token = value.raw_json_token();
      std::string_view model;
      if (auto ec = value.get_string().get(model)) return invalid(ec);
      view.model.assign(model);
      view.has_model = true;
      view.model_offset = static_cast<std::size_t>(token.data() - input.data());
      // raw_json_token() runs to the next structural character: trim trailing whitespace.
      std::size_t len = token.size();
      while (len > 0 && token[len - 1] != '"') --len;
      view.model_length = len;
    } else if (key == "stream") {
      bool stream = false;
      if (value.get_bool().get(stream) == simdjson::SUCCESS) view.stream = stream;
    } else if (key == "user") {
      std::string_view user;
      if (value.get_string().get(user) == simdjson::SUCCESS) view.session_key.assign(user);
    } else if (key == "prompt" || key == "messages" || key == "input") {
      od::json_type type;
      if (auto ec = value.type().get(type)) return invalid(ec);
      std::string_view raw;
      if (type == od::json_type::array) {
        od::array arr;
        if (auto ec = value.get_array().get(arr)) return invalid(ec);
        if (auto ec = arr.raw_json().get(raw)) return invalid(ec);
      } else if (type == od::json_type::object) {
        od::object obj;
        if (auto ec = value.get_object().get(obj)) return invalid(ec);
        if (auto ec = obj.raw_json().get(raw)) return invalid(ec);
      } else {
        raw = value.raw_json_token();
      }
      if (view.prompt_prefix.empty() || key != "input") {
        view.prompt_prefix = raw.substr(0, kPromptPrefixBytes);
      }
    }
    // Other members are skipped by the iterator (structure is still checked).
  }
  if (!view.prompt_prefix.empty()) {
    // Point into the caller's body, not into a temporary padded copy.
    const auto offset = static_cast<std::size_t>(view.prompt_prefix.data() - input.data());
    view.prompt_prefix = body.substr(offset, view.prompt_prefix.size());
  }
  const char* trailing = nullptr;
  if (doc.current_location().get(trailing) == simdjson::SUCCESS) {
    return Result<RequestView>(Errc::invalid_json,
                               "request body is not valid JSON: trailing content");
  }
  return view;
}

std::string rewrite_model(std::string_view body, const RequestView& view, std::string_view model) {
  std::string out;
  out.reserve(body.size() + model.size() + 8);
  out.append(body.substr(0, view.model_offset));
  detail::append_json_string(out, model);
  out.append(body.substr(view.model_offset + view.model_length));
  return out;
}

}  // namespace vllm_router
