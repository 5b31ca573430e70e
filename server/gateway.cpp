// Gateway routes: forwarding of every model-carrying POST, /v1/models, health, readiness, metrics.
#include "gateway.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "http_util.h"
#include "log.h"
#include "routes.h"

namespace vllm_router::server {
namespace {

using SteadyTime = std::chrono::steady_clock;

using detail::iequals;

// Where the pre-routing handler keeps a multipart/form-data Content-Type (internal; a client's
// own header of this name is dropped).
constexpr const char* kFormTypeHeader = "X-Vllm-Router-Form-Content-Type";

// cpp-httplib percent-decodes header values: "%0d%0a" arrives as a raw CRLF (header injection).
bool valid_header_value(std::string_view v) {
  return v.find_first_of("\r\n") == std::string_view::npos && v.size() <= 8192;
}

// Response headers the threads front end sets itself: Content-Type comes with the provider.
bool relayed(std::string_view name) { return relay_response_header(name) && !iequals(name, "content-type"); }

void set_json_error(httplib::Response& res, const Error& error) {
  res.status = http_status(error.code);
  res.set_content(to_openai_json(error), "application/json");
}

double seconds_since(SteadyTime::time_point t) {
  return std::chrono::duration<double>(SteadyTime::now() - t).count();
}

// Adapts cpp-httplib's DataSink to the library's BodySink.
class SinkAdapter final : public BodySink {
 public:
  explicit SinkAdapter(httplib::DataSink& sink) : sink_(sink) {}
  bool write(const char* data, std::size_t size) override { return sink_.write(data, size); }
  bool alive() override { return sink_.is_writable(); }

 private:
  httplib::DataSink& sink_;
};

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::create(const GatewayConfig& config) {
  auto metrics = std::make_shared<Metrics>();
  RouterOptions options;
  options.observer = metrics;
  auto router = Router::create(config.router, std::move(options));
  if (!router) return router.error();
  return std::unique_ptr<Gateway>(new Gateway(config, std::move(router.value()), std::move(metrics)));
}

Gateway::Gateway(GatewayConfig config, std::unique_ptr<Router> router, std::shared_ptr<Metrics> metrics)
    : config_(std::move(config)),
      router_(std::move(router)),
      metrics_(std::move(metrics)),
      server_(std::make_unique<httplib::Server>()),
      created_(static_cast<std::int64_t>(std::time(nullptr))) {
  install_routes();
}

Gateway::~Gateway() = default;

void Gateway::install_routes() {
  httplib::Server& svr = *server_;
  const std::size_t threads = std::max<std::uint32_t>(1, config_.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(1000);
  svr.set_keep_alive_timeout(5);
  const auto client_timeout = std::chrono::milliseconds(config_.client_timeout_ms);
  svr.set_read_timeout(client_timeout);
  svr.set_write_timeout(client_timeout);
  svr.set_payload_max_length(static_cast<std::size_t>(config_.max_body_bytes));
  // SO_REUSEADDR only: SO_REUSEPORT (the library default) lets a second process silently share
  // the port. The fd is kept to widen the listen backlog after bind.
  svr.set_socket_options([this](int fd) {
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_.store(fd);
  });

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Never let the server compress: it would buffer SSE and cost CPU on every JSON answer.
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
    std::string id = req.get_header_value("X-Request-Id");
    if (!valid_request_id(id)) id = new_request_id();
    res.set_header("X-Request-Id", id);
    if (req.method != "GET" && req.method != "HEAD") {
      // cpp-httplib would parse a multipart/form-data body into req.files and leave req.body
      // empty; the body is read after this handler, so hide the type from it and keep the bytes.
      auto& headers = const_cast<httplib::Request&>(req).headers;
      headers.erase(kFormTypeHeader);  // never the client's
      const auto type = headers.find("Content-Type");
      if (type != headers.end() && is_form_content_type(type->second)) {
        std::string original = type->second;
        headers.erase(type);
        headers.emplace(kFormTypeHeader, std::move(original));
      }
      return httplib::Server::HandlerResponse::Unhandled;
    }
    LocalResponse local;
    if (!answer_get(req.path, authorized(req), *router_, *metrics_, created_, local)) {
      local = error_response(Error{Errc::not_found, "Not Found: " + req.method + " " + req.path, ""});
    }
    res.status = local.status;
    if (!local.body.empty()) res.set_content(local.body, local.content_type);
    return httplib::Server::HandlerResponse::Handled;
  });

