// vllm-sim HTTP side: cpp-httplib routes, pacing, failure modes, /metrics and /sim/* introspection.
#include "server.h"

#include <dirent.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "engine.h"
#include "front.h"
#include "pd.h"
#include "task_pool.h"

namespace vsim {

namespace {
thread_local EventIo *t_event_io = nullptr;
}  // namespace

EventIo *current_event_io() { return t_event_io; }
void set_current_event_io(EventIo *io) { t_event_io = io; }

bool parse_fail_mode(const std::string &s, FailMode &out) {
  static const std::pair<const char *, FailMode> kModes[] = {
      {"none", FailMode::None}, {"error500", FailMode::Error500}, {"error503", FailMode::Error503},
      {"drop", FailMode::Drop}, {"slow", FailMode::Slow},         {"hang", FailMode::Hang}};
  for (auto &[name, m] : kModes)
    if (s == name) {
      out = m;
      return true;
    }
  return false;
}

const char *fail_mode_name(FailMode m) {
  switch (m) {
    case FailMode::None: return "none";
    case FailMode::Error500: return "error500";
    case FailMode::Error503: return "error503";
    case FailMode::Drop: return "drop";
    case FailMode::Slow: return "slow";
    case FailMode::Hang: return "hang";
  }
  return "none";
}

std::string prom_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

namespace {

// ------------------------------------------------------------------ shared state

std::atomic<bool> g_stopping{false};

struct State {
  Options opt;
  std::string primary;        // first served model name
  std::string primary_label;  // escaped for Prometheus labels
  std::atomic<int> fail{0};

  // /sim/stats
  std::atomic<int64_t> requests{0}, completed{0}, cancelled{0}, errors{0}, dropped{0},
      in_flight{0};
  std::mutex last_mu;
  std::string last_path;
  std::string last_body;  // hashed only when /sim/stats is read
  // The last request's headers as received (names lowered and duplicates joined only when
  // /sim/stats is read); the strings keep their capacity, so recording allocates nothing once
  // warm (the sim is half of a benchmark machine's CPU, and a header more must not cost it much).
  std::vector<std::pair<std::string, std::string>> last_headers;
  std::size_t last_header_count = 0;

  // /metrics
  std::atomic<int64_t> engine_in_flight{0}, kv_tokens{0}, prompt_tokens_total{0},
      generation_tokens_total{0}, success_stop{0}, success_length{0},
      prefix_queries{0}, prefix_hits{0};
  LoraRegistry loras;  // static (--lora) and runtime-loaded adapters, the LoRA gauge
  PrefixCache prefix;
  // Prefill/decode disaggregation (pd.h): --kv-role, and the prefills that stall decode.
  KvRole kv_role = KvRole::None;
  PrefillTimeline timeline;
  int bound_port = 0;
  std::atomic<int64_t> kv_prefills{0}, kv_transfers{0};  // /sim/stats

  // Engine model (--batch-queue, --prefill-us-per-token): batch slots handed out in FIFO order,
  // and one prefill at a time.
  std::mutex sched_mu;
  std::condition_variable sched_cv;
  int64_t slots_used = 0;
  uint64_t next_ticket = 0, serving_ticket = 0;
  std::atomic<int64_t> queued{0};
  Clock::time_point prefill_free_at{};
  std::atomic<int64_t> queue_us_total{0}, queue_count{0};

  // Waits (FIFO) for a batch slot. False when the sim is stopping.
  bool acquire_slot() {
    std::unique_lock<std::mutex> lk(sched_mu);
    const uint64_t ticket = next_ticket++;
    queued.fetch_add(1);
    while (!(ticket == serving_ticket && slots_used < opt.max_num_seqs)) {
      if (g_stopping.load()) {
        // Give the turn away so the tickets behind this one are not stuck.
        if (ticket == serving_ticket) ++serving_ticket;
        queued.fetch_sub(1);
        sched_cv.notify_all();
        return false;
      }
      sched_cv.wait_for(lk, std::chrono::milliseconds(100));
    }
    ++serving_ticket;
    ++slots_used;
    queued.fetch_sub(1);
    sched_cv.notify_all();
    return true;
  }
  void release_slot() {
    {
      std::lock_guard<std::mutex> lk(sched_mu);
      --slots_used;
    }
    sched_cv.notify_all();
  }
  // Reserves the prefill unit for `cost` from `ready` on; returns when that prefill ends.
  Clock::time_point schedule_prefill(Clock::time_point ready, Clock::duration cost) {
    std::lock_guard<std::mutex> lk(sched_mu);
    const auto begin = std::max(ready, prefill_free_at);
    prefill_free_at = begin + cost;
    if (opt.prefill_stalls_decode) timeline.add(begin, prefill_free_at);
    return prefill_free_at;
  }

