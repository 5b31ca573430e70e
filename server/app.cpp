// App: wiring of the vllm-router process (router, data plane, control plane, reload, signals).
#include "app.h"

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "log.h"
#include "lora_metrics.h"
#include "vllm_router/version.h"

namespace vllm_router::server {
namespace {

// Raises the soft file-descriptor limit to the hard one; returns the new soft limit.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

// The router's observer: Prometheus metrics and the status page's recent figures on the request's
// thread; the access log and spans (when tracing) through `queue`, whose thread formats the line
// and encodes the spans; a log line for every failed request.
class AppObserver final : public Observer {
 public:
  AppObserver(std::shared_ptr<Metrics> metrics, std::shared_ptr<StatusBoard> status, bool access_log,
              bool tracing, std::shared_ptr<ExchangeQueue> queue)
      : metrics_(std::move(metrics)),
        status_(std::move(status)),
        access_log_(access_log),
        tracing_(tracing),
        queue_(std::move(queue)) {}
  void on_outcome(std::string_view model, const Endpoint& endpoint, const Outcome& outcome) override {
    metrics_->on_outcome(model, endpoint, outcome);
    status_->on_outcome(model, endpoint, outcome);
  }
  void on_retry(std::string_view model, const Endpoint& endpoint, RetryReason reason, unsigned attempt) override {
    metrics_->on_retry(model, endpoint, reason, attempt);
    log(LogLevel::debug, "model {}: attempt {} on {} failed; trying another replica", model, attempt, endpoint.id);
  }
  void on_ejection(const Endpoint& endpoint, std::chrono::nanoseconds duration, std::uint32_t ejections) override {
    log(LogLevel::warn, "endpoint {} ejected for {} ms (ejection {})", endpoint.id,
        std::chrono::duration_cast<std::chrono::milliseconds>(duration).count(), ejections);
  }
  void on_stream_gap(std::string_view model, const Endpoint& endpoint, std::chrono::nanoseconds gap) override {
    metrics_->on_stream_gap(model, endpoint, gap);
  }
  void on_exchange(const ExchangeSummary& s) override {
    metrics_->on_exchange(s);
    status_->on_exchange(s);
    if (access_log_ || (tracing_ && s.sampled)) queue_->push(s);
    if (s.status >= 500 && s.end != ExchangeEnd::ok) {
      log(LogLevel::warn, "request {} failed with {}: {}", s.request_id, s.status, s.error);
    } else if (s.end == ExchangeEnd::upstream_error || s.end == ExchangeEnd::timeout) {
      log(LogLevel::warn, "request {}: upstream {} failed mid-answer: {}", s.request_id,
          s.endpoint != nullptr ? s.endpoint->id : std::string("?"), s.error);
    }
  }

 private:
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<StatusBoard> status_;
  bool access_log_;
  bool tracing_;
  std::shared_ptr<ExchangeQueue> queue_;  // set when either is on
};

// What identifies a file's content cheaply: modification time, size and inode (a Kubernetes
// Secret or ConfigMap update swaps a symlink: the inode changes). Empty when it cannot be read.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "/" +
         std::to_string(st.st_size) + "/" + std::to_string(st.st_ino) + ";";
}

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  return set;
}

// The tenants' keys file (docs/tenants.md), parsed; errors name the file.
Result<std::shared_ptr<const KeyTable>> load_keys(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::config, "cannot open keys file '" + path + "'", "keys_file"};
  std::ostringstream text;
  text << in.rdbuf();
  auto table = KeyTable::parse(text.str());
  if (!table) return Error{Errc::config, path + ": " + table.error().message, "keys_file"};
  return table;
}

std::shared_ptr<RateLimiter> make_limiter(const AppConfig& config) {
  if (config.rate_limit.backend != "redis") return make_local_rate_limiter();
  RedisLimiterOptions o;
  auto hp = parse_host_port(config.rate_limit.redis);  // validated when read
  if (hp) {
    o.host = hp->first;
    o.port = hp->second;
  }
  if (const char* password = std::getenv("VLLM_ROUTER_REDIS_PASSWORD"); password != nullptr) o.password = password;
  o.prefix = config.rate_limit.prefix;
  o.timeout = std::chrono::milliseconds(config.rate_limit.timeout_ms);
  o.log = [](int lvl, std::string_view message) { log_line(static_cast<LogLevel>(lvl), message); };
  return make_redis_rate_limiter(std::move(o));
}

}  // namespace

