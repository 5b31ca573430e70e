// Tests for RequestView parsing and model rewriting.
#include <doctest/doctest.h>

#include "vllm_router/request.h"

using namespace vllm_router;

TEST_CASE("parse_request reads model, stream, user and the prompt prefix") {
  const std::string body =
      R"({"messages":[{"role":"user","content":"hi"}],"model":"m\"x","stream":true,"user":"u1"})";
  auto view = parse_request(body);
  REQUIRE(view.ok());
  CHECK(view->has_model);
  CHECK(view->model == "m\"x");
  CHECK(view->stream);
  CHECK(view->session_key == "u1");
  CHECK(view->prompt_prefix == R"([{"role":"user","content":"hi"}])");
  CHECK(body.substr(view->model_offset, view->model_length) == R"("m\"x")");
}

TEST_CASE("parse_request in place needs padding and does not change the bytes") {
  std::string body = R"({"model":"a","prompt":"hello world","stream":false})";
  const std::string copy = body;
  auto view = parse_request_padded(body);
  REQUIRE(view.ok());
  CHECK(body == copy);
  CHECK(body.capacity() >= body.size() + kBodyPadding);
  CHECK(view->model == "a");
  CHECK_FALSE(view->stream);
  CHECK(view->prompt_prefix == R"("hello world")");
}

TEST_CASE("parse_request errors") {
  CHECK(parse_request("{\"model\": ").code() == Errc::invalid_json);
  CHECK(parse_request("[1,2]").code() == Errc::invalid_json);
  CHECK(parse_request("not json").code() == Errc::invalid_json);
  CHECK(parse_request(R"({"model":"a"} trailing)").code() == Errc::invalid_json);
  CHECK(parse_request(R"({"model":42})").code() == Errc::missing_model);
  auto none = parse_request(R"({"prompt":"x"})");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_model);
}

TEST_CASE("the prompt prefix is bounded") {
  std::string body = R"({"model":"a","prompt":")" + std::string(10000, 'x') + "\"}";
  auto view = parse_request(body);
  REQUIRE(view.ok());
  CHECK(view->prompt_prefix.size() == kPromptPrefixBytes);
}

TEST_CASE("rewrite_model replaces only the model value") {
  const std::string body = R"({"model" : "alias" , "prompt":"model alias"})";
  auto view = parse_request(body);
  REQUIRE(view.ok());
  CHECK(rewrite_model(body, *view, "org/real\"name") ==
        R"({"model" : "org/real\"name" , "prompt":"model alias"})");
}
