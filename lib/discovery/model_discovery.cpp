// Model discovery: reads each endpoint's GET /v1/models and routes every served name and LoRA to it.
#include <map>
#include <set>
#include <thread>

#include "source_detail.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_source.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

class CollectSink final : public BodySink {
 public:
  explicit CollectSink(std::string& out) : out_(out) {}
  bool write(const char* data, std::size_t size) override {
    if (out_.size() + size > (4u << 20)) return false;  // a model list is small; refuse a flood
    out_.append(data, size);
    return true;
  }

 private:
  std::string& out_;
};

class ModelDiscovery final : public EndpointSource {
 public:
  ModelDiscovery(std::unique_ptr<EndpointSource> inner, const ModelDiscoveryConfig& config,
                 std::shared_ptr<Transport> transport)
      : inner_(std::move(inner)), config_(config), transport_(std::move(transport)) {
    if (!transport_) {
      HttpTransportOptions options;
      options.connect_timeout_ms = config_.timeout_ms;
      options.read_timeout_ms = config_.timeout_ms;
      options.max_idle_per_endpoint = 1;
      transport_ = make_http_transport(options);
    }
  }
  ~ModelDiscovery() override { stop(); }

  std::string describe() const override { return inner_->describe() + " + /v1/models"; }
  const std::string& model() const noexcept override { return inner_->model(); }

  Result<EndpointSet> poll_once() override {
    auto inner = inner_->poll_once();
    if (!inner) return std::move(inner).error();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      inner_set_ = inner.value();
    }
    return refresh(false);
  }

  void start(EndpointSetCallback on_set, DiscoveryErrorCallback on_error) override {
    on_error_ = on_error;
    ticker_.start([this, on_set = std::move(on_set)] {
      bool have = false;
      EndpointSet last;
      auto next_full = std::chrono::steady_clock::now();
      for (;;) {
        const auto now = std::chrono::steady_clock::now();
        const bool full = now >= next_full;
        if (full) next_full = now + std::chrono::milliseconds(config_.interval_ms);
        bool ready = false;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ready = inner_known_;
        }
        if (ready) {
          auto set = refresh(!full);
          if (set && (!have || !detail::same_set(last, set.value()))) {
            have = true;
            last = std::move(set).value();
            if (on_set) on_set(last);
          }
        }
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            next_full - std::chrono::steady_clock::now());
        if (!ticker_.wait(std::max(wait, std::chrono::milliseconds(1)))) return;
      }
    });
    inner_->start(
        [this](const EndpointSet& set) {
          {
            std::lock_guard<std::mutex> lock(mutex_);
            inner_set_ = set;
            inner_known_ = true;
          }
          ticker_.wake();
        },
        on_error);
  }

  void stop() override {
    inner_->stop();
    ticker_.stop();
  }

 private:
  // Reads /v1/models of the inner set's endpoints (only the never-read ones when `only_new`)
  // and returns the set with their names.
  Result<EndpointSet> refresh(bool only_new) {
    EndpointSet inner;
    std::vector<std::string> due;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      inner = inner_set_;
      std::set<std::string> present;
      for (const auto& e : inner) {
        present.insert(e.url);
        if (!only_new || known_.count(e.url) == 0) due.push_back(e.url);
      }
      for (auto it = known_.begin(); it != known_.end();) {
        it = present.count(it->first) != 0 ? std::next(it) : known_.erase(it);
      }
    }
    std::vector<std::optional<ServedModels>> results(due.size());
    {
      std::vector<std::thread> threads;
      for (std::size_t i = 0; i < due.size(); ++i) {
        const DiscoveredEndpoint* e = nullptr;
        for (const auto& candidate : inner) {
          if (candidate.url == due[i]) e = &candidate;
        }
        threads.emplace_back([this, e, &results, i] { results[i] = fetch(*e); });
      }
      for (auto& t : threads) t.join();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < due.size(); ++i) {
      if (results[i]) known_[due[i]] = std::move(*results[i]);
    }
    EndpointSet out = inner;
    for (DiscoveredEndpoint& e : out) {
      auto it = known_.find(e.url);
      if (it == known_.end()) continue;  // never read: what the inner source said
      e.models = it->second.models;
      e.loras = it->second.loras;
    }
    return out;
  }

  std::optional<ServedModels> fetch(const DiscoveredEndpoint& e) {
    auto url = parse_url(e.url);
    if (!url) return std::nullopt;
    Endpoint endpoint;
    endpoint.id = e.url;
    endpoint.url = std::move(url).value();
    endpoint.api_key = e.api_key;
    const Headers headers;
    UpstreamRequest request;
    request.method = "GET";
    request.path = "/v1/models";
    request.headers = &headers;
    request.timeout_ms = config_.timeout_ms;
    auto response = transport_->send(endpoint, request, {});
    if (!response) return std::nullopt;
    std::string body;
    CollectSink sink(body);
    const auto relayed = response.value()->relay(sink);
    if (response.value()->status() != 200 || !relayed) return std::nullopt;
    auto served = parse_served_models(body);
    if (!served || served->models.empty()) return std::nullopt;
    return std::move(served).value();
  }

  std::unique_ptr<EndpointSource> inner_;
  ModelDiscoveryConfig config_;
  std::shared_ptr<Transport> transport_;
  std::mutex mutex_;  // guards inner_set_, inner_known_, known_
  EndpointSet inner_set_;
  bool inner_known_ = false;
  std::map<std::string, ServedModels> known_;  // by URL: the last good /v1/models answer
  DiscoveryErrorCallback on_error_;
  detail::Ticker ticker_;
};

}  // namespace

std::unique_ptr<EndpointSource> make_model_discovery(std::unique_ptr<EndpointSource> inner,
                                                     const ModelDiscoveryConfig& config,
                                                     std::shared_ptr<Transport> transport) {
  return std::make_unique<ModelDiscovery>(std::move(inner), config, std::move(transport));
}

VLLM_ROUTER_END_NAMESPACE