Result<std::unique_ptr<App>> App::create(ProgramOptions options, std::vector<std::string> args, int& exit_code) {
  exit_code = 2;
  std::unique_ptr<App> app(new App());
  app->options_ = std::move(options);
  app->args_ = std::move(args);
  AppConfig& config = app->options_.config;
  if (!app->options_.config_path.empty()) app->config_stamp_ = file_stamp(app->options_.config_path);
  app->tls_stamp_ = file_stamp(app->options_.config.tls_cert_file) + file_stamp(app->options_.config.tls_key_file);
  LogLevel level = LogLevel::info;
  if (parse_log_level(config.log_level, level)) set_log_level(level);
  LogFormat format = LogFormat::text;
  if (parse_log_format(config.log_format, format)) set_log_format(format);
  if (config.access_log != "off" && !app->options_.check_config) {
    auto access_log = AccessLog::open(AccessLogOptions{config.access_log, format, config.access_log_buffer});
    if (!access_log) return access_log.error();
    app->access_log_ = std::move(access_log).value();
  }
  if (app->options_.demo) {
    const std::size_t before = config.router.models.size();
    auto r = app->demo_.start(config.router);
    app->demo_models_.assign(config.router.models.begin() + static_cast<std::ptrdiff_t>(before),
                             config.router.models.end());
    if (!r) {
      exit_code = 1;
      return r.error();
    }
  }
  if (config.router.models.empty() && config.router.discovery.empty()) {
    return Error{Errc::config,
                 "no models configured: pass --model NAME=URL, set VLLM_ROUTER_MODELS, use --config FILE "
                 "(models or discovery), or try --demo",
                 ""};
  }
  if (config.max_connections == 0) {
    // Two descriptors per proxied connection, and a reserve for idle upstream sockets and logs.
    const rlim_t fds = raise_fd_limit();
    config.max_connections = static_cast<std::uint32_t>(fds > 256 ? (fds - 128) / 2 : 64);
  } else {
    raise_fd_limit();
  }
  // With discovery, configured models may list no endpoints yet: start from what is usable.
  app->static_router_ = config.router;
  RouterConfig initial = config.router;
  if (!config.router.discovery.empty()) initial = compose_router_config(app->static_router_, {});
  app->metrics_ = std::make_shared<Metrics>(longest_timeout_seconds(config.router, config.client_timeout_ms));
  app->status_ = std::make_shared<StatusBoard>();
  RouterOptions router_options;
  if (!config.otlp.endpoint.empty()) {
    OtlpOptions otlp;
    otlp.endpoint = config.otlp.endpoint;
    otlp.service_name = config.otlp.service_name;
    otlp.batch_size = config.otlp.batch_size;
    otlp.interval = std::chrono::milliseconds(config.otlp.interval_ms);
    otlp.queue_size = config.otlp.queue_size;
    otlp.timeout = std::chrono::milliseconds(config.otlp.timeout_ms);
    otlp.log = [](int lvl, std::string_view message) { log_line(static_cast<LogLevel>(lvl), message); };
    auto tracer = OtlpExporter::create(std::move(otlp));
    if (!tracer) return tracer.error();
    app->tracer_ = std::move(tracer).value();
    router_options.tracing.enabled = true;
    router_options.tracing.sampling = config.otlp.sampling;
  }
  if (app->access_log_ || app->tracer_) {
    // The access line and the spans are made on the queue's thread, off the data path.
    app->queue_ = std::make_shared<ExchangeQueue>(
        [log = app->access_log_, tracer = app->tracer_](const ExchangeSummary& s, std::int64_t end_unix_ns) {
          if (log) log->write(s, end_unix_ns / 1000000);
          if (tracer && s.sampled) tracer->on_exchange(s);
        });
  }
  router_options.observer = std::make_shared<AppObserver>(app->metrics_, app->status_, app->access_log_ != nullptr,
                                                          app->tracer_ != nullptr, app->queue_);
  auto router = Router::create(initial, std::move(router_options));
  if (!router) {
    Error e = router.error();
    e.message = "invalid configuration: " + e.message + (e.param.empty() ? "" : " (field: " + e.param + ")");
    return e;
  }
  app->router_ = std::move(router).value();
  app->status_->set_snapshot_source([r = app->router_.get()] { return r->snapshot(); });
  std::shared_ptr<const KeyTable> keys;
  if (!config.keys_file.empty()) {
    auto table = load_keys(config.keys_file);
    if (!table) return table.error();
    keys = std::move(table).value();
    app->keys_stamp_ = file_stamp(config.keys_file);
  }
  if (app->options_.check_config) {  // validated; sources are not started (they may need a cluster)
    if (auto tls = vllm_router::Server::check_tls(config.server_options()); !tls) {
      exit_code = 1;
      return tls.error();
    }
    exit_code = 0;
    return app;
  }
  if (!config.router.discovery.empty()) {
    app->discovery_ = std::make_unique<Discovery>(*app->router_, app->static_router_);
    for (std::size_t i = 0; i < config.router.discovery.size(); ++i) {
      auto source = make_endpoint_source(config.router.discovery[i]);
      if (!source) {
        return Error{Errc::config, "discovery[" + std::to_string(i) + "]: " + source.error().message, ""};
      }
      log(LogLevel::info, "discovery[{}]: {}", i, source.value()->describe());
      app->discovery_->add_source(std::move(source).value());
    }
  }
  vllm_router::ServerOptions server_options = config.server_options();
  Metrics* metrics = app->metrics_.get();
  App* self = app.get();
  server_options.keys = std::move(keys);
  server_options.limiter = make_limiter(config);
  const bool keys_on = server_options.keys != nullptr || !server_options.api_keys.empty();
  server_options.local_routes = [metrics, self, keys_on](const LocalRequest& req, LocalResponse& out) {
    const bool is_metrics = req.path == "/metrics";
    const bool is_status = req.path == "/status" || req.path == "/status.json";
    if (!is_metrics && !is_status) return false;
    // Backend URLs, models and key ids: behind an admin key when keys are configured.
    if (!req.authorized) {
      out = vllm_router::error_response(Error{Errc::unauthorized, "Missing or invalid API key", ""});
      return true;
    }
    if (!req.admin) {
      out = vllm_router::error_response(
          Error{Errc::forbidden, "an admin API key is needed for " + std::string(req.path), ""});
      return true;
    }
    if (is_metrics) {
      out = LocalResponse{200, "text/plain; version=0.0.4", metrics->render(*self->router_->snapshot(), self->router_->queued())};
      if (self->queue_) out.body += exchange_queue_metrics(self->queue_->stats());
      if (self->access_log_) self->access_log_->render_metrics(out.body);
      if (self->tracer_) out.body += trace_metrics(self->tracer_->stats());
      if (self->sync_) out.body += replica_sync_metrics(self->sync_->stats());
      render_lora_metrics(*self->router_, out.body);
    } else if (req.path == "/status") {
      out = LocalResponse{200, "text/html; charset=utf-8", std::string(status_page_html())};
    } else {
      StatusContext context;
      context.uptime_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - self->started_)
                              .count();
      context.draining = self->server_ && self->server_->draining();
      context.keys = keys_on;
      out = LocalResponse{200, "application/json", self->status_->render_json(*self->router_->snapshot(), context)};
    }
    return true;
  };
  server_options.log = [](int lvl, std::string_view message) { log_line(static_cast<LogLevel>(lvl), message); };
  auto server = vllm_router::Server::create(*app->router_, std::move(server_options));
  if (!server) {
    exit_code = 1;
    return server.error();
  }
  app->server_ = std::move(server).value();
  vllm_router::Server* srv = app->server_.get();
  app->metrics_->set_connection_source([srv] { return srv->connections_per_loop(); });
  if (srv->tls()) app->metrics_->set_tls_failure_source([srv] { return srv->tls_handshake_failures(); });
  if (!config.router.replica_sync.listen.empty()) {
    auto sync = ReplicaSync::open(*app->router_, config.router.replica_sync, std::make_shared<SteadyClock>());
    if (!sync) {
      exit_code = 1;
      return sync.error();
    }
    app->sync_ = std::move(sync).value();
  }
  exit_code = 0;
  return app;
}