  svr.Post(".*", [this](const httplib::Request& req, httplib::Response& res) { handle_forward(req, res); });

  // Statuses the library produces itself (413, 400 on bad framing, 404 for other methods) get
  // an OpenAI-shaped body; answers we built or relay are left alone.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.content_provider_) return;
    Error e{Errc::invalid_argument, "", ""};
    if (res.status == 413) {
      e = Error{Errc::body_too_large, "request body is larger than the configured limit", ""};
    } else if (res.status == 404 || res.status == 405) {
      e = Error{Errc::unknown_model, "Not Found: " + req.method + " " + req.path, ""};  // NotFoundError
    } else {
      e.message = res.status == 400 ? "malformed HTTP request" : "request failed";
    }
    const int status = res.status;
    set_json_error(res, e);
    if (res.status != status) {
      // A library status with no error code of its own (414, 431...): `code` must still say it.
      const std::string from = "\"code\":" + std::to_string(res.status) + "}}";
      if (res.body.ends_with(from)) {
        res.body.replace(res.body.size() - from.size(), from.size(),
                         "\"code\":" + std::to_string(status) + "}}");
      }
      res.status = status;
    }
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    set_json_error(res, Error{Errc::internal, "internal error", ""});
  });
  svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    if (log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "{} {} {} id={}", req.method, req.path, res.status,
          res.get_header_value("X-Request-Id"));
    }
  });
}

bool Gateway::authorized(const httplib::Request& req) const {
  return server::authorized(config_.api_keys, req.get_header_value("Authorization"));
}

void Gateway::reply_error(httplib::Response& res, const Error& error, std::string_view model,
                          SteadyTime::time_point started) {
  set_json_error(res, error);
  // Unknown names stay out of the labels: clients must not be able to grow the series set.
  metrics_->on_response(error.code == Errc::unknown_model ? std::string_view{} : model, res.status,
                        seconds_since(started));
  if (res.status >= 500) {
    log(LogLevel::warn, "request {} failed: {} ({})", res.get_header_value("X-Request-Id"),
        error.message, errc_name(error.code));
  }
}

