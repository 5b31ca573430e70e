// libFuzzer targets for the HTTP/1.1 codec (lib/http1.cpp). One binary, the target chosen at
// compile time (-DFUZZ_REQUEST_HEAD, -DFUZZ_RESPONSE_HEAD, -DFUZZ_CHUNKED). Beyond "no crash,
// no sanitizer report", each checks the parser's own promises on every input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http1.h"

using namespace vllm_router::detail;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

// Every view a head parse returns lies inside the parsed buffer.
template <class Head>
void check_views(std::string_view buf, const Head& head) {
  require(head.size <= buf.size());
  for (const auto& h : head.headers) {
    require(h.name.data() >= buf.data() && h.name.data() + h.name.size() <= buf.data() + head.size);
    require(h.value.data() >= buf.data() && h.value.data() + h.value.size() <= buf.data() + head.size);
    require(!h.name.empty());
    require(h.value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string error;
  const HeadLimits limits{4096, 32};
#if defined(FUZZ_REQUEST_HEAD)
  RequestHead head;
  const Parse r = parse_request_head(input, head, error, limits);
  if (r == Parse::ok) {
    check_views(input, head);
    require(head.size <= limits.max_head_bytes);
    require(head.headers.size() <= limits.max_headers);
    // A complete head parses the same with any bytes after it, and is incomplete when cut.
    RequestHead again;
    require(parse_request_head(input + "GARBAGE", again, error, limits) == Parse::ok && again.size == head.size);
    RequestHead cut;
    require(parse_request_head(std::string_view(input).substr(0, head.size - 1), cut, error, limits) != Parse::ok);
  }
  if (r == Parse::error) require(!error.empty());
#elif defined(FUZZ_RESPONSE_HEAD)
  ResponseHead head;
  const Parse r = parse_response_head(input, head, error, limits);
  if (r == Parse::ok) {
    check_views(input, head);
    require(head.status >= 100 && head.status <= 599);
  }
  if (r == Parse::error) require(!error.empty());
#elif defined(FUZZ_CHUNKED)
  // Decoding all at once, byte by byte and in uneven pieces agree; scanning agrees with decoding.
  ChunkedScanner whole;
  std::string payload;
  const std::size_t used = whole.feed(input, &payload);
  ChunkedScanner bytes;
  std::string payload_bytes;
  std::size_t used_bytes = 0;
  for (std::size_t i = 0; i < input.size(); ++i) {
    const std::size_t n = bytes.feed(std::string_view(input).substr(i, 1), &payload_bytes);
    if (n == std::string::npos) {
      used_bytes = n;
      break;
    }
    used_bytes += n;
    if (bytes.done()) break;
  }
  require(used == used_bytes);
  ChunkedScanner scan;
  require(scan.feed(input, nullptr) == used);
  if (used != std::string::npos) {
    require(payload == payload_bytes);
    require(whole.done() == bytes.done());
    require(whole.overhead() + payload.size() == used);
    require(scan.overhead() == whole.overhead());
  }
#else
#error "define FUZZ_REQUEST_HEAD, FUZZ_RESPONSE_HEAD or FUZZ_CHUNKED"
#endif
  return 0;
}
