// vllm-sim `--io epoll`: one event-loop thread (edge-triggered epoll) that accepts, parses
// HTTP/1.1 and writes responses; handlers run on a small worker pool; streamed answers are
// driven from a timer heap, so an open stream costs no thread.
//
// What the loop sends mirrors cpp-httplib 0.11.4 (the `--io threads` front end): the same status
// line, the same headers in the same (case-insensitive sorted) order, chunk framing, keep-alive
// rules and the 404 body. See README.md ("I/O modes") for the known differences.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>

#include "front.h"

namespace vsim {
namespace {

constexpr size_t kMaxHead = 64 * 1024;           // request line + headers
constexpr size_t kMaxBody = size_t{1} << 30;     // 1 GiB (cpp-httplib has no limit by default)
constexpr size_t kOutHigh = 1 << 20;             // unsent bytes above which a stream pauses
constexpr int kKeepAliveMax = 10000;             // as set on cpp-httplib in threads mode
constexpr int kKeepAliveSec = 30;
constexpr uint64_t kListenId = 1, kWakeId = 2, kSignalId = 3, kFirstConnId = 16;

const char *reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Internal Server Error";  // cpp-httplib's fallback
  }
}

bool valid_method(const std::string &m) {
  static const char *kMethods[] = {"GET",     "HEAD",  "POST",  "PUT", "DELETE",
                                   "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"};
  for (const char *k : kMethods)
    if (m == k) return true;
  return false;
}

// The value of `key="..."` (or key=token) in a header parameter list; key must start a param.
std::string header_param(const std::string &v, const std::string &key) {
  size_t p = 0;
  while ((p = v.find(key + "=", p)) != std::string::npos) {
    if (p == 0 || v[p - 1] == ' ' || v[p - 1] == ';' || v[p - 1] == '\t') break;
    ++p;
  }
  if (p == std::string::npos) return {};
  p += key.size() + 1;
  if (p < v.size() && v[p] == '"') {
    auto e = v.find('"', p + 1);
    return v.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1);
  }
  auto e = v.find_first_of("; \t", p);
  return v.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

// multipart/form-data -> req.files (what cpp-httplib does for handlers without a reader).
bool parse_multipart(const std::string &content_type, const std::string &body,
                     httplib::MultipartFormDataMap &files) {
  const std::string boundary = header_param(content_type, "boundary");
  if (boundary.empty()) return false;
  const std::string delim = "--" + boundary;
  size_t pos = body.find(delim);
  if (pos == std::string::npos) return false;
  for (;;) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) return true;
    if (body.compare(pos, 2, "\r\n") != 0) return false;
    pos += 2;
    const size_t hend = body.find("\r\n\r\n", pos);
    if (hend == std::string::npos) return false;
    httplib::MultipartFormData f;
    size_t lp = pos;
    while (lp < hend + 2) {
      size_t le = body.find("\r\n", lp);
      std::string line = body.substr(lp, le - lp);
      lp = le + 2;
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto &ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t vs = line.find_first_not_of(" \t", colon + 1);
      std::string value = vs == std::string::npos ? std::string() : line.substr(vs);
      if (name == "content-type") f.content_type = value;
      else if (name == "content-disposition") {
        f.name = header_param(value, "name");
        f.filename = header_param(value, "filename");
      }
    }
    const size_t next = body.find("\r\n" + delim, hend + 4);
    if (next == std::string::npos) return false;
    f.content = body.substr(hend + 4, next - (hend + 4));
    files.emplace(f.name, std::move(f));
    pos = next + 2;
  }
}

void append_hex(std::string &out, size_t n) {
  char tmp[24];
  int len = std::snprintf(tmp, sizeof(tmp), "%zx", n);
  out.append(tmp, static_cast<size_t>(len));
}

std::string addr_string(const sockaddr_storage &a, int &port) {
  char buf[INET6_ADDRSTRLEN] = "";
  port = -1;
  if (a.ss_family == AF_INET) {
    auto &in = reinterpret_cast<const sockaddr_in &>(a);
    inet_ntop(AF_INET, &in.sin_addr, buf, sizeof(buf));
    port = ntohs(in.sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto &in6 = reinterpret_cast<const sockaddr_in6 &>(a);
    inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof(buf));
    port = ntohs(in6.sin6_port);
  }
  return buf;
}

struct Job {
  uint64_t conn = 0;
  httplib::Request req;
  std::shared_ptr<std::atomic<bool>> gone;
};

