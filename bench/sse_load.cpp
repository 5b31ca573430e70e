// sse_load: an epoll load client for vllm-router benchmarks (single file, C++20, Linux only).
//
// Opens K connections to HOST:PORT (all at once, or spread over --ramp-ms), and on each sends
// POST /v1/chat/completions (streamed by default) or a GET. It parses the HTTP/1.1 response
// (Content-Length or chunked), counts SSE events (blocks ending in a blank line) and checks the
// final `data: [DONE]`. Modes:
//   one-shot (default)   each connection sends --requests N requests (default 1), then closes.
//   closed loop          --duration-ms D: each connection sends requests back to back on its
//                        keep-alive connection until D has passed; per-connection counts are
//                        reported (fairness) along with per-request latency.
// While it runs it can sample other processes (--watch PID[,PID...]): CPU (utime+stime over the
// run), peak VmRSS (sum), peak thread count (sum), sampled every 100 ms.
//
// Output: a human summary on stderr and one machine line on stdout:
//   RESULT key=value key=value ...
// Exit status: 0 when the run completed (whatever the errors), 2 on bad usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/v1/chat/completions";
  std::string method = "POST";
  std::string model = "facebook/opt-125m";
  int conns = 1;
  int ramp_ms = 0;
  int tokens = 50;
  int itl_ms = -1;
  int ttft_ms = -1;
  bool stream = true;
  int body_bytes = 1024;
  int requests = 1;
  int interval_ms = 0;
  int delay_ms = 0;
  bool new_conn = false;
  int duration_ms = 0;
  int time_limit_ms = 60000;
  int expect_events = -1;  // -1: tokens + 2 in stream mode (role event, tokens, [DONE])
  std::vector<int> watch;
  std::string label;
};

void usage() {
  std::fprintf(stderr,
               "usage: sse_load --port N [options]\n"
               "  --host ADDR          target address (default 127.0.0.1)\n"
               "  --port N             target port (required)\n"
               "  --path P             request path (default /v1/chat/completions)\n"
               "  --get                send GET PATH instead of a chat completion POST\n"
               "  --model NAME         model in the body (default facebook/opt-125m)\n"
               "  -k, --conns K        connections (default 1)\n"
               "  --ramp-ms MS         spread the K connection starts over MS (default 0: burst)\n"
               "  --tokens N           max_tokens (default 50)\n"
               "  --itl-ms N           send x-sim-itl-ms: N (default: not sent)\n"
               "  --ttft-ms N          send x-sim-ttft-ms: N (default: not sent)\n"
               "  --no-stream          non-streamed completion (\"stream\": false)\n"
               "  --body-bytes N       approximate request body size (default 1024)\n"
               "  --requests N         requests per connection in one-shot mode (default 1)\n"
               "  --interval-ms MS     pause between a connection's requests (default 0)\n"
               "  --delay-ms MS        wait before the first connection (default 0)\n"
               "  --new-conn           a new connection for every request\n"
               "  --duration-ms MS     closed loop: requests back to back until MS has passed\n"
               "  --time-limit-ms MS   abort unfinished work after MS (default 60000)\n"
               "  --expect-events N    SSE events a stream must carry (default tokens+2)\n"
               "  --watch PID[,PID]    sample CPU, RSS and threads of these processes\n"
               "  --label TEXT         echoed in the RESULT line\n");
}

