// vllm-sim engine: request parsing (simdjson On-Demand) and response/event rendering (fmt).
#include "engine.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

namespace vsim {

namespace od = simdjson::ondemand;

// ---------------------------------------------------------------- small helpers

static inline void app(std::string &out, std::string_view s) { out.append(s.data(), s.size()); }
static inline void num(std::string &out, int64_t v) {
  fmt::format_int f(v);
  out.append(f.data(), f.size());
}
static inline void fnum(std::string &out, double v) {
  fmt::format_to(std::back_inserter(out), "{}", v);
}

uint64_t fnv1a64(std::string_view data, uint64_t h) {
  for (unsigned char ch : data) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  return h;
}

void append_json_escaped(std::string &out, std::string_view s) {
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    out.append(s.data() + start, i - start);
    start = i + 1;
    switch (ch) {
      case '"': app(out, "\\\""); break;
      case '\\': app(out, "\\\\"); break;
      case '\n': app(out, "\\n"); break;
      case '\r': app(out, "\\r"); break;
      case '\t': app(out, "\\t"); break;
      case '\b': app(out, "\\b"); break;
      case '\f': app(out, "\\f"); break;
      default: fmt::format_to(std::back_inserter(out), "\\u{:04x}", ch);
    }
  }
  out.append(s.data() + start, s.size() - start);
}

static uint64_t splitmix(uint64_t &s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string make_id(std::string_view prefix, std::string_view request_id) {
  std::string id(prefix);
  if (!request_id.empty()) {
    // vLLM uses the X-Request-Id header as the base of the response id.
    for (char ch : request_id)
      if (static_cast<unsigned char>(ch) >= 0x20 && ch != '"' && ch != '\\') id.push_back(ch);
    return id;
  }
  thread_local uint64_t state =
      std::random_device{}() ^
      (static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) << 1) ^
      std::hash<std::thread::id>{}(std::this_thread::get_id());
  fmt::format_to(std::back_inserter(id), "{:016x}{:016x}", splitmix(state), splitmix(state));
  return id;
}

// ---------------------------------------------------------------- tokenizer

int64_t count_tokens(std::string_view text) {
  return std::max<int64_t>(1, static_cast<int64_t>((text.size() + 3) / 4));
}

std::vector<uint32_t> tokenize(std::string_view text) {
  std::vector<uint32_t> ids;
  ids.reserve((text.size() + 3) / 4);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4 && i + k < text.size(); ++k)
      v |= static_cast<uint32_t>(static_cast<unsigned char>(text[i + k])) << (8 * k);
    ids.push_back(v);
  }
  return ids;
}

std::string detokenize(const std::vector<int64_t> &ids) {
  std::string s;
  for (int64_t id : ids) {
    uint32_t v = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) {
      char ch = static_cast<char>((v >> (8 * k)) & 0xff);
      if (ch != 0) s.push_back(ch);
    }
  }
  return s;
}

// ---------------------------------------------------------------- parsing

