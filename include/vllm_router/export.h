// Symbol visibility and the versioned namespace of the vllm_router library.
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

// Every public name lives in an inline namespace named after the ABI version (fmt's habit):
// code says vllm_router::Router, the linker sees vllm_router::v0::Router, so two incompatible
// builds of the library in one process fail to link instead of mixing silently.
#define VLLM_ROUTER_ABI_NAMESPACE v0
#define VLLM_ROUTER_BEGIN_NAMESPACE \
  namespace vllm_router {           \
  inline namespace v0 {
#define VLLM_ROUTER_END_NAMESPACE \
  }                               \
  }