  FailMode fail_mode() const { return static_cast<FailMode>(fail.load()); }
  bool is_served(const std::string &m) const {
    if (m.empty()) return true;
    for (auto &n : opt.served_names)
      if (n == m) return true;
    return is_lora(m);
  }
  bool is_lora(const std::string &m) const { return loras.has(m); }
};

// ------------------------------------------------------------------ helpers

void set_json(httplib::Response &res, int status, std::string body) {
  res.status = status;
  res.set_content(std::move(body), "application/json");
}

void set_error(httplib::Response &res, int status, std::string_view type, std::string_view msg) {
  set_json(res, status, error_json(status, type, msg));
}

std::string lower(std::string s) {
  for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string json_str(std::string_view s) {
  std::string out = "\"";
  append_json_escaped(out, s);
  out.push_back('"');
  return out;
}

double header_ms(const httplib::Request &req, const char *name, double dflt) {
  if (!req.has_header(name)) return dflt;
  std::string v = req.get_header_value(name);
  char *end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || d < 0) return dflt;
  return d;
}

// Sleeps until t, waking at least every 100 ms to honour shutdown. False when stopping.
bool sleep_until(Clock::time_point t) {
  for (;;) {
    if (g_stopping.load(std::memory_order_relaxed)) return false;
    auto now = Clock::now();
    if (now >= t) return true;
    auto step = std::min<Clock::duration>(t - now, std::chrono::milliseconds(100));
    std::this_thread::sleep_for(step);
  }
}

// cpp-httplib 0.11.4 does not expose the connection socket to handlers. For the rare paths that
// need it (fail modes "hang" and "drop"), find it by matching the request's address pair.
int find_connection_fd(const httplib::Request &req) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent *e = readdir(d)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(d)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof(local), pl = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &ll) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &pl) != 0) continue;
    auto port_of = [](const sockaddr_storage &a) -> int {
      if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in &>(a).sin_port);
      if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6 &>(a).sin6_port);
      return -1;
    };
    if (port_of(local) == req.local_port && port_of(peer) == req.remote_port) {
      found = fd;
      break;
    }
  }
  closedir(d);
  return found;
}