namespace {

struct BadRequest {
  std::string message;
};

std::string_view need_string(od::value v, const char *field) {
  if (v.type() != od::json_type::string) throw BadRequest{fmt::format("'{}' must be a string", field)};
  return v.get_string();
}

int64_t need_int(od::value v, const char *field) {
  if (v.type() != od::json_type::number) throw BadRequest{fmt::format("'{}' must be an integer", field)};
  return v.get_int64();
}

bool need_bool(od::value v, const char *field) {
  if (v.type() != od::json_type::boolean) throw BadRequest{fmt::format("'{}' must be a boolean", field)};
  return v.get_bool();
}

// Appends the text of a chat "content" (string, or array of {"type":"text","text":...} parts).
void collect_content(od::value v, std::string &text) {
  switch (v.type()) {
    case od::json_type::string: app(text, v.get_string()); break;
    case od::json_type::array:
      for (auto part : v.get_array()) {
        od::value pv = part.value();
        if (pv.type() == od::json_type::string) {
          app(text, pv.get_string());
          continue;
        }
        if (pv.type() != od::json_type::object) continue;
        for (auto f : pv.get_object()) {
          std::string_view k = f.unescaped_key();
          od::value fv = f.value();
          if (k == "text" && fv.type() == od::json_type::string) app(text, fv.get_string());
        }
      }
      break;
    default: break;  // null etc.
  }
}

// Renders chat messages as "role: content\n" lines.
void collect_messages(od::value v, std::string &text) {
  if (v.type() != od::json_type::array) throw BadRequest{"'messages' must be an array"};
  for (auto m : v.get_array()) {
    od::value mv = m.value();
    if (mv.type() != od::json_type::object) throw BadRequest{"each message must be an object"};
    std::string role, content;
    for (auto f : mv.get_object()) {
      std::string_view k = f.unescaped_key();
      od::value fv = f.value();
      if (k == "role" && fv.type() == od::json_type::string) role = std::string(std::string_view(fv.get_string()));
      else if (k == "content") collect_content(fv, content);
    }
    text += role;
    text += ": ";
    text += content;
    text += '\n';
  }
}

// string | [string...] | [int...] | [[int...]...] -> list of texts; token ids go to ids.
void collect_inputs(od::value v, std::vector<std::string> &texts, std::vector<int64_t> &ids,
                    const char *field) {
  switch (v.type()) {
    case od::json_type::string: texts.emplace_back(std::string_view(v.get_string())); return;
    case od::json_type::array:
      for (auto e : v.get_array()) {
        od::value ev = e.value();
        switch (ev.type()) {
          case od::json_type::string: texts.emplace_back(std::string_view(ev.get_string())); break;
          case od::json_type::number: ids.push_back(ev.get_int64()); break;
          case od::json_type::array: {
            std::vector<int64_t> sub;
            for (auto x : ev.get_array()) sub.push_back(x.get_int64());
            texts.push_back(detokenize(sub));
            break;
          }
          case od::json_type::object: {  // rerank/score documents may be {"text": ...}
            std::string t;
            for (auto f : ev.get_object()) {
              std::string_view k = f.unescaped_key();
              od::value fv = f.value();
              if ((k == "text" || k == "content") && fv.type() == od::json_type::string)
                app(t, fv.get_string());
            }
            texts.push_back(std::move(t));
            break;
          }
          default: throw BadRequest{fmt::format("invalid element in '{}'", field)};
        }
      }
      return;
    default: throw BadRequest{fmt::format("'{}' must be a string or an array", field)};
  }
}

void collect_stops(od::value v, std::vector<std::string> &stops) {
  switch (v.type()) {
    case od::json_type::string: stops.emplace_back(std::string_view(v.get_string())); break;
    case od::json_type::array:
      for (auto e : v.get_array()) stops.emplace_back(need_string(e.value(), "stop"));
      break;
    case od::json_type::null: break;
    default: throw BadRequest{"'stop' must be a string or an array of strings"};
  }
}

void parse_stream_options(od::value v, ParsedRequest &out) {
  if (v.type() == od::json_type::null) return;
  if (v.type() != od::json_type::object) throw BadRequest{"'stream_options' must be an object"};
  for (auto f : v.get_object()) {
    std::string_view k = f.unescaped_key();
    od::value fv = f.value();
    if (fv.type() == od::json_type::null) continue;
    if (k == "include_usage") out.include_usage = need_bool(fv, "include_usage");
    else if (k == "continuous_usage_stats") out.continuous_usage = need_bool(fv, "continuous_usage_stats");
  }
}

void parse_body(Kind kind, std::string_view body, ParsedRequest &out) {
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc = parser.iterate(padded);
  if (doc.type() != od::json_type::object) throw BadRequest{"request body must be a JSON object"};
  bool have_main = false;
  std::vector<int64_t> ids;
  for (auto field : doc.get_object()) {
    std::string_view key = field.unescaped_key();
    od::value v = field.value();
    if (v.type() == od::json_type::null) {
      if (key == "messages" || key == "prompt" || key == "input") throw BadRequest{fmt::format("'{}' must not be null", key)};
      continue;
    }
    if (key == "model") out.model = std::string(need_string(v, "model"));
    else if (key == "stream") out.stream = need_bool(v, "stream");
    else if (key == "stream_options") parse_stream_options(v, out);
    else if (key == "max_tokens" || key == "max_output_tokens" ||
             (key == "max_completion_tokens" && kind == Kind::Chat))
      out.max_tokens = need_int(v, key == "max_tokens" ? "max_tokens" : "max_completion_tokens");
    else if (key == "n") out.n = static_cast<int>(std::clamp<int64_t>(need_int(v, "n"), -1, 1 << 20));
    else if (key == "stop") collect_stops(v, out.stops);
    else if (key == "top_n") out.top_n = need_int(v, "top_n");
    else if (key == "dimensions") out.dimensions = need_int(v, "dimensions");
    else if (key == "encoding_format") {
      const std::string_view f = need_string(v, "encoding_format");
      if (f != "float" && f != "base64")
        throw BadRequest{fmt::format("encoding_format must be 'float' or 'base64', got '{}'", f)};
      out.base64 = f == "base64";
    }
    else if (key == "messages" && (kind == Kind::Chat || kind == Kind::Tokenize)) {
      collect_messages(v, out.prompt_text);
      out.tokenize_messages = true;
      have_main = true;
    } else if (key == "prompt" && (kind == Kind::Completion || kind == Kind::Tokenize)) {
      std::vector<std::string> texts;
      collect_inputs(v, texts, ids, "prompt");
      for (auto &t : texts) out.prompt_text += t;
      have_main = true;
    } else if (key == "input" && (kind == Kind::Embedding || kind == Kind::Pooling ||
                                  kind == Kind::Classify)) {
      collect_inputs(v, out.inputs, ids, "input");
      have_main = true;
    } else if (key == "input" && kind == Kind::Responses) {
      if (v.type() == od::json_type::string) app(out.prompt_text, v.get_string());
      else collect_messages(v, out.prompt_text);
      have_main = true;
    } else if (key == "tokens" && kind == Kind::Detokenize) {
      if (v.type() != od::json_type::array) throw BadRequest{"'tokens' must be an array"};
      for (auto e : v.get_array()) out.tokens.push_back(need_int(e.value(), "tokens"));
      have_main = true;
    } else if (kind == Kind::Score &&
               (key == "text_1" || key == "queries" || key == "data_1")) {
      collect_inputs(v, out.inputs1, ids, "text_1");
      have_main = true;
    } else if (kind == Kind::Score &&
               (key == "text_2" || key == "documents" || key == "data_2")) {
      collect_inputs(v, out.inputs, ids, "text_2");
    } else if (kind == Kind::Rerank && key == "query") {
      out.query = std::string(need_string(v, "query"));
      have_main = true;
    } else if (kind == Kind::Rerank && key == "documents") {
      collect_inputs(v, out.inputs, ids, "documents");
    }
  }

  switch (kind) {
    case Kind::Chat:
      if (!have_main) throw BadRequest{"'messages' is a required property"};
      break;
    case Kind::Completion:
      if (!have_main) throw BadRequest{"'prompt' is a required property"};
      break;
    case Kind::Tokenize:
      if (!have_main) throw BadRequest{"'prompt' or 'messages' is required"};
      break;
    case Kind::Embedding:
    case Kind::Pooling:
    case Kind::Classify:
      if (!have_main) throw BadRequest{"'input' is a required property"};
      if (!ids.empty()) out.inputs.push_back(detokenize(ids));
      break;
    case Kind::Detokenize:
      if (!have_main) throw BadRequest{"'tokens' is a required property"};
      break;
    case Kind::Score:
      if (!have_main || out.inputs.empty()) throw BadRequest{"'text_1' and 'text_2' are required"};
      if (out.inputs1.size() != 1 && out.inputs1.size() != out.inputs.size())
        throw BadRequest{"text_1 must have one element or as many as text_2"};
      break;
    case Kind::Rerank:
      if (!have_main) throw BadRequest{"'query' is a required property"};
      break;
    case Kind::Responses:
      if (!have_main) throw BadRequest{"'input' is a required property"};
      break;
  }

  if (out.n < 1) throw BadRequest{fmt::format("n must be at least 1, got {}.", out.n)};
  if (out.max_tokens != -1 && out.max_tokens < 1)
    throw BadRequest{fmt::format("max_tokens must be at least 1, got {}.", out.max_tokens)};

  int64_t pt = 0;
  if (!out.prompt_text.empty()) pt += static_cast<int64_t>((out.prompt_text.size() + 3) / 4);
  pt += static_cast<int64_t>(ids.size());
  for (auto &s : out.inputs) pt += static_cast<int64_t>((s.size() + 3) / 4);
  for (auto &s : out.inputs1) pt += static_cast<int64_t>((s.size() + 3) / 4);
  pt += static_cast<int64_t>((out.query.size() + 3) / 4);
  out.prompt_tokens = std::max<int64_t>(1, pt);
  if (kind == Kind::Completion && out.prompt_text.empty() && !ids.empty()) {
    out.tokens = ids;  // token-id prompt
  }
}

}  // namespace