bool parse_args(int argc, char** argv, Options& o) {
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "sse_load: %s needs a value\n", argv[i]);
      return nullptr;
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = nullptr;
    auto num = [&](int& dst) {
      if (!(v = need(i))) return false;
      dst = std::atoi(v);
      return true;
    };
    if (a == "--host") {
      if (!(v = need(i))) return false;
      o.host = v;
    } else if (a == "--port") {
      if (!num(o.port)) return false;
    } else if (a == "--path") {
      if (!(v = need(i))) return false;
      o.path = v;
    } else if (a == "--get") {
      o.method = "GET";
    } else if (a == "--model") {
      if (!(v = need(i))) return false;
      o.model = v;
    } else if (a == "-k" || a == "--conns") {
      if (!num(o.conns)) return false;
    } else if (a == "--ramp-ms") {
      if (!num(o.ramp_ms)) return false;
    } else if (a == "--tokens") {
      if (!num(o.tokens)) return false;
    } else if (a == "--itl-ms") {
      if (!num(o.itl_ms)) return false;
    } else if (a == "--ttft-ms") {
      if (!num(o.ttft_ms)) return false;
    } else if (a == "--no-stream") {
      o.stream = false;
    } else if (a == "--body-bytes") {
      if (!num(o.body_bytes)) return false;
    } else if (a == "--requests") {
      if (!num(o.requests)) return false;
    } else if (a == "--interval-ms") {
      if (!num(o.interval_ms)) return false;
    } else if (a == "--delay-ms") {
      if (!num(o.delay_ms)) return false;
    } else if (a == "--new-conn") {
      o.new_conn = true;
    } else if (a == "--duration-ms") {
      if (!num(o.duration_ms)) return false;
    } else if (a == "--time-limit-ms") {
      if (!num(o.time_limit_ms)) return false;
    } else if (a == "--expect-events") {
      if (!num(o.expect_events)) return false;
    } else if (a == "--watch") {
      if (!(v = need(i))) return false;
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ','))
        if (!item.empty()) o.watch.push_back(std::atoi(item.c_str()));
    } else if (a == "--label") {
      if (!(v = need(i))) return false;
      o.label = v;
    } else if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else {
      std::fprintf(stderr, "sse_load: unknown argument %s\n", a.c_str());
      return false;
    }
  }
  if (o.port <= 0 || o.port > 65535 || o.conns < 1 || o.requests < 1) {
    std::fprintf(stderr, "sse_load: need --port and K >= 1\n");
    return false;
  }
  if (o.method == "GET") o.stream = false;
  if (o.expect_events < 0) o.expect_events = o.stream ? o.tokens + 2 : 0;
  return true;
}

// ---- process sampling from /proc ----
struct ProcSample {
  double cpu_s = 0;     // utime + stime
  long rss_kb = 0;      // VmRSS
  long hwm_kb = 0;      // VmHWM
  long threads = 0;
};

ProcSample sample_procs(const std::vector<int>& pids) {
  ProcSample s;
  static const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (int pid : pids) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (std::getline(st, line)) {
      // fields after the ')' that closes comm: state is field 3; utime 14, stime 15.
      auto p = line.rfind(')');
      if (p != std::string::npos) {
        std::istringstream is(line.substr(p + 2));
        std::string f;
        unsigned long long ut = 0, stt = 0;
        for (int field = 3; field <= 15 && (is >> f); ++field) {
          if (field == 14) ut = std::strtoull(f.c_str(), nullptr, 10);
          if (field == 15) stt = std::strtoull(f.c_str(), nullptr, 10);
        }
        s.cpu_s += static_cast<double>(ut + stt) / tick;
      }
    }
    std::ifstream ss("/proc/" + std::to_string(pid) + "/status");
    while (std::getline(ss, line)) {
      auto val = [&](const char* key) { return std::atol(line.c_str() + std::strlen(key)); };
      if (line.rfind("VmRSS:", 0) == 0) s.rss_kb += val("VmRSS:");
      else if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb += val("VmHWM:");
      else if (line.rfind("Threads:", 0) == 0) s.threads += val("Threads:");
    }
  }
  return s;
}

// ---- connections ----
enum class St { Idle, Connecting, Sending, Head, Body, Closed };
enum class Cs { Size, Data, DataCrlf, Trailer };  // chunked decoder

struct Conn {
  int fd = -1;
  St st = St::Idle;
  std::size_t out_off = 0;
  std::string head;
  int status = 0;
  bool chunked = false;
  long long content_len = -1;
  long long body_seen = 0;
  bool server_close = false;
  Cs cs = Cs::Size;
  std::string cline;
  unsigned long long chunk_left = 0;
  // SSE
  char prev = 0;
  int events = 0;
  std::string tail;  // last bytes of the payload, to see "[DONE]"
  bool got_payload = false;
  // timing
  std::int64_t t_conn = 0, t_req = 0, t_first = -1;
  std::int64_t due = 0;  // when Idle: time of the next connect
  int done_reqs = 0;     // successful requests
  int sent_reqs = 0;
  bool finished = false;  // no more work for this connection
};