struct Finished {
  uint64_t conn = 0;
  httplib::Response res;
  EventIo io;
};

enum class St { Reading, Busy, Deferred, Streaming, Holding };

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  St st = St::Reading;
  std::string in;  // bytes not yet consumed as requests
  std::string out;
  size_t out_off = 0;
  bool close_after = false;  // close once `out` is flushed
  bool eof = false;          // the client closed (or reset) its side
  bool stalled = false;      // a stream paused for backpressure
  std::shared_ptr<std::atomic<bool>> gone = std::make_shared<std::atomic<bool>>(false);
  std::string raddr, laddr;
  int rport = -1, lport = -1;
  int served = 0;
  Clock::time_point last_active;
  // Request being parsed.
  bool have_head = false, chunked = false, continue_sent = false;
  size_t head_len = 0, clen = 0, scan = 0, bad_head_len = 0;
  std::string body;
  httplib::Request req;
  // Request being answered.
  bool head_only = false, close_when_done = false, conn_close_hdr = false;
  std::shared_ptr<TimedBody> stream;
  std::shared_ptr<void> hold;
  httplib::Response pending;  // Deferred: sent at the timer
  uint64_t timer_seq = 0;

  size_t unsent() const { return out.size() - out_off; }
};

struct Timer {
  Clock::time_point at;
  uint64_t conn;
  uint64_t seq;
  bool operator>(const Timer &o) const { return at > o.at; }
};

class Front {
public:
  Front(const EventFrontConfig &cfg, const Routes &routes) : cfg_(cfg), routes_(routes) {}
  ~Front() {
    stop_workers();
    conns_.clear();
    for (int fd : {lfd_, wfd_, sfd_, ep_})
      if (fd >= 0) ::close(fd);
  }

  int run() {
    if (!bind_listen()) {
      std::fprintf(stderr, "vllm-sim: cannot bind %s:%d\n", cfg_.host.c_str(), cfg_.port);
      return 1;
    }
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    wfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sfd_ = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ep_ < 0 || wfd_ < 0 || sfd_ < 0) {
      std::perror("vllm-sim: epoll setup");
      return 1;
    }
    add_fd(lfd_, kListenId, EPOLLIN);
    add_fd(wfd_, kWakeId, EPOLLIN);
    add_fd(sfd_, kSignalId, EPOLLIN);
    defaults_ = cfg_.on_listening ? cfg_.on_listening(port_) : httplib::Headers{};
    const int n = std::max(1, cfg_.workers);
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { work(); });

    std::vector<epoll_event> evs(512);
    auto next_sweep = Clock::now() + std::chrono::seconds(1);
    while (!cfg_.stopping->load()) {
      int timeout = 1000;
      const auto now = Clock::now();
      if (!timers_.empty()) {
        auto d = std::chrono::duration_cast<std::chrono::microseconds>(timers_.top().at - now).count();
        timeout = d <= 0 ? 0 : static_cast<int>(std::min<int64_t>((d + 999) / 1000, 1000));
      }
      int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout);
      if (k < 0 && errno != EINTR) {
        std::perror("vllm-sim: epoll_wait");
        break;
      }
      for (int i = 0; i < k; ++i) {
        const uint64_t id = evs[static_cast<size_t>(i)].data.u64;
        const uint32_t e = evs[static_cast<size_t>(i)].events;
        if (id == kListenId) accept_all();
        else if (id == kWakeId) drain_finished();
        else if (id == kSignalId) {
          signalfd_siginfo si;
          while (::read(sfd_, &si, sizeof(si)) > 0) {
          }
          cfg_.stopping->store(true);
        } else on_conn_event(id, e);
      }
      run_timers();
      if (Clock::now() >= next_sweep) {
        sweep_idle();
        next_sweep = Clock::now() + std::chrono::seconds(1);
      }
    }
    ::close(lfd_);  // stop accepting at once
    lfd_ = -1;
    stop_workers();
    return 0;
  }

