// Access log: lines formatted on the request's thread, written on the writer's.
#include "access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vllm_router::server {
namespace {

// A client chooses the requested model (and a broken upstream the error): each string field is
// cut to this many bytes, so a line and a record stay bounded.
constexpr std::size_t kMaxField = 256;

std::int64_t micros(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}



bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

namespace {

// The string fields of a line, in order.
enum Field { request_id, trace_id, client, key_id, requested_model, model, path, upstream, error, prefill, kFields };

// The facts of a line viewed in the summary (no copy): AccessLog::write formats from this.
struct SummaryFacts {
  std::int64_t unix_ms;
  ExchangeEnd end;
  int status;
  unsigned attempts;
  bool stream, tokens_estimated, colocated_fallback;
  std::int64_t queue_us, ttfb_us, ttft_us, duration_us, prefill_us;
  std::uint64_t prompt_tokens, completion_tokens, bytes_in, bytes_out;
  std::string_view fields[kFields];
  std::size_t text_size = 0;  // the fields' bytes
  SummaryFacts(const ExchangeSummary& s, std::int64_t now_unix_ms)
      : unix_ms(now_unix_ms),
        end(s.end),
        status(s.status),
        attempts(s.attempts),
        stream(s.stream),
        tokens_estimated(s.usage.estimated),
        colocated_fallback(s.colocated_fallback),
        queue_us(micros(s.queue_wait)),
        ttfb_us(micros(s.ttfb)),
        ttft_us(micros(s.ttft)),
        duration_us(micros(s.duration)),
        prefill_us(micros(s.prefill)),
        prompt_tokens(s.usage.prompt),
        completion_tokens(s.usage.completion),
        bytes_in(s.bytes_in),
        bytes_out(s.bytes),
        fields{s.request_id, s.trace_id, s.client_address, s.key_id, s.requested_model, s.model, s.path,
               s.endpoint != nullptr ? std::string_view(s.endpoint->id) : std::string_view{}, s.error,
               s.prefill_endpoint != nullptr ? std::string_view(s.prefill_endpoint->id) : std::string_view{}} {
    for (std::string_view& f : fields) {
      f = f.substr(0, kMaxField);
      text_size += f.size();
    }
  }
  std::string_view field(Field f) const { return fields[f]; }
};

// Bytes a logfmt value may hold unquoted: printable ASCII but space, '"', '=' and '\\'.
constexpr auto kBare = [] {
  std::array<bool, 256> t{};
  for (int c = 0x21; c < 0x7f; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '=' && c != '\\';
  return t;
}();

// Writes a line into memory reserved beforehand (a bound computed from the record), so a field
// costs a copy and no append bookkeeping: the writer thread formats every request's line.
class LineWriter {
 public:
  explicit LineWriter(char* p) : p_(p) {}
  char* end() const { return p_; }
  void raw(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  template <std::size_t N>
  void lit(const char (&s)[N]) {  // a literal (its NUL not written): a constant size, inlined
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void ch(char c) { *p_++ = c; }
  void uint(std::uint64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  void ms(std::int64_t us) {  // microseconds as milliseconds with three decimals
    if (us < 0) us = 0;
    uint(static_cast<std::uint64_t>(us / 1000));
    const int frac = static_cast<int>(us % 1000);
    p_[0] = '.';
    p_[1] = static_cast<char>('0' + frac / 100);
    p_[2] = static_cast<char>('0' + frac / 10 % 10);
    p_[3] = static_cast<char>('0' + frac % 10);
    p_ += 4;
  }
  // A JSON string: printable ASCII copied in runs, the rest escaped.
  void json(std::string_view s) {
    scratch_.clear();
    append_json_string(scratch_, s);
    raw(scratch_);
  }
  // logfmt: bare when plain printable ASCII, else quoted with JSON's escapes.
  void logfmt(std::string_view v) {
    if (v.empty()) return raw("\"\"");
    if (!bare(v)) return json(v);
    raw(v);
  }
  // Whether every byte may stand unquoted in logfmt (kBare): sixteen at a time (SSE2), eight
  // at a time below that.
  static bool bare(std::string_view v) {
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const std::size_t n = v.size();
    std::size_t i = 0;
#if defined(__SSE2__)
    if (n >= 16) {
      // As signed bytes, everything below '!' and everything from 0x80 is less than '!'.
      const __m128i bang = _mm_set1_epi8('!'), del = _mm_set1_epi8(0x7f), quote = _mm_set1_epi8('"'),
                    equals = _mm_set1_epi8('='), backslash = _mm_set1_epi8('\\');
      const auto special = [&](std::size_t at) {
        const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
        const __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(w, bang), _mm_cmpeq_epi8(w, del)),
                                       _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, equals)),
                                                    _mm_cmpeq_epi8(w, backslash)));
        return _mm_movemask_epi8(m) != 0;
      };
      for (; i + 16 <= n; i += 16) {
        if (special(i)) return false;
      }
      return !special(n - 16);  // the last bytes, overlapping the block before
    }
#endif
    constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
    for (; i + 8 <= n; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      // A byte below 0x21, at or above 0x7f, or one of '"', '=', '\\' sets its high bit (or
      // makes the word look so: then the bytes are looked at one by one).
      const std::uint64_t special = ((w - kOnes * 0x21) | (w + kOnes * 0x01) | ((w ^ (kOnes * '"')) - kOnes) |
                                     ((w ^ (kOnes * '=')) - kOnes) | ((w ^ (kOnes * '\\')) - kOnes) | w) &
                                    kHigh;
      if (special != 0) break;
    }
    for (; i < n; ++i) {
      if (!kBare[p[i]]) return false;
    }
    return true;
  }