// True once the peer has closed (or reset) the connection.
bool peer_gone(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  int rc = poll(&p, 1, 0);
  if (rc <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0;
}

// Fail mode "hang": never answer; return when the client leaves (or the sim stops).
void hang_until_client_leaves(const httplib::Request &req) {
  int fd = find_connection_fd(req);
  while (!g_stopping.load()) {
    if (fd >= 0 && peer_gone(fd)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Fail mode "drop" without streaming: close the connection without answering.
void drop_connection(const httplib::Request &req) {
  int fd = find_connection_fd(req);
  if (fd < 0) return;
  linger lg{1, 0};  // RST when cpp-httplib closes the socket
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  shutdown(fd, SHUT_RDWR);
}

bool is_engine_kind(Kind k) { return k != Kind::Tokenize && k != Kind::Detokenize; }

// Lives as long as one inference request (for streams: as long as the content provider).
struct Flight {
  State &st;
  bool engine;
  std::string lora;
  int64_t kv = 0;
  bool finished = false;  // answered completely
  bool dropped = false;   // deliberately cut (fail mode drop)
  bool holds_slot = false;  // a batch slot of the engine model, released at the end

  Flight(State &s, Kind kind, const std::string &model, int64_t kv_tokens)
      : st(s), engine(is_engine_kind(kind)), kv(kv_tokens) {
    st.in_flight.fetch_add(1);
    if (engine) {
      st.engine_in_flight.fetch_add(1);
      st.kv_tokens.fetch_add(kv);
    }
    if (!model.empty() && st.is_lora(model)) {
      lora = model;
      st.loras.begin(lora, false);
    }
  }
  ~Flight() {
    if (holds_slot) st.release_slot();
    if (finished) st.completed.fetch_add(1);
    else if (dropped) st.dropped.fetch_add(1);
    else st.cancelled.fetch_add(1);  // the client left early (or the sim is stopping)
    if (!lora.empty()) st.loras.end(lora, false);
    if (engine) {
      st.kv_tokens.fetch_sub(kv);
      st.engine_in_flight.fetch_sub(1);
    }
    st.in_flight.fetch_sub(1);
  }
  void succeed(const Plan &p, int64_t prompt_tokens, int n) {
    finished = true;
    if (!engine) return;
    st.prompt_tokens_total.fetch_add(prompt_tokens);
    st.generation_tokens_total.fetch_add(p.tokens * n);
    if (std::string_view(p.finish_reason) == "length") st.success_length.fetch_add(1);
    else st.success_stop.fetch_add(1);
  }
};

// ------------------------------------------------------------------ streaming

// One SSE answer as a sequence of steps: step k (due at first + k * itl) writes token k's events
// (plus the role events before token 0, the usage event and [DONE] after the last). Each event
// is one chunk. Threads mode runs the steps in a loop with sleeps; epoll mode from a timer heap.
struct Stream final : TimedBody {
  std::unique_ptr<Flight> flight;
  Ctx ctx;
  ParsedRequest req;
  Plan plan;
  bool chat = true;
  bool drop = false;
  Clock::time_point first;  // when the first token is due
  Clock::duration itl{};
  std::string buf;
  int64_t k = 0;  // the next token step
  PrefillTimeline *stall = nullptr;  // --prefill-stalls-decode: tokens wait out running prefills
  Clock::time_point next{};          // with `stall`: when token k is due

  Clock::time_point due() const override { return stall ? next : first + itl * k; }

  Status step(const Emit &emit) override {
    auto put = [&]() -> bool {
      bool ok = emit(buf);
      buf.clear();
      return ok;
    };
    if (stall != nullptr && k > 0) {
      const Clock::time_point until = stall->busy_until(next);
      if (until > next) {  // the engine is running a prefill: this token waits for its end
        next = until;
        return Status::More;
      }
    }
    const bool cont = req.continuous_usage;
    Usage u{req.prompt_tokens, 0};
    if (k == 0) {
      buf.reserve(512);
      if (chat) {
        for (int i = 0; i < req.n; ++i) {
          event_chat_role(buf, ctx, i, cont ? &u : nullptr);
          if (!put()) return Status::Failed;
        }
      }
    }
    const int64_t steps = std::max<int64_t>(plan.tokens, 1);
    if (drop && k == 2) {
      flight->dropped = true;
      return Status::Drop;  // the connection closes without the last chunk
    }
    const bool last = (k + 1 == steps);
    const int64_t tok = plan.tokens == 0 ? -1 : k;
    for (int i = 0; i < req.n; ++i) {
      u.completion = plan.tokens == 0 ? 0 : k + 1;
      if (chat) event_chat_token(buf, ctx, i, tok, last ? &plan : nullptr, cont ? &u : nullptr);
      else event_completion_token(buf, ctx, i, tok, last ? &plan : nullptr, cont ? &u : nullptr);
      if (!put()) return Status::Failed;
    }
    ++k;
    next += itl;
    if (!last) return Status::More;
    if (req.include_usage) {
      event_usage(buf, ctx, chat, Usage{req.prompt_tokens, plan.tokens * req.n});
      if (!put()) return Status::Failed;
    }
    buf.append(kDoneEvent);
    if (!put()) return Status::Failed;
    flight->succeed(plan, req.prompt_tokens, req.n);
    return Status::Done;
  }

  // Threads mode: writes the whole stream (cpp-httplib calls the provider once).
  bool run(httplib::DataSink &sink) {
    const Emit emit = [&sink](std::string_view d) { return sink.write(d.data(), d.size()); };
    for (;;) {
      if (!sleep_until(due())) return false;
      switch (step(emit)) {
        case Status::More: continue;
        case Status::Done: sink.done(); return true;
        case Status::Drop:
        case Status::Failed: return false;  // cpp-httplib closes the connection
      }
    }
  }
};

// ------------------------------------------------------------------ inference handler

Kind kind_for(const std::string &path) {
  if (path == "/v1/chat/completions") return Kind::Chat;
  if (path == "/v1/completions") return Kind::Completion;
  if (path == "/v1/embeddings") return Kind::Embedding;
  if (path == "/tokenize") return Kind::Tokenize;
  if (path == "/detokenize") return Kind::Detokenize;
  if (path == "/v1/score" || path == "/score") return Kind::Score;
  if (path == "/v1/responses") return Kind::Responses;
  if (path == "/pooling") return Kind::Pooling;
  if (path == "/classify") return Kind::Classify;
  return Kind::Rerank;  // /rerank, /v1/rerank, /v2/rerank
}

void handle_inference(State &st, const httplib::Request &req, httplib::Response &res) {
  const FailMode mode = st.fail_mode();
  if (mode == FailMode::Error500) {
    st.errors.fetch_add(1);
    return set_error(res, 500, "InternalServerError", "Simulated engine failure (fail mode error500).");
  }
  if (mode == FailMode::Error503) {
    st.errors.fetch_add(1);
    return set_error(res, 503, "ServiceUnavailableError", "Simulated overload (fail mode error503).");
  }
  const Kind kind = kind_for(req.path);
  if (mode == FailMode::Hang) {
    if (EventIo *io = current_event_io()) {  // epoll mode: the loop holds it until the client leaves
      io->no_answer = true;
      io->hold = std::make_shared<Flight>(st, kind, "", 0);
      return;
    }
    Flight f(st, kind, "", 0);  // counted in flight, then cancelled when the client leaves
    hang_until_client_leaves(req);
    return set_error(res, 500, "InternalServerError", "hung");
  }
  ParsedRequest pr;
  Error err;
  if (!parse_request(kind, req.body, pr, err)) {
    st.errors.fetch_add(1);
    return set_error(res, err.status, err.type, err.message);
  }
  // LoRA: an unknown adapter is loaded first when auto-load is on (its load time adds to TTFT);
  // a request naming an adapter costs --lora-prefill-ms more prefill.
  double lora_extra_ms = 0;
  if (!st.is_served(pr.model) && st.loras.auto_load(pr.model)) lora_extra_ms += st.opt.lora.load_ms;
  if (!st.is_served(pr.model)) {
    st.errors.fetch_add(1);
    return set_error(res, 404, "NotFoundError", fmt::format("The model `{}` does not exist.", pr.model));
  }
  if (!pr.model.empty() && st.loras.touch(pr.model)) lora_extra_ms += st.opt.lora.prefill_ms;
  if (pr.n > 128) {
    st.errors.fetch_add(1);
    return set_error(res, 400, "BadRequestError", "n must be at most 128 in vllm-sim.");
  }
  const bool generates = kind == Kind::Chat || kind == Kind::Completion || kind == Kind::Responses;
  Plan plan;
  if (generates) {
    plan = plan_output(pr, st.opt.output_tokens);
    const int64_t want = pr.max_tokens >= 0 ? pr.max_tokens : 0;
    if (pr.prompt_tokens + want > st.opt.max_model_len) {
      st.errors.fetch_add(1);
      return set_error(
          res, 400, "BadRequestError",
          fmt::format("This model's maximum context length is {} tokens. However, you requested "
                      "{} tokens ({} in the messages, {} in the completion). Please reduce the "
                      "length of the messages or completion.",
                      st.opt.max_model_len, pr.prompt_tokens + want, pr.prompt_tokens, want));
    }
  }
  // Prefill/decode disaggregation (pd.h): a prefill request gets kv_transfer_params back; a
  // decode request with valid ones skips its prompt's prefill, with forged ones it gets a 400.
  bool kv_prefill = false, kv_transferred = false;
  if (st.kv_role != KvRole::None && (kind == Kind::Chat || kind == Kind::Completion)) {
    KvParams kv;
    std::string why;
    if (parse_kv_params(req.body, kv, why) && kv.present && kv.do_remote_prefill &&
        (st.kv_role == KvRole::Decode || st.kv_role == KvRole::Both)) {
      why = kv_verify(kv, st.opt.kv_secret, pr.prompt_text);
      kv_transferred = why.empty();
      if (kv_transferred) st.kv_transfers.fetch_add(1);
    } else if (why.empty() && kv.present && kv.do_remote_decode &&
               (st.kv_role == KvRole::Prefill || st.kv_role == KvRole::Both)) {
      kv_prefill = !pr.stream;
    }
    if (!why.empty()) {
      st.errors.fetch_add(1);
      return set_error(res, 400, "BadRequestError", why);
    }
  }
  if (mode == FailMode::Drop && !(pr.stream && (kind == Kind::Chat || kind == Kind::Completion))) {
    st.dropped.fetch_add(1);
    if (EventIo *io = current_event_io()) io->drop = true;
    else drop_connection(req);
    res.status = 500;
    return;
  }

  // Pacing.
  const auto t0 = Clock::now();
  double ttft = header_ms(req, "x-sim-ttft-ms", st.opt.ttft_ms) + lora_extra_ms;
  const double itl_ms = header_ms(req, "x-sim-itl-ms", st.opt.itl_ms);
  if (mode == FailMode::Slow) ttft *= 10;
  const bool engine_work = generates && is_engine_kind(kind);
  // Engine model: wait for a batch slot (FIFO) before the prefix cache is consulted.
  bool slot = false;
  if (engine_work && st.opt.batch_queue) {
    if (!st.acquire_slot()) return set_error(res, 503, "ServiceUnavailableError", "shutting down");
    slot = true;
  }
  const auto admitted = Clock::now();
  if (slot) {
    st.queue_us_total.fetch_add(
        std::chrono::duration_cast<std::chrono::microseconds>(admitted - t0).count());
    st.queue_count.fetch_add(1);
  }
  int64_t hits = 0;
  if (engine_work) {
    hits = std::min(st.prefix.lookup_insert(pr.prompt_text), pr.prompt_tokens);
    if (kv_transferred) hits = pr.prompt_tokens;  // the prefill engine's blocks arrived
    st.prefix_queries.fetch_add(pr.prompt_tokens);
    st.prefix_hits.fetch_add(hits);
    if (st.opt.prefix_speedup && pr.prompt_tokens > 0)
      ttft *= 1.0 - static_cast<double>(hits) / static_cast<double>(pr.prompt_tokens);
  }
  auto us = [](double ms) { return std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0)); };
  // TTFT = queueing (above) + waiting for the prefill unit + uncached tokens x prefill cost
  // + the fixed --ttft-ms.
  Clock::time_point prefilled = slot ? admitted : t0;
  if (engine_work && st.opt.prefill_us_per_token > 0 && !kv_transferred) {
    const double cost_us = static_cast<double>(pr.prompt_tokens - hits) * st.opt.prefill_us_per_token;
    prefilled = st.schedule_prefill(admitted, std::chrono::microseconds(static_cast<int64_t>(cost_us)));
  }
  const Clock::time_point first_at = prefilled + us(ttft);

  auto flight = std::make_unique<Flight>(st, kind, pr.model,
                                         pr.prompt_tokens + (generates ? plan.tokens * pr.n : 0));
  flight->holds_slot = slot;

  Ctx ctx;
  ctx.created = static_cast<int64_t>(std::time(nullptr));
  append_json_escaped(ctx.model_json, pr.model.empty() ? st.primary : pr.model);
  const std::string rid = req.get_header_value("X-Request-Id");
  switch (kind) {
    case Kind::Chat: ctx.id = make_id("chatcmpl-", rid); break;
    case Kind::Completion: ctx.id = make_id("cmpl-", rid); break;
    case Kind::Embedding: ctx.id = make_id("embd-", rid); break;
    case Kind::Responses: ctx.id = make_id("resp_", rid); break;
    case Kind::Score: ctx.id = make_id("score-", rid); break;
    case Kind::Rerank: ctx.id = make_id("rerank-", rid); break;
    case Kind::Classify: ctx.id = make_id("classify-", rid); break;
    default: ctx.id = make_id("pool-", rid); break;
  }

  if (pr.stream && (kind == Kind::Chat || kind == Kind::Completion)) {
    auto s = std::make_shared<Stream>();
    s->flight = std::move(flight);
    s->ctx = std::move(ctx);
    s->plan = std::move(plan);
    s->chat = kind == Kind::Chat;
    s->drop = mode == FailMode::Drop;
    s->first = first_at;
    s->itl = us(itl_ms);
    s->next = first_at;
    if (st.opt.prefill_stalls_decode) s->stall = &st.timeline;
    s->req = std::move(pr);
    res.status = 200;
    if (EventIo *io = current_event_io()) io->stream = s;  // epoll mode: the loop drives it
    res.set_chunked_content_provider(
        "text/event-stream; charset=utf-8",
        [s](size_t, httplib::DataSink &sink) { return s->run(sink); });
    return;
  }

  // Non-streamed: wait for the whole generation (epoll mode: the loop delays the answer).
  EventIo *io = current_event_io();
  if (io) {
    if (generates) io->deliver_at = first_at + us(itl_ms) * std::max<int64_t>(plan.tokens - 1, 0);
    else if (is_engine_kind(kind)) io->deliver_at = first_at;
  } else if (generates) {
    auto done_at = first_at + us(itl_ms) * std::max<int64_t>(plan.tokens - 1, 0);
    if (!sleep_until(done_at)) return set_error(res, 503, "ServiceUnavailableError", "shutting down");
  } else if (is_engine_kind(kind)) {
    if (!sleep_until(first_at)) return set_error(res, 503, "ServiceUnavailableError", "shutting down");
  }
  std::string body;
  switch (kind) {
    case Kind::Chat: body = render_chat(ctx, pr, plan); break;
    case Kind::Completion: body = render_completion(ctx, pr, plan); break;
    case Kind::Responses: body = render_responses(ctx, pr, plan); break;
    case Kind::Embedding: body = render_embeddings(ctx, pr); break;
    case Kind::Pooling: body = render_pooling(ctx, pr); break;
    case Kind::Classify: body = render_classify(ctx, pr); break;
    case Kind::Tokenize: body = render_tokenize(pr, st.opt.max_model_len); break;
    case Kind::Detokenize: body = render_detokenize(pr); break;
    case Kind::Score: body = render_score(ctx, pr); break;
    case Kind::Rerank: body = render_rerank(ctx, pr); break;
  }
  if (kv_prefill) {
    st.kv_prefills.fetch_add(1);
    add_member(body, kv_params_member(st.opt.id, kv_block_ids(st.opt.kv_secret, st.opt.id, pr.prompt_text),
                                      st.opt.host, st.bound_port));
  }
  flight->succeed(plan, pr.prompt_tokens, generates ? pr.n : 0);
  set_json(res, 200, std::move(body));
  if (io) io->hold = std::shared_ptr<Flight>(std::move(flight));  // in flight until delivered
}

void handle_transcription(State &st, const httplib::Request &req, httplib::Response &res) {
  const FailMode mode = st.fail_mode();
  if (mode == FailMode::Error500 || mode == FailMode::Error503) {
    st.errors.fetch_add(1);
    int code = mode == FailMode::Error500 ? 500 : 503;
    return set_error(res, code, code == 500 ? "InternalServerError" : "ServiceUnavailableError",
                     "Simulated failure.");
  }
  std::string model = req.has_file("model") ? req.get_file_value("model").content : "";
  if (!st.is_served(model)) {
    st.errors.fetch_add(1);
    return set_error(res, 404, "NotFoundError", fmt::format("The model `{}` does not exist.", model));
  }
  Flight f(st, Kind::Pooling, model, 0);
  std::string body = "{\"text\":\"";
  for (int64_t t = 0; t < st.opt.output_tokens; ++t) body += fmt::format("tok{} ", t);
  body += "\",\"usage\":{\"type\":\"duration\",\"seconds\":1}}";
  f.finished = true;
  set_json(res, 200, std::move(body));
}

// ------------------------------------------------------------------ GET routes

std::string models_json(const State &st) {
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  auto perm = [&]() {
    return fmt::format(
        "[{{\"id\":\"{}\",\"object\":\"model_permission\",\"created\":{},\"allow_create_engine\":false,"
        "\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,"
        "\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\",\"group\":null,"
        "\"is_blocking\":false}}]",
        make_id("modelperm-", ""), created);
  };
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (auto &name : st.opt.served_names) {
    if (!first) out += ',';
    first = false;
    out += fmt::format(
        "{{\"id\":{},\"object\":\"model\",\"created\":{},\"owned_by\":\"vllm\",\"root\":{},"
        "\"parent\":null,\"max_model_len\":{},\"permission\":{}}}",
        json_str(name), created, json_str(st.opt.model), st.opt.max_model_len, perm());
  }
  for (auto &l : st.loras.list()) {
    out += fmt::format(
        ",{{\"id\":{},\"object\":\"model\",\"created\":{},\"owned_by\":\"vllm\",\"root\":{},"
        "\"parent\":{},\"max_model_len\":null,\"permission\":{}}}",
        json_str(l.name), created, json_str(l.path), json_str(st.primary), perm());
  }
  out += "]}";
  return out;
}

std::string prom_num(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v))) return fmt::format("{:.1f}", v);
  return fmt::format("{}", v);
}

