// HeaderField: one HTTP header as views (name case as received).
#pragma once

#include <string_view>

#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// One HTTP header as views into a buffer someone else owns. Plain value type.
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

VLLM_ROUTER_END_NAMESPACE