 private:
  char* p_;
  std::string scratch_;
};

// "YYYY-MM-DDTHH:MM:SS" of the last second seen: consecutive lines mostly share it.
struct SecondCache {
  std::int64_t second = -1;
  char text[24] = {};
  std::size_t size = 0;
  std::string_view of(std::int64_t unix_second) {
    if (unix_second != second) {
      const auto t = static_cast<std::time_t>(unix_second);
      std::tm tm{};
      ::gmtime_r(&t, &tm);
      size = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
      second = unix_second;
    }
    return {text, size};
  }
};

}  // namespace

namespace {

// One line, text (logfmt) or JSON: the keys are constants of each instantiation.
template <bool Json>
char* format_line(char* out, const SummaryFacts& r) {
  using F = Field;
  thread_local SecondCache seconds;
  LineWriter w(out);
  auto str = [&](F f) {
    if constexpr (Json) {
      w.json(r.field(f));
    } else {
      w.logfmt(r.field(f));
    }
  };
  if constexpr (Json) {
    w.lit("{\"time\":\"");
  } else {
    w.lit("time=");
  }
  w.raw(seconds.of(r.unix_ms / 1000));
  const int millis = static_cast<int>(r.unix_ms % 1000);
  const char frac[4] = {'.', static_cast<char>('0' + millis / 100), static_cast<char>('0' + millis / 10 % 10),
                        static_cast<char>('0' + millis % 10)};
  w.raw(std::string_view(frac, 4));
  if constexpr (Json) {
    w.lit("Z\",\"level\":\"info\",\"msg\":\"access\"");
  } else {
    w.lit("Z level=info msg=access");
  }
#define VR_KEY(name)                  \
  if constexpr (Json) {               \
    w.lit(",\"" name "\":");          \
  } else {                            \
    w.lit(" " name "=");              \
  }
  VR_KEY("request_id");
  str(F::request_id);
  VR_KEY("trace_id");
  str(F::trace_id);
  VR_KEY("client");
  str(F::client);
  VR_KEY("key_id");
  str(F::key_id);
  VR_KEY("model");
  str(F::requested_model);
  VR_KEY("resolved_model");
  str(F::model);
  VR_KEY("endpoint");
  str(F::path);
  VR_KEY("upstream");
  str(F::upstream);
  if (!r.field(F::prefill).empty()) {  // prefill/decode disaggregation: the request was split
    VR_KEY("prefill_upstream");
    str(F::prefill);
    VR_KEY("prefill_ms");
    w.ms(r.prefill_us);
  }
  if (r.colocated_fallback) {
    VR_KEY("colocated_fallback");
    w.lit("true");
  }
  VR_KEY("status");
  w.uint(static_cast<std::uint64_t>(r.status < 0 ? 0 : r.status));
  VR_KEY("outcome");
  if constexpr (Json) w.ch('"');
  w.raw(to_string(r.end));
  if constexpr (Json) w.ch('"');
  VR_KEY("attempts");
  w.uint(r.attempts);
  VR_KEY("stream");
  w.raw(r.stream ? std::string_view("true") : std::string_view("false"));
  VR_KEY("queue_ms");
  w.ms(r.queue_us);
  VR_KEY("ttfb_ms");
  w.ms(r.ttfb_us);
  VR_KEY("ttft_ms");
  w.ms(r.ttft_us);
  VR_KEY("duration_ms");
  w.ms(r.duration_us);
  VR_KEY("prompt_tokens");
  w.uint(r.prompt_tokens);
  VR_KEY("completion_tokens");
  w.uint(r.completion_tokens);
  VR_KEY("bytes_in");
  w.uint(r.bytes_in);
  VR_KEY("bytes_out");
  w.uint(r.bytes_out);
  VR_KEY("tokens_estimated");
  w.raw(r.tokens_estimated ? std::string_view("true") : std::string_view("false"));
  VR_KEY("error");
  str(F::error);
#undef VR_KEY
  if constexpr (Json) w.ch('}');
  w.ch('\n');
  return w.end();
}

}  // namespace