std::string metrics_text(State &st) {
  std::string out;
  out.reserve(4096);
  const std::string labels = fmt::format("engine=\"0\",model_name=\"{}\"", st.primary_label);
  auto metric = [&](const char *name, const char *type, const char *help, double v) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help,
                   name, type, name, labels, prom_num(v));
  };
  const int64_t inflight = std::max<int64_t>(0, st.engine_in_flight.load());
  const int64_t running = std::min(inflight, st.opt.max_num_seqs);
  const int64_t waiting = inflight - running + std::max<int64_t>(0, st.queued.load());
  double kv = st.opt.kv_cache_tokens > 0
                  ? static_cast<double>(std::max<int64_t>(0, st.kv_tokens.load())) /
                        static_cast<double>(st.opt.kv_cache_tokens)
                  : 0.0;
  kv = std::min(kv, 1.0);
  metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
         static_cast<double>(running));
  metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
         static_cast<double>(waiting));
  metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", kv);
  metric("vllm:prefix_cache_queries_total", "counter",
         "Prefix cache queries, in terms of number of queried tokens.",
         static_cast<double>(st.prefix_queries.load()));
  metric("vllm:prefix_cache_hits_total", "counter",
         "Prefix cache hits, in terms of number of cached tokens.",
         static_cast<double>(st.prefix_hits.load()));
  {  // A histogram with the +Inf bucket only: the sum and count are what the bench reads.
    const double n = static_cast<double>(st.queue_count.load());
    fmt::format_to(std::back_inserter(out),
                   "# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.\n"
                   "# TYPE vllm:request_queue_time_seconds histogram\n"
                   "vllm:request_queue_time_seconds_bucket{{{},le=\"+Inf\"}} {}\n"
                   "vllm:request_queue_time_seconds_sum{{{}}} {}\n"
                   "vllm:request_queue_time_seconds_count{{{}}} {}\n",
                   labels, prom_num(n), labels,
                   prom_num(static_cast<double>(st.queue_us_total.load()) / 1e6), labels, prom_num(n));
  }
  metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 0);
  metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
         static_cast<double>(st.prompt_tokens_total.load()));
  metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
         static_cast<double>(st.generation_tokens_total.load()));
  fmt::format_to(std::back_inserter(out),
                 "# HELP vllm:request_success_total Count of successfully processed requests.\n"
                 "# TYPE vllm:request_success_total counter\n");
  const std::pair<const char *, int64_t> reasons[] = {
      {"stop", st.success_stop.load()}, {"length", st.success_length.load()}, {"abort", 0}};
  for (auto &[reason, v] : reasons)
    fmt::format_to(std::back_inserter(out),
                   "vllm:request_success_total{{engine=\"0\",finished_reason=\"{}\",model_name=\"{}\"}} {}\n",
                   reason, st.primary_label, prom_num(static_cast<double>(v)));
  out += st.loras.gauge_text();
  return out;
}

