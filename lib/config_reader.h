// Internal: reading a JSON configuration document strictly (simdjson On-Demand): typed readers
// whose errors name the field by its JSON path and say what was expected.
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "http_util.h"
#include "vllm_router/error.h"
#include "vllm_router/result.h"

namespace vllm_router::detail::config {

namespace od = simdjson::ondemand;

// String building without a formatting dependency (the library links only simdjson privately).
template <class T>
void append(std::string& out, const T& part) {
  if constexpr (std::is_integral_v<T>) {
    out += std::to_string(part);
  } else {
    out += std::string_view(part);
  }
}

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (append(out, parts), ...);
  return out;
}

template <class Container>
std::string join(const Container& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += std::string_view(item);
  }
  return out;
}

constexpr std::uint64_t kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
constexpr std::size_t kMaxShown = 48;  // longest excerpt of a bad value quoted in a message

inline Error config_error(const std::string& path, std::string_view what) {
  return Error{Errc::config, path.empty() ? std::string(what) : cat(path, ": ", what), path};
}

inline Error json_error(simdjson::error_code code, const std::string& path) {
  return config_error(path, cat("invalid JSON: ", simdjson::error_message(code)));
}

inline std::string_view trim(std::string_view text) { return detail::trim(text, " \t\r\n"); }

// What a value is, for "expected X, got Y" messages. Peeks only: the value stays unconsumed.
inline std::string describe(od::value& value) {
  od::json_type type{};
  if (value.type().get(type) != simdjson::SUCCESS) return "invalid JSON";
  switch (type) {
    case od::json_type::object:
      return "an object";
    case od::json_type::array:
      return "an array";
    default:
      break;
  }
  std::string_view raw = trim(value.raw_json_token());
  if (raw.size() > kMaxShown) return cat(raw.substr(0, kMaxShown), "...");
  return std::string(raw);
}

inline std::string range_text(std::uint64_t min, std::uint64_t max) {
  if (max == kU32Max || max == kU64Max) return cat(">= ", min);
  return cat(min, "..", max);
}

inline std::string index_path(const std::string& path, std::size_t index) {
  return cat(path, "[", index, "]");
}

inline std::string key_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : cat(path, ".", key);
}

// The JSON type of `value`, or an error if the input is broken at this point.
inline Result<od::json_type> type_of(od::value& value, const std::string& path) {
  od::json_type type{};
  if (auto code = value.type().get(type); code != simdjson::SUCCESS) return json_error(code, path);
  return type;
}

inline Result<std::string> read_string(od::value& value, const std::string& path, bool non_empty = false) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  const char* expected = non_empty ? "expected a non-empty string" : "expected a string";
  if (*type != od::json_type::string) {
    return config_error(path, cat(expected, ", got ", describe(value)));
  }
  std::string_view text;
  if (auto code = value.get_string().get(text); code != simdjson::SUCCESS) {
    return json_error(code, path);
  }
  if (non_empty && text.empty()) return config_error(path, cat(expected, ", got \"\""));
  return std::string(text);
}

// An integer in [min, max]; anything else (fraction, string, out of range) names the range.
inline Result<std::uint64_t> read_integer(od::value& value, const std::string& path, std::uint64_t min,
                                   std::uint64_t max) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  std::string got = describe(value);
  auto bad = [&] {
    return config_error(path, cat("expected an integer ", range_text(min, max), ", got ", got));
  };
  if (*type != od::json_type::number) return bad();
  std::uint64_t number = 0;
  std::int64_t signed_number = 0;
  // get_* advance only on success, so a failed signed read can be retried unsigned.
  if (value.get_int64().get(signed_number) == simdjson::SUCCESS) {
    if (signed_number < 0) return bad();
    number = static_cast<std::uint64_t>(signed_number);
  } else if (value.get_uint64().get(number) != simdjson::SUCCESS) {
    return bad();
  }
  if (number < min) return bad();
  if (number > max) {
    return config_error(path, cat("expected an integer ", min, "..", max, ", got ", got));
  }
  return number;
}

template <class Int>
Result<void> read_into(od::value& value, const std::string& path, std::uint64_t min, Int& out) {
  auto number = read_integer(value, path, min, std::numeric_limits<Int>::max());
  if (!number) return std::move(number).error();
  out = static_cast<Int>(*number);
  return {};
}

inline Result<void> read_into(od::value& value, const std::string& path, std::string& out,
                       bool non_empty = false) {
  auto text = read_string(value, path, non_empty);
  if (!text) return std::move(text).error();
  out = std::move(text).value();
  return {};
}