bool parse_request(Kind kind, std::string_view body, ParsedRequest &out, Error &err) {
  out.kind = kind;
  try {
    parse_body(kind, body, out);
    return true;
  } catch (const BadRequest &e) {
    err = Error{400, "BadRequestError", e.message};
  } catch (const simdjson::simdjson_error &e) {
    err = Error{400, "BadRequestError", fmt::format("Invalid JSON body: {}", e.what())};
  }
  return false;
}

std::string error_json(int status, std::string_view type, std::string_view message) {
  std::string out;
  out.reserve(96 + message.size());
  app(out, "{\"error\":{\"message\":\"");
  append_json_escaped(out, message);
  app(out, "\",\"type\":\"");
  append_json_escaped(out, type);
  app(out, "\",\"param\":null,\"code\":");
  num(out, status);
  app(out, "}}");
  return out;
}

// ---------------------------------------------------------------- generation plan

Plan plan_output(const ParsedRequest &req, int64_t default_tokens) {
  Plan p;
  if (req.max_tokens >= 0) {
    p.tokens = req.max_tokens;
    p.finish_reason = "length";
  } else {
    p.tokens = std::max<int64_t>(0, default_tokens);
    p.finish_reason = "stop";  // the model "emitted EOS"
  }
  for (const auto &s : req.stops) {
    std::string_view w = s;
    while (!w.empty() && w.back() == ' ') w.remove_suffix(1);
    if (w.size() < 4 || w.substr(0, 3) != "tok") continue;
    int64_t k = 0;
    bool ok = true;
    for (char ch : w.substr(3)) {
      if (ch < '0' || ch > '9' || k > (int64_t{1} << 40)) { ok = false; break; }
      k = k * 10 + (ch - '0');
    }
    if (ok && k < p.tokens) {
      p.tokens = k;
      p.finish_reason = "stop";
      p.stop_reason = s;
    }
  }
  return p;
}

