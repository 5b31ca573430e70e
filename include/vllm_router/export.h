// Symbol visibility macro for the vllm_router shared or static library.
#pragma once

#if defined(VLLM_ROUTER_STATIC)
#define VLLM_ROUTER_API
#elif defined(_WIN32)
#if defined(VLLM_ROUTER_BUILDING)
#define VLLM_ROUTER_API __declspec(dllexport)
#else
#define VLLM_ROUTER_API __declspec(dllimport)
#endif
#else
#define VLLM_ROUTER_API __attribute__((visibility("default")))
#endif
