// Library version: compile-time macros and the run-time string.
#pragma once

#include "vllm_router/export.h"

#define VLLM_ROUTER_VERSION_MAJOR 0
#define VLLM_ROUTER_VERSION_MINOR 1
#define VLLM_ROUTER_VERSION_PATCH 0
#define VLLM_ROUTER_VERSION_STRING "0.1.0"

VLLM_ROUTER_BEGIN_NAMESPACE

/// The version of the linked library ("MAJOR.MINOR.PATCH"). Thread-safe; static storage.
VLLM_ROUTER_API const char* version() noexcept;

VLLM_ROUTER_END_NAMESPACE
