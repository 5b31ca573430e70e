// Tests for RequestView parsing and model rewriting, and the OpenAI error body.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <string>
#include <vector>

#include "vllm_router/error.h"
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

TEST_CASE("the prompt view covers the whole prompt, in the caller's body") {
  std::string body = R"({"model":"a","prompt":")" + std::string(100000, 'x') + "\"}";
  auto view = parse_request(body);
  REQUIRE(view.ok());
  CHECK(view->prompt_prefix.size() == 100002);  // with its quotes
  CHECK(view->prompt_prefix.data() == body.data() + body.find("\"xxx"));
}

TEST_CASE("rewrite_model replaces only the model value") {
  const std::string body = R"({"model" : "alias" , "prompt":"model alias"})";
  auto view = parse_request(body);
  REQUIRE(view.ok());
  CHECK(rewrite_model(body, *view, "org/real\"name") ==
        R"({"model" : "org/real\"name" , "prompt":"model alias"})");
}

namespace {
// A multipart/form-data body as clients (and the openai SDKs) send for /v1/audio/transcriptions.
std::string form_body(const std::string& boundary, const std::string& model, const std::string& extra = "") {
  std::string b;
  b += "--" + boundary + "\r\n";
  b += "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n";
  b += "Content-Type: audio/wav\r\n\r\n";
  b += std::string("RIFF\0\0model\r\n--not-the-boundary", 31);  // binary, with a decoy
  b += "\r\n--" + boundary + "\r\n";
  b += "Content-Disposition: form-data; name=\"model\"\r\n\r\n";
  b += model;
  b += "\r\n--" + boundary + "\r\n";
  b += extra;
  b += "Content-Disposition: form-data; name=\"stream\"\r\n\r\ntrue";
  b += "\r\n--" + boundary + "--\r\n";
  return b;
}
}  // namespace

TEST_CASE("is_form_content_type") {
  CHECK(is_form_content_type("multipart/form-data; boundary=x"));
  CHECK(is_form_content_type("Multipart/Form-Data ;boundary=\"x y\""));
  CHECK_FALSE(is_form_content_type("application/json"));
  CHECK_FALSE(is_form_content_type("multipart/mixed; boundary=x"));
  CHECK_FALSE(is_form_content_type(""));
}

TEST_CASE("parse_form_request reads model and stream from form fields, skipping file parts") {
  const std::string body = form_body("XyZ123", "whisper-large");
  auto view = parse_form_request(body, "multipart/form-data; boundary=XyZ123");
  REQUIRE(view.ok());
  CHECK(view->form);
  CHECK(view->has_model);
  CHECK(view->model == "whisper-large");
  CHECK(view->stream);
  CHECK(body.substr(view->model_offset, view->model_length) == "whisper-large");
  // A quoted boundary, and a part with a Content-Type before its disposition.
  const std::string quoted = form_body("a b'c", "m", "Content-Type: text/plain\r\n");
  auto q = parse_form_request(quoted, "multipart/form-data; charset=utf-8; boundary=\"a b'c\"");
  REQUIRE(q.ok());
  CHECK(q->model == "m");
  CHECK(q->stream);
}

TEST_CASE("rewrite_model of a form body replaces the raw field value") {
  const std::string body = form_body("B", "alias");
  auto view = parse_form_request(body, "multipart/form-data; boundary=B");
  REQUIRE(view.ok());
  const std::string out = rewrite_model(body, *view, "served/name\"x");
  CHECK(out == form_body("B", "served/name\"x"));
  auto again = parse_form_request(out, "multipart/form-data; boundary=B");
  REQUIRE(again.ok());
  CHECK(again->model == "served/name\"x");
}

TEST_CASE("parse_form_request errors") {
  const std::string body = form_body("B", "m");
  CHECK(parse_form_request(body, "multipart/form-data").code() == Errc::invalid_argument);
  CHECK(parse_form_request(body, "multipart/form-data; boundary=Other").code() == Errc::invalid_argument);
  // Cut before the close delimiter.
  CHECK(parse_form_request(body.substr(0, body.size() - 12), "multipart/form-data; boundary=B").code() ==
        Errc::invalid_argument);
  CHECK(parse_form_request("--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\r\n--B--\r\n",
                           "multipart/form-data; boundary=B")
            .code() == Errc::missing_model);
  // No model field at all: not an error here (the catalog's default model may apply).
  auto none = parse_form_request("--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--B--\r\n",
                                 "multipart/form-data; boundary=B");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_model);
}