struct Stats {
  std::map<std::string, long> err;
  std::vector<double> ttft_ms, dur_ms, lat_us, span_ms;
  std::vector<int> events;
  long ok = 0;
};

class Load {
 public:
  explicit Load(Options o) : o_(std::move(o)), conns_(static_cast<std::size_t>(o_.conns)) {}

  int run();

 private:
  void build_request();
  void start_connect(Conn& c);
  void begin_request(Conn& c);
  void on_event(Conn& c, std::uint32_t ev);
  bool flush(Conn& c);
  void on_read(Conn& c);
  bool feed(Conn& c, const char* p, std::size_t n);
  bool feed_body(Conn& c, const char* p, std::size_t n);
  void payload(Conn& c, const char* p, std::size_t n);
  void complete(Conn& c);
  void fail(Conn& c, const char* why);
  void close_conn(Conn& c);
  void after_request(Conn& c, bool reusable);
  bool in_window() const { return o_.duration_ms > 0 && now_us() < t0_ + std::int64_t{o_.duration_ms} * 1000; }

  Options o_;
  std::vector<Conn> conns_;
  std::string req_;
  sockaddr_in addr_{};
  int ep_ = -1;
  std::int64_t t0_ = 0;
  Stats s_;
  std::size_t next_open_ = 0;
  int finished_ = 0;
};

void Load::build_request() {
  std::string body;
  if (o_.method == "POST") {
    std::string pre = "{\"model\":\"" + o_.model + "\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    std::string post = "\"}],\"max_tokens\":" + std::to_string(o_.tokens) +
                       ",\"stream\":" + (o_.stream ? "true" : "false") + "}";
    std::size_t fixed = pre.size() + post.size();
    std::size_t pad = o_.body_bytes > static_cast<int>(fixed) ? static_cast<std::size_t>(o_.body_bytes) - fixed : 8;
    std::string content;
    static const char* words[] = {"hello ", "world ", "bench ", "router ", "stream "};
    for (std::size_t i = 0; content.size() < pad; ++i) content += words[i % 5];
    content.resize(pad);
    body = pre + content + post;
  }
  req_ = o_.method + " " + o_.path + " HTTP/1.1\r\nHost: " + o_.host + ":" + std::to_string(o_.port) +
         "\r\nUser-Agent: sse_load\r\nAccept: */*\r\n";
  if (o_.method == "POST")
    req_ += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (o_.itl_ms >= 0) req_ += "x-sim-itl-ms: " + std::to_string(o_.itl_ms) + "\r\n";
  if (o_.ttft_ms >= 0) req_ += "x-sim-ttft-ms: " + std::to_string(o_.ttft_ms) + "\r\n";
  if (o_.new_conn) req_ += "Connection: close\r\n";
  req_ += "\r\n" + body;
}

void Load::start_connect(Conn& c) {
  c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c.t_conn = now_us();
  if (c.fd < 0) {
    fail(c, "socket");
    return;
  }
  int one = 1;
  ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = ::connect(c.fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_);
  if (r < 0 && errno != EINPROGRESS) {
    fail(c, "connect");
    return;
  }
  c.st = St::Connecting;
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.ptr = &c;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
}

void Load::begin_request(Conn& c) {
  c.st = St::Sending;
  c.out_off = 0;
  c.head.clear();
  c.status = 0;
  c.chunked = false;
  c.content_len = -1;
  c.body_seen = 0;
  c.server_close = false;
  c.cs = Cs::Size;
  c.cline.clear();
  c.chunk_left = 0;
  c.prev = 0;
  c.events = 0;
  c.tail.clear();
  c.got_payload = false;
  c.t_req = now_us();
  c.t_first = -1;
  ++c.sent_reqs;
  if (flush(c)) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &c;
    ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }
}