namespace {

// The line of `s`, formatted into this thread's buffer (not zero-filled, kept: no allocation
// once warm); valid until the thread's next line.
std::string_view format_summary_line(const SummaryFacts& s, LogFormat format) {
  thread_local std::unique_ptr<char[]> buffer;
  thread_local std::size_t capacity = 0;
  // Fixed text, quotes and numbers stay under 720 bytes; an escaped string byte takes at most 6.
  const std::size_t bound = 1024 + 6 * s.text_size;
  if (bound > capacity) {
    capacity = std::max<std::size_t>(bound, 4096);
    buffer.reset(new char[capacity]);
  }
  char* p = buffer.get();
  char* end = format == LogFormat::json ? format_line<true>(p, s) : format_line<false>(p, s);
  return {p, static_cast<std::size_t>(end - p)};
}

}  // namespace

void format_access_line(std::string& out, const ExchangeSummary& s, std::int64_t unix_ms, LogFormat format) {
  out.append(format_summary_line(SummaryFacts(s, unix_ms), format));
}

Result<std::unique_ptr<AccessLog>> AccessLog::open(AccessLogOptions options) {
  auto log = std::make_unique<AccessLog>(std::move(options), nullptr);
  if (log->fd_ < 0) {
    const std::string path = log->options_.path;
    return Error{Errc::config, "cannot open access log '" + path + "': " + std::strerror(errno), "access_log"};
  }
  return log;
}

AccessLog::AccessLog(AccessLogOptions options, Sink sink) : options_(std::move(options)), sink_(std::move(sink)) {
  if (options_.capacity == 0) options_.capacity = 1;
  if (options_.flush_interval.count() <= 0) options_.flush_interval = std::chrono::milliseconds(1);
  wake_at_ = std::max<std::size_t>(1, options_.capacity / 4);
  if (!sink_) {
    file_ = true;
    open_file();
    sink_ = [this](std::string_view bytes) { return write_all(fd_, bytes); };
  }
  writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  writer_.join();
  if (own_fd_) ::close(fd_);
}

bool AccessLog::open_file() {
  if (options_.path == "-") {
    fd_ = STDOUT_FILENO;
    own_fd_ = false;
    return true;
  }
  const int fd = ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    if (fd_ >= 0) log(LogLevel::error, "access log: cannot reopen {}: {}; writing on to the old file", options_.path, std::strerror(errno));
    return false;
  }
  if (own_fd_) ::close(fd_);
  fd_ = fd;
  own_fd_ = true;
  return true;
}

void AccessLog::write(const ExchangeSummary& summary) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  write(summary, std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

void AccessLog::write(const ExchangeSummary& summary, std::int64_t unix_ms) {
  // Formatted here, outside the lock, straight from the summary: the writer thread only writes.
  // The thread's line buffer is kept (no allocation once warm).
  const std::string_view line = format_summary_line(SummaryFacts(summary, unix_ms), options_.format);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Buffer& b = active_;
    if (b.used == options_.capacity) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    b.bytes.append(line);
    ++b.used;
    ++queued_;
    wake = b.used == wake_at_;  // else the writer comes at its interval: no wake-up per line
  }
  if (wake) wake_.notify_one();
}

void AccessLog::reopen() {
  reopen_.store(true, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mutex_);  // a writer between its check and its wait sees it
  wake_.notify_one();
}

void AccessLog::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = queued_;
  if (handled_ >= target) return;
  flush_wanted_ = true;
  wake_.notify_one();
  drained_.wait(lock, [&] { return handled_ >= target; });
}

void AccessLog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, options_.flush_interval, [&] {
      return stop_ || flush_wanted_ || active_.used >= wake_at_ || reopen_.load(std::memory_order_relaxed);
    });
    if (stop_ && active_.used == 0) return;
    // A flush() is answered by this round whatever it finds: one that asked after its lines were
    // taken finds nothing (they are written, handled_ caught up), and left set the predicate
    // would stay true and this loop would spin holding the mutex.
    flush_wanted_ = false;
    if (active_.used == 0 && !reopen_.load(std::memory_order_relaxed)) continue;  // an idle interval
    std::swap(active_, writing_);
    lock.unlock();
    if (reopen_.exchange(false) && file_ && options_.path != "-") open_file();
    const std::size_t n = writing_.used;
    if (n != 0) {
      if (sink_(writing_.bytes)) {
        written_.fetch_add(n, std::memory_order_relaxed);
      } else {
        dropped_.fetch_add(n, std::memory_order_relaxed);
      }
    }
    writing_.used = 0;
    writing_.bytes.clear();
    // A burst's buffer is not kept for ever: a few MB after a spike go back.
    if (writing_.bytes.capacity() > (1u << 22)) std::string().swap(writing_.bytes);
    lock.lock();
    handled_ += n;
    drained_.notify_all();
  }
}

void AccessLog::render_metrics(std::string& out) const {
  fmt::format_to(std::back_inserter(out),
                 "# HELP vllm_router_access_log_lines_total Access log lines written.\n"
                 "# TYPE vllm_router_access_log_lines_total counter\n"
                 "vllm_router_access_log_lines_total {}\n"
                 "# HELP vllm_router_access_log_dropped_total Access log lines dropped (the sink could not keep up, or failed).\n"
                 "# TYPE vllm_router_access_log_dropped_total counter\n"
                 "vllm_router_access_log_dropped_total {}\n",
                 written(), dropped());
}

}  // namespace vllm_router::server