// ---------------------------------------------------------------- rendering

static void append_token_text(std::string &out, int64_t tok) {
  app(out, "tok");
  num(out, tok);
  out.push_back(' ');
}

static void append_usage(std::string &out, const Usage &u) {
  app(out, "{\"prompt_tokens\":");
  num(out, u.prompt);
  app(out, ",\"total_tokens\":");
  num(out, u.prompt + u.completion);
  app(out, ",\"completion_tokens\":");
  num(out, u.completion);
  app(out, ",\"prompt_tokens_details\":null}");
}

static void append_finish(std::string &out, const Plan *last, bool with_stop_reason) {
  if (!last) {
    app(out, "\"finish_reason\":null");
    if (with_stop_reason) app(out, ",\"stop_reason\":null");
    return;
  }
  app(out, "\"finish_reason\":\"");
  app(out, last->finish_reason);
  app(out, "\",\"stop_reason\":");
  if (last->stop_reason.empty()) {
    app(out, "null");
  } else {
    out.push_back('"');
    append_json_escaped(out, last->stop_reason);
    out.push_back('"');
  }
}

static void append_head(std::string &out, const Ctx &c, std::string_view object) {
  app(out, "{\"id\":\"");
  app(out, c.id);
  app(out, "\",\"object\":\"");
  app(out, object);
  app(out, "\",\"created\":");
  num(out, c.created);
  app(out, ",\"model\":\"");
  app(out, c.model_json);
  app(out, "\",");
}

