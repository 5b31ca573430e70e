// Discovery: merges the configured models with every source's latest endpoint set; the static
// source, the source factory and the /v1/models parser.
#include <simdjson.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "source_detail.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_source.h"
#include "vllm_router/router.h"

VLLM_ROUTER_BEGIN_NAMESPACE

EndpointSource::~EndpointSource() = default;

namespace {

// Identity of an endpoint URL inside one model (the Router keys state the same way).
std::string url_key(const std::string& url) {
  auto parsed = parse_url(url);
  if (!parsed) return {};
  return endpoint_id(parsed.value());
}

// Endpoints of one discovered name, in first-seen order, deduplicated by URL.
struct Members {
  std::vector<EndpointConfig> endpoints;
  std::set<std::string> keys;
  void add(const DiscoveredEndpoint& e, const std::string& key) {
    if (!keys.insert(key).second) return;
    endpoints.push_back(EndpointConfig{e.url, std::max<std::uint32_t>(1, e.weight), e.api_key});
  }
};

// A stable text form of the models (what Router::update would change), to skip no-op updates.
std::string signature(const RouterConfig& config) {
  std::string out = config.default_model + "\n";
  for (const ModelConfig& m : config.models) {
    out += m.name + "|";
    for (const auto& a : m.aliases) out += a + ",";
    out += "|";
    for (const auto& l : m.loras) out += l + ",";
    out += "|";
    for (const auto& e : m.endpoints) out += e.url + " " + std::to_string(e.weight) + " " + e.api_key + ",";
    if (m.prefill) {
      out += "|prefill " + m.prefill->policy + (m.prefill->colocated_fallback ? " 1|" : " 0|");
      for (const auto& e : m.prefill->endpoints) out += e.url + " " + std::to_string(e.weight) + " " + e.api_key + ",";
    }
    out += "\n";
  }
  return out;
}

class StaticSource final : public EndpointSource {
 public:
  explicit StaticSource(const DiscoveryConfig& config) : model_(config.model) {
    for (const std::string& url : config.endpoints) {
      set_.push_back(DiscoveredEndpoint{url, {}, {}, config.api_key, config.weight, ""});
    }
    detail::normalise_set(set_);
  }
  std::string describe() const override { return "static (" + std::to_string(set_.size()) + " endpoint(s))"; }
  const std::string& model() const noexcept override { return model_; }
  Result<EndpointSet> poll_once() override { return set_; }
  void start(EndpointSetCallback on_set, DiscoveryErrorCallback) override {
    if (on_set) on_set(set_);
  }
  void stop() override {}

 private:
  std::string model_;
  EndpointSet set_;
};

}  // namespace

std::unique_ptr<EndpointSource> make_static_source(const DiscoveryConfig& config) {
  return std::make_unique<StaticSource>(config);
}

Result<std::unique_ptr<EndpointSource>> make_endpoint_source(const DiscoveryConfig& given) {
  DiscoveryConfig config = given;
  if (!config.api_key_file.empty()) {
    std::ifstream in(config.api_key_file, std::ios::binary);
    std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (!in.good() && !in.eof()) key.clear();
    if (key.empty()) {
      return Error{Errc::config, "api_key_file " + config.api_key_file + ": cannot read a key from it", "api_key_file"};
    }
    config.api_key = std::move(key);
  }
  std::unique_ptr<EndpointSource> source;
  if (config.type == "static") {
    source = make_static_source(config);
  } else if (config.type == "dns") {
    source = make_dns_source(config);
  } else if (config.type == "kubernetes") {
    auto kube = make_kubernetes_source(config);
    if (!kube) return std::move(kube).error();
    source = std::move(kube).value();
  } else {
    return Error{Errc::config, "unknown endpoint source type '" + config.type + "'", "type"};
  }
  if (config.discover_models.enabled) source = make_model_discovery(std::move(source), config.discover_models);
  return source;
}

