// vllm-sim: prefill/decode disaggregation (see pd.h).
#include "pd.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>

#include "engine.h"

namespace vsim {

namespace od = simdjson::ondemand;

bool parse_kv_role(const std::string &s, KvRole &out) {
  if (s == "none") out = KvRole::None;
  else if (s == "prefill") out = KvRole::Prefill;
  else if (s == "decode") out = KvRole::Decode;
  else if (s == "both") out = KvRole::Both;
  else return false;
  return true;
}

namespace {

// The params object's members; false with `error` on a wrong type.
bool read_params(od::object obj, KvParams &out, std::string &error) {
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return error = "kv_transfer_params: invalid key", false;
    od::value v = field.value();
    od::json_type type;
    if (v.type().get(type)) return error = "kv_transfer_params: invalid JSON", false;
    if (type == od::json_type::null) continue;
    auto want = [&](od::json_type t, const char *what) {
      if (type == t) return true;
      error = fmt::format("kv_transfer_params.{} must be {}", key, what);
      return false;
    };
    if (key == "do_remote_decode" || key == "do_remote_prefill") {
      if (!want(od::json_type::boolean, "a boolean")) return false;
      bool b = false;
      if (v.get_bool().get(b)) return error = "kv_transfer_params: invalid boolean", false;
      (key == "do_remote_decode" ? out.do_remote_decode : out.do_remote_prefill) = b;
    } else if (key == "remote_engine_id" || key == "remote_host") {
      if (!want(od::json_type::string, "a string")) return false;
      std::string_view s;
      if (v.get_string().get(s)) return error = "kv_transfer_params: invalid string", false;
      (key == "remote_engine_id" ? out.remote_engine_id : out.remote_host) = std::string(s);
    } else if (key == "remote_port") {
      if (!want(od::json_type::number, "an integer")) return false;
      if (v.get_int64().get(out.remote_port)) return error = "kv_transfer_params.remote_port must be an integer", false;
    } else if (key == "remote_block_ids") {
      if (!want(od::json_type::array, "an array of integers")) return false;
      out.has_block_ids = true;
      od::array arr;
      if (v.get_array().get(arr)) return error = "kv_transfer_params: invalid array", false;
      for (auto e : arr) {
        int64_t id = 0;
        if (e.get_int64().get(id)) return error = "kv_transfer_params.remote_block_ids must be integers", false;
        out.remote_block_ids.push_back(id);
      }
    }
    // Other members (tp_size, remote_request_id...) are the connector's business.
  }
  return true;
}

}  // namespace

bool parse_kv_params(std::string_view body, KvParams &out, std::string &error) {
  thread_local od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc;
  if (parser.iterate(padded).get(doc)) return error = "request body is not valid JSON", false;
  od::object root;
  if (doc.get_object().get(root)) return error = "request body must be a JSON object", false;
  for (auto field : root) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return error = "request body is not valid JSON", false;
    if (key != "kv_transfer_params") continue;
    od::value v = field.value();
    od::json_type type;
    if (v.type().get(type)) return error = "request body is not valid JSON", false;
    if (type == od::json_type::null) return true;
    od::object obj;
    if (type != od::json_type::object || v.get_object().get(obj)) {
      return error = "kv_transfer_params must be an object", false;
    }
    out.present = true;
    return read_params(obj, out, error);
  }
  return true;
}

std::vector<int64_t> kv_block_ids(std::string_view secret, std::string_view engine_id, std::string_view prompt_text) {
  const uint64_t seed = fnv1a64(engine_id, fnv1a64(secret));
  std::vector<int64_t> ids;
  uint64_t chain = seed;
  const size_t block = 64;  // PrefixCache::kBlockBytes: 16 tokens
  size_t at = 0;
  do {
    chain = fnv1a64(prompt_text.substr(at, block), chain ^ 0x9e3779b97f4a7c15ULL);
    ids.push_back(static_cast<int64_t>(chain & 0x7fffffff));
    at += block;
  } while (at < prompt_text.size());
  return ids;
}

std::string kv_params_member(std::string_view engine_id, const std::vector<int64_t> &block_ids,
                             std::string_view host, int port) {
  std::string out = "\"kv_transfer_params\":{\"do_remote_prefill\":true,\"do_remote_decode\":false,\"remote_engine_id\":\"";
  append_json_escaped(out, engine_id);
  out += "\",\"remote_block_ids\":[";
  for (size_t i = 0; i < block_ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(block_ids[i]);
  }
  out += "],\"remote_host\":\"";
  append_json_escaped(out, host);
  out += fmt::format("\",\"remote_port\":{},\"tp_size\":1}}", port);
  return out;
}

std::string kv_verify(const KvParams &p, std::string_view secret, std::string_view prompt_text) {
  if (p.remote_engine_id.empty()) return "kv_transfer_params.remote_engine_id is required with do_remote_prefill";
  if (!p.has_block_ids) return "kv_transfer_params.remote_block_ids is required with do_remote_prefill";
  if (p.remote_host.empty() || p.remote_port < 0) {
    return "kv_transfer_params.remote_host and remote_port are required with do_remote_prefill";
  }
  if (p.remote_block_ids != kv_block_ids(secret, p.remote_engine_id, prompt_text)) {
    return fmt::format("kv_transfer_params: engine {} holds no KV blocks {} for this prompt",
                       p.remote_engine_id, p.remote_block_ids.size());
  }
  return {};
}

void add_member(std::string &body, std::string_view member) {
  // vLLM's answers end with "kv_transfer_params":null when there are none: replaced.
  static constexpr std::string_view kNull = "\"kv_transfer_params\":null";
  if (const size_t at = body.rfind(kNull); at != std::string::npos) {
    body.replace(at, kNull.size(), member);
    return;
  }
  const size_t close = body.rfind('}');
  if (close == std::string::npos) return;
  std::string tail = body.substr(close);
  body.resize(close);
  while (!body.empty() && (body.back() == ' ' || body.back() == '\n')) body.pop_back();
  if (!body.empty() && body.back() != '{') body += ',';
  body.append(member);
  body += tail;
}

void PrefillTimeline::add(Clock::time_point begin, Clock::time_point end) {
  if (end <= begin) return;
  std::lock_guard<std::mutex> lk(mu_);
  const auto horizon = begin - std::chrono::seconds(10);
  while (!spans_.empty() && spans_.front().second < horizon) spans_.pop_front();
  spans_.emplace_back(begin, end);  // reservations come in order: begin >= the last end
}

PrefillTimeline::Clock::time_point PrefillTimeline::busy_until(Clock::time_point t) {
  std::lock_guard<std::mutex> lk(mu_);
  // The span covering t, then the spans that follow it without a gap.
  auto it = std::find_if(spans_.begin(), spans_.end(), [&](const auto &s) { return s.first <= t && t < s.second; });
  if (it == spans_.end()) return t;
  Clock::time_point end = it->second;
  for (++it; it != spans_.end() && it->first <= end; ++it) end = std::max(end, it->second);
  return end;
}

}  // namespace vsim
