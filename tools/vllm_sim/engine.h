// vllm-sim engine: parses vLLM OpenAI request bodies and renders vLLM-shaped responses (no HTTP).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <list>
#include <unordered_map>
#include <vector>

namespace vsim {

// Which vLLM endpoint a body belongs to.
enum class Kind {
  Chat,
  Completion,
  Embedding,
  Tokenize,
  Detokenize,
  Score,
  Rerank,
  Responses,
  Pooling,
  Classify,
};

// Simulated tokenizer (documented in tools/vllm_sim/README.md):
//   one token per 4 bytes of UTF-8 text, the last partial group counting as one token.
//   Token id = the (up to) 4 bytes packed little-endian into an integer, so /detokenize
//   inverts /tokenize exactly. Usage prompt_tokens uses the same count, at least 1.
int64_t count_tokens(std::string_view text);
std::vector<uint32_t> tokenize(std::string_view text);
std::string detokenize(const std::vector<int64_t> &ids);

uint64_t fnv1a64(std::string_view data, uint64_t h = 14695981039346656037ULL);

// Everything the sim needs from a request body.
struct ParsedRequest {
  Kind kind = Kind::Chat;
  std::string model;       // as requested; empty when the body has no "model"
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage = false;
  int64_t max_tokens = -1; // -1: not given
  int n = 1;
  int64_t prompt_tokens = 0;
  std::vector<std::string> stops;
  std::string prompt_text;          // rendered prompt (prefix cache, tokenize)
  std::vector<std::string> inputs;  // embeddings/pooling inputs, rerank documents, score text_2
  std::vector<std::string> inputs1; // score text_1 (one or as many as inputs)
  std::string query;                // rerank query
  std::vector<int64_t> tokens;      // detokenize ids; also token-id prompts
  int64_t top_n = -1;
  int64_t dimensions = -1;
  bool base64 = false;              // embeddings: encoding_format "base64" (float32, little-endian)
  bool tokenize_messages = false;
};

struct Error {
  int status = 400;
  std::string type = "BadRequestError";
  std::string message;
};

// Parses body for kind. Returns false and fills err (400 BadRequestError) on invalid input.
bool parse_request(Kind kind, std::string_view body, ParsedRequest &out, Error &err);

// vLLM >= 0.10.1 error body: {"error":{"message","type","param":null,"code":status}}.
std::string error_json(int status, std::string_view type, std::string_view message);

void append_json_escaped(std::string &out, std::string_view s);

// What the "model" generates for one request.
struct Plan {
  int64_t tokens = 0;             // per choice
  const char *finish_reason = "stop";
  std::string stop_reason;        // empty: null
};
// Output length: max_tokens if given (finish "length"), else default_tokens (finish "stop",
// i.e. EOS). A "stop" string equal to a generated word ("tok3") ends the output before it with
// finish "stop" and stop_reason = that string.
Plan plan_output(const ParsedRequest &req, int64_t default_tokens);

struct Usage {
  int64_t prompt = 0;
  int64_t completion = 0;
};

// Per-response constants shared by all events of one answer.
struct Ctx {
  std::string id;            // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model_json;    // model name, already JSON-escaped (no quotes)
};

std::string make_id(std::string_view prefix, std::string_view request_id);

// Non-streamed bodies.
std::string render_chat(const Ctx &c, const ParsedRequest &r, const Plan &p);
std::string render_completion(const Ctx &c, const ParsedRequest &r, const Plan &p);
std::string render_embeddings(const Ctx &c, const ParsedRequest &r);
std::string render_pooling(const Ctx &c, const ParsedRequest &r);
std::string render_classify(const Ctx &c, const ParsedRequest &r);
std::string render_tokenize(const ParsedRequest &r, int64_t max_model_len);
std::string render_detokenize(const ParsedRequest &r);
std::string render_score(const Ctx &c, const ParsedRequest &r);
std::string render_rerank(const Ctx &c, const ParsedRequest &r);
std::string render_responses(const Ctx &c, const ParsedRequest &r, const Plan &p);

// Streamed events. Each appends one complete SSE event "data: {...}\n\n" to out.
void event_chat_role(std::string &out, const Ctx &c, int index, const Usage *cont);
// tok < 0: empty content (used when the plan generates nothing).
void event_chat_token(std::string &out, const Ctx &c, int index, int64_t tok, const Plan *last,
                      const Usage *cont);
void event_completion_token(std::string &out, const Ctx &c, int index, int64_t tok,
                            const Plan *last, const Usage *cont);
void event_usage(std::string &out, const Ctx &c, bool chat, const Usage &u);
inline constexpr std::string_view kDoneEvent = "data: [DONE]\n\n";

// Approximate vLLM automatic prefix caching: a KV cache of `max_blocks` blocks of 16 tokens
// (64 bytes of text), each keyed by the hash of its text chained with every block before it.
// lookup_insert returns how many prompt tokens were already cached (the longest chain of cached
// blocks from the start), then caches all of the prompt's full blocks, evicting the least
// recently used blocks beyond the capacity (deepest blocks of a prompt go first, as vLLM frees
// a sequence's blocks tail first).
class PrefixCache {
public:
  static constexpr size_t kBlockBytes = 64;  // 16 tokens x 4 bytes
  explicit PrefixCache(size_t max_blocks = 4096) : max_blocks_(max_blocks) {}
  int64_t lookup_insert(std::string_view text);
  void clear();
  void set_capacity(size_t max_blocks);
  size_t size();

private:
  std::mutex mu_;
  std::list<uint64_t> lru_;  // front: most recently used
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> blocks_;
  size_t max_blocks_;
};

}  // namespace vsim