App::~App() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  if (metrics_) {
    metrics_->set_connection_source(nullptr);
    metrics_->set_tls_failure_source(nullptr);
  }
  if (status_) status_->set_snapshot_source(nullptr);  // a lease may outlive the Router

}

std::string App::summary() const {
  const RouterConfig& cfg = options_.config.router;
  std::string out = "configuration OK: " + std::to_string(cfg.models.size()) + " model(s), policy " + cfg.policy + "\n";
  for (const auto& m : cfg.models) {
    out += "  " + m.name + ": " + std::to_string(m.endpoints.size()) + " endpoint(s)" +
           (m.aliases.empty() ? "" : " (+aliases)") + "\n";
  }
  for (std::size_t i = 0; i < cfg.discovery.size(); ++i) {
    out += "  discovery[" + std::to_string(i) + "]: " + cfg.discovery[i].type + " source\n";
  }
  if (!options_.config.keys_file.empty()) {
    out += "  keys: " + options_.config.keys_file + ", rate limits " +
           (options_.config.rate_limit.backend == "redis" ? "in Redis at " + options_.config.rate_limit.redis
                                                           : std::string("per router")) + "\n";
  }
  return out;
}

void App::reload_tls() {
  // A renewed certificate: new connections get it, open ones keep theirs (whatever the rest of
  // the configuration says; the file names are the ones given at start).
  if (!server_ || !server_->tls()) return;
  if (auto r = server_->reload_tls(); !r) {
    log(LogLevel::error, "TLS certificate reload failed, keeping the current one: {}", r.error().message);
  } else {
    log(LogLevel::info, "TLS certificate and key re-read from {} and {}", options_.config.tls_cert_file,
        options_.config.tls_key_file);
  }
}