Result<ServedModels> parse_served_models(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS) {
    return Error{Errc::upstream_protocol, "/v1/models: not JSON", ""};
  }
  simdjson::dom::array data;
  if (doc["data"].get_array().get(data) != simdjson::SUCCESS) {
    return Error{Errc::upstream_protocol, "/v1/models: no \"data\" array", ""};
  }
  ServedModels out;
  for (simdjson::dom::element entry : data) {
    std::string_view id;
    if (entry["id"].get_string().get(id) != simdjson::SUCCESS || id.empty()) continue;
    std::string_view parent;
    const bool is_lora = entry["parent"].get_string().get(parent) == simdjson::SUCCESS && !parent.empty();
    auto& list = is_lora ? out.loras : out.models;
    if (std::find(list.begin(), list.end(), id) == list.end()) list.emplace_back(id);
  }
  return out;
}

RouterConfig compose_router_config(const RouterConfig& base, const std::vector<EndpointSet>& sets) {
  RouterConfig out = base;
  std::map<std::string, std::size_t> configured;  // model name -> index in out.models
  std::set<std::string> reserved;                  // configured aliases and LoRA names
  for (std::size_t i = 0; i < out.models.size(); ++i) {
    configured.emplace(out.models[i].name, i);
    for (const auto& a : out.models[i].aliases) reserved.insert(a);
    for (const auto& l : out.models[i].loras) reserved.insert(l);
  }
  std::map<std::string, Members> served, loras, prefill;  // prefill: endpoints with role "prefill"
  std::map<std::string, std::set<std::string>> lora_parents;
  for (const EndpointSet& set : sets) {
    for (const DiscoveredEndpoint& e : set) {
      if (e.models.empty()) continue;
      const std::string key = url_key(e.url);
      if (key.empty()) continue;  // not a usable URL: never let one bad address block the rest
      if (e.role == "prefill") {
        for (const std::string& name : e.models) {
          if (!name.empty()) prefill[name].add(e, key);
        }
        continue;
      }
      for (const std::string& name : e.models) {
        if (!name.empty()) served[name].add(e, key);
      }
      for (const std::string& lora : e.loras) {
        if (lora.empty()) continue;
        loras[lora].add(e, key);
        lora_parents[lora].insert(e.models.front());
      }
    }
  }
  // Discovered models, by name; configured ones are extended in place.
  std::map<std::string, ModelConfig> discovered;
  for (auto& [name, members] : served) {
    if (auto it = configured.find(name); it != configured.end()) {
      ModelConfig& model = out.models[it->second];
      std::set<std::string> have;
      for (const auto& e : model.endpoints) have.insert(url_key(e.url));
      for (const auto& e : members.endpoints) {
        if (have.insert(url_key(e.url)).second) model.endpoints.push_back(e);
      }
      continue;
    }
    if (reserved.count(name) != 0) continue;
    ModelConfig model;
    model.name = name;
    model.endpoints = members.endpoints;
    discovered.emplace(name, std::move(model));
  }
  for (auto& [name, members] : loras) {
    if (configured.count(name) != 0 || reserved.count(name) != 0 || served.count(name) != 0) continue;
    const auto& parents = lora_parents[name];
    if (parents.size() == 1) {
      auto parent = discovered.find(*parents.begin());
      if (parent != discovered.end() && served[parent->first].keys == members.keys) {
        parent->second.loras.push_back(name);
        continue;
      }
    }
    ModelConfig model;
    model.name = name;
    model.endpoints = members.endpoints;
    discovered.emplace(name, std::move(model));
  }
  for (auto& [name, model] : discovered) out.models.push_back(std::move(model));
  // Discovered prefill endpoints join their model's prefill pool; a prefill pool with no
  // endpoint (none discovered yet) leaves the model colocated until one is.
  for (ModelConfig& model : out.models) {
    if (auto it = prefill.find(model.name); it != prefill.end()) {
      if (!model.prefill) model.prefill.emplace();
      std::set<std::string> have;
      for (const auto& e : model.prefill->endpoints) have.insert(url_key(e.url));
      for (const auto& e : it->second.endpoints) {
        if (have.insert(url_key(e.url)).second) model.prefill->endpoints.push_back(e);
      }
    }
    if (model.prefill && model.prefill->endpoints.empty()) model.prefill.reset();
  }
  out.models.erase(std::remove_if(out.models.begin(), out.models.end(),
                                  [](const ModelConfig& m) { return m.endpoints.empty(); }),
                   out.models.end());
  if (!out.default_model.empty()) {
    bool found = false;
    for (const ModelConfig& m : out.models) {
      found = found || m.name == out.default_model ||
              std::find(m.aliases.begin(), m.aliases.end(), out.default_model) != m.aliases.end() ||
              std::find(m.loras.begin(), m.loras.end(), out.default_model) != m.loras.end();
    }
    if (!found) out.default_model.clear();
  }
  return out;
}