std::string render_chat(const Ctx &c, const ParsedRequest &r, const Plan &p) {
  std::string out;
  out.reserve(400 + static_cast<size_t>(r.n) * (200 + static_cast<size_t>(p.tokens) * 8));
  append_head(out, c, "chat.completion");
  app(out, "\"choices\":[");
  for (int i = 0; i < r.n; ++i) {
    if (i) out.push_back(',');
    app(out, "{\"index\":");
    num(out, i);
    app(out, ",\"message\":{\"role\":\"assistant\",\"content\":\"");
    for (int64_t t = 0; t < p.tokens; ++t) append_token_text(out, t);
    app(out, "\",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,"
             "\"tool_calls\":[],\"reasoning_content\":null},\"logprobs\":null,");
    append_finish(out, &p, true);
    out.push_back('}');
  }
  app(out, "],\"service_tier\":null,\"system_fingerprint\":null,\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, p.tokens * r.n});
  app(out, ",\"prompt_logprobs\":null,\"kv_transfer_params\":null}");
  return out;
}

std::string render_completion(const Ctx &c, const ParsedRequest &r, const Plan &p) {
  std::string out;
  out.reserve(300 + static_cast<size_t>(r.n) * (150 + static_cast<size_t>(p.tokens) * 8));
  append_head(out, c, "text_completion");
  app(out, "\"choices\":[");
  for (int i = 0; i < r.n; ++i) {
    if (i) out.push_back(',');
    app(out, "{\"index\":");
    num(out, i);
    app(out, ",\"text\":\"");
    for (int64_t t = 0; t < p.tokens; ++t) append_token_text(out, t);
    app(out, "\",\"logprobs\":null,");
    append_finish(out, &p, true);
    app(out, ",\"prompt_logprobs\":null}");
  }
  app(out, "],\"service_tier\":null,\"system_fingerprint\":null,\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, p.tokens * r.n});
  app(out, ",\"kv_transfer_params\":null}");
  return out;
}

void event_chat_role(std::string &out, const Ctx &c, int index, const Usage *cont) {
  app(out, "data: ");
  append_head(out, c, "chat.completion.chunk");
  app(out, "\"choices\":[{\"index\":");
  num(out, index);
  app(out, ",\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
  if (cont) {
    app(out, ",\"usage\":");
    append_usage(out, *cont);
  }
  app(out, "}\n\n");
}

void event_chat_token(std::string &out, const Ctx &c, int index, int64_t tok, const Plan *last,
                      const Usage *cont) {
  app(out, "data: ");
  append_head(out, c, "chat.completion.chunk");
  app(out, "\"choices\":[{\"index\":");
  num(out, index);
  app(out, ",\"delta\":{\"content\":\"");
  if (tok >= 0) append_token_text(out, tok);
  app(out, "\"},\"logprobs\":null,");
  append_finish(out, last, false);
  app(out, "}]");
  if (cont) {
    app(out, ",\"usage\":");
    append_usage(out, *cont);
  }
  app(out, "}\n\n");
}

void event_completion_token(std::string &out, const Ctx &c, int index, int64_t tok,
                            const Plan *last, const Usage *cont) {
  app(out, "data: ");
  append_head(out, c, "text_completion");
  app(out, "\"choices\":[{\"index\":");
  num(out, index);
  app(out, ",\"text\":\"");
  if (tok >= 0) append_token_text(out, tok);
  app(out, "\",\"logprobs\":null,");
  append_finish(out, last, true);
  app(out, "}]");
  if (cont) {
    app(out, ",\"usage\":");
    append_usage(out, *cont);
  }
  app(out, "}\n\n");
}

void event_usage(std::string &out, const Ctx &c, bool chat, const Usage &u) {
  app(out, "data: ");
  append_head(out, c, chat ? "chat.completion.chunk" : "text_completion");
  app(out, "\"choices\":[],\"usage\":");
  append_usage(out, u);
  app(out, "}\n\n");
}

// Deterministic unit vector derived from the text.
// vLLM's encoding_format "base64": the float32 vector's bytes (little-endian), base64-encoded.
static void append_base64_floats(std::string &out, const std::vector<double> &v) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  bytes.reserve(v.size() * 4);
  for (double d : v) {
    const float f = static_cast<float>(d);
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((u >> (8 * k)) & 0xff));
  }
  out.push_back('"');
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t chunk = 0;
    for (size_t k = 0; k < n; ++k) chunk |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + k])) << (16 - 8 * k);
    out.push_back(kAlphabet[(chunk >> 18) & 63]);
    out.push_back(kAlphabet[(chunk >> 12) & 63]);
    out.push_back(n > 1 ? kAlphabet[(chunk >> 6) & 63] : '=');
    out.push_back(n > 2 ? kAlphabet[chunk & 63] : '=');
  }
  out.push_back('"');
}

