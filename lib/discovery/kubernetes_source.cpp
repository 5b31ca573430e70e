// Kubernetes endpoint source: list + watch of EndpointSlices or Pods through the API server.
// cpp-httplib is the HTTP(S) client here (https needs OpenSSL, which the library's own
// transport does not speak); it stays inside this file. What it reads (objects, list pages, watch
// events) is parsed in kubernetes_parse.cpp.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kubernetes_parse.h"
#include "source_detail.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/endpoint_source.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

class KubernetesSource final : public EndpointSource {
 public:
  KubernetesSource(const DiscoveryConfig& config, std::string base_url, Url api, std::string ns, bool in_cluster)
      : config_(config), base_url_(std::move(base_url)), api_(std::move(api)), namespace_(std::move(ns)),
        in_cluster_(in_cluster) {
    path_ = api_.prefix + (config_.resource == "pods"
                               ? "/api/v1/namespaces/" + namespace_ + "/pods"
                               : "/apis/discovery.k8s.io/v1/namespaces/" + namespace_ + "/endpointslices");
  }
  ~KubernetesSource() override { stop(); }

  std::string describe() const override {
    return "kubernetes " + namespace_ + "/" + config_.resource + " (" +
           (config_.label_selector.empty() ? std::string("all") : config_.label_selector) + ") via " + base_url_;
  }
  const std::string& model() const noexcept override { return config_.model; }

  Result<EndpointSet> poll_once() override {
    auto listed = list();
    if (!listed) return std::move(listed).error();
    std::lock_guard<std::mutex> lock(mutex_);
    cache_ = std::move(*listed);
    return flatten_locked();
  }

  void start(EndpointSetCallback on_set, DiscoveryErrorCallback on_error) override {
    stopping_.store(false);
    ticker_.start([this, on_set = std::move(on_set), on_error = std::move(on_error)] {
      run(on_set, on_error);
    });
  }

  void stop() override {
    stopping_.store(true);
    {
      std::lock_guard<std::mutex> lock(client_mutex_);
      if (watch_client_ != nullptr) watch_client_->stop();  // unblocks a waiting watch read
    }
    ticker_.stop();
  }

 private:
  enum class WatchEnd { ended, gone, failed, stopped };

  // By host and port, never by URL: cpp-httplib 0.11's URL parser accepts only digits and
  // colons inside brackets, so "https://[fd00:10:96::1]:443" (an IPv6 API server) would fail.
  // The Host header and certificate check take the bare address (IPv6 in brackets, IP SANs).
  std::unique_ptr<httplib::ClientImpl> client(std::chrono::seconds read_timeout) const {
    std::unique_ptr<httplib::ClientImpl> c;
    if (uses_tls(api_)) {
      auto tls = std::make_unique<httplib::SSLClient>(api_.host, api_.port);
      if (!config_.ca_path.empty() && (in_cluster_ || !read_file(config_.ca_path).empty())) {
        tls->set_ca_cert_path(config_.ca_path);
      }
      tls->enable_server_certificate_verification(true);
      c = std::move(tls);
    } else {
      c = std::make_unique<httplib::ClientImpl>(api_.host, api_.port);
    }
    c->set_connection_timeout(std::chrono::seconds(5));
    c->set_read_timeout(read_timeout);
    c->set_keep_alive(false);
    return c;
  }

  httplib::Headers headers() const {
    httplib::Headers h{{"Accept", "application/json"}};
    // Re-read every time: projected service-account tokens rotate.
    const std::string token = read_file(config_.token_path);
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    return h;
  }

  std::string query(bool watch) const {
    std::string q = "?";
    if (!config_.label_selector.empty()) q += "labelSelector=" + percent_encode(config_.label_selector) + "&";
    if (watch) q += "watch=1&allowWatchBookmarks=true&";
    return q;
  }

  Result<detail::KubernetesObjects> list() const {
    detail::KubernetesObjects out;
    std::string cont;
    auto c = client(std::chrono::seconds(30));
    for (int page = 0; page < 1000; ++page) {
      // resourceVersion=0: served from the API server's watch cache, not a quorum read of etcd
      // (what client-go's informers do); a continued page names its own snapshot instead.
      std::string target = path_ + query(false) + "limit=500";
      target += cont.empty() ? "&resourceVersion=0" : "&continue=" + percent_encode(cont);
      auto res = c->Get(target, headers());
      if (!res) {
        return Error{Errc::connect_failed,
                     "kubernetes list " + path_ + " failed: " + httplib::to_string(res.error()), base_url_};
      }
      if (res->status != 200) {
        return Error{Errc::upstream_protocol,
                     "kubernetes list " + path_ + " answered " + std::to_string(res->status) + ": " +
                         res->body.substr(0, 200),
                     base_url_};
      }
      if (!detail::read_kubernetes_list_page(res->body, config_, out, cont)) {
        return Error{Errc::upstream_protocol, "kubernetes list " + path_ + ": not JSON", base_url_};
      }
      if (cont.empty()) break;
    }
    return out;
  }

  EndpointSet flatten_locked() const { return detail::flatten_kubernetes(cache_); }

  // Applies one watch event line; sets `gone` on an ERROR event (410 Gone, or any other: relist).
  bool apply_event(std::string_view line, bool& gone) {
    std::lock_guard<std::mutex> lock(mutex_);
    return detail::apply_kubernetes_watch_event(line, config_, cache_, gone);
  }

