// Tenants: the key table (keys file, digests, lookup, scope), the in-process rate limiter's
// sliding windows with explicit times, and the usage scanner that counts an answer's tokens.
#include <doctest/doctest.h>

#include <random>
#include <regex>
#include <string>

#include "usage_scanner.h"
#include "vllm_router/tenants.h"

using namespace vllm_router;

namespace {

std::string keys_json(const std::string& body) { return R"({"keys": [)" + body + "]}"; }

std::shared_ptr<const KeyTable> table(const std::string& body) {
  auto t = KeyTable::parse(keys_json(body));
  REQUIRE_MESSAGE(t, (t ? "" : t.error().message));
  return t.value();
}

constexpr std::int64_t kMinute = 60000;
constexpr std::int64_t kT0 = 1'796'476'980'000;  // a minute's start (Unix ms)

ApiKey limited_key(std::uint32_t rpm, std::uint64_t tpm = 0, std::uint32_t concurrent = 0) {
  ApiKey k;
  k.id = "k";
  k.rpm = rpm;
  k.tpm = tpm;
  k.max_concurrent = concurrent;
  return k;
}

LimitDecision admit(RateLimiter& limiter, const ApiKey& key, std::int64_t now_ms) {
  LimitDecision d;
  const bool decided = limiter.admit(key, now_ms, d, [] { return RateLimiter::Done(); });
  REQUIRE(decided);  // the local limiter always decides at once
  return d;
}

}  // namespace

TEST_CASE("keys file: digests, not keys; lookups hash the presented key") {
  const auto t = table(R"({"id": "a", "sha256": ")" + sha256_hex("sk-a") + R"(", "models": ["llama-*"], "rpm": 10},
                          {"id": "b", "sha256": ")" + sha256_hex("sk-b") + R"(", "admin": true,
                           "expires": "2030-01-02T03:04:05Z", "tpm": 1000, "max_concurrent": 4})");
  REQUIRE(t->keys().size() == 2);
  const ApiKey* a = t->find("sk-a");
  REQUIRE(a != nullptr);
  CHECK(a->id == "a");
  CHECK(a->rpm == 10);
  CHECK_FALSE(a->admin);
  const ApiKey* b = t->find_bearer("BEARER  sk-b ");
  REQUIRE(b != nullptr);
  CHECK(b->id == "b");
  CHECK(b->admin);
  CHECK(b->expires_at == 1893553445);
  CHECK(b->expired(1893553445));
  CHECK_FALSE(b->expired(1893553444));
  CHECK(t->find("sk-c") == nullptr);
  CHECK(t->find("") == nullptr);
  CHECK(t->find("sk-a ") == nullptr);
  CHECK(t->find_bearer("Basic sk-a") == nullptr);
  CHECK(t->find_bearer("sk-a") == nullptr);
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("keys file: every mistake is an error naming the field") {
  const std::string d = sha256_hex("x");
  struct Row {
    std::string body;
    std::string expected;
  };
  const Row rows[] = {
      {R"({"id": "a", "sha256": "xyz"})", "keys[0].sha256"},
      {R"({"id": "a", "sha256": ")" + d.substr(0, 63) + "g\"}", "keys[0].sha256"},
      {R"({"sha256": ")" + d + "\"}", "needs an `id`"},
      {R"({"id": "a"})", "needs its `sha256`"},
      {R"({"id": "a", "sha256": ")" + d + R"("}, {"id": "a", "sha256": ")" + sha256_hex("y") + "\"}", "duplicate id"},
      {R"({"id": "a", "sha256": ")" + d + R"("}, {"id": "b", "sha256": ")" + d + "\"}", "the same key as `a`"},
      {R"({"id": "a", "sha256": ")" + d + R"(", "rpm": -1})", "keys[0].rpm"},
      {R"({"id": "a", "sha256": ")" + d + R"(", "expires": "2030-13-01T00:00:00Z"})", "keys[0].expires"},
      {R"({"id": "a", "sha256": ")" + d + R"(", "models": [""]})", "keys[0].models"},
      {R"({"id": "a", "sha256": ")" + d + R"(", "key": "sk-plain"})", "keys[0].key: unknown key"},
      {"", "no key"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.body);
    auto t = KeyTable::parse(keys_json(row.body));
    REQUIRE_FALSE(t);
    CHECK(t.error().code == Errc::config);
    CHECK(t.error().message.find(row.expected) != std::string::npos);
  }
  CHECK_FALSE(KeyTable::parse(R"({"keys": {}})"));
  CHECK_FALSE(KeyTable::parse(R"({"users": []})"));
}

