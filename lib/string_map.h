// Internal: a hash map keyed by std::string that is searched with a std::string_view (no
// string built per lookup: the hash and the equality are transparent).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace vllm_router::detail {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

template <class Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

}  // namespace vllm_router::detail