static void append_vector(std::string &out, std::string_view text, int64_t dims, bool base64 = false) {
  uint64_t s = fnv1a64(text);
  std::vector<double> v(static_cast<size_t>(dims));
  double norm = 0;
  for (auto &x : v) {
    x = static_cast<double>(splitmix(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    norm += x * x;
  }
  norm = std::sqrt(norm > 0 ? norm : 1.0);
  if (base64) {
    for (auto &x : v) x = std::round(x / norm * 1e6) / 1e6;  // the same values the float form prints
    append_base64_floats(out, v);
    return;
  }
  out.push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out.push_back(',');
    fmt::format_to(std::back_inserter(out), "{:.6f}", v[i] / norm);
  }
  out.push_back(']');
}

static void append_id_head(std::string &out, const Ctx &c, std::string_view object) {
  append_head(out, c, object);
}

std::string render_embeddings(const Ctx &c, const ParsedRequest &r) {
  int64_t dims = r.dimensions > 0 ? std::min<int64_t>(r.dimensions, 8192) : 32;
  std::string out;
  out.reserve(200 + r.inputs.size() * static_cast<size_t>(dims) * 10);
  append_id_head(out, c, "list");
  app(out, "\"data\":[");
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (i) out.push_back(',');
    app(out, "{\"index\":");
    num(out, static_cast<int64_t>(i));
    app(out, ",\"object\":\"embedding\",\"embedding\":");
    append_vector(out, r.inputs[i], dims, r.base64);
    out.push_back('}');
  }
  app(out, "],\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, 0});
  out.push_back('}');
  return out;
}

std::string render_pooling(const Ctx &c, const ParsedRequest &r) {
  std::string out;
  append_id_head(out, c, "list");
  app(out, "\"data\":[");
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (i) out.push_back(',');
    app(out, "{\"index\":");
    num(out, static_cast<int64_t>(i));
    app(out, ",\"object\":\"pooling\",\"data\":");
    append_vector(out, r.inputs[i], r.dimensions > 0 ? std::min<int64_t>(r.dimensions, 8192) : 32);
    out.push_back('}');
  }
  app(out, "],\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, 0});
  out.push_back('}');
  return out;
}

static double unit_score(std::string_view a, std::string_view b) {
  uint64_t h = fnv1a64(b, fnv1a64(a) ^ 0x5bd1e995ULL);
  return static_cast<double>(h >> 11) / 9007199254740992.0;
}

std::string render_classify(const Ctx &c, const ParsedRequest &r) {
  std::string out;
  append_id_head(out, c, "list");
  app(out, "\"data\":[");
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (i) out.push_back(',');
    double p = unit_score("classify", r.inputs[i]);
    app(out, "{\"index\":");
    num(out, static_cast<int64_t>(i));
    app(out, p >= 0.5 ? ",\"label\":\"LABEL_1\",\"probs\":[" : ",\"label\":\"LABEL_0\",\"probs\":[");
    fnum(out, 1.0 - p);
    out.push_back(',');
    fnum(out, p);
    app(out, "],\"num_classes\":2}");
  }
  app(out, "],\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, 0});
  out.push_back('}');
  return out;
}

std::string render_tokenize(const ParsedRequest &r, int64_t max_model_len) {
  std::string out = "{\"count\":";
  std::vector<uint32_t> ids = tokenize(r.prompt_text);
  std::vector<int64_t> all(r.tokens.begin(), r.tokens.end());
  for (uint32_t id : ids) all.push_back(id);
  num(out, static_cast<int64_t>(all.size()));
  app(out, ",\"max_model_len\":");
  num(out, max_model_len);
  app(out, ",\"tokens\":[");
  for (size_t i = 0; i < all.size(); ++i) {
    if (i) out.push_back(',');
    num(out, all[i]);
  }
  app(out, "],\"token_strs\":null}");
  return out;
}

std::string render_detokenize(const ParsedRequest &r) {
  std::string out = "{\"prompt\":\"";
  append_json_escaped(out, detokenize(r.tokens));
  app(out, "\"}");
  return out;
}

std::string render_score(const Ctx &c, const ParsedRequest &r) {
  std::string out;
  append_id_head(out, c, "list");
  app(out, "\"data\":[");
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (i) out.push_back(',');
    const std::string &a = r.inputs1.size() == 1 ? r.inputs1[0] : r.inputs1[i];
    app(out, "{\"index\":");
    num(out, static_cast<int64_t>(i));
    app(out, ",\"object\":\"score\",\"score\":");
    fnum(out, unit_score(a, r.inputs[i]));
    out.push_back('}');
  }
  app(out, "],\"usage\":");
  append_usage(out, Usage{r.prompt_tokens, 0});
  out.push_back('}');
  return out;
}