void App::reload() {
  std::lock_guard<std::mutex> lock(reload_mutex_);
  reload_tls();
  auto again = parse_options(args_, current_environment());
  if (!again) {
    log(LogLevel::error, "reload rejected, keeping the current configuration: {}", again.error().message);
    return;
  }
  RouterConfig next = again.value().config.router;
  next.models.insert(next.models.end(), demo_models_.begin(), demo_models_.end());
  // With discovery the discovered endpoints are merged over the new static part (the
  // "discovery" list itself is read at start only).
  if (auto r = discovery_ ? discovery_->set_static(next) : router_->update(next); !r) {
    log(LogLevel::error, "reload rejected, keeping the current configuration: {}{}{}", r.error().message,
        r.error().param.empty() ? "" : " (field: ", r.error().param.empty() ? "" : r.error().param + ")");
    return;
  }
  log(LogLevel::info, "configuration reloaded: {} model(s), routing table version {}", next.models.size(),
      router_->snapshot()->version);
  reload_keys(again.value().config.keys_file);
}

void App::reload_keys(const std::string& path) {
  if (path.empty()) {
    if (!options_.config.keys_file.empty()) log(LogLevel::warn, "keys_file is no longer set: the keys read at start stay (restart to turn keys off)");
    return;
  }
  auto table = load_keys(path);
  if (!table) {
    log(LogLevel::error, "keys not reloaded, keeping the current ones: {}", table.error().message);
    return;
  }
  log(LogLevel::info, "keys reloaded from {}: {} key(s)", path, table.value()->keys().size());
  server_->set_keys(std::move(table).value());
}

void App::watch_files() {
  // Once a second, each watched file against what was read (mtime, size, inode: stat() follows
  // symlinks, so a Kubernetes Secret or ConfigMap volume swapping its files is seen too; an
  // edit made while the server starts is not missed): the config file (with watch_config)
  // reloads everything, the keys file the keys, the TLS pair (whenever TLS is on) the
  // certificate alone, so a renewed Secret needs no signal.
  const bool config = options_.config.watch_config && !options_.config_path.empty();
  const bool keys = !options_.config.keys_file.empty();
  const bool tls = server_->tls();
  if (!config && !keys && !tls) return;
  watcher_ = std::thread([this, config, keys, tls] {
    // A file that cannot be read keeps its last stamp (nothing to reload until it is back); a
    // TLS pair with one file missing is a change, whose reload fails and keeps the old pair.
    auto changed = [](bool on, std::string now, std::string& last) {
      if (!on || now.empty() || now == last) return false;
      last = std::move(now);
      return true;
    };
    std::unique_lock<std::mutex> lock(stop_mutex_);
    while (!stop_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      const bool config_changed = changed(config, file_stamp(options_.config_path), config_stamp_);
      const bool keys_changed = changed(keys, file_stamp(options_.config.keys_file), keys_stamp_);
      const bool tls_changed = changed(
          tls, file_stamp(options_.config.tls_cert_file) + file_stamp(options_.config.tls_key_file), tls_stamp_);
      if (!config_changed && !keys_changed && !tls_changed) continue;
      lock.unlock();
      if (config_changed) {
        log(LogLevel::info, "{} changed, reloading the configuration", options_.config_path);
        reload();  // the keys and the certificate too
      } else {
        std::lock_guard<std::mutex> reloading(reload_mutex_);
        if (keys_changed) {
          log(LogLevel::info, "{} changed, reloading the keys", options_.config.keys_file);
          reload_keys(options_.config.keys_file);
        }
        if (tls_changed) {
          log(LogLevel::info, "the TLS certificate or key file changed, reloading them");
          reload_tls();
        }
      }
      lock.lock();
    }
  });
}