  WatchEnd watch(std::uint32_t timeout_s, const std::function<void()>& changed, std::size_t& events) {
    std::string target;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      target = path_ + query(true) + "timeoutSeconds=" + std::to_string(timeout_s) +
               "&resourceVersion=" + percent_encode(cache_.resource_version);
    }
    auto c = client(std::chrono::seconds(timeout_s + 30));
    {
      std::lock_guard<std::mutex> lock(client_mutex_);
      if (stopping_.load()) return WatchEnd::stopped;
      watch_client_ = c.get();
    }
    int status = 0;
    bool gone = false;
    std::string buffer;
    auto res = c->Get(
        target, headers(),
        [&](const httplib::Response& r) {
          status = r.status;
          return r.status == 200 && !stopping_.load();
        },
        [&](const char* data, std::size_t size) {
          buffer.append(data, size);
          bool any = false;
          std::size_t start = 0;
          for (std::size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string_view line(buffer.data() + start, nl - start);
            if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
            ++events;
            any = apply_event(line, gone) || any;
            if (gone) break;
          }
          buffer.erase(0, start);
          if (any) changed();  // one push per read: a burst of events becomes one update
          return !gone && !stopping_.load();
        });
    {
      std::lock_guard<std::mutex> lock(client_mutex_);
      watch_client_ = nullptr;
    }
    if (stopping_.load()) return WatchEnd::stopped;
    if (gone || status == 410) return WatchEnd::gone;
    if (status != 200) return WatchEnd::failed;
    (void)res;  // a dropped connection after a 200: resume from the last resourceVersion
    return WatchEnd::ended;
  }

  void run(const EndpointSetCallback& on_set, const DiscoveryErrorCallback& on_error) {
    bool have = false;
    EndpointSet last;
    const auto push = [&] {
      EndpointSet set;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        set = flatten_locked();
      }
      if (have && detail::same_set(last, set)) return;
      have = true;
      last = std::move(set);
      if (on_set) on_set(last);
    };
    const auto report = [&](Error e) {
      if (on_error && !stopping_.load()) on_error(e);
    };
    std::uint32_t failures = 0;
    const auto backoff = [&] {
      ++failures;
      std::uint64_t delay = config_.backoff_initial_ms;
      for (std::uint32_t i = 1; i < failures && delay < config_.backoff_max_ms; ++i) delay *= 2;
      delay = std::min<std::uint64_t>(delay, config_.backoff_max_ms);
      return ticker_.wait(std::chrono::milliseconds(delay));
    };
    bool need_list = true;
    auto listed_at = std::chrono::steady_clock::now();
    while (!stopping_.load()) {
      if (need_list) {
        auto listed = list();
        if (!listed) {
          report(listed.error());
          if (!backoff()) return;
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mutex_);
          cache_ = std::move(*listed);
        }
        push();
        need_list = false;
        failures = 0;
        listed_at = std::chrono::steady_clock::now();
      }
      const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - listed_at);
      if (since.count() >= config_.resync_ms) {
        need_list = true;  // periodic resync: a full relist repairs anything a watch missed
        continue;
      }
      const auto left_s = static_cast<std::uint32_t>((config_.resync_ms - since.count() + 999) / 1000);
      const auto started = std::chrono::steady_clock::now();
      std::size_t events = 0;
      const WatchEnd end = watch(std::max<std::uint32_t>(1, left_s), push, events);
      if (end == WatchEnd::stopped) return;
      if (end == WatchEnd::gone) {
        need_list = true;  // 410 Gone: our resourceVersion is too old
        continue;
      }
      if (end == WatchEnd::failed) {
        report(Error{Errc::upstream_protocol, "kubernetes watch of " + path_ + " failed", base_url_});
        if (!backoff()) return;
        continue;
      }
      // Ended or dropped after a 200: resume at once, unless it keeps ending without events
      // (then back off so a broken server is not hammered).
      if (events == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
        if (!backoff()) return;
      } else {
        failures = 0;
      }
    }
  }

  DiscoveryConfig config_;
  std::string base_url_;
  Url api_;
  std::string namespace_;
  bool in_cluster_;
  std::string path_;
  std::mutex mutex_;  // guards cache_
  detail::KubernetesObjects cache_;
  std::mutex client_mutex_;
  httplib::ClientImpl* watch_client_ = nullptr;
  std::atomic<bool> stopping_{false};
  detail::Ticker ticker_;
};

}  // namespace

Result<std::unique_ptr<EndpointSource>> make_kubernetes_source(const DiscoveryConfig& config) {
  std::string base = config.api_url;
  bool in_cluster = false;
  if (base.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || *host == '\0') {
      return Error{Errc::config,
                   "kubernetes discovery: not running in a cluster (KUBERNETES_SERVICE_HOST unset); set api_url",
                   "discovery"};
    }
    base = "https://" + detail::url_host(host) + ":" + (port != nullptr && *port != '\0' ? port : "443");
    in_cluster = true;
    if (read_file(config.token_path).empty()) {
      return Error{Errc::config, "kubernetes discovery: no service-account token at " + config.token_path,
                   "discovery"};
    }
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  auto api = parse_url(base);
  if (!api) return Error{Errc::config, "kubernetes discovery: api_url: " + api.error().message, "api_url"};
  std::string ns = config.namespace_name;
  if (ns.empty()) ns = read_file("/var/run/secrets/kubernetes.io/serviceaccount/namespace");
  if (ns.empty()) ns = "default";
  return std::unique_ptr<EndpointSource>(std::make_unique<KubernetesSource>(config, base, std::move(api).value(), ns, in_cluster));
}

VLLM_ROUTER_END_NAMESPACE