std::string stats_json(State &st) {
  std::string out = "{\"id\":";
  out += json_str(st.opt.id);
  fmt::format_to(std::back_inserter(out),
                 ",\"requests\":{},\"completed\":{},\"cancelled\":{},\"errors\":{},\"dropped\":{},"
                 "\"in_flight\":{},\"fail_mode\":\"{}\"",
                 st.requests.load(), st.completed.load(), st.cancelled.load(), st.errors.load(),
                 st.dropped.load(), st.in_flight.load(), fail_mode_name(st.fail_mode()));
  if (st.kv_role != KvRole::None) {
    fmt::format_to(std::back_inserter(out), ",\"kv_prefills\":{},\"kv_transfers\":{}", st.kv_prefills.load(),
                   st.kv_transfers.load());
  }
  std::lock_guard<std::mutex> lk(st.last_mu);
  out += ",\"last_path\":";
  out += st.last_path.empty() ? "null" : json_str(st.last_path);
  fmt::format_to(std::back_inserter(out), ",\"last_body_bytes\":{},\"last_body_fnv1a64\":\"{:016x}\"",
                 st.last_body.size(), fnv1a64(st.last_body));
  out += ",\"last_headers\":{";
  std::vector<std::pair<std::string, std::string>> hs;
  for (std::size_t i = 0; i < st.last_header_count; ++i) {
    const auto &[k, v] = st.last_headers[i];
    std::string name = lower(k);
    auto it = std::find_if(hs.begin(), hs.end(), [&](auto &p) { return p.first == name; });
    if (it != hs.end()) it->second += ", " + v;  // duplicates are joined, so tests can see them
    else hs.emplace_back(std::move(name), v);
  }
  bool first = true;
  for (auto &[k, v] : hs) {
    if (!first) out += ',';
    first = false;
    out += json_str(k);
    out += ':';
    out += json_str(v);
  }
  out += "}}";
  return out;
}

