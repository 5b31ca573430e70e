// The shared rate limiter: request and token windows in Redis (RESP2 over one TCP connection,
// pipelined, on the limiter's own thread), concurrent places per router, the in-process windows
// deciding while Redis cannot answer.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>

#include "rate_limit.h"

namespace vllm_router::detail {
namespace {

using Steady = std::chrono::steady_clock;

// Checks both windows and counts the request only when it fits, atomically.
// KEYS: requests now, requests before, tokens now, tokens before.
// ARGV: rpm, tpm, weight of the window before, expiry (ms).
// Returns {1 allowed | 0 rpm | 2 tpm, count now, count before}.
constexpr std::string_view kAdmitScript = R"(local w = tonumber(ARGV[3])
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm > 0 and prev * w + cur + 1 > rpm then return {0, cur, prev} end
if tpm > 0 then
  local tc = tonumber(redis.call('GET', KEYS[3]) or '0')
  local tp = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tp * w + tc >= tpm then return {2, tc, tp} end
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, cur + 1, prev})";

constexpr std::int64_t kExpiryMs = 3 * 60000;  // a window is read for two minutes

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (std::string_view a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
}

// One RESP2 reply, read incrementally. Integers of an array are kept (the admit script's answer).
class ReplyReader {
 public:
  enum class Status { more, done, error };
  // Parses one reply from buf at pos; on done, pos moves past it.
  Status parse(const std::string& buf, std::size_t& pos, std::vector<std::int64_t>& ints, std::string& error) {
    std::size_t p = pos;
    ints.clear();
    const Status s = value(buf, p, ints, error, 0);
    if (s == Status::done) pos = p;
    return s;
  }

 private:
  static bool line(const std::string& buf, std::size_t& p, std::string_view& out) {
    const std::size_t end = buf.find("\r\n", p);
    if (end == std::string::npos) return false;
    out = std::string_view(buf).substr(p, end - p);
    p = end + 2;
    return true;
  }
  static bool number(std::string_view text, std::int64_t& out) {
    if (text.empty()) return false;
    bool neg = text[0] == '-';
    std::int64_t v = 0;
    for (std::size_t i = neg ? 1 : 0; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      v = v * 10 + (text[i] - '0');
    }
    out = neg ? -v : v;
    return true;
  }
  Status value(const std::string& buf, std::size_t& p, std::vector<std::int64_t>& ints, std::string& error, int depth) {
    if (p >= buf.size()) return Status::more;
    const char type = buf[p++];
    std::string_view text;
    if (!line(buf, p, text)) return Status::more;
    std::int64_t n = 0;
    switch (type) {
      case '+':
        return Status::done;
      case '-':
        error.assign(text);
        return Status::done;
      case ':':
        if (!number(text, n)) return Status::error;
        ints.push_back(n);
        return Status::done;
      case '$':
        if (!number(text, n)) return Status::error;
        if (n < 0) return Status::done;
        if (buf.size() < p + static_cast<std::size_t>(n) + 2) return Status::more;
        p += static_cast<std::size_t>(n) + 2;
        return Status::done;
      case '*':
        if (!number(text, n) || depth > 2) return Status::error;
        for (std::int64_t i = 0; i < n; ++i) {
          const Status s = value(buf, p, ints, error, depth + 1);
          if (s != Status::done) return s;
        }
        return Status::done;
      default:
        return Status::error;
    }
  }
};

class RedisRateLimiter final : public RateLimiter {
 public:
  explicit RedisRateLimiter(RedisLimiterOptions o) : o_(std::move(o)), thread_([this] { run(); }) {}