std::string render_rerank(const Ctx &c, const ParsedRequest &r) {
  std::vector<std::pair<double, size_t>> scored;
  for (size_t i = 0; i < r.inputs.size(); ++i) scored.emplace_back(unit_score(r.query, r.inputs[i]), i);
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto &a, const auto &b) { return a.first > b.first; });
  if (r.top_n > 0 && static_cast<size_t>(r.top_n) < scored.size()) scored.resize(static_cast<size_t>(r.top_n));
  std::string out = "{\"id\":\"";
  app(out, c.id);
  app(out, "\",\"model\":\"");
  app(out, c.model_json);
  app(out, "\",\"usage\":{\"total_tokens\":");
  num(out, r.prompt_tokens);
  app(out, "},\"results\":[");
  for (size_t k = 0; k < scored.size(); ++k) {
    if (k) out.push_back(',');
    app(out, "{\"index\":");
    num(out, static_cast<int64_t>(scored[k].second));
    app(out, ",\"document\":{\"text\":\"");
    append_json_escaped(out, r.inputs[scored[k].second]);
    app(out, "\"},\"relevance_score\":");
    fnum(out, scored[k].first);
    out.push_back('}');
  }
  app(out, "]}");
  return out;
}

std::string render_responses(const Ctx &c, const ParsedRequest &r, const Plan &p) {
  std::string out = "{\"id\":\"";
  app(out, c.id);
  app(out, "\",\"object\":\"response\",\"created_at\":");
  num(out, c.created);
  app(out, ",\"model\":\"");
  app(out, c.model_json);
  app(out, "\",\"status\":\"");
  app(out, std::string_view(p.finish_reason) == "length" ? "incomplete" : "completed");
  app(out, "\",\"output\":[{\"id\":\"msg_");
  app(out, std::string_view(c.id).substr(std::min<size_t>(5, c.id.size())));
  app(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":"
           "[{\"type\":\"output_text\",\"text\":\"");
  for (int64_t t = 0; t < p.tokens; ++t) append_token_text(out, t);
  app(out, "\",\"annotations\":[]}]}],\"parallel_tool_calls\":true,\"tools\":[],\"usage\":"
           "{\"input_tokens\":");
  num(out, r.prompt_tokens);
  app(out, ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
  num(out, p.tokens);
  app(out, ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
  num(out, r.prompt_tokens + p.tokens);
  app(out, "}}");
  return out;
}

// ---------------------------------------------------------------- prefix cache

int64_t PrefixCache::lookup_insert(std::string_view text) {
  const size_t nblocks = text.size() / kBlockBytes;
  if (nblocks == 0) return 0;
  std::vector<uint64_t> chain(nblocks);
  uint64_t h = 14695981039346656037ULL;
  for (size_t b = 0; b < nblocks; ++b) {
    h = fnv1a64(text.substr(b * kBlockBytes, kBlockBytes), h ^ 0x9E3779B97F4A7C15ULL);
    chain[b] = h;
  }
  std::lock_guard<std::mutex> lk(mu_);
  size_t hits = 0;
  while (hits < nblocks && blocks_.count(chain[hits])) ++hits;
  if (max_blocks_ == 0) return static_cast<int64_t>(hits * (kBlockBytes / 4));
  for (size_t b = nblocks; b-- > 0;) {  // deepest first: the shared head stays most recent
    auto it = blocks_.find(chain[b]);
    if (it != blocks_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
    } else {
      lru_.push_front(chain[b]);
      blocks_.emplace(chain[b], lru_.begin());
    }
  }
  while (blocks_.size() > max_blocks_) {
    blocks_.erase(lru_.back());
    lru_.pop_back();
  }
  return static_cast<int64_t>(hits * (kBlockBytes / 4));
}

void PrefixCache::clear() {
  std::lock_guard<std::mutex> lk(mu_);
  blocks_.clear();
  lru_.clear();
}

void PrefixCache::set_capacity(size_t max_blocks) {
  std::lock_guard<std::mutex> lk(mu_);
  max_blocks_ = max_blocks;
}

size_t PrefixCache::size() {
  std::lock_guard<std::mutex> lk(mu_);
  return blocks_.size();
}

}  // namespace vsim