void record_request(State &st, const httplib::Request &req) {
  st.requests.fetch_add(1);
  std::lock_guard<std::mutex> lk(st.last_mu);
  st.last_path = req.path;
  st.last_body.assign(req.body);
  std::size_t n = 0;
  for (auto &[k, v] : req.headers) {
    if (k == "REMOTE_ADDR" || k == "REMOTE_PORT" || k == "LOCAL_ADDR" || k == "LOCAL_PORT") continue;
    if (n == st.last_headers.size()) st.last_headers.emplace_back();
    st.last_headers[n].first.assign(k);
    st.last_headers[n].second.assign(v);
    ++n;
  }
  st.last_header_count = n;
}

bool authorized(const State &st, const httplib::Request &req) {
  if (st.opt.api_key.empty()) return true;
  return req.get_header_value("Authorization") == "Bearer " + st.opt.api_key;
}

// httplib::Server, or httplib::SSLServer for --tls-cert/--tls-key (HTTPS; Debian's cpp-httplib is
// built with OpenSSL).
template <class Base>
class SimServer : public Base {
public:
  using Base::Base;
  // cpp-httplib listens with a backlog of 5; Linux lets us call listen() again to widen it.
  void widen_backlog(int backlog) {
    int fd = this->svr_sock_.load();
    if (fd >= 0) ::listen(fd, backlog);
  }
};