// Writes what is left of the request; true when all of it is out.
bool Load::flush(Conn& c) {
  while (c.out_off < req_.size()) {
    ssize_t w = ::send(c.fd, req_.data() + c.out_off, req_.size() - c.out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN) {
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.ptr = &c;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        return false;
      }
      fail(c, "send");
      return false;
    }
    c.out_off += static_cast<std::size_t>(w);
  }
  c.st = St::Head;
  return true;
}

void Load::on_event(Conn& c, std::uint32_t ev) {
  if (c.st == St::Connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & EPOLLERR)) {
      fail(c, err == ECONNREFUSED ? "refused" : "connect");
      return;
    }
    begin_request(c);
    return;
  }
  if (c.st == St::Sending) {
    if (flush(c)) {
      epoll_event e{};
      e.events = EPOLLIN | EPOLLRDHUP;
      e.data.ptr = &c;
      ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &e);
    }
    return;
  }
  if (c.st == St::Head || c.st == St::Body) on_read(c);
}

void Load::on_read(Conn& c) {
  static char buf[65536];
  for (;;) {
    ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
    if (r > 0) {
      if (!feed(c, buf, static_cast<std::size_t>(r))) return;  // request finished or failed
      if (static_cast<std::size_t>(r) < sizeof buf) return;
      continue;
    }
    if (r == 0) {
      // A body delimited by the close of the connection ends here.
      if (c.st == St::Body && !c.chunked && c.content_len < 0) {
        c.server_close = true;
        complete(c);
      } else {
        fail(c, c.st == St::Head && c.head.empty() ? "closed_before_reply" : "truncated");
      }
      return;
    }
    if (errno == EAGAIN || errno == EINTR) return;
    fail(c, errno == ECONNRESET ? "reset" : "recv");
    return;
  }
}

bool ieq_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  return true;
}

// Returns false once the connection's current request is over (done or failed).
bool Load::feed(Conn& c, const char* p, std::size_t n) {
  if (c.st == St::Head) {
    std::size_t old = c.head.size();
    c.head.append(p, n);
    std::size_t from = old >= 3 ? old - 3 : 0;
    std::size_t end = c.head.find("\r\n\r\n", from);
    if (end == std::string::npos) {
      if (c.head.size() > 65536) {
        fail(c, "header_too_big");
        return false;
      }
      return true;
    }
    std::string_view h(c.head.data(), end + 2);
    // status line
    auto sp = h.find(' ');
    c.status = sp == std::string_view::npos ? 0 : std::atoi(c.head.c_str() + sp + 1);
    std::size_t pos = h.find("\r\n") + 2;
    while (pos < h.size()) {
      std::size_t eol = h.find("\r\n", pos);
      std::string_view line = h.substr(pos, eol - pos);
      if (ieq_prefix(line, "content-length:")) {
        c.content_len = std::atoll(std::string(line.substr(15)).c_str());
      } else if (ieq_prefix(line, "transfer-encoding:")) {
        std::string v(line.substr(18));
        for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (v.find("chunked") != std::string::npos) c.chunked = true;
      } else if (ieq_prefix(line, "connection:")) {
        std::string v(line.substr(11));
        for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (v.find("close") != std::string::npos) c.server_close = true;
      }
      pos = eol + 2;
    }
    std::string rest = c.head.substr(end + 4);
    c.st = St::Body;
    if (c.chunked) c.content_len = -1;
    if (!c.chunked && c.content_len == 0) {
      complete(c);
      return false;
    }
    if (rest.empty()) return true;
    return feed_body(c, rest.data(), rest.size());
  }
  return feed_body(c, p, n);
}

