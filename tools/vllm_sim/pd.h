// vllm-sim: prefill/decode disaggregation (`--kv-role`), as vLLM's NIXL connector speaks it.
// A prefill engine answers a request whose kv_transfer_params ask for a remote decode with
// kv_transfer_params of its own (engine id, block ids, host, port) after computing the prompt; a
// decode engine given those params skips the prompt's prefill (the blocks count as transferred)
// and rejects params it cannot have been given (400). Block ids are derived from `--kv-secret`,
// the prefill engine's id and the prompt's chained block hashes, so any sim sharing the secret
// can verify them and a forged or reused set fails.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace vsim {

enum class KvRole { None, Prefill, Decode, Both };
bool parse_kv_role(const std::string &s, KvRole &out);

// A request's kv_transfer_params (vLLM's names).
struct KvParams {
  bool present = false;  // an object (absent or null: false)
  bool do_remote_decode = false;
  bool do_remote_prefill = false;
  std::string remote_engine_id;
  std::vector<int64_t> remote_block_ids;
  bool has_block_ids = false;
  std::string remote_host;
  int64_t remote_port = -1;
};

// Reads `kv_transfer_params` from a JSON body. False with `error` when it is there but malformed.
bool parse_kv_params(std::string_view body, KvParams &out, std::string &error);

// The block ids a prefill on `engine_id` issues for a prompt: one per 16-token (64-byte) block,
// at least one.
std::vector<int64_t> kv_block_ids(std::string_view secret, std::string_view engine_id, std::string_view prompt_text);

// `"kv_transfer_params":{...}` of a prefill answer (the member, no braces around it).
std::string kv_params_member(std::string_view engine_id, const std::vector<int64_t> &block_ids,
                             std::string_view host, int port);

// Why a decode request's params are not ones a prefill engine issued for this prompt; empty when
// they are.
std::string kv_verify(const KvParams &p, std::string_view secret, std::string_view prompt_text);

// `body` (a JSON object) with `member` in place of its `"kv_transfer_params":null`, else added
// before its closing brace.
void add_member(std::string &body, std::string_view member);

// When this engine computes prompts (`--prefill-stalls-decode`): a decode token due while a
// prefill runs waits for the prefill's end (vLLM's steps run a prefill and the batch's decodes
// together, so a long prompt stalls every running stream).
class PrefillTimeline {
public:
  using Clock = std::chrono::steady_clock;
  void add(Clock::time_point begin, Clock::time_point end);
  // The end of the run of prefills that covers `t`, or `t` when none does.
  Clock::time_point busy_until(Clock::time_point t);

private:
  std::mutex mu_;
  std::deque<std::pair<Clock::time_point, Clock::time_point>> spans_;  // in order, disjoint
};

}  // namespace vsim
