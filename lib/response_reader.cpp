// Internal: incremental reading of one upstream HTTP/1.1 answer (head, framing, payload).
#include "response_reader.h"

#include <algorithm>

namespace vllm_router::detail {

void append_request_start(std::string& out, std::string_view method, const Url& url, std::string_view target,
                          std::string_view api_key) {
  out.append(method).append(" ").append(url.prefix).append(target).append(" HTTP/1.1\r\nHost: ");
  const bool v6 = url.host.find(':') != std::string::npos;
  if (v6) out.push_back('[');
  out.append(url.host);
  if (v6) out.push_back(']');
  // The scheme's own port is left out, as browsers and curl do (some TLS front ends route on
  // the exact Host they serve).
  if (url.port != (uses_tls(url) ? 443 : 80)) {
    out.push_back(':');
    out.append(std::to_string(url.port));
  }
  out.append("\r\n");
  if (!api_key.empty()) out.append("Authorization: Bearer ").append(api_key).append("\r\n");
}

void ResponseReader::reset() {
  head_buf_.clear();
  rest_ = {};
  head_.headers.clear();  // keeps its capacity; parse_response_head sets the other fields
  head_.status = 0;
  head_done_ = false;
  body_done_ = false;
  any_bytes_ = false;
  extra_ = false;
  release_ = false;
  left_ = 0;
  chunks_ = ChunkedScanner{};
  error_.clear();
}

void ResponseReader::release_head() {
  std::vector<HeaderField>().swap(head_.headers);
  release_ = true;
  if (rest_.empty()) std::string().swap(head_buf_);
}

bool ResponseReader::at_boundary() const noexcept {
  if (!head_done_) return false;
  switch (head_.framing) {
    case Framing::chunked: return chunks_.at_chunk_start();
    case Framing::close: return true;
    case Framing::length:
    case Framing::none: return false;
  }
  return false;
}

bool ResponseReader::reusable() const noexcept {
  return head_done_ && body_done_ && !extra_ && head_.keep_alive && head_.framing != Framing::close;
}

ResponseReader::Step ResponseReader::next(std::string_view& data, std::string_view& payload) {
  if (!data.empty()) any_bytes_ = true;
  if (!head_done_) {
    head_buf_.append(data);
    data = {};
    for (;;) {
      const auto r = parse_response_head(head_buf_, head_, error_);
      if (r == Parse::incomplete) return Step::need_more;
      if (r == Parse::error) return Step::error;
      if (head_.status >= 200) break;
      head_buf_.erase(0, head_.size);  // interim answer (100 Continue): wait for the real one
    }
    head_done_ = true;
    rest_ = std::string_view(head_buf_).substr(head_.size);
    left_ = head_.framing == Framing::length ? head_.content_length : 0;
    if (head_.framing == Framing::none) body_done_ = true;
    return Step::head;
  }
  if (body_done_) {
    // Bytes past the end of the body: the connection's framing cannot be trusted for reuse.
    if (!rest_.empty() || !data.empty()) extra_ = true;
    rest_ = {};
    data = {};
    return Step::end;
  }
  // Bytes that came with the head go first; `data` waits for the next call.
  if (rest_.empty() && release_ && head_buf_.capacity() != 0) std::string().swap(head_buf_);
  std::string_view& in = !rest_.empty() ? rest_ : data;
  if (in.empty()) return Step::need_more;
  switch (head_.framing) {
    case Framing::length: {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size()));
      payload = in.substr(0, take);
      in.remove_prefix(take);
      left_ -= take;
      if (left_ == 0) body_done_ = true;
      return Step::body;
    }
    case Framing::chunked: {
      // The payload is a view into `in` (no copy); one run of chunk data per call.
      const std::size_t used = chunks_.next(in, payload);
      if (used == std::string::npos) {
        error_ = "upstream sent bad chunked framing";
        return Step::error;
      }
      in.remove_prefix(used);
      if (chunks_.done()) body_done_ = true;
      // Only framing, and every byte consumed: ask for more (bytes fed with the head go first).
      if (payload.empty() && !body_done_ && rest_.empty() && data.empty()) return Step::need_more;
      return Step::body;
    }
    case Framing::close:
      payload = in;
      in = {};
      return Step::body;
    case Framing::none:
      break;
  }
  return Step::need_more;
}

ResponseReader::Step ResponseReader::eof() {
  if (body_done_) return Step::end;
  if (head_done_ && head_.framing == Framing::close) {
    body_done_ = true;
    return Step::end;
  }
  error_ = head_done_ ? "upstream closed the connection mid-answer" : "upstream closed the connection";
  return Step::error;
}

}  // namespace vllm_router::detail