bool Load::feed_body(Conn& c, const char* p, std::size_t n) {
  if (!c.chunked) {
    payload(c, p, n);
    c.body_seen += static_cast<long long>(n);
    if (c.content_len >= 0 && c.body_seen >= c.content_len) {
      complete(c);
      return false;
    }
    return true;
  }
  std::size_t i = 0;
  while (i < n) {
    switch (c.cs) {
      case Cs::Size: {
        const char* nl = static_cast<const char*>(std::memchr(p + i, '\n', n - i));
        if (!nl) {
          c.cline.append(p + i, n - i);
          i = n;
          if (c.cline.size() > 1024) {
            fail(c, "bad_chunk");
            return false;
          }
          break;
        }
        c.cline.append(p + i, static_cast<std::size_t>(nl - (p + i)));
        i = static_cast<std::size_t>(nl - p) + 1;
        char* endp = nullptr;
        c.chunk_left = std::strtoull(c.cline.c_str(), &endp, 16);
        if (endp == c.cline.c_str()) {
          fail(c, "bad_chunk");
          return false;
        }
        c.cline.clear();
        c.cs = c.chunk_left == 0 ? Cs::Trailer : Cs::Data;
        break;
      }
      case Cs::Data: {
        std::size_t take = static_cast<std::size_t>(std::min<unsigned long long>(c.chunk_left, n - i));
        payload(c, p + i, take);
        i += take;
        c.chunk_left -= take;
        if (c.chunk_left == 0) {
          c.cs = Cs::DataCrlf;
          c.cline.clear();
        }
        break;
      }
      case Cs::DataCrlf: {
        // expect "\r\n"
        char ch = p[i++];
        if (ch == '\n') c.cs = Cs::Size;
        else if (ch != '\r') {
          fail(c, "bad_chunk");
          return false;
        }
        break;
      }
      case Cs::Trailer: {
        const char* nl = static_cast<const char*>(std::memchr(p + i, '\n', n - i));
        if (!nl) {
          c.cline.append(p + i, n - i);
          i = n;
          break;
        }
        c.cline.append(p + i, static_cast<std::size_t>(nl - (p + i)));
        i = static_cast<std::size_t>(nl - p) + 1;
        bool empty = c.cline.empty() || c.cline == "\r";
        c.cline.clear();
        if (empty) {
          complete(c);
          return false;
        }
        break;
      }
    }
  }
  return true;
}

void Load::payload(Conn& c, const char* p, std::size_t n) {
  if (n == 0) return;
  if (!c.got_payload) {
    c.got_payload = true;
    c.t_first = now_us();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] == '\n' && c.prev == '\n') ++c.events;
    if (p[i] != '\r') c.prev = p[i];
  }
  c.tail.append(p, n);
  if (c.tail.size() > 64) c.tail.erase(0, c.tail.size() - 32);
}

void Load::complete(Conn& c) {
  const std::int64_t t = now_us();
  bool good = true;
  if (c.status != 200) {
    ++s_.err["status_" + std::to_string(c.status)];
    good = false;
  } else if (o_.stream) {
    if (c.tail.find("[DONE]") == std::string::npos) {
      ++s_.err["no_done"];
      good = false;
    } else if (c.events < o_.expect_events) {
      ++s_.err["short"];
      good = false;
    }
  }
  if (o_.stream) s_.events.push_back(c.events);
  if (good) {
    ++s_.ok;
    ++c.done_reqs;
    s_.lat_us.push_back(static_cast<double>(t - c.t_req));
    if (o_.stream) {
      s_.ttft_ms.push_back(static_cast<double>(c.t_first - c.t_conn) / 1000.0);
      s_.dur_ms.push_back(static_cast<double>(t - c.t_conn) / 1000.0);
      // first body byte -> end: about (tokens - 1) x itl when events are relayed as they come;
      // near 0 when a stream was held back and delivered at once
      s_.span_ms.push_back(static_cast<double>(t - c.t_first) / 1000.0);
    }
  }
  after_request(c, !c.server_close);
}

void Load::after_request(Conn& c, bool reusable) {
  bool more = o_.duration_ms > 0 ? in_window() : c.sent_reqs < o_.requests;
  if (!more) {
    close_conn(c);
    c.finished = true;
    ++finished_;
    return;
  }
  if (reusable && !o_.new_conn && o_.interval_ms == 0) {
    begin_request(c);
    return;
  }
  close_conn(c);
  c.st = St::Idle;
  c.due = now_us() + std::int64_t{o_.interval_ms} * 1000;
}

void Load::fail(Conn& c, const char* why) {
  ++s_.err[why];
  close_conn(c);
  // A failed stream ends the connection's work in one-shot mode; in closed loop, reconnect.
  if (o_.duration_ms > 0 && in_window()) {
    c.st = St::Idle;
    c.due = now_us() + 1000;
    return;
  }
  c.finished = true;
  ++finished_;
}