TEST_CASE("parse_form_request reads Content-Disposition parameters as a standard parser does") {
  auto part = [](std::string_view disposition, std::string_view content) {
    return "--B\r\nContent-Disposition: " + std::string(disposition) + "\r\n\r\n" + std::string(content) + "\r\n";
  };
  const std::string type = "multipart/form-data; boundary=B";
  // A quoted ';' belongs to the value: this part's field is `prompt` (x is `a; name=model; b=c`).
  const std::string smuggle = part(R"(form-data; x="a; name=model; b=c"; name="prompt")", "evil-model") +
                              part(R"(form-data; name="model")", "real-model") + "--B--\r\n";
  auto v = parse_form_request(smuggle, type);
  REQUIRE(v.ok());
  CHECK(v->model == "real-model");
  // Escapes inside quotes, parameter names in any case, spaces around '='.
  auto esc = parse_form_request(part(R"(form-data; NAME = "mod\el")", "m1") + "--B--\r\n", type);
  REQUIRE(esc.ok());
  CHECK(esc->model == "m1");
  // A filename (even empty) makes the part a file, never the model field.
  auto file = parse_form_request(part(R"(form-data; name="model"; filename="")", "x") +
                                     part(R"(form-data; name="model")", "m2") + "--B--\r\n",
                                 type);
  REQUIRE(file.ok());
  CHECK(file->model == "m2");
  // What two parsers could read differently is refused.
  for (const std::string& bad : std::vector<std::string>{
           part(R"(form-data; name="model"; name="prompt")", "m") + "--B--\r\n",  // two names
           part(R"(form-data; name="model)", "m") + "--B--\r\n",                   // unclosed quote
           part(R"(form-data; name=mo"del)", "m") + "--B--\r\n",                   // quote in a token
           part(R"(form-data; name="model")", "m") + part(R"(form-data; name="model")", "n") + "--B--\r\n",
           std::string("--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\nContent-Disposition: form-data; "
                       "name=\"model\"\r\n\r\nm\r\n--B--\r\n"),
       }) {
    CAPTURE(bad);
    CHECK(parse_form_request(bad, type).code() == Errc::invalid_argument);
  }
  CHECK(parse_form_request(part(R"(form-data; name="model")", "m") + "--B--\r\n",
                           "multipart/form-data; boundary=B; boundary=C")
            .code() == Errc::invalid_argument);
}

// An error's message quotes what the client sent (a request target, a header): the body must stay
// valid JSON in valid UTF-8 whatever the bytes (a 404 for "GET /v1/\xff" was not). simdjson
// validates UTF-8 before it parses.
TEST_CASE("to_openai_json: every byte in a message or param gives valid JSON in valid UTF-8") {
  auto parse = [](const std::string& json, std::string& message, std::string& param) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return false;
    std::string_view m, p;
    if (doc["error"]["message"].get(m) != simdjson::SUCCESS) return false;
    if (doc["error"]["param"].get(p) != simdjson::SUCCESS) return false;
    message.assign(m);
    param.assign(p);
    return true;
  };
  // The code point of a byte that is not UTF-8 (U+0080..U+00FF), as UTF-8.
  auto latin1 = [](unsigned char b) {
    std::string s;
    if (b < 0x80) {
      s.push_back(static_cast<char>(b));
    } else {
      s.push_back(static_cast<char>(0xC0 | (b >> 6)));
      s.push_back(static_cast<char>(0x80 | (b & 0x3F)));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) {
    const auto byte = static_cast<unsigned char>(b);
    const std::string text = "GET /v1/" + std::string(1, static_cast<char>(byte)) + "x";
    const std::string json = to_openai_json(Error{Errc::not_found, "Not Found: " + text, text});
    std::string message, param;
    INFO("byte " << b);
    REQUIRE(parse(json, message, param));
    CHECK(message == "Not Found: GET /v1/" + latin1(byte) + "x");
    CHECK(param == "GET /v1/" + latin1(byte) + "x");
  }
  // Valid UTF-8 passes as it is; broken sequences (overlong, surrogate, cut, above U+10FFFF)
  // are read back byte by byte.
  const std::string valid = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  for (const std::string& broken : {std::string("\xc0\xaf"), std::string("\xed\xa0\x80"), std::string("\xe2\x82"),
                                    std::string("\xf4\x90\x80\x80"), std::string("\xff\xfe")}) {
    std::string message, param;
    const std::string json = to_openai_json(Error{Errc::not_found, valid + broken, "p"});
    REQUIRE(parse(json, message, param));
    std::string want = valid;
    for (const char c : broken) want += latin1(static_cast<unsigned char>(c));
    CHECK(message == want);
  }
}