  ~RedisRateLimiter() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  bool admit(const ApiKey& key, std::int64_t now_ms, LimitDecision& decision,
             const std::function<Done()>& later) override {
    if (!key.limited()) return (decision = LimitDecision{}), true;
    if (!local_.take_place(key)) return (decision = concurrency_refused()), true;
    if (key.rpm == 0 && key.tpm == 0) return (decision = LimitDecision{}), true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (Steady::now() >= down_until_) {
        Op op;
        op.kind = Op::admit;
        op.key = key;
        op.now_ms = now_ms;
        op.done = later();
        ops_.push_back(std::move(op));
        cv_.notify_one();
        return false;
      }
    }
    decision = decide_locally(key, now_ms);
    return true;
  }

  void finish(const ApiKey& key, std::uint64_t tokens, std::int64_t now_ms, bool refund) override {
    if (!key.limited()) return;
    local_.free_place(key);
    local_.count_finish(key, tokens, now_ms, refund);
    if ((key.rpm == 0 && key.tpm == 0) || (tokens == 0 && !refund)) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (Steady::now() < down_until_) return;  // lost to the shared count; the local one has it
    Op op;
    op.kind = Op::finish;
    op.key = key;
    op.now_ms = now_ms;
    op.tokens = tokens;
    op.refund = refund;
    ops_.push_back(std::move(op));
    cv_.notify_one();
  }

 private:
  struct Op {
    enum Kind { admit, finish } kind = admit;
    ApiKey key;
    std::int64_t now_ms = 0;
    std::uint64_t tokens = 0;
    bool refund = false;
    Done done;
    unsigned replies = 0;  // replies this op's commands produce
  };

  LimitDecision decide_locally(const ApiKey& key, std::int64_t now_ms) {
    LimitDecision d = local_.check_and_count(key, now_ms, true);
    if (!d.allowed) local_.free_place(key);
    return d;
  }

  void log(int level, std::string_view message) const {
    if (o_.log) o_.log(level, message);
  }

  std::string counter(const ApiKey& key, char kind, std::int64_t window) const {
    // {id} is a hash tag: a key's counters share a Redis Cluster slot (one script touches them).
    return o_.prefix + "{" + key.id + "}:" + kind + ":" + std::to_string(window);
  }

  void encode(Op& op, std::string& out) const {
    const std::int64_t window = window_of(op.now_ms);
    if (op.kind == Op::admit) {
      const std::string weight = std::to_string(window_weight(op.now_ms));
      const std::string r0 = counter(op.key, 'r', window), r1 = counter(op.key, 'r', window - 1);
      const std::string t0 = counter(op.key, 't', window), t1 = counter(op.key, 't', window - 1);
      append_command(out, {"EVAL", kAdmitScript, "4", r0, r1, t0, t1, std::to_string(op.key.rpm),
                           std::to_string(op.key.tpm), weight, std::to_string(kExpiryMs)});
      op.replies = 1;
      return;
    }
    op.replies = 0;
    if (op.tokens > 0) {
      const std::string t0 = counter(op.key, 't', window);
      append_command(out, {"INCRBY", t0, std::to_string(op.tokens)});
      append_command(out, {"PEXPIRE", t0, std::to_string(kExpiryMs)});
      op.replies += 2;
    }
    if (op.refund) {
      append_command(out, {"DECR", counter(op.key, 'r', window)});
      op.replies += 1;
    }
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !ops_.empty(); });
      if (stopping_) break;
      std::deque<Op> batch;
      batch.swap(ops_);
      lock.unlock();
      serve(batch);
      lock.lock();
    }
    // Still queued at shutdown: decided locally, so every admit is answered once.
    std::deque<Op> rest;
    rest.swap(ops_);
    lock.unlock();
    for (Op& op : rest) {
      if (op.kind == Op::admit) op.done(decide_locally(op.key, op.now_ms));
    }
  }

  void serve(std::deque<Op>& batch) {
    std::string error;
    if (fd_ < 0 && !connect(error)) return fail(batch, "cannot reach Redis at " + o_.host + ":" + std::to_string(o_.port) + ": " + error);
    std::string out;
    for (Op& op : batch) encode(op, out);
    if (!write_all(out, error)) return fail(batch, "Redis write failed: " + error);
    std::vector<std::int64_t> ints;
    std::string reply_error;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Op& op = batch[i];
      for (unsigned r = 0; r < op.replies; ++r) {
        reply_error.clear();
        if (!read_reply(ints, reply_error, error)) {
          batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(i));
          return fail(batch, "Redis read failed: " + error);
        }
      }
      if (op.kind != Op::admit) continue;
      if (!reply_error.empty() || ints.size() != 3) {
        log(0, "Redis refused the rate-limit script (" + reply_error + "); deciding locally");
        op.done(decide_locally(op.key, op.now_ms));
        continue;
      }
      LimitDecision d;
      if (ints[0] != 1) {
        WindowCounts c;
        if (ints[0] == 0) {
          c.requests = static_cast<std::uint64_t>(ints[1]);
          c.prev_requests = static_cast<std::uint64_t>(ints[2]);
        } else {
          c.tokens = static_cast<std::uint64_t>(ints[1]);
          c.prev_tokens = static_cast<std::uint64_t>(ints[2]);
        }
        d = window_decision(op.key, c, op.now_ms);
        if (d.allowed) d = LimitDecision{false, ints[0] == 0 ? "rpm" : "tpm", std::chrono::seconds(1)};
        local_.free_place(op.key);
      } else {
        local_.check_and_count(op.key, op.now_ms, false);  // the local windows follow, for a fallback
      }
      op.done(d);
    }
  }

  // Redis cannot answer: the queued admits are decided locally; Redis is left alone for a while.
  void fail(std::deque<Op>& batch, const std::string& why) {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    in_.clear();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      down_until_ = Steady::now() + o_.retry;
    }
    log(0, why + "; rate limits are held per router for " + std::to_string(o_.retry.count()) + " ms");
    for (Op& op : batch) {
      if (op.kind == Op::admit) op.done(decide_locally(op.key, op.now_ms));
    }
  }

  bool wait_fd(short events, Steady::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, events, 0};
    return ::poll(&p, 1, static_cast<int>(left)) > 0;
  }

  bool connect(std::string& error) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(o_.host.c_str(), std::to_string(o_.port).c_str(), &hints, &res); rc != 0) {
      error = ::gai_strerror(rc);
      return false;
    }
    const auto deadline = Steady::now() + o_.timeout * 4;  // a connect may take a little longer
    for (addrinfo* a = res; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd_ < 0) continue;
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      int rc = ::connect(fd_, a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS && wait_fd(POLLOUT, deadline)) {
        int so = 0;
        socklen_t len = sizeof so;
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so, &len);
        rc = so == 0 ? 0 : -1;
        errno = so;
      }
      if (rc != 0) {
        error = rc == 0 ? "" : (errno != 0 ? std::strerror(errno) : "connect timed out");
        ::close(fd_);
        fd_ = -1;
      }
    }
    ::freeaddrinfo(res);
    if (fd_ < 0) return false;
    in_.clear();
    if (!o_.password.empty()) {
      std::string out;
      append_command(out, {"AUTH", o_.password});
      std::vector<std::int64_t> ints;
      std::string reply_error;
      if (!write_all(out, error) || !read_reply(ints, reply_error, error) || !reply_error.empty()) {
        if (error.empty()) error = "AUTH: " + reply_error;
        ::close(fd_);
        fd_ = -1;
        return false;
      }
    }
    log(2, "connected to Redis at " + o_.host + ":" + std::to_string(o_.port));
    return true;
  }

  bool write_all(const std::string& data, std::string& error) {
    const auto deadline = Steady::now() + o_.timeout;
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_fd(POLLOUT, deadline)) return (error = "timed out"), false;
      } else {
        return (error = std::strerror(errno)), false;
      }
    }
    return true;
  }

  bool read_reply(std::vector<std::int64_t>& ints, std::string& reply_error, std::string& error) {
    const auto deadline = Steady::now() + o_.timeout;
    for (;;) {
      std::size_t pos = 0;
      const auto s = reader_.parse(in_, pos, ints, reply_error);
      if (s == ReplyReader::Status::done) {
        in_.erase(0, pos);
        return true;
      }
      if (s == ReplyReader::Status::error) return (error = "malformed reply"), false;
      char buf[16384];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0) {
        return (error = "connection closed"), false;
      } else if (errno == EAGAIN || errno == EINTR) {
        if (!wait_fd(POLLIN, deadline)) return (error = "timed out"), false;
      } else {
        return (error = std::strerror(errno)), false;
      }
    }
  }

  const RedisLimiterOptions o_;
  LocalLimits local_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Op> ops_;
  bool stopping_ = false;
  Steady::time_point down_until_{};
  // The limiter thread's own.
  int fd_ = -1;
  std::string in_;
  ReplyReader reader_;
  std::thread thread_;  // last: starts once the rest is built
};

}  // namespace
}  // namespace vllm_router::detail

VLLM_ROUTER_BEGIN_NAMESPACE
std::shared_ptr<RateLimiter> make_redis_rate_limiter(RedisLimiterOptions options) {
  return std::make_shared<detail::RedisRateLimiter>(std::move(options));
}

VLLM_ROUTER_END_NAMESPACE
