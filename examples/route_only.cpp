// Example: routing decisions only. vllm_router picks the endpoint and accounts for the request;
// the program sends it with its own HTTP client (cpp-httplib's Client here). Target
// `example_route_only`.
//
//   example_route_only --requests 6 http://127.0.0.1:8001 http://127.0.0.1:8002
//
// Shows: parse_router_config (JSON), parse_request, Router::route -> Route{lease}, the alias
// rewrite, Lease::complete with an Outcome, retrying a refused endpoint via route()'s exclude list.
#include <vllm_router/vllm_router.h>

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace vr = vllm_router;

namespace {

// Sends one request to `route`'s endpoint with our own client; returns the outcome to record.
vr::Outcome send(const vr::Route& route, std::string_view path, const std::string& body, int& status_out,
                 std::string& answer) {
  const vr::Endpoint& ep = route.lease.endpoint();
  httplib::Client client(ep.url.host, ep.url.port);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(60, 0);
  httplib::Headers headers;
  if (!ep.api_key.empty()) headers.emplace("Authorization", "Bearer " + ep.api_key);
  const std::string target = ep.url.prefix + std::string(path);

  vr::Outcome outcome;
  auto result = client.Post(target, headers, body, "application/json");
  outcome.latency = std::chrono::steady_clock::now() - route.lease.started();
  if (!result) {
    // Connection errors mean nothing was delivered: safe to try another endpoint.
    outcome.kind = result.error() == httplib::Error::Connection ? vr::OutcomeKind::connect_failure
                                                                 : vr::OutcomeKind::error;
    status_out = 0;
    return outcome;
  }
  outcome.kind = vr::OutcomeKind::success;
  outcome.status = result->status;
  outcome.bytes = result->body.size();
  status_out = result->status;
  answer = result->body;
  return outcome;
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 4;
  std::vector<std::string> urls;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--requests" && i + 1 < argc) {
      requests = std::atoi(argv[++i]);
    } else {
      urls.push_back(arg);
    }
  }
  if (urls.empty()) {
    std::fprintf(stderr, "usage: example_route_only [--requests N] URL [URL...]\n");
    return 2;
  }
  std::string json = R"({"policy":"least_requests","models":[{"name":"facebook/opt-125m","aliases":["opt"],"endpoints":[)";
  for (std::size_t i = 0; i < urls.size(); ++i) json += (i ? ",\"" : "\"") + urls[i] + "\"";
  json += "]}]}";

  auto config = vr::parse_router_config(json);
  if (!config) {
    std::fprintf(stderr, "config: %s\n", config.error().message.c_str());
    return 1;
  }
  auto router = vr::Router::create(config.value());
  if (!router) {
    std::fprintf(stderr, "router: %s\n", router.error().message.c_str());
    return 1;
  }

  std::map<std::string, int> served;
  int failed = 0;
  for (int n = 0; n < requests; ++n) {
    const std::string body = R"({"model":"opt","prompt":"Hello )" + std::to_string(n) + R"(","max_tokens":2})";
    auto view = vr::parse_request(body);
    if (!view) return 1;
    std::vector<std::string> tried;  // endpoint ids that refused: excluded from the next pick
    int status = 0;
    for (;;) {
      std::vector<std::string_view> exclude(tried.begin(), tried.end());
      auto route = router.value()->route(view.value(), exclude);
      if (!route) {  // unknown model, or every endpoint tried
        std::fprintf(stderr, "request %d: %s\n", n, route.error().message.c_str());
        break;
      }
      // An alias resolved: the served name goes upstream.
      const std::string upstream_body = route->resolution.rewrite
                                            ? vr::rewrite_model(body, view.value(), route->resolution.upstream)
                                            : body;
      std::string answer;
      const vr::Outcome outcome = send(route.value(), "/v1/completions", upstream_body, status, answer);
      const std::string id = route->lease.endpoint().id;
      route->lease.complete(outcome);  // in-flight count down, counters (and observer) updated
      if (outcome.kind == vr::OutcomeKind::connect_failure) {
        std::printf("request %d: %s refused, trying another\n", n, id.c_str());
        tried.push_back(id);
        continue;
      }
      std::printf("request %d -> %s: %d\n", n, id.c_str(), status);
      if (status == 200) ++served[id];
      break;
    }
    if (status != 200) ++failed;
  }
  for (const auto& [id, count] : served) std::printf("served by %s: %d\n", id.c_str(), count);
  return failed == 0 ? 0 : 1;
}