TEST_CASE("a key's scope: exact names and * patterns") {
  ApiKey k;
  CHECK(k.allows_model("anything"));  // no scope: every model
  k.models = {"meta-llama/*", "gpt-4o", "*-lora", "a*b*c"};
  CHECK(k.allows_model("meta-llama/Llama-3-8B"));
  CHECK(k.allows_model("gpt-4o"));
  CHECK_FALSE(k.allows_model("gpt-4o-mini"));
  CHECK(k.allows_model("sql-lora"));
  CHECK(k.allows_model("abc"));
  CHECK(k.allows_model("aXbYc"));
  CHECK_FALSE(k.allows_model("aXbY"));
  CHECK_FALSE(k.allows_model("meta-llama"));
  CHECK_FALSE(k.allows_model(""));
  k.models = {"meta-llama/*"};
  CHECK(k.allows_model("meta-llama/"));  // a star matches nothing too
  CHECK_FALSE(k.allows_model("meta-llam"));
  CHECK_FALSE(k.allows_model("Meta-llama/x"));  // names are case-sensitive
}

TEST_CASE("scope patterns agree with a regular expression on every short pattern and name") {
  // Patterns over {a, b, *} and names over {a, b}: '*' is `.*`, everything else literal.
  std::mt19937 rng(12);
  auto word = [&](const char* alphabet, int n, std::size_t max) {
    std::string w(rng() % (max + 1), 'a');
    for (char& c : w) c = alphabet[rng() % n];
    return w;
  };
  for (int i = 0; i < 4000; ++i) {
    const std::string pattern = word("ab*", 3, 6);
    const std::string name = word("ab", 2, 7);
    std::string re;
    for (const char c : pattern) re += c == '*' ? std::string(".*") : std::string(1, c);
    ApiKey k;
    k.models = {pattern};
    INFO("pattern '" << pattern << "' name '" << name << "'");
    CHECK(k.allows_model(name) == std::regex_match(name, std::regex(re)));
  }
}

TEST_CASE("plain keys become admin keys without limits, ids in order") {
  const auto t = KeyTable::from_plain({"k1", "k2"});
  REQUIRE(t->find("k2") != nullptr);
  CHECK(t->find("k2")->id == "key-2");
  CHECK(t->find("k1")->admin);
  CHECK_FALSE(t->find("k1")->limited());
}

