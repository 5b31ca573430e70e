// Internal: finds the token counts of an answer while it is relayed: the last `"usage"` object
// (a JSON body's, or an event stream's usage chunk) without keeping or re-parsing the body, and
// the number of events of a stream for an estimate when no usage comes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "vllm_router/observer.h"

namespace vllm_router::detail {

class UsageScanner {
 public:
  /// Forgets the last answer.
  void reset() noexcept;
  /// The answer's head: an event stream (usage in its last events, events counted) or a body of
  /// `length` bytes when known (0: unknown), whose usage can only be in its last kTail bytes
  /// (vLLM writes it last), so only those are searched.
  void begin(bool event_stream, std::uint64_t length) noexcept;
  /// Body bytes of the answer, in order.
  void feed(std::string_view bytes);
  /// What was found. Without a usage object: an event stream counts one completion token per
  /// data event (not `[DONE]`) and one prompt token per 4 bytes of the request body
  /// (`request_bytes`), marked estimated; any other answer counts nothing.
  TokenUsage result(bool event_stream, std::size_t request_bytes) const;

 private:
  void start_at(std::string_view from);  // a `"usage"` begins here
  void settle();                         // parse the collected usage text, keep it when valid
  static bool parse(std::string_view text, TokenUsage& out);  // text starts at `"usage"`

  static constexpr std::size_t kKeep = 256;  // bytes kept after `"usage"`: the counts come first
  static constexpr std::uint64_t kTail = 2048;  // of a body of known length, the part searched
  bool event_stream_ = false;
  std::uint64_t skip_ = 0;  // body bytes not worth searching (before the tail of a known length)
  std::string tail_;     // the last bytes fed (a `"usage"` may be split across reads)
  std::string pending_;  // text from the latest `"usage"` on, up to kKeep bytes
  bool collecting_ = false;
  bool found_ = false;
  TokenUsage usage_;
  std::uint64_t events_ = 0;   // blank lines ending an event
  bool done_event_ = false;    // the stream ended with `data: [DONE]`
  bool last_lf_ = false;       // the last byte fed was '\n'
};

}  // namespace vllm_router::detail
