// RequestView parsing with simdjson On-Demand (no DOM, the body is never re-serialised).
#include <simdjson.h>

#include <optional>
#include <string>
#include <vector>

#include "http_util.h"
#include "json_writer.h"
#include "vllm_router/request.h"

VLLM_ROUTER_BEGIN_NAMESPACE
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
        view.prompt_prefix = raw;
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
  if (view.form) {
    out.append(model);
  } else {
    detail::append_json_string(out, model);
  }
  out.append(body.substr(view.model_offset + view.model_length));
  return out;
}

// ---- multipart/form-data (RFC 7578) ----------------------------------------------------------

namespace {

using detail::iequals;
using detail::trim;

// The parameters of a header value like `form-data; name="model"; filename="a;b.wav"`
// (RFC 9110 5.6.6: token or quoted-string values, `\` escapes in quoted strings). A `;` or `=`
// inside quotes belongs to the value: splitting on `;` alone would let a client show the router
// one field name and the engine's parser another.
struct Param {
  std::string_view name;
  std::string value;
};

bool parse_params(std::string_view header, std::vector<Param>& out) {
  std::size_t i = header.find(';');
  if (i == std::string_view::npos) return true;
  auto ows = [&] {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
  };
  while (i < header.size()) {
    ++i;  // the ';'
    ows();
    if (i == header.size()) return true;  // a trailing ';'
    const std::size_t name_at = i;
    while (i < header.size() && header[i] != '=' && header[i] != ';' && header[i] != ' ' && header[i] != '\t') ++i;
    Param p;
    p.name = header.substr(name_at, i - name_at);
    ows();
    if (p.name.empty() || i == header.size() || header[i] != '=') return false;
    ++i;
    ows();
    if (i < header.size() && header[i] == '"') {
      ++i;
      bool closed = false;
      while (i < header.size()) {
        const char c = header[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i == header.size()) return false;
          p.value.push_back(header[i++]);
        } else {
          p.value.push_back(c);
        }
      }
      if (!closed) return false;
    } else {
      const std::size_t value_at = i;
      while (i < header.size() && header[i] != ';' && header[i] != ' ' && header[i] != '\t') {
        if (header[i] == '"' || header[i] == '\\') return false;
        ++i;
      }
      p.value.assign(header.substr(value_at, i - value_at));
    }
    ows();
    if (i < header.size() && header[i] != ';') return false;
    out.push_back(std::move(p));
  }
  return true;
}

// The one value of parameter `name` among `params`: nullopt when absent, an error when repeated.
Result<std::optional<std::string>> find_param(const std::vector<Param>& params, std::string_view name) {
  std::optional<std::string> found;
  for (const Param& p : params) {
    if (!iequals(p.name, name)) continue;
    if (found) return Result<std::optional<std::string>>(Errc::invalid_argument, "parameter given twice");
    found = p.value;
  }
  return found;
}

Result<RequestView> bad_form(std::string message) {
  return Result<RequestView>(Errc::invalid_argument, "multipart/form-data body: " + std::move(message));
}

}  // namespace

bool is_form_content_type(std::string_view content_type) noexcept {
  const std::size_t semi = content_type.find(';');
  return iequals(trim(content_type.substr(0, semi)), "multipart/form-data");
}

Result<RequestView> parse_form_request(std::string_view body, std::string_view content_type) {
  std::vector<Param> type_params;
  auto boundary = parse_params(content_type, type_params) ? find_param(type_params, "boundary")
                                                           : Result<std::optional<std::string>>(std::nullopt);
  if (!boundary || !*boundary || (*boundary)->empty() || (*boundary)->size() > 70) {
    return bad_form("the Content-Type has no usable boundary parameter");
  }
  const std::string delimiter = "--" + **boundary;
  const std::string separator = "\r\n" + delimiter;  // precedes every delimiter but a leading one
  RequestView view;
  view.form = true;
  // The first delimiter may follow a preamble (which must then end with CRLF).
  std::size_t pos = 0;
  if (body.substr(0, delimiter.size()) != delimiter) {
    pos = body.find(separator);
    if (pos == std::string_view::npos) return bad_form("no part starts with the boundary");
    pos += 2;
  }
  for (;;) {
    pos += delimiter.size();  // at the delimiter's end
    if (body.substr(pos, 2) == "--") return view;  // the close delimiter: done
    // Transport padding (spaces/tabs) then CRLF.
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") return bad_form("a boundary line does not end with CRLF");
    pos += 2;
    const std::size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string_view::npos) return bad_form("a part's headers do not end");
    std::string name;
    bool is_file = false;
    bool disposition = false;
    for (std::string_view headers = body.substr(pos, head_end - pos); !headers.empty();) {
      const std::size_t eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view{} : headers.substr(eol + 2);
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      if (!iequals(trim(line.substr(0, colon)), "content-disposition")) continue;
      if (disposition) return bad_form("a part has two Content-Disposition headers");
      disposition = true;
      std::vector<Param> params;
      if (!parse_params(line.substr(colon + 1), params)) {
        return bad_form("a part's Content-Disposition has malformed parameters");
      }
      auto field = find_param(params, "name");
      auto file = find_param(params, "filename");
      if (!field) return bad_form("a part's Content-Disposition has " + field.error().message);
      if (!file) return bad_form("a part's Content-Disposition has " + file.error().message);
      name = field->value_or("");
      is_file = file->has_value();
    }
    const std::size_t data = head_end + 4;
    const std::size_t end = body.find(separator, data);
    if (end == std::string_view::npos) return bad_form("a part does not end with the boundary");
    const std::string_view content = body.substr(data, end - data);
    if (!is_file && name == "model") {
      if (view.has_model) return bad_form("`model` is given twice");
      if (content.empty()) {
        return Result<RequestView>(Errc::missing_model, "`model` must be a non-empty form field");
      }
      view.model.assign(content);
      view.has_model = true;
      view.model_offset = data;
      view.model_length = content.size();
    } else if (!is_file && name == "stream") {
      view.stream = content == "true" || content == "True" || content == "1";
    } else if (!is_file && name == "user") {
      view.session_key.assign(content);
    }
    pos = end + 2;  // at the next delimiter
  }
}

VLLM_ROUTER_END_NAMESPACE