void Gateway::handle_forward(const httplib::Request& req, httplib::Response& res) {
  const auto started = SteadyTime::now();
  if (!authorized(req)) {
    return reply_error(res, Error{Errc::unauthorized, "Missing or invalid API key", ""}, "", started);
  }
  auto& body = const_cast<std::string&>(req.body);  // padded in place for simdjson, bytes unchanged
  if (body.empty()) {
    return reply_error(res, Error{Errc::invalid_json, "request body is empty; expected a JSON object", ""},
                       "", started);
  }
  const std::string form_type = req.get_header_value(kFormTypeHeader);  // see the pre-routing handler
  auto view = !form_type.empty() ? parse_form_request(body, form_type) : parse_request_padded(body);
  if (!view) return reply_error(res, view.error(), "", started);
  // A session header (policy_options.session_header) beats the body's `user` as session key.
  const std::string session = req.get_header_value(router_->snapshot()->config->policy_options.session_header);
  if (!session.empty()) view->session_key = session;

  // Headers named by Connection are hop-by-hop too (RFC 9110 7.6.1): not forwarded.
  std::vector<std::string_view> connection_listed;
  for (auto [it, end] = req.headers.equal_range("Connection"); it != end; ++it) {
    std::string_view list = it->second;
    while (!list.empty()) {
      const auto comma = list.find(',');
      std::string_view token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
      if (!token.empty()) connection_listed.push_back(token);
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
  }
  Headers headers;
  headers.reserve(req.headers.size() + 2);
  if (!form_type.empty()) headers.push_back(Header{"Content-Type", form_type});
  for (const auto& [name, value] : req.headers) {
    if (!forward_request_header(name) || iequals(name, kFormTypeHeader)) continue;
    if (std::any_of(connection_listed.begin(), connection_listed.end(),
                    [&name](std::string_view t) { return iequals(name, t); })) {
      continue;
    }
    if (!valid_header_value(value)) {
      return reply_error(res, Error{Errc::invalid_argument, "header '" + name + "' has an invalid value", name},
                         view->model, started);
    }
    headers.push_back(Header{name, value});
  }
  const std::string request_id = res.get_header_value("X-Request-Id");
  headers.push_back(Header{"X-Request-Id", request_id});
  headers.push_back(Header{"X-Forwarded-For", req.remote_addr});

  UpstreamRequest up;
  up.method = "POST";
  up.path = req.target;
  up.headers = &headers;
  up.body = body;
  auto forwarded = router_->forward(view.value(), up);
  if (!forwarded) return reply_error(res, forwarded.error(), view->model, started);

  auto exchange = std::make_shared<Exchange>(std::move(forwarded.value()));
  res.status = exchange->status();
  std::string content_type = "application/json";
  for (const Header& h : exchange->headers()) {
    if (iequals(h.name, "content-type")) {
      content_type = h.value;
    } else if (relayed(h.name)) {
      res.set_header(h.name, h.value);
    }
  }
  const bool event_stream = content_type.rfind("text/event-stream", 0) == 0;
  auto metrics = metrics_;
  std::string model = exchange->model();
  auto finish = [metrics, model, started, exchange, event_stream](httplib::DataSink& sink) {
    SinkAdapter adapter(sink);
    auto relayed = exchange->relay(adapter);
    metrics->on_response(model, exchange->status(), seconds_since(started));
    if (relayed) return true;
    if (relayed.code() == Errc::cancelled) return false;
    log(LogLevel::warn, "upstream {} failed mid-answer: {}", exchange->endpoint().id, relayed.error().message);
    if (event_stream) {
      // The 200 is gone: report in band, the way vLLM does, then end the stream cleanly.
      std::string event = "data: " + to_openai_json(relayed.error()) + "\n\ndata: [DONE]\n\n";
      sink.write(event.data(), event.size());
      return true;
    }
    return false;  // closes the connection: the client sees a truncated body, not a success
  };
  if (const auto length = exchange->content_length(); length && !event_stream) {
    if (*length == 0) {  // nothing to pull: finish the exchange (returns the socket) now
      struct NullSink final : BodySink {
        bool write(const char*, std::size_t) override { return true; }
      } null_sink;
      (void)exchange->relay(null_sink);
      res.set_content("", content_type.c_str());
      metrics_->on_response(model, res.status, seconds_since(started));
      return;
    }
    res.set_content_provider(static_cast<std::size_t>(*length), content_type,
                             [finish](std::size_t, std::size_t, httplib::DataSink& sink) { return finish(sink); });
  } else {
    res.set_chunked_content_provider(content_type, [finish](std::size_t, httplib::DataSink& sink) {
      const bool ok = finish(sink);
      if (ok) sink.done();
      return ok;
    });
  }
}

Result<int> Gateway::bind() {
  const int port = config_.port == 0 ? server_->bind_to_any_port(config_.host)
                                     : (server_->bind_to_port(config_.host, config_.port) ? config_.port : -1);
  if (port < 0) {
    return Result<int>(Errc::config, "cannot listen on " + config_.host + ":" + std::to_string(config_.port) +
                                         ": " + std::strerror(errno),
                       "port");
  }
  // cpp-httplib listens with a backlog of 5: a burst of connections would wait for SYN
  // retransmits. Linux lets listen() be called again to widen it.
  if (const int fd = listen_fd_.load(); fd >= 0) ::listen(fd, 4096);
  return port;
}

bool Gateway::run() { return server_->listen_after_bind(); }

void Gateway::stop() { server_->stop(); }

}  // namespace vllm_router::server
