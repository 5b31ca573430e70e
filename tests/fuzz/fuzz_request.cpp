// libFuzzer targets for what the router reads from request bodies and its config
// (-DFUZZ_JSON_REQUEST, -DFUZZ_MULTIPART, -DFUZZ_CONFIG).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "vllm_router/config.h"
#include "vllm_router/request.h"

using namespace vllm_router;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
#if defined(FUZZ_JSON_REQUEST)
  auto view = parse_request(input);
  if (view && view->has_model) {
    // The model's raw bytes are where the view says, and a rewrite keeps the body parseable.
    require(view->model_offset + view->model_length <= input.size());
    const std::string out = rewrite_model(input, *view, "served/name");
    auto again = parse_request(out);
    require(again.ok() && again->has_model && again->model == "served/name");
  }
#elif defined(FUZZ_MULTIPART)
  // The first line of the input is the Content-Type's parameters, the rest the body.
  const std::size_t nl = input.find('\n');
  const std::string type = "multipart/form-data; " + input.substr(0, nl == std::string::npos ? 0 : nl);
  const std::string body = nl == std::string::npos ? input : input.substr(nl + 1);
  auto view = parse_form_request(body, type);
  if (view && view->has_model) {
    require(view->model_offset + view->model_length <= body.size());
    require(body.compare(view->model_offset, view->model_length, view->model) == 0);
  }
#elif defined(FUZZ_CONFIG)
  auto config = parse_router_config(input);
  if (config) (void)validate(*config, {"round_robin", "least_requests"});
#else
#error "define FUZZ_JSON_REQUEST, FUZZ_MULTIPART or FUZZ_CONFIG"
#endif
  return 0;
}
