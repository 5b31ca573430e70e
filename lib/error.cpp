// Error code names, HTTP statuses, OpenAI error types and the OpenAI error JSON.
#include <string>

#include "json_writer.h"
#include "vllm_router/error.h"

VLLM_ROUTER_BEGIN_NAMESPACE

int http_status(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return 200;
    case Errc::invalid_argument:
    case Errc::invalid_json:
    case Errc::missing_model: return 400;
    case Errc::unauthorized: return 401;
    case Errc::forbidden: return 403;
    case Errc::unknown_model:
    case Errc::not_found: return 404;
    case Errc::request_timeout: return 408;
    case Errc::headers_too_large: return 431;
    case Errc::quota_exceeded:
    case Errc::rate_limited: return 429;
    case Errc::body_too_large: return 413;
    case Errc::overloaded: return 503;
    case Errc::no_endpoint: return 503;
    case Errc::connect_failed:
    case Errc::upstream_protocol:
    case Errc::upstream_closed: return 502;
    case Errc::timeout: return 504;
    case Errc::cancelled: return 499;
    case Errc::config:
    case Errc::internal: return 500;
  }
  return 500;
}

std::string_view error_type(Errc code) noexcept {
  switch (http_status(code)) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 403: return "PermissionDeniedError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowedError";
    case 408: return "RequestTimeoutError";
    case 429: return "RateLimitError";
    case 431: return "RequestHeaderFieldsTooLargeError";
    case 413: return "RequestEntityTooLargeError";
    case 502: return "BadGatewayError";
    case 503: return "ServiceUnavailableError";
    case 504: return "GatewayTimeoutError";
    default: return "InternalServerError";
  }
}

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::invalid_json: return "invalid_json";
    case Errc::missing_model: return "missing_model";
    case Errc::unknown_model: return "unknown_model";
    case Errc::body_too_large: return "body_too_large";
    case Errc::no_endpoint: return "no_endpoint";
    case Errc::connect_failed: return "connect_failed";
    case Errc::timeout: return "timeout";
    case Errc::upstream_protocol: return "upstream_protocol";
    case Errc::upstream_closed: return "upstream_closed";
    case Errc::cancelled: return "cancelled";
    case Errc::config: return "config";
    case Errc::unauthorized: return "unauthorized";
    case Errc::overloaded: return "overloaded";
    case Errc::internal: return "internal";
    case Errc::not_found: return "not_found";
    case Errc::request_timeout: return "request_timeout";
    case Errc::headers_too_large: return "headers_too_large";
    case Errc::rate_limited: return "rate_limited";
    case Errc::quota_exceeded: return "quota_exceeded";
    case Errc::forbidden: return "forbidden";
  }
  return "internal";
}

std::string to_openai_json(const Error& error) {
  std::string out;
  out.reserve(96 + error.message.size());
  out += R"({"error":{"message":)";
  detail::append_json_string(out, error.message);
  out += R"(,"type":)";
  detail::append_json_string(out, error_type(error.code));
  out += R"(,"param":)";
  if (error.param.empty()) {
    out += "null";
  } else {
    detail::append_json_string(out, error.param);
  }
  out += R"(,"code":)";
  if (error.code == Errc::quota_exceeded) {
    out += R"("rate_limit_exceeded")";
  } else {
    out += std::to_string(http_status(error.code));
  }
  out += "}}";
  return out;
}

VLLM_ROUTER_END_NAMESPACE
