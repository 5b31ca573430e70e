// Internal: token counts of an answer, found while it is relayed (see usage_scanner.h).
#include "usage_scanner.h"

#include <cstring>

namespace vllm_router::detail {

namespace {

constexpr std::string_view kUsage = "\"usage\"";

// The last `"usage"` key in `hay` (not text inside a string: no backslash before it), searched
// from the end with memrchr to each 'u': vLLM writes usage last, so a JSON body is searched over
// its last couple of hundred bytes; glibc's memmem from the front cost several times more.
const char* find_last_usage(std::string_view hay, char before_hay) {
  const char* begin = hay.data();
  std::size_t n = hay.size() >= kUsage.size() ? hay.size() - (kUsage.size() - 2) : 0;  // 'u' positions up to here
  while (n > 1) {
    const char* p = static_cast<const char*>(::memrchr(begin + 1, 'u', n - 1));
    if (p == nullptr) return nullptr;
    if (p[-1] == '"' && std::memcmp(p, "usage\"", 6) == 0) {
      const char escape = p - 1 == begin ? before_hay : p[-2];
      if (escape != '\\') return p - 1;
    }
    n = static_cast<std::size_t>(p - begin);
  }
  return nullptr;
}

// The number after `"name"` and a colon in `text`, or false.
bool number_after(std::string_view text, std::string_view name, std::uint64_t& out) {
  const std::size_t at = text.find(name);
  if (at == std::string_view::npos) return false;
  std::size_t i = at + name.size();
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) ++i;
  if (i >= text.size() || text[i] != ':') return false;
  ++i;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) ++i;
  std::uint64_t v = 0;
  std::size_t digits = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 18; ++i, ++digits) v = v * 10 + (text[i] - '0');
  if (digits == 0) return false;
  out = v;
  return true;
}

}  // namespace

void UsageScanner::begin(bool event_stream, std::uint64_t length) noexcept {
  event_stream_ = event_stream;
  skip_ = !event_stream && length > kTail ? length - kTail : 0;
}

void UsageScanner::reset() noexcept {
  tail_.clear();
  pending_.clear();
  event_stream_ = false;
  skip_ = 0;
  collecting_ = found_ = done_event_ = last_lf_ = false;
  usage_ = TokenUsage{};
  events_ = 0;
}

void UsageScanner::start_at(std::string_view from) {
  settle();
  pending_.assign(from.substr(0, kKeep));
  collecting_ = pending_.size() < kKeep;
}

// `"usage": {"prompt_tokens": 5, "total_tokens": 12, "completion_tokens": 7, ...}` (embeddings
// have no completion tokens); null or anything else is no usage.
bool UsageScanner::parse(std::string_view text, TokenUsage& out) {
  text.remove_prefix(std::min(text.size(), kUsage.size()));
  const std::size_t open = text.find_first_not_of(" \t\r\n:");
  if (open == std::string_view::npos || text[open] != '{') return false;
  text = text.substr(open);
  const std::size_t close = text.find('}');
  if (close != std::string_view::npos) text = text.substr(0, close);
  TokenUsage u;
  if (!number_after(text, "\"prompt_tokens\"", u.prompt)) return false;
  (void)number_after(text, "\"completion_tokens\"", u.completion);
  out = u;
  return true;
}

void UsageScanner::settle() {
  if (pending_.empty()) return;
  if (parse(pending_, usage_)) found_ = true;  // a null usage leaves the last good one
  pending_.clear();
  collecting_ = false;
}

void UsageScanner::feed(std::string_view bytes) {
  if (bytes.empty()) return;
  if (skip_ >= bytes.size()) {
    skip_ -= bytes.size();
    return;
  }
  if (skip_ > 0) {
    bytes.remove_prefix(static_cast<std::size_t>(skip_));
    skip_ = 0;
  }
  if (event_stream_) {
    // Events end with a blank line; JSON inside an event never holds a raw newline.
    const char* end = bytes.data() + bytes.size();
    if (last_lf_ && bytes[0] == '\n') ++events_;
    for (const char* p = bytes.data(); (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)))) != nullptr;) {
      if (++p < end && *p == '\n') {
        ++events_;
        ++p;
      }
    }
    last_lf_ = bytes.back() == '\n';
    constexpr std::string_view kDone = "data: [DONE]\n\n";
    if (bytes.size() >= kDone.size() && bytes.substr(bytes.size() - kDone.size()) == kDone) done_event_ = true;
  }

  if (collecting_) pending_.append(bytes.substr(0, kKeep - pending_.size()));
  // A `"usage"` split across the last read and this one.
  if (!tail_.empty() && std::memchr(tail_.data(), '"', tail_.size()) != nullptr) {  // a split key starts with '"'
    std::string joint = tail_;
    joint.append(bytes.substr(0, kUsage.size() - 1));
    const std::size_t at = joint.find(kUsage);
    if (const char* hit = at == std::string::npos ? nullptr : joint.data() + at;
        hit != nullptr && hit - joint.data() < static_cast<std::ptrdiff_t>(tail_.size())) {
      const std::size_t from = static_cast<std::size_t>(hit - joint.data());
      start_at(std::string(joint.substr(from, tail_.size() - from)) + std::string(bytes.substr(0, kKeep)));
    }
  }
  // The last one in this read counts (a later usage object replaces an earlier one). An escaped
  // quote is text inside a string, not a key.
  const char* last = find_last_usage(bytes, tail_.empty() ? '\0' : tail_.back());
  if (last != nullptr) start_at(bytes.substr(static_cast<std::size_t>(last - bytes.data())));
  const std::size_t keep = std::min(bytes.size(), kUsage.size() - 1);
  if (bytes.size() >= kUsage.size() - 1) {
    tail_.assign(bytes.substr(bytes.size() - keep));
  } else {
    tail_.append(bytes);
    if (tail_.size() > kUsage.size() - 1) tail_.erase(0, tail_.size() - (kUsage.size() - 1));
  }
}

TokenUsage UsageScanner::result(bool event_stream, std::size_t request_bytes) const {
  TokenUsage u;
  if (!pending_.empty() && parse(pending_, u)) return u;
  if (found_) return usage_;
  if (!event_stream) return u;
  u.estimated = true;
  u.prompt = request_bytes / 4;
  const std::uint64_t data_events = events_ - (done_event_ && events_ > 0 ? 1 : 0);
  u.completion = data_events;
  return u;
}

}  // namespace vllm_router::detail