struct Discovery::Impl {
  Impl(Router& r, RouterConfig s) : router(r), static_config(std::move(s)) {}
  Result<void> apply_locked(bool force);

  Router& router;
  mutable std::mutex mutex;  // guards everything below; serialises applies
  RouterConfig static_config;
  std::vector<std::unique_ptr<EndpointSource>> sources;
  std::vector<EndpointSet> sets;
  RouterConfig composed;
  std::string applied_signature;
  bool applied_once = false;
  DiscoveryErrorCallback on_error;
};

Discovery::Discovery(Router& router, RouterConfig static_config)
    : impl_(std::make_unique<Impl>(router, std::move(static_config))) {}

Discovery::~Discovery() { stop(); }

void Discovery::add_source(std::unique_ptr<EndpointSource> source) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sources.push_back(std::move(source));
  impl_->sets.emplace_back();
}

std::size_t Discovery::source_count() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->sources.size();
}

Result<void> Discovery::Impl::apply_locked(bool force) {
  std::vector<EndpointSet> named = sets;
  for (std::size_t i = 0; i < named.size(); ++i) {
    const std::string& model = sources[i]->model();
    if (model.empty()) continue;
    for (DiscoveredEndpoint& e : named[i]) {
      if (e.models.empty()) e.models.push_back(model);
    }
  }
  RouterConfig next = compose_router_config(static_config, named);
  std::string sig = signature(next);
  if (!force && applied_once && sig == applied_signature) return {};
  if (auto r = router.update(next); !r) return r;
  composed = std::move(next);
  applied_signature = std::move(sig);
  applied_once = true;
  return {};
}

Result<void> Discovery::poll_once() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  Result<void> first;
  for (std::size_t i = 0; i < impl_->sources.size(); ++i) {
    auto set = impl_->sources[i]->poll_once();
    if (!set) {
      if (first) first = std::move(set).error();
      continue;
    }
    impl_->sets[i] = std::move(set).value();
  }
  auto applied = impl_->apply_locked(false);
  if (!first) return first;
  return applied;
}

void Discovery::start(DiscoveryErrorCallback on_error) {
  std::vector<EndpointSource*> sources;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->on_error = std::move(on_error);
    for (auto& s : impl_->sources) sources.push_back(s.get());
  }
  for (std::size_t i = 0; i < sources.size(); ++i) {
    sources[i]->start(
        [this, i](const EndpointSet& set) {
          auto r = set_endpoints(i, set);
          if (!r) {
            std::lock_guard<std::mutex> lock(impl_->mutex);
            if (impl_->on_error) impl_->on_error(r.error());
          }
        },
        [this](const Error& e) {
          std::lock_guard<std::mutex> lock(impl_->mutex);
          if (impl_->on_error) impl_->on_error(e);
        });
  }
}

void Discovery::stop() {
  std::vector<EndpointSource*> sources;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    for (auto& s : impl_->sources) sources.push_back(s.get());
  }
  for (EndpointSource* s : sources) s->stop();
}

Result<void> Discovery::set_static(RouterConfig static_config) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  RouterConfig previous = std::move(impl_->static_config);
  impl_->static_config = std::move(static_config);
  auto r = impl_->apply_locked(true);
  if (!r) impl_->static_config = std::move(previous);  // a rejected reload keeps the current configuration
  return r;
}

Result<void> Discovery::set_endpoints(std::size_t index, EndpointSet set) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (index >= impl_->sets.size()) return Error{Errc::invalid_argument, "no such endpoint source", ""};
  impl_->sets[index] = std::move(set);
  return impl_->apply_locked(false);
}

RouterConfig Discovery::composed() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->composed;
}

VLLM_ROUTER_END_NAMESPACE