private:
  // ------------------------------------------------------------ setup

  bool bind_listen() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo *res = nullptr;
    const std::string port = std::to_string(cfg_.port);
    if (getaddrinfo(cfg_.host.c_str(), port.c_str(), &hints, &res) != 0) return false;
    for (addrinfo *ai = res; ai; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, cfg_.backlog) == 0) {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len);
        addr_string(ss, port_);
        lfd_ = fd;
        break;
      }
      ::close(fd);
    }
    freeaddrinfo(res);
    return lfd_ >= 0 && port_ > 0;
  }

  void add_fd(int fd, uint64_t id, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  // ------------------------------------------------------------ workers

  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lk(jobs_mu_);
        jobs_cv_.wait(lk, [&] { return jobs_stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Finished f;
      f.conn = job.conn;
      f.io.peer_gone = job.gone;
      dispatch(job.req, f.res, f.io);
      {
        std::lock_guard<std::mutex> lk(fin_mu_);
        fin_.push_back(std::move(f));
      }
      uint64_t one = 1;
      ssize_t w = ::write(wfd_, &one, sizeof(one));
      (void)w;
    }
  }

  // Routing as cpp-httplib does it: pre-routing, exact path + method (HEAD uses GET routes),
  // status -1 -> 200, 404 without a body -> the error handler's body.
  void dispatch(httplib::Request &req, httplib::Response &res, EventIo &io) {
    res.headers = defaults_;
    if (routes_.pre) routes_.pre(req, res);
    const std::string method = req.method == "HEAD" ? std::string("GET") : req.method;
    const Route *found = nullptr;
    for (auto &r : routes_.routes)
      if (r.method == method && r.path == req.path) {
        found = &r;
        break;
      }
    if (found) {
      set_current_event_io(&io);
      try {
        found->fn(req, res);
      } catch (...) {
        res.status = 500;
        if (routes_.on_exception) routes_.on_exception(res, std::current_exception());
      }
      set_current_event_io(nullptr);
      if (res.status == -1) res.status = 200;
    } else {
      res.status = 404;
    }
    if (res.status == 404 && res.body.empty() && !io.stream && !routes_.not_found_body.empty())
      res.set_content(routes_.not_found_body, routes_.not_found_type.c_str());
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(jobs_mu_);
      jobs_stop_ = true;
      jobs_.clear();
    }
    jobs_cv_.notify_all();
    for (auto &t : workers_) t.join();
    workers_.clear();
    std::lock_guard<std::mutex> lk(fin_mu_);
    fin_.clear();
  }

  void drain_finished() {
    uint64_t v;
    while (::read(wfd_, &v, sizeof(v)) > 0) {
    }
    std::vector<Finished> batch;
    {
      std::lock_guard<std::mutex> lk(fin_mu_);
      batch.swap(fin_);
    }
    for (auto &f : batch) on_finished(f);
  }

  // ------------------------------------------------------------ connections

  Conn *find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  void accept_all() {
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage peer{};
      socklen_t pl = sizeof(peer);
      int fd = accept4(lfd_, reinterpret_cast<sockaddr *>(&peer), &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors (retried on the next wakeup)
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      c->id = next_id_++;
      c->raddr = addr_string(peer, c->rport);
      sockaddr_storage local{};
      socklen_t ll = sizeof(local);
      if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &ll) == 0) c->laddr = addr_string(local, c->lport);
      c->last_active = Clock::now();
      add_fd(fd, c->id, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
      conns_.emplace(c->id, std::move(c));
    }
  }

  void close_conn(Conn &c, bool reset = false) {
    if (reset) {
      linger lg{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    c.gone->store(true);
    ::close(c.fd);  // also leaves the epoll set
    conns_.erase(c.id);  // drops a stream / held flight: counted as cancelled unless finished
  }

  void on_conn_event(uint64_t id, uint32_t e) {
    Conn *c = find(id);
    if (!c) return;
    if (e & EPOLLOUT) {
      if (!flush(*c)) return;
    }
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      char buf[65536];
      for (;;) {
        ssize_t n = ::recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
          c->in.append(buf, static_cast<size_t>(n));
          c->last_active = Clock::now();
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c->eof = true;
        if (n < 0 && errno == EINTR) continue;
        break;
      }
      if (c->st == St::Reading && !c->close_after) {
        if (!try_parse(*c)) return;
      }
      if (c->eof) on_eof(*c);
    }
  }

  // The client closed its side. A request being handled still gets its answer (then the
  // connection closes); an open stream, a delayed answer or a hung request ends now.
  void on_eof(Conn &c) {
    c.gone->store(true);
    switch (c.st) {
      case St::Busy: c.close_after = true; return;
      case St::Reading:
        if (c.unsent() > 0) {  // the answer (or an error) is still being written
          c.close_after = true;
          return;
        }
        [[fallthrough]];
      default: close_conn(c);
    }
  }

  // Writes what it can. False when the connection was closed.
  bool flush(Conn &c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(c);  // the client is gone
      return false;
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
      if (c.close_after && c.st == St::Reading) {
        close_conn(c);
        return false;
      }
    } else if (c.out_off > (256u << 10) && c.out_off * 2 > c.out.size()) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    if (c.stalled && c.unsent() < kOutHigh) {
      c.stalled = false;
      schedule(c, Clock::now());
    }
    return true;
  }

  void schedule(Conn &c, Clock::time_point at) { timers_.push(Timer{at, c.id, ++c.timer_seq}); }

  // ------------------------------------------------------------ requests

  void simple_error(Conn &c, int status) {
    c.out += "HTTP/1.1 ";
    c.out += std::to_string(status);
    c.out += ' ';
    c.out += reason_phrase(status);
    c.out += "\r\nConnection: close\r\nContent-Length: 0\r\n";
    for (auto &[k, v] : defaults_) c.out += k + ": " + v + "\r\n";
    c.out += "\r\n";
    c.close_after = true;
    c.in.clear();
  }

  // Parses and dispatches the next request if complete. False when the connection was closed.
  bool try_parse(Conn &c) {
    if (c.st != St::Reading || c.close_after) return true;
    int status = 0;
    const int r = parse(c, status);
    if (r < 0) {
      if (status == 400 && c.bad_head_len > 0) {
        // A malformed request line or header (the head is complete): like cpp-httplib, answer
        // 400 without a body and keep the connection.
        c.in.erase(0, c.bad_head_len);
        c.req = httplib::Request();
        c.have_head = c.chunked = c.continue_sent = false;
        c.bad_head_len = c.head_len = c.clen = c.scan = 0;
        c.head_only = false;
        c.conn_close_hdr = c.close_when_done = false;
        httplib::Response res;
        res.status = 400;
        res.headers = defaults_;
        respond(c, res);
        return find(c.id) != nullptr;
      }
      simple_error(c, status);
      return flush(c);
    }
    if (r == 0) return flush(c);  // need more (a 100 Continue may be pending)
    Job job;
    job.conn = c.id;
    job.req = std::move(c.req);
    job.gone = c.gone;
    c.req = httplib::Request();
    const std::string conn_hdr = job.req.get_header_value("Connection");
    c.conn_close_hdr = conn_hdr == "close";
    c.close_when_done = c.conn_close_hdr || (job.req.version == "HTTP/1.0" && conn_hdr != "Keep-Alive");
    c.head_only = job.req.method == "HEAD";
    c.st = St::Busy;
    {
      std::lock_guard<std::mutex> lk(jobs_mu_);
      jobs_.push_back(std::move(job));
    }
    jobs_cv_.notify_one();
    return flush(c);
  }

  // 1: a request is in c.req; 0: need more bytes; -1: error (status set).
  int parse(Conn &c, int &status) {
    if (!c.have_head) {
      const size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > kMaxHead) return status = 400, -1;
        return 0;
      }
      if (end > kMaxHead) return status = 400, -1;
      c.bad_head_len = end + 4;  // what a 400 for a malformed head skips
      httplib::Request &req = c.req;
      size_t le = c.in.find("\r\n");
      {
        const std::string line = c.in.substr(0, le);
        const size_t a = line.find(' ');
        const size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
        if (b == std::string::npos || line.find(' ', b + 1) != std::string::npos) return status = 400, -1;
        req.method = line.substr(0, a);
        req.target = line.substr(a + 1, b - a - 1);
        req.version = line.substr(b + 1);
        if (!valid_method(req.method) || (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") ||
            req.target.empty())
          return status = 400, -1;
      }
      size_t p = le + 2;
      while (p < end + 2) {
        const size_t e = c.in.find("\r\n", p);
        const size_t colon = c.in.find(':', p);
        if (colon == std::string::npos || colon >= e || colon == p) return status = 400, -1;
        size_t vs = colon + 1;
        while (vs < e && (c.in[vs] == ' ' || c.in[vs] == '\t')) ++vs;
        size_t ve = e;
        while (ve > vs && (c.in[ve - 1] == ' ' || c.in[ve - 1] == '\t')) --ve;
        req.headers.emplace(c.in.substr(p, colon - p), c.in.substr(vs, ve - vs));
        p = e + 2;
      }
      c.head_len = end + 4;
      c.bad_head_len = 0;
      c.have_head = true;
      c.body.clear();
      if (req.get_header_value("Transfer-Encoding") == "chunked") {
        c.chunked = true;
        c.scan = c.head_len;
      } else if (req.has_header("Content-Length")) {
        const std::string v = req.get_header_value("Content-Length");
        char *endp = nullptr;
        errno = 0;
        unsigned long long n = std::strtoull(v.c_str(), &endp, 10);
        if (v.empty() || *endp != '\0' || errno != 0) return status = 400, -1;
        if (n > kMaxBody) return status = 413, -1;
        c.clen = static_cast<size_t>(n);
      } else {
        c.clen = 0;
      }
      if (req.get_header_value("Expect") == "100-continue" && !c.continue_sent) {
        c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        c.continue_sent = true;
      }
    }
    size_t consumed = 0;
    if (c.chunked) {
      for (;;) {
        const size_t eol = c.in.find("\r\n", c.scan);
        if (eol == std::string::npos) return 0;
        char *endp = nullptr;
        const std::string sz = c.in.substr(c.scan, eol - c.scan);
        const unsigned long long n = std::strtoull(sz.c_str(), &endp, 16);
        if (endp == sz.c_str() || (*endp != '\0' && *endp != ';' && *endp != ' ')) return status = 400, -1;
        if (n == 0) {  // trailers up to an empty line
          size_t p = eol + 2;
          for (;;) {
            const size_t e = c.in.find("\r\n", p);
            if (e == std::string::npos) return 0;
            if (e == p) {
              consumed = e + 2;
              break;
            }
            p = e + 2;
          }
          break;
        }
        if (n > kMaxBody || c.body.size() + n > kMaxBody) return status = 413, -1;
        const size_t data = eol + 2;
        if (c.in.size() < data + n + 2) return 0;
        if (c.in.compare(data + n, 2, "\r\n") != 0) return status = 400, -1;
        c.body.append(c.in, data, static_cast<size_t>(n));
        c.scan = data + n + 2;
      }
    } else {
      if (c.in.size() < c.head_len + c.clen) return 0;
      c.body.assign(c.in, c.head_len, c.clen);
      consumed = c.head_len + c.clen;
    }
    c.in.erase(0, consumed);
    httplib::Request &req = c.req;
    req.body = std::move(c.body);
    c.body = std::string();
    const size_t q = req.target.find('?');
    req.path = httplib::detail::decode_url(req.target.substr(0, q), false);
    if (q != std::string::npos) httplib::detail::parse_query_text(req.target.substr(q + 1), req.params);
    const std::string ct = req.get_header_value("Content-Type");
    if (ct.rfind("application/x-www-form-urlencoded", 0) == 0)
      httplib::detail::parse_query_text(req.body, req.params);
    else if (ct.rfind("multipart/form-data", 0) == 0 && !parse_multipart(ct, req.body, req.files))
      return status = 400, -1;
    req.remote_addr = c.raddr;
    req.remote_port = c.rport;
    req.local_addr = c.laddr;
    req.local_port = c.lport;
    req.set_header("REMOTE_ADDR", c.raddr);
    req.set_header("REMOTE_PORT", std::to_string(c.rport));
    req.set_header("LOCAL_ADDR", c.laddr);
    req.set_header("LOCAL_PORT", std::to_string(c.lport));
    c.have_head = c.chunked = c.continue_sent = false;
    c.head_len = c.clen = c.scan = 0;
    return 1;
  }

  // Status line + headers as cpp-httplib writes them.
  void write_head(Conn &c, httplib::Response &res, bool chunked) {
    const bool last = c.close_when_done || c.served + 1 >= kKeepAliveMax;
    httplib::Headers &h = res.headers;
    if (c.conn_close_hdr || c.served + 1 >= kKeepAliveMax) h.emplace("Connection", "close");
    else
      h.emplace("Keep-Alive", "timeout=" + std::to_string(kKeepAliveSec) + ", max=" + std::to_string(kKeepAliveMax));
    if (last) c.close_after = true;
    if (!res.has_header("Content-Type") && (!res.body.empty() || chunked)) h.emplace("Content-Type", "text/plain");
    if (chunked) h.emplace("Transfer-Encoding", "chunked");
    else if (!res.has_header("Content-Length")) h.emplace("Content-Length", std::to_string(res.body.size()));
    if (c.head_only && !res.has_header("Accept-Ranges")) h.emplace("Accept-Ranges", "bytes");
    c.out += "HTTP/1.1 ";
    c.out += std::to_string(res.status);
    c.out += ' ';
    c.out += reason_phrase(res.status);
    c.out += "\r\n";
    for (auto &[k, v] : h) {
      c.out += k;
      c.out += ": ";
      c.out += v;
      c.out += "\r\n";
    }
    c.out += "\r\n";
  }

  // A worker finished a request.
  void on_finished(Finished &f) {
    Conn *cp = find(f.conn);
    if (!cp) return;  // the client left: dropping f releases the stream / flight
    Conn &c = *cp;
    EventIo &io = f.io;
    if (io.drop) return close_conn(c, /*reset=*/true);
    if (io.no_answer) {
      if (c.eof) return close_conn(c);
      c.hold = std::move(io.hold);
      c.st = St::Holding;
      return;
    }
    if (io.stream) {
      if (c.eof) return close_conn(c);
      write_head(c, f.res, /*chunked=*/true);
      c.stream = std::move(io.stream);
      c.st = St::Streaming;
      schedule(c, c.stream->due());
      flush(c);
      return;
    }
    if (io.deliver_at > Clock::now()) {
      if (c.eof) return close_conn(c);  // a finished flight is counted as completed
      c.pending = std::move(f.res);
      c.hold = std::move(io.hold);
      c.st = St::Deferred;
      schedule(c, io.deliver_at);
      return;
    }
    respond(c, f.res);
  }

  void respond(Conn &c, httplib::Response &res) {
    write_head(c, res, false);
    if (!c.head_only) c.out += res.body;
    end_request(c);
  }

  // The answer is complete in `out`: next request (pipelined) or close.
  void end_request(Conn &c) {
    ++c.served;
    c.last_active = Clock::now();
    c.stream.reset();
    c.hold.reset();
    c.pending = httplib::Response();
    c.st = St::Reading;
    c.stalled = false;
    ++c.timer_seq;  // cancels a pending timer
    if (c.eof) c.close_after = true;
    if (!flush(c)) return;
    if (!c.close_after) try_parse(c);
  }

  void run_timers() {
    const auto now = Clock::now();
    int budget = 100000;
    while (!timers_.empty() && timers_.top().at <= now && budget-- > 0) {
      const Timer t = timers_.top();
      timers_.pop();
      Conn *c = find(t.conn);
      if (!c || c->timer_seq != t.seq) continue;
      if (c->st == St::Deferred) {
        respond(*c, c->pending);
        continue;
      }
      if (c->st != St::Streaming) continue;
      if (c->unsent() >= kOutHigh) {  // backpressure: resume when the client drains
        c->stalled = true;
        continue;
      }
      const auto status = c->stream->step([c](std::string_view d) {
        append_hex(c->out, d.size());
        c->out += "\r\n";
        c->out.append(d.data(), d.size());
        c->out += "\r\n";
        return true;
      });
      switch (status) {
        case TimedBody::Status::More:
          schedule(*c, c->stream->due());
          flush(*c);
          break;
        case TimedBody::Status::Done:
          c->out += "0\r\n\r\n";
          end_request(*c);
          break;
        case TimedBody::Status::Drop:
        case TimedBody::Status::Failed:
          if (flush(*c)) close_conn(*c);  // without the last chunk
          break;
      }
    }
  }

  // Keep-alive timeout: idle connections (no request in progress) close after 30 s.
  void sweep_idle() {
    const auto limit = Clock::now() - std::chrono::seconds(kKeepAliveSec);
    std::vector<uint64_t> idle;
    for (auto &[id, c] : conns_)
      if (c->st == St::Reading && c->last_active < limit) idle.push_back(id);
    for (uint64_t id : idle)
      if (Conn *c = find(id)) close_conn(*c);
  }

  const EventFrontConfig &cfg_;
  const Routes &routes_;
  int lfd_ = -1, ep_ = -1, wfd_ = -1, sfd_ = -1;
  int port_ = 0;
  httplib::Headers defaults_;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_id_ = kFirstConnId;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Job> jobs_;
  bool jobs_stop_ = false;
  std::vector<std::thread> workers_;
  std::mutex fin_mu_;
  std::vector<Finished> fin_;
};

}  // namespace

int run_event_front(const EventFrontConfig &cfg, const Routes &routes) {
  Front f(cfg, routes);
  return f.run();
}

}  // namespace vsim
