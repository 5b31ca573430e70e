// Example host service: its own cpp-httplib server, vllm_router for resolve + pick + forward, a
// custom policy registered by name and its own Observer. Build target `example_host_service`.
//
//   example_host_service --port 8080 --model facebook/opt-125m=http://127.0.0.1:8001,http://127.0.0.1:8002
//   curl localhost:8080/v1/chat/completions -d '{"model":"facebook/opt-125m","stream":true,
//        "messages":[{"role":"user","content":"Hi"}]}'
//   curl localhost:8080/stats      # what the observer saw, per endpoint
//
// Everything vllm_router-specific is in main() and handle_post(); the rest is the host's own.
#include <vllm_router/vllm_router.h>

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vr = vllm_router;

namespace {

// ---------------------------------------------------------------- a custom policy
// "Weighted least requests": the candidate with the fewest requests in flight per unit of
// weight, ties drawn at random. Stateless, so pick() is safe from many threads; randomness comes
// from the injected ctx.rng, so it is deterministic for a seed (RouterOptions::seed).
class WeightedLeastRequests final : public vr::Policy {
 public:
  std::string_view name() const noexcept override { return "weighted_least_requests"; }
  std::size_t pick(const vr::PickContext& ctx, std::span<const vr::Candidate> candidates) const override {
    std::size_t best = 0;
    std::size_t ties = 0;
    double best_load = 0;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const double load = static_cast<double>(candidates[i].state->sample().in_flight + 1) /
                          static_cast<double>(std::max<std::uint32_t>(1, candidates[i].endpoint->weight));
      if (i == 0 || load < best_load) {
        best = i;
        best_load = load;
        ties = 1;
      } else if (load == best_load && ctx.rng.below(++ties) == 0) {
        best = i;  // reservoir sampling: each tied candidate kept with probability 1/ties
      }
    }
    return best;
  }
};

// ---------------------------------------------------------------- the host's own observer
// Called on request threads, concurrently: a mutex around a small map is plenty for an example
// (a production host would use atomics or its metrics library).
class StatsObserver final : public vr::Observer {
 public:
  void on_outcome(std::string_view model, const vr::Endpoint& endpoint, const vr::Outcome& outcome) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Stats& s = stats_[endpoint.id];
    ++s.attempts;
    if (outcome.kind == vr::OutcomeKind::success && outcome.status < 500) ++s.successes;
    if (outcome.kind != vr::OutcomeKind::success || outcome.status >= 500) ++s.failures;
    s.bytes += outcome.bytes;
    s.model = std::string(model);
  }

  std::string json() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out = "{";
    for (const auto& [id, s] : stats_) {
      if (out.size() > 1) out += ",";
      out += "\"" + id + "\":{\"model\":\"" + s.model + "\",\"attempts\":" + std::to_string(s.attempts) +
             ",\"successes\":" + std::to_string(s.successes) + ",\"failures\":" + std::to_string(s.failures) +
             ",\"bytes\":" + std::to_string(s.bytes) + "}";
    }
    return out + "}";
  }

 private:
  struct Stats {
    std::string model;
    std::uint64_t attempts = 0, successes = 0, failures = 0, bytes = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Stats> stats_;
};

// cpp-httplib's DataSink as the library's BodySink.
class HttplibSink final : public vr::BodySink {
 public:
  explicit HttplibSink(httplib::DataSink& sink) : sink_(sink) {}
  bool write(const char* data, std::size_t size) override { return sink_.write(data, size); }
  bool alive() override { return sink_.is_writable(); }

 private:
  httplib::DataSink& sink_;
};

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool forwarded_header(const std::string& name) {
  // End-to-end headers only: framing and hop-by-hop ones are the transport's business, the
  // client's Authorization is for this host (the endpoint's own key is added by the library).
  static const char* const kDrop[] = {"host", "content-length", "transfer-encoding", "connection",
                                      "keep-alive", "authorization", "accept-encoding", "upgrade",
                                      "te", "trailer", "proxy-connection", "remote_addr", "remote_port",
                                      "local_addr", "local_port"};
  const std::string lower = lowercase(name);
  return std::none_of(std::begin(kDrop), std::end(kDrop), [&](const char* d) { return lower == d; });
}