template <class Svr>
int serve_threads(Svr &svr, State &S, Routes &R, const sigset_t &sigs, const char *scheme);

}  // namespace

int run_server(const Options &opt_in) {
  auto st = std::make_unique<State>();
  st->opt = opt_in;
  if (st->opt.served_names.empty()) st->opt.served_names.push_back(st->opt.model);
  st->primary = st->opt.served_names.front();
  st->primary_label = prom_escape(st->primary);
  if (!parse_kv_role(st->opt.kv_role, st->kv_role)) {
    std::fprintf(stderr, "vllm-sim: unknown --kv-role '%s' (none|prefill|decode|both)\n", st->opt.kv_role.c_str());
    return 2;
  }
  FailMode fm;
  if (!parse_fail_mode(st->opt.fail, fm)) {
    std::fprintf(stderr, "vllm-sim: unknown --fail mode '%s'\n", st->opt.fail.c_str());
    return 2;
  }
  st->fail.store(static_cast<int>(fm));
  State &S = *st;
  {
    std::vector<LoraRegistry::Adapter> statics;
    for (auto &l : S.opt.loras) statics.push_back({l.name, l.path});
    S.loras.init(S.opt.lora, statics);
  }
  S.prefix.set_capacity(static_cast<size_t>(
      S.opt.kv_cache_blocks >= 0 ? S.opt.kv_cache_blocks : S.opt.kv_cache_tokens / 16));

  // Many concurrent streams need many descriptors: raise the soft limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  // Signals: handled by a dedicated thread; blocked everywhere else.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  // The route table, shared by both front ends.
  Routes R;
  R.pre = [](httplib::Request &req, httplib::Response &res) {
    // Never compress (SSE would be buffered by the compressor).
    req.headers.erase("Accept-Encoding");
    if (req.has_header("X-Request-Id")) res.set_header("X-Request-Id", req.get_header_value("X-Request-Id"));
  };
  R.on_exception = [](httplib::Response &res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception &e) {
      msg = e.what();
    } catch (...) {
    }
    set_error(res, 500, "InternalServerError", msg);
  };
  R.not_found_body = "{\"detail\":\"Not Found\"}";
  R.not_found_type = "application/json";
  auto route = [&R](const char *method, const char *path, Handler fn) {
    R.routes.push_back(Route{method, path, std::move(fn)});
  };
  // Wraps a POST handler: stats + --api-key for /v1/*.
  auto post = [&](const char *path, auto fn) {
    route("POST", path, [&S, fn](const httplib::Request &req, httplib::Response &res) {
      record_request(S, req);
      if (req.path.rfind("/v1/", 0) == 0 && !authorized(S, req)) {
        S.errors.fetch_add(1);
        return set_error(res, 401, "Unauthorized", "Unauthorized");
      }
      fn(S, req, res);
    });
  };
  for (const char *p : {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize",
                        "/detokenize", "/v1/score", "/score", "/v1/rerank", "/rerank", "/v2/rerank",
                        "/v1/responses", "/pooling", "/classify"})
    post(p, handle_inference);
  post("/v1/audio/transcriptions", handle_transcription);
  if (S.opt.lora.runtime) {  // vLLM registers these only with VLLM_ALLOW_RUNTIME_LORA_UPDATING
    auto lora_answer = [](httplib::Response &res, const LoraRegistry::Answer &a) {
      res.status = a.status;
      res.set_content(a.body, a.json ? "application/json" : "text/plain; charset=utf-8");
    };
    post("/v1/load_lora_adapter", [lora_answer](State &s, const httplib::Request &req, httplib::Response &res) {
      lora_answer(res, s.loras.load(req.body));
    });
    post("/v1/unload_lora_adapter", [lora_answer](State &s, const httplib::Request &req, httplib::Response &res) {
      lora_answer(res, s.loras.unload(req.body));
    });
  }

  route("GET", "/v1/models", [&S](const httplib::Request &req, httplib::Response &res) {
    if (!authorized(S, req)) return set_error(res, 401, "Unauthorized", "Unauthorized");
    set_json(res, 200, models_json(S));
  });
  auto health = [](const httplib::Request &, httplib::Response &res) { res.status = 200; };
  route("GET", "/health", health);
  route("GET", "/ping", health);
  route("POST", "/ping", health);
  route("GET", "/version", [](const httplib::Request &, httplib::Response &res) {
    set_json(res, 200, "{\"version\":\"sim\"}");
  });
  route("GET", "/metrics", [&S](const httplib::Request &, httplib::Response &res) {
    res.set_content(metrics_text(S), "text/plain; version=0.0.4; charset=utf-8");
  });

  // Test introspection (not part of vLLM).
  route("GET", "/sim/stats", [&S](const httplib::Request &, httplib::Response &res) {
    set_json(res, 200, stats_json(S));
  });
  route("GET", "/sim/lora", [&S](const httplib::Request &, httplib::Response &res) {
    set_json(res, 200, S.loras.stats_json());
  });
  route("POST", "/sim/reset", [&S](const httplib::Request &, httplib::Response &res) {
    S.loras.reset_counters();
    for (auto *c : {&S.requests, &S.completed, &S.cancelled, &S.errors, &S.dropped,
                    &S.prompt_tokens_total, &S.generation_tokens_total, &S.success_stop,
                    &S.success_length, &S.prefix_queries, &S.prefix_hits, &S.queue_us_total,
                    &S.queue_count})
      c->store(0);
    {
      std::lock_guard<std::mutex> lk(S.last_mu);
      S.last_path.clear();
      S.last_body.clear();
      S.last_header_count = 0;
    }
    S.prefix.clear();
    set_json(res, 200, "{\"ok\":true}");
  });
  route("GET", "/sim/fail", [&S](const httplib::Request &, httplib::Response &res) {
    set_json(res, 200, fmt::format("{{\"mode\":\"{}\"}}", fail_mode_name(S.fail_mode())));
  });
  route("POST", "/sim/fail", [&S](const httplib::Request &req, httplib::Response &res) {
    // Body {"mode":"..."}; a tiny scan is enough here.
    auto k = req.body.find("\"mode\"");
    FailMode m;
    if (k != std::string::npos) {
      auto a = req.body.find('"', req.body.find(':', k) + 1);
      auto b = a == std::string::npos ? a : req.body.find('"', a + 1);
      if (b != std::string::npos && parse_fail_mode(req.body.substr(a + 1, b - a - 1), m)) {
        S.fail.store(static_cast<int>(m));
        return set_json(res, 200, fmt::format("{{\"mode\":\"{}\"}}", fail_mode_name(m)));
      }
    }
    set_error(res, 400, "BadRequestError",
              "expected {\"mode\": \"none|error500|error503|drop|slow|hang\"}");
  });

  if (S.opt.io == "epoll") {
    EventFrontConfig cfg;
    cfg.host = S.opt.host;
    cfg.port = S.opt.port;
    cfg.backlog = S.opt.backlog;
    cfg.workers = std::max(4, std::min(S.opt.threads, 64));
    cfg.stopping = &g_stopping;
    cfg.on_listening = [&S](int port) {
      if (S.opt.id.empty()) S.opt.id = fmt::format("sim-{}", port);
      S.bound_port = port;
      std::printf("vllm-sim listening on http://%s:%d\n", S.opt.host.c_str(), port);
      std::fflush(stdout);
      return httplib::Headers{{"x-sim-id", S.opt.id}};
    };
    return run_event_front(cfg, R);
  }

  if (!S.opt.tls_cert.empty()) {
    SimServer<httplib::SSLServer> svr(S.opt.tls_cert.c_str(), S.opt.tls_key.c_str());
    if (!svr.is_valid()) {
      std::fprintf(stderr, "vllm-sim: cannot load --tls-cert %s / --tls-key %s\n", S.opt.tls_cert.c_str(),
                   S.opt.tls_key.c_str());
      return 1;
    }
    return serve_threads(svr, S, R, sigs, "https");
  }
  SimServer<httplib::Server> svr;
  return serve_threads(svr, S, R, sigs, "http");
}

