// vllm-sim: what the two HTTP front ends share (route table, timed bodies, the epoll front end).
// Threads mode (`--io threads`) registers the routes on cpp-httplib; epoll mode
// (`--io epoll`, event_front.cpp) parses HTTP itself and runs the same handlers on a small pool.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vsim {

using Clock = std::chrono::steady_clock;

using Handler = std::function<void(const httplib::Request &, httplib::Response &)>;

struct Route {
  std::string method;  // "GET" or "POST" (GET routes also answer HEAD, as in cpp-httplib)
  std::string path;    // exact match
  Handler fn;
};

struct Routes {
  std::vector<Route> routes;
  // Runs before routing (cpp-httplib's pre-routing handler): may edit the request headers.
  std::function<void(httplib::Request &, httplib::Response &)> pre;
  // An exception escaped a handler.
  std::function<void(httplib::Response &, std::exception_ptr)> on_exception;
  // Body of a 404 without a body (cpp-httplib's error handler).
  std::string not_found_body;
  std::string not_found_type;
};

// A response body produced over time (an SSE stream). Both front ends drive it: threads mode
// sleeps until due() and calls step(); epoll mode keeps it on a timer heap.
class TimedBody {
public:
  enum class Status { More, Done, Drop, Failed };
  using Emit = std::function<bool(std::string_view)>;  // one call = one HTTP chunk
  virtual ~TimedBody() = default;
  virtual Clock::time_point due() const = 0;
  // Emits the events due now (call at or after due()). More: call again at due(); Done: the
  // body is complete (send the last chunk); Drop: cut the connection without the last chunk;
  // Failed: emit returned false.
  virtual Status step(const Emit &emit) = 0;
};

// Epoll mode: what a handler (on a worker thread) tells the event loop besides the Response.
struct EventIo {
  std::shared_ptr<std::atomic<bool>> peer_gone;  // set by the loop when the client leaves
  std::shared_ptr<TimedBody> stream;  // streamed answer: the loop writes it chunk by chunk
  std::shared_ptr<void> hold;         // kept alive until the answer is sent or the client leaves
  bool no_answer = false;             // never answer (fail mode hang); drop `hold` on client EOF
  bool drop = false;                  // close the connection (RST) without answering
  Clock::time_point deliver_at{};     // non-streamed: send the response at this time
};

// The EventIo of the request the calling thread is handling; null in threads mode.
EventIo *current_event_io();
void set_current_event_io(EventIo *io);

struct EventFrontConfig {
  std::string host;
  int port = 0;
  int backlog = 4096;
  int workers = 4;
  std::atomic<bool> *stopping = nullptr;
  // Called once bound (with the port); returns the default response headers.
  std::function<httplib::Headers(int port)> on_listening;
};

// Serves `routes` until SIGTERM/SIGINT (which must be blocked in every thread). Returns the
// process exit code (1 when it cannot bind).
int run_event_front(const EventFrontConfig &cfg, const Routes &routes);

}  // namespace vsim
