// Consumer smoke program: builds a Router from JSON config and makes routing decisions.
#include <vllm_router/vllm_router.h>

#include <cstdio>
#include <string>

int main() {
  auto config = vllm_router::parse_router_config(R"({
    "models": [{"name": "org/m", "aliases": ["m"],
                "endpoints": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]}]
  })");
  if (!config) {
    std::fprintf(stderr, "config: %s\n", config.error().message.c_str());
    return 1;
  }
  auto router = vllm_router::Router::create(config.value());
  if (!router) {
    std::fprintf(stderr, "router: %s\n", router.error().message.c_str());
    return 1;
  }
  const std::string body = R"({"model":"m","prompt":"hi"})";
  auto view = vllm_router::parse_request(body);
  if (!view) return 1;
  std::string first, second;
  for (std::string* out : {&first, &second}) {
    auto route = router.value()->route(view.value());
    if (!route) {
      std::fprintf(stderr, "route: %s\n", route.error().message.c_str());
      return 1;
    }
    *out = route->lease.endpoint().id;
  }
  auto unknown = router.value()->route(*vllm_router::parse_request(R"({"model":"x"})"));
  if (unknown.code() != vllm_router::Errc::unknown_model) return 1;
  std::printf("vllm_router %s: %s then %s\n", vllm_router::version(), first.c_str(), second.c_str());
  return first != second ? 0 : 1;  // round robin alternates
}