namespace {

template <class Svr>
int serve_threads(Svr &svr, State &S, Routes &R, const sigset_t &sigs, const char *scheme) {
  const size_t max_threads = static_cast<size_t>(std::max(1, S.opt.threads));
  svr.new_task_queue = [max_threads] { return new GrowingPool(max_threads); };
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(10000);
  svr.set_keep_alive_timeout(30);

  svr.set_pre_routing_handler([&R](const httplib::Request &req, httplib::Response &res) {
    R.pre(const_cast<httplib::Request &>(req), res);  // the Request is not const
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_error_handler(httplib::Server::HandlerWithResponse([&R](const httplib::Request &, httplib::Response &res) {
    if (!res.body.empty() || res.status != 404) return httplib::Server::HandlerResponse::Unhandled;
    res.set_content(R.not_found_body, R.not_found_type.c_str());
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([&R](const httplib::Request &, httplib::Response &res, std::exception_ptr ep) {
    R.on_exception(res, ep);
  });
  for (auto &r : R.routes) {
    if (r.method == "POST") svr.Post(r.path, r.fn);
    else svr.Get(r.path, r.fn);
  }

  int port = S.opt.port;
  if (port == 0) {
    port = svr.bind_to_any_port(S.opt.host);
    if (port < 0) port = 0;
  } else if (!svr.bind_to_port(S.opt.host, port)) {
    port = 0;
  }
  if (port <= 0) {
    std::fprintf(stderr, "vllm-sim: cannot bind %s:%d\n", S.opt.host.c_str(), S.opt.port);
    return 1;
  }
  svr.widen_backlog(S.opt.backlog);
  if (S.opt.id.empty()) S.opt.id = fmt::format("sim-{}", port);
  S.bound_port = port;
  svr.set_default_headers({{"x-sim-id", S.opt.id}});

  std::atomic<bool> done{false};
  std::thread sig_thread([&] {
    int signo = 0;
    sigwait(&sigs, &signo);
    g_stopping.store(true);
    while (!done.load()) {
      svr.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });

  std::printf("vllm-sim listening on %s://%s:%d\n", scheme, S.opt.host.c_str(), port);
  std::fflush(stdout);
  bool ok = svr.listen_after_bind();
  done.store(true);
  if (!g_stopping.load()) pthread_kill(sig_thread.native_handle(), SIGTERM);
  sig_thread.join();
  return (ok || g_stopping.load()) ? 0 : 1;
}

}  // namespace

}  // namespace vsim