int App::run() {
  const AppConfig& config = options_.config;
  const std::string host = config.host == "0.0.0.0" || config.host == "::" ? "127.0.0.1"
                           : config.host.find(':') != std::string::npos ? "[" + config.host + "]"
                                                                         : config.host;
  const std::string base = (server_->tls() ? "https://" : "http://") + host + ":" + std::to_string(server_->port());
  std::printf("vllm-router listening on %s\n", base.c_str());
  if (options_.demo) std::fputs(demo_.instructions(base).c_str(), stdout);
  std::fflush(stdout);
  log(LogLevel::info, "vllm-router {} serving {} model(s) on {}:{} ({} event loops, at most {} connections)",
      vllm_router::version(), config.router.models.size(), config.host, server_->port(),
      server_->connections_per_loop().size(), config.max_connections);
  if (tracer_) {
    log(LogLevel::info, "tracing: spans of sampled requests go to {}/v1/traces (OTLP/HTTP protobuf, sampling {})",
        config.otlp.endpoint, config.otlp.sampling);
  }
  watch_files();
  // The control plane runs beside the data path on its own threads.
  HttpTransportOptions probe_options;
  probe_options.max_idle_per_endpoint = 2;
  probe_options.router = router_.get();  // https endpoints: verified as upstream_tls says
  health_ = std::make_unique<HealthChecker>(*router_, make_http_transport(probe_options),
                                            std::make_shared<SteadyClock>());
  health_->start();
  // vLLM's own load (waiting, running, KV usage) for load- and prefix-aware policies and /metrics.
  scraper_ = std::make_unique<LoadScraper>(*router_, make_http_transport(probe_options),
                                           std::make_shared<SteadyClock>(), config.router.policy_options);
  scraper_->start();
  if (sync_) {
    sync_->start();
    log(LogLevel::info, "replica sync: UDP port {}, {} peer name(s), every {} ms", sync_->port(),
        config.router.replica_sync.peers.size(), config.router.replica_sync.interval_ms);
  }
  if (discovery_) discovery_->start([](const Error& e) { log(LogLevel::warn, "discovery: {}", e.message); });

  // Signals are blocked in every thread (main blocks them before anything starts); one thread
  // waits for them: SIGHUP reloads, SIGINT/SIGTERM drain and stop.
  const auto grace = std::chrono::milliseconds(config.drain_timeout_ms);
  std::thread signals([this, grace] {
    const sigset_t set = handled_signals();
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP || sig == SIGUSR1) {
        if (access_log_) access_log_->reopen();  // rotation: a new file at the same path
        if (sig == SIGUSR1) continue;
        log(LogLevel::info, "received SIGHUP, reloading the configuration");
        reload();
        continue;
      }
      log(LogLevel::info, "received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server_->stop(grace);
      return;
    }
  });
  server_->run();
  signals.join();
  if (discovery_) discovery_->stop();
  if (sync_) sync_->stop();
  scraper_->stop();
  health_->stop();
  if (queue_) queue_->flush();    // the last requests' lines and spans, made
  if (tracer_) tracer_->flush();  // ...and sent
  log(LogLevel::info, "stopped");
  return 0;
}

sigset_t blocked_signals() { return handled_signals(); }

}  // namespace vllm_router::server