void Load::close_conn(Conn& c) {
  if (c.fd >= 0) {
    ::epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }
  c.fd = -1;
  c.st = St::Closed;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  std::size_t idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  idx = std::clamp<std::size_t>(idx, 1, v.size()) - 1;
  return v[idx];
}

int Load::run() {
  addr_.sin_family = AF_INET;
  addr_.sin_port = htons(static_cast<std::uint16_t>(o_.port));
  if (::inet_pton(AF_INET, o_.host.c_str(), &addr_.sin_addr) != 1) {
    std::fprintf(stderr, "sse_load: --host must be an IPv4 address\n");
    return 2;
  }
  build_request();
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (o_.delay_ms > 0) ::usleep(static_cast<useconds_t>(o_.delay_ms) * 1000);

  ProcSample w0 = sample_procs(o_.watch), peak = w0;
  t0_ = now_us();
  const std::int64_t limit = t0_ + std::int64_t{o_.time_limit_ms} * 1000;
  std::int64_t next_sample = t0_ + 100000;
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    conns_[i].due = t0_ + (o_.ramp_ms > 0 ? std::int64_t{o_.ramp_ms} * 1000 * static_cast<std::int64_t>(i) /
                                                static_cast<std::int64_t>(conns_.size())
                                          : 0);
  }
  std::vector<epoll_event> evs(1024);
  bool timed_out = false;
  while (finished_ < o_.conns) {
    std::int64_t t = now_us();
    if (t >= limit) {
      timed_out = true;
      break;
    }
    // open the connections that are due (new ones in order; reconnects by scan when needed)
    while (next_open_ < conns_.size() && conns_[next_open_].due <= t) start_connect(conns_[next_open_++]);
    std::int64_t wake = std::min(limit, next_sample);
    if (next_open_ < conns_.size()) wake = std::min(wake, conns_[next_open_].due);
    if (o_.interval_ms > 0 || o_.new_conn || o_.duration_ms > 0) {
      for (std::size_t i = 0; i < next_open_; ++i) {
        Conn& c = conns_[i];
        if (c.st != St::Idle || c.finished) continue;
        if (c.due <= t) start_connect(c);
        else wake = std::min(wake, c.due);
      }
    }
    if (o_.duration_ms > 0) {
      const std::int64_t end = t0_ + std::int64_t{o_.duration_ms} * 1000;
      if (t < end) wake = std::min(wake, end);
      else {
        // window over: connections waiting for a reconnect are done
        for (std::size_t i = 0; i < next_open_; ++i) {
          Conn& c = conns_[i];
          if (c.st == St::Idle && !c.finished) {
            c.finished = true;
            ++finished_;
          }
        }
        // connections still waiting for a reply at the end of the window: give them
        // until the time limit, then stop (they count as in flight, not as errors)
      }
    }
    if (t >= next_sample) {
      ProcSample s = sample_procs(o_.watch);
      peak.rss_kb = std::max(peak.rss_kb, s.rss_kb);
      peak.threads = std::max(peak.threads, s.threads);
      next_sample = t + 100000;
    }
    int timeout_ms = static_cast<int>(std::max<std::int64_t>(0, (wake - now_us() + 999) / 1000));
    int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout_ms);
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[static_cast<std::size_t>(i)].data.ptr);
      if (c.fd < 0) continue;
      on_event(c, evs[static_cast<std::size_t>(i)].events);
    }
  }
  const std::int64_t t_end = now_us();
  long inflight = 0;
  for (auto& c : conns_) {
    if (!c.finished) {
      if (o_.duration_ms > 0) ++inflight;
      else ++s_.err[c.st == St::Idle ? "not_started" : "timeout"];
      close_conn(c);
    }
  }
  ProcSample w1 = sample_procs(o_.watch);
  peak.rss_kb = std::max(peak.rss_kb, w1.rss_kb);
  peak.threads = std::max(peak.threads, w1.threads);

  long errors = 0;
  std::string errs;
  for (auto& [k, v] : s_.err) {
    errors += v;
    errs += (errs.empty() ? "" : ",") + k + ":" + std::to_string(v);
  }
  const double wall_s = static_cast<double>(t_end - t0_) / 1e6;
  std::vector<double> per_conn;
  for (auto& c : conns_) per_conn.push_back(c.done_reqs);
  std::vector<double> ev(s_.events.begin(), s_.events.end());

  std::string out = "RESULT";
  auto kv = [&](const char* k, const std::string& v) { out += std::string(" ") + k + "=" + v; };
  auto kd = [&](const char* k, double v, int prec = 2) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    kv(k, b);
  };
  if (!o_.label.empty()) kv("label", o_.label);
  kv("conns", std::to_string(o_.conns));
  kv("ok", std::to_string(s_.ok));
  kv("errors", std::to_string(errors));
  kv("error_kinds", errs.empty() ? "-" : errs);
  kv("timed_out", timed_out ? "1" : "0");
  kv("inflight_at_end", std::to_string(inflight));
  kd("wall_s", wall_s, 3);
  kd("rps", static_cast<double>(s_.ok) / wall_s, 1);
  if (o_.stream) {
    kd("ttft_p50_ms", pct(s_.ttft_ms, 50), 1);
    kd("ttft_p99_ms", pct(s_.ttft_ms, 99), 1);
    kd("ttft_max_ms", pct(s_.ttft_ms, 100), 1);
    kd("dur_p50_ms", pct(s_.dur_ms, 50), 1);
    kd("dur_p99_ms", pct(s_.dur_ms, 99), 1);
    kd("span_p1_ms", pct(s_.span_ms, 1), 1);
    kd("span_p50_ms", pct(s_.span_ms, 50), 1);
    kd("events_min", pct(ev, 0.0001), 0);
    kd("events_p50", pct(ev, 50), 0);
    kd("events_max", pct(ev, 100), 0);
  }
  kd("lat_p50_us", pct(s_.lat_us, 50), 1);
  kd("lat_p99_us", pct(s_.lat_us, 99), 1);
  kd("lat_max_us", pct(s_.lat_us, 100), 1);
  kd("per_conn_min", pct(per_conn, 0.0001), 0);
  kd("per_conn_p50", pct(per_conn, 50), 0);
  kd("per_conn_max", pct(per_conn, 100), 0);
  long zero = 0;
  for (double v : per_conn) zero += v == 0 ? 1 : 0;
  kv("per_conn_zero", std::to_string(zero));
  // Jain's fairness index over per-connection completed requests: 1 = all equal, 1/n = one took all.
  double sum = 0, sq = 0;
  for (double v : per_conn) {
    sum += v;
    sq += v * v;
  }
  kd("jain", sq > 0 ? sum * sum / (static_cast<double>(per_conn.size()) * sq) : 0, 3);
  if (!o_.watch.empty()) {
    const double cpu = w1.cpu_s - w0.cpu_s;
    kd("w_cpu_s", cpu, 3);
    kd("w_cpu_pct", 100.0 * cpu / wall_s, 1);
    kv("w_rss_start_kb", std::to_string(w0.rss_kb));
    kv("w_rss_peak_kb", std::to_string(peak.rss_kb));
    kv("w_hwm_kb", std::to_string(w1.hwm_kb));
    kv("w_threads_start", std::to_string(w0.threads));
    kv("w_threads_peak", std::to_string(peak.threads));
  }
  if (o_.duration_ms > 0 && o_.conns > 1) {
    std::sort(per_conn.begin(), per_conn.end());
    std::string list;
    for (double v : per_conn) list += " " + std::to_string(static_cast<long>(v));
    std::fprintf(stderr, "per-connection completed requests (sorted):%s\n", list.c_str());
  }
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "sse_load%s%s: %d conns, %ld ok, %ld errors (%s) in %.2f s\n",
               o_.label.empty() ? "" : " ", o_.label.c_str(), o_.conns, s_.ok, errors,
               errs.empty() ? "none" : errs.c_str(), wall_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, o)) {
    usage();
    return 2;
  }
  // Raise the soft fd limit to the hard one: K connections need K descriptors.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  Load load(std::move(o));
  return load.run();
}