// Calls on_element(value, element_path) for each element of an array.
template <class F>
Result<void> for_each_element(od::value& value, const std::string& path, std::string_view expected,
                              F&& on_element) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type != od::json_type::array) {
    return config_error(path, cat("expected ", expected, ", got ", describe(value)));
  }
  od::array array;
  if (auto code = value.get_array().get(array); code != simdjson::SUCCESS) {
    return json_error(code, path);
  }
  std::size_t index = 0;
  for (auto element_result : array) {
    od::value element;
    std::string element_path = index_path(path, index++);
    if (auto code = std::move(element_result).get(element); code != simdjson::SUCCESS) {
      return json_error(code, element_path);
    }
    if (auto r = on_element(element, element_path); !r) return r;
  }
  return {};
}

inline Result<void> read_string_array(od::value& value, const std::string& path,
                               std::vector<std::string>& out) {
  std::vector<std::string> items;
  auto r =
      for_each_element(value, path, "an array of strings",
                       [&](od::value& element, const std::string& element_path) -> Result<void> {
                         auto text = read_string(element, element_path);
                         if (!text) return std::move(text).error();
                         items.push_back(std::move(text).value());
                         return {};
                       });
  if (!r) return r;
  out = std::move(items);
  return {};
}

inline Result<void> read_bool(od::value& value, const std::string& path, bool& out) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type != od::json_type::boolean) return config_error(path, cat("expected true or false, got ", describe(value)));
  if (auto code = value.get_bool().get(out); code != simdjson::SUCCESS) return json_error(code, path);
  return {};
}

inline Result<void> read_double(od::value& value, const std::string& path, double min, double& out) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  std::string got = describe(value);
  double v = 0;
  if (*type != od::json_type::number || value.get_double().get(v) != simdjson::SUCCESS || !(v >= min)) {
    return config_error(path, cat("expected a number >= ", std::to_string(min), ", got ", got));
  }
  out = v;
  return {};
}

// Calls on_field(key, value, field_path) for each member of an object; rejects duplicate keys.
// `keys` lists the accepted keys (for the unknown-key message); on_field handles each of them.
template <class F>
Result<void> for_each_field(od::value& value, const std::string& path,
                            const std::vector<std::string_view>& keys, F&& on_field) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type != od::json_type::object) {
    return config_error(
        path, cat("expected ", path.empty() ? "a JSON object at the top level" : "an object",
                  ", got ", describe(value)));
  }
  od::object object;
  if (auto code = value.get_object().get(object); code != simdjson::SUCCESS) {
    return json_error(code, path);
  }
  std::vector<std::string> seen;
  for (auto field_result : object) {
    od::field field;
    if (auto code = std::move(field_result).get(field); code != simdjson::SUCCESS) {
      return json_error(code, path);
    }
    std::string_view key;
    if (auto code = field.unescaped_key().get(key); code != simdjson::SUCCESS) {
      return json_error(code, path);
    }
    std::string field_path = key_path(path, key);
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return config_error(field_path, cat("unknown key (expected one of: ", join(keys), ")"));
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return config_error(field_path, "duplicate key");
    }
    seen.emplace_back(key);
    if (auto r = on_field(key, field.value(), field_path); !r) return r;
  }
  return {};
}

// Calls on_member(key, value, member_path) for each member of an object whose keys are data (a
// map), not a schema; rejects duplicate keys.
template <class F>
Result<void> for_each_member(od::value& value, const std::string& path, F&& on_member) {
  auto type = type_of(value, path);
  if (!type) return std::move(type).error();
  if (*type != od::json_type::object) return config_error(path, cat("expected an object, got ", describe(value)));
  od::object object;
  if (auto code = value.get_object().get(object); code != simdjson::SUCCESS) return json_error(code, path);
  std::vector<std::string> seen;
  for (auto member_result : object) {
    od::field member;
    if (auto code = std::move(member_result).get(member); code != simdjson::SUCCESS) return json_error(code, path);
    std::string_view key;
    if (auto code = member.unescaped_key().get(key); code != simdjson::SUCCESS) return json_error(code, path);
    std::string member_path = key_path(path, key);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return config_error(member_path, "duplicate key");
    seen.emplace_back(key);
    if (auto r = on_member(key, member.value(), member_path); !r) return r;
  }
  return {};
}

}  // namespace vllm_router::detail::config