void reply_error(httplib::Response& res, const vr::Error& error) {
  res.status = vr::http_status(error.code);
  res.set_content(vr::to_openai_json(error), "application/json");
}

void handle_post(vr::Router& router, const httplib::Request& req, httplib::Response& res) {
  std::string body = req.body;  // our copy: parse_request_padded pads it in place
  auto view = vr::parse_request_padded(body);
  if (!view) return reply_error(res, view.error());

  vr::Headers headers;
  for (const auto& [name, value] : req.headers) {
    if (forwarded_header(name)) headers.push_back(vr::Header{name, value});
  }
  vr::UpstreamRequest upstream;
  upstream.path = req.target;
  upstream.headers = &headers;
  upstream.body = body;
  // resolve + pick + send; connect failures are retried on other replicas inside forward().
  auto forwarded = router.forward(view.value(), upstream);
  if (!forwarded) return reply_error(res, forwarded.error());

  // The Exchange completes its lease when relay() ends (or as cancelled if dropped): share it
  // with the content provider, which cpp-httplib runs after this handler returns.
  auto exchange = std::make_shared<vr::Response>(std::move(forwarded.value()));
  res.status = exchange->status();
  std::string content_type = "application/json";
  for (const vr::Header& h : exchange->headers()) {
    if (lowercase(h.name) == "content-type") {
      content_type = h.value;
    } else {
      res.set_header(h.name, h.value);
    }
  }
  res.set_header("X-Served-By", exchange->endpoint().id);
  res.set_chunked_content_provider(content_type, [exchange](std::size_t, httplib::DataSink& sink) {
    HttplibSink adapter(sink);
    auto relayed = exchange->relay(adapter);  // one sink write per upstream read: SSE flows
    if (!relayed) return false;               // cut the connection: never fake a complete body
    sink.done();
    return true;
  });
}

int usage() {
  std::fprintf(stderr,
               "usage: example_host_service [--host H] [--port N] --model NAME=URL[,URL...] ...\n"
               "  --port 0 picks a free port; the chosen one is printed.\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 8080;
  vr::RouterConfig config;
  config.policy = "weighted_least_requests";  // our policy, by name, for every model
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string value = argv[++i];
    if (arg == "--host") {
      host = value;
    } else if (arg == "--port") {
      port = std::atoi(value.c_str());
    } else if (arg == "--model") {
      const auto eq = value.find('=');
      if (eq == std::string::npos) return usage();
      vr::ModelConfig model;
      model.name = value.substr(0, eq);
      for (std::size_t start = eq + 1; start <= value.size();) {
        const auto comma = std::min(value.find(',', start), value.size());
        model.endpoints.push_back(vr::EndpointConfig{value.substr(start, comma - start), 1, ""});
        start = comma + 1;
      }
      config.models.push_back(std::move(model));
    } else {
      return usage();
    }
  }
  if (config.models.empty()) return usage();

  auto observer = std::make_shared<StatsObserver>();
  vr::RouterOptions options;
  options.observer = observer;
  // Registered in this Router's own registry: no change to the library, no global state.
  options.policies.add("weighted_least_requests",
                       [] { return std::make_shared<const WeightedLeastRequests>(); });
  auto created = vr::Router::create(config, std::move(options));
  if (!created) {
    std::fprintf(stderr, "config: %s (%s)\n", created.error().message.c_str(), created.error().param.c_str());
    return 1;
  }
  std::unique_ptr<vr::Router> router = std::move(created).value();

  httplib::Server server;
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    // Relay bytes as they are: no gzip of JSON or SSE by the server library.
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.Get("/stats", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(observer->json(), "application/json");
  });
  server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) { handle_post(*router, req, res); });

  if (port == 0) {
    port = server.bind_to_any_port(host);
  } else if (!server.bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    std::fprintf(stderr, "cannot listen on %s\n", host.c_str());
    return 1;
  }
  std::printf("host_service listening on http://%s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