TEST_CASE("requests per minute: a sliding window on wall-clock time") {
  auto limiter = make_local_rate_limiter();
  const ApiKey key = limited_key(4);
  for (int i = 0; i < 4; ++i) {
    CHECK(admit(*limiter, key, kT0 + 10'000 + i).allowed);
    limiter->finish(key, 0, kT0 + 10'000 + i);
  }
  LimitDecision d = admit(*limiter, key, kT0 + 20'000);
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "rpm");
  // Full until the window ends, then the last minute's 4 weigh 4 * (1 - f): one more fits when
  // 4 * (1 - f) + 1 <= 4, f >= 1/4: 15 s into the next minute, 55 s from now.
  CHECK(d.retry_after == std::chrono::seconds(55));
  CHECK_FALSE(admit(*limiter, key, kT0 + kMinute + 14'000).allowed);
  CHECK(admit(*limiter, key, kT0 + kMinute + 15'000).allowed);
  CHECK_FALSE(admit(*limiter, key, kT0 + kMinute + 15'001).allowed);
  // A minute later the old window no longer counts.
  CHECK(admit(*limiter, key, kT0 + 3 * kMinute).allowed);
  // Another key's counts are its own.
  ApiKey other = limited_key(1);
  other.id = "other";
  CHECK(admit(*limiter, other, kT0 + 3 * kMinute).allowed);
  CHECK_FALSE(admit(*limiter, other, kT0 + 3 * kMinute).allowed);
}

TEST_CASE("a refunded request does not count") {
  auto limiter = make_local_rate_limiter();
  const ApiKey key = limited_key(1);
  REQUIRE(admit(*limiter, key, kT0).allowed);
  limiter->finish(key, 0, kT0, /*refund=*/true);
  CHECK(admit(*limiter, key, kT0 + 1).allowed);
  limiter->finish(key, 0, kT0 + 1);
  CHECK_FALSE(admit(*limiter, key, kT0 + 2).allowed);
}

TEST_CASE("tokens per minute: counted when a request ends, checked when the next starts") {
  auto limiter = make_local_rate_limiter();
  const ApiKey key = limited_key(0, 100);
  REQUIRE(admit(*limiter, key, kT0).allowed);
  limiter->finish(key, 60, kT0 + 1);
  REQUIRE(admit(*limiter, key, kT0 + 2).allowed);  // 60 < 100
  limiter->finish(key, 40, kT0 + 3);
  const LimitDecision d = admit(*limiter, key, kT0 + 4);
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "tpm");
  CHECK(d.retry_after >= std::chrono::seconds(56));
  // Half a minute into the next window the 100 weigh 50.
  CHECK(admit(*limiter, key, kT0 + kMinute + kMinute / 2 + 1).allowed);
}

TEST_CASE("concurrent requests: a place per running request, back at finish") {
  auto limiter = make_local_rate_limiter();
  const ApiKey key = limited_key(0, 0, 2);
  REQUIRE(admit(*limiter, key, kT0).allowed);
  REQUIRE(admit(*limiter, key, kT0).allowed);
  LimitDecision d = admit(*limiter, key, kT0);
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "concurrency");
  limiter->finish(key, 0, kT0);
  CHECK(admit(*limiter, key, kT0).allowed);
  // A refused request takes no place.
  CHECK_FALSE(admit(*limiter, key, kT0).allowed);
  limiter->finish(key, 0, kT0);
  limiter->finish(key, 0, kT0);
  CHECK(admit(*limiter, key, kT0).allowed);
  CHECK(admit(*limiter, key, kT0).allowed);
}

TEST_CASE("a key without limits costs the limiter nothing and is always allowed") {
  auto limiter = make_local_rate_limiter();
  ApiKey key;
  key.id = "free";
  for (int i = 0; i < 1000; ++i) CHECK(admit(*limiter, key, kT0).allowed);
}

TEST_CASE("usage scanner: a JSON body's usage, whatever the read boundaries") {
  const std::string body =
      R"({"id":"cmpl-1","choices":[{"text":"say \"usage\": {\"prompt_tokens\": 999}"}],)"
      R"("usage":{"prompt_tokens":12,"total_tokens":19,"completion_tokens":7,"prompt_tokens_details":null}})";
  for (std::size_t cut = 0; cut <= body.size(); ++cut) {
    for (std::size_t cut2 = cut; cut2 <= body.size(); cut2 += 7) {
      CAPTURE(cut);
      CAPTURE(cut2);
      detail::UsageScanner s;
      s.begin(false, cut2 % 2 == 0 ? body.size() : 0);  // a known length or not
      s.feed(std::string_view(body).substr(0, cut));
      s.feed(std::string_view(body).substr(cut, cut2 - cut));
      s.feed(std::string_view(body).substr(cut2));
      const TokenUsage u = s.result(false, 100);
      REQUIRE(u.prompt == 12);
      REQUIRE(u.completion == 7);
      REQUIRE_FALSE(u.estimated);
    }
  }
}

TEST_CASE("usage scanner: a long body of known length is searched only at its end") {
  std::string body = R"({"choices":[{"text":")";
  body.append(100000, 'u');  // many candidates, none searched
  body += R"("}],"usage":{"prompt_tokens":40,"total_tokens":50,"completion_tokens":10}})";
  detail::UsageScanner s;
  s.begin(false, body.size());
  for (std::size_t at = 0; at < body.size(); at += 4096) s.feed(std::string_view(body).substr(at, 4096));
  const TokenUsage u = s.result(false, 0);
  CHECK(u.prompt == 40);
  CHECK(u.completion == 10);
}

TEST_CASE("usage scanner: one byte at a time") {
  const std::string body = R"({"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":5,"total_tokens":5}})";
  detail::UsageScanner s;
  for (char c : body) s.feed(std::string_view(&c, 1));
  const TokenUsage u = s.result(false, 0);
  CHECK(u.prompt == 5);
  CHECK(u.completion == 0);
}

TEST_CASE("usage scanner: an event stream's usage chunk wins over null usages") {
  detail::UsageScanner s;
  s.begin(true, 0);
  s.feed("data: {\"choices\":[{\"text\":\"a\"}],\"usage\":null}\n\n");
  s.feed("data: {\"choices\":[{\"text\":\"b\"}],\"usage\":null}\n\n");
  s.feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":5,\"completion_tokens\":2}}\n\n");
  s.feed("data: [DONE]\n\n");
  const TokenUsage u = s.result(true, 400);
  CHECK(u.prompt == 3);
  CHECK(u.completion == 2);
  CHECK_FALSE(u.estimated);
}

TEST_CASE("usage scanner: a stream without usage is estimated from its events") {
  detail::UsageScanner s;
  s.begin(true, 0);
  const std::string events = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n"
                             "data: {\"choices\":[{\"text\":\"c\"}]}\n\ndata: [DONE]\n\n";
  // Split between the two newlines of a boundary, too.
  const std::size_t cut = events.find("\n\n") + 1;
  s.feed(std::string_view(events).substr(0, cut));
  s.feed(std::string_view(events).substr(cut));
  const TokenUsage u = s.result(true, 400);
  CHECK(u.estimated);
  CHECK(u.completion == 3);
  CHECK(u.prompt == 100);
  // A JSON answer without usage counts nothing.
  detail::UsageScanner j;
  j.feed(R"({"error":{"message":"x"}})");
  CHECK(j.result(false, 400).total() == 0);
  j.reset();
  CHECK(j.result(true, 0).total() == 0);
}
