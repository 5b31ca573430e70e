// Exchange: the rules of one proxied request, driven by events (no I/O here).
#include "vllm_router/exchange.h"

#include <algorithm>

#include "exchange_state.h"

VLLM_ROUTER_BEGIN_NAMESPACE
namespace {

using Phase = Exchange::State::Phase;
using Step = detail::ResponseReader::Step;
using detail::PdLeg;

constexpr std::chrono::milliseconds kDefaultClientStall{60000};

OutcomeKind outcome_of(Errc code) {
  switch (code) {
    case Errc::connect_failed: return OutcomeKind::connect_failure;
    case Errc::timeout: return OutcomeKind::timeout;
    case Errc::upstream_closed: return OutcomeKind::upstream_closed;
    case Errc::cancelled: return OutcomeKind::cancelled;
    default: return OutcomeKind::error;
  }
}

ExchangeEnd end_of(Errc code) {
  switch (code) {
    case Errc::timeout: return ExchangeEnd::timeout;
    case Errc::cancelled: return ExchangeEnd::cancelled;
    case Errc::connect_failed:
    case Errc::upstream_closed:
    case Errc::upstream_protocol: return ExchangeEnd::upstream_error;
    default: return ExchangeEnd::rejected;
  }
}

std::chrono::milliseconds ms(std::uint32_t v) { return std::chrono::milliseconds(v); }

// The rules, as free functions over the state (the public methods are thin entry points).
struct Rules {
  Exchange::State& s;
  using TimePoint = Exchange::TimePoint;

  const RouterConfig& cfg() const { return *s.config; }
  ExchangeHost& host() { return s.host; }

  void arm(std::chrono::milliseconds d, TimePoint now) { s.phase_deadline = d.count() == 0 ? TimePoint::max() : now + d; }

  void report(ExchangeEnd end, int status, TimePoint now, std::string_view error) {
    if (s.counted) {
      s.impl.active_exchanges.fetch_sub(1, std::memory_order_relaxed);
      s.counted = false;
    }
    if (s.retry_held) {
      s.impl.release_retry();
      s.retry_held = false;
    }
    if (s.in_admission) {
      s.impl.hooks->admission.leave();
      s.in_admission = false;
    }
    s.phase = Phase::done;
    ExchangeSummary sum;
    sum.request_id = s.request.request_id;
    sum.client_address = s.request.client_address;
    sum.path = s.request.target.substr(0, s.request.target.find('?'));
    sum.requested_model = s.view != nullptr ? std::string_view(s.view->model) : std::string_view{};
    sum.model = s.model;
    sum.endpoint = s.last_endpoint.get();
    sum.end = end;
    sum.status = status;
    sum.attempts = s.attempts;
    sum.queue_wait = s.queue_wait;
    if (s.responded) sum.ttfb = s.responded_at - s.started;
    sum.duration = now - s.started;
    if (s.bytes != 0) sum.ttft = s.first_body_at - s.started;
    sum.bytes = s.bytes;
    sum.bytes_in = s.request.body.size();
    sum.stream = s.event_stream;
    sum.error = error;
    if (s.request.key != nullptr) sum.key_id = s.request.key->id;
    s.final_usage = s.usage.result(s.event_stream, s.request.body.size());
    sum.usage = s.final_usage;
    sum.method = s.request.method;
    if (s.pd_on) {
      sum.prefill_endpoint = s.pd->prefill_endpoint.get();
      sum.prefill = s.pd->leg == PdLeg::prefill ? now - s.pd->started : s.pd->prefill_time;
      sum.colocated_fallback = s.pd->fell_back;
    }
    if (s.trace.on) s.trace_summary(sum, now, error);
    detail::notify_observer(s.impl.observer(), [&](Observer& o) { o.on_exchange(sum); });
  }

  void complete_lease(OutcomeKind kind, int status, TimePoint now, std::string_view error = {}) {
    if (!s.route) return;
    if (s.trace.sampled) s.trace_attempt_end(kind, status, now, error);
    Outcome o;
    o.kind = kind;
    o.status = status;
    o.bytes = s.bytes;
    o.latency = now - s.attempt_started;
    if (s.reader.head_done()) o.ttfb = (s.responded ? s.responded_at : now) - s.attempt_started;
    s.route->lease.complete(o);
  }

  void drop_connection() {
    if (!s.has_connection) return;
    s.has_connection = false;
    host().release(false);
  }

  // No answer reached the client: it gets `e`.
  void fail(const Error& e, TimePoint now) {
    drop_connection();
    report(end_of(e.code), http_status(e.code), now, e.message);
    host().on_error(e);
  }

  bool take_retry() {
    if (!s.retry_held) s.retry_held = s.impl.try_acquire_retry(cfg().retry);
    return s.retry_held;
  }

  bool others_left() const {
    return s.route && s.route->pool->endpoints.size() > s.tried.size() + 1;
  }

  // Routes (again) and starts an attempt, or waits, or answers with an error.
  void attempt(TimePoint now) {
    if (s.trace.sampled) s.trace_routing(now);
    std::vector<std::string_view> exclude(s.tried.begin(), s.tried.end());
    const bool prefill = s.pd_on && s.pd->leg == PdLeg::prefill;
    auto route = prefill ? s.impl.route_prefill(*s.view, exclude) : s.router.route(*s.view, exclude);
    if (!route && route.code() == Errc::overloaded) {
      if (route.error().param == "lora") s.wait_reason = route.error().message;
      if (s.phase == Phase::waiting) return;  // still full: keep the place and the deadline
      if (cfg().queue_max > 0 && s.impl.hooks->admission.enter(cfg().queue_max)) {
        s.in_admission = true;
        s.phase = Phase::waiting;
        s.wait_started = now;
        arm(ms(cfg().queue_timeout_ms), now);
        host().on_wait();
        return;
      }
      return fail(Error{Errc::rate_limited,
                        "too many requests are waiting for model `" + s.view->model + "`; retry later", "model"},
                  now);
    }
    if (s.phase == Phase::waiting) {
      s.queue_wait += now - s.wait_started;
      s.impl.hooks->admission.leave();
      s.in_admission = false;
    }
    if (!route) {
      Error e = route.error();
      if (prefill) return prefill_unavailable(std::move(e), now);
      if (s.attempts > 0 && e.code == Errc::no_endpoint) {
        e = s.last_error;  // every replica was tried: say what went wrong on the last one
        if (e.code == Errc::connect_failed || e.code == Errc::timeout) {
          e.message = "no replica of model `" + s.model + "` could be reached: " + e.message;
        }
      }
      return fail(e, now);
    }
    ++s.attempts;
    s.route.emplace(std::move(route.value()));
    s.last_endpoint = s.route->lease.endpoint_ptr();
    s.model = s.route->lease.model();
    if (prefill) s.pd->prefill_endpoint = s.last_endpoint;
    if (s.route->resolution.rewrite && s.view->has_model && s.rewritten.empty()) {
      s.rewritten = rewrite_model(s.request.body, *s.view, s.route->resolution.upstream);
      s.body = s.rewritten;
    }
    s.attempt_started = now;
    s.fresh = false;
    if (s.trace.on) s.trace_routed(now);
    s.build_upstream_head();
    connect(now);
  }

  void connect(TimePoint now) {
    s.phase = Phase::connecting;
    s.reader.reset();
    arm(ms(cfg().timeouts.connect_ms), now);
    Error e;
    const auto c = host().connect(s.route->lease.endpoint(), s.fresh, e);
    switch (c) {
      case ExchangeHost::Connect::pooled:
      case ExchangeHost::Connect::connected:
        s.has_connection = true;
        s.pooled = c == ExchangeHost::Connect::pooled;
        return send(now);
      case ExchangeHost::Connect::pending:
        s.has_connection = true;
        s.pooled = false;
        return;
      case ExchangeHost::Connect::failed:
        if (e.message.empty()) e = Error{Errc::connect_failed, "cannot connect", ""};
        return attempt_failed(e, now);
    }
  }

  void send(TimePoint now) {
    s.phase = Phase::sending;
    arm(ms(cfg().timeouts.write_ms), now);
    Error e;
    switch (host().send(s.upstream_head, s.body, e)) {
      case ExchangeHost::Send::done: return sent(now);
      case ExchangeHost::Send::pending: return;
      case ExchangeHost::Send::failed:
        if (e.message.empty()) e = Error{Errc::upstream_closed, "writing to the upstream failed", ""};
        return connection_failed(e, now);
    }
  }

  void sent(TimePoint now) {
    s.phase = Phase::awaiting;
    arm(ms(cfg().timeouts.first_byte()), now);
  }

  // The connection broke or closed before the answer's end.
  void connection_failed(const Error& e, TimePoint now) {
    if (s.pooled && !s.reader.any_bytes() && s.phase <= Phase::awaiting) {
      // A kept-alive connection the upstream had closed while idle: it never saw the request.
      // Once, on a fresh connection to the same endpoint.
      drop_connection();
      s.pooled = false;
      s.fresh = true;
      return connect(now);
    }
    attempt_failed(e, now);
  }

  // The current attempt failed with `e`.
  void attempt_failed(Error e, TimePoint now) {
    drop_connection();
    if (s.responded) return broken_answer(e, now);
    if (s.pd_on && s.pd->leg == PdLeg::prefill) return prefill_failed(std::move(e), OutcomeKind::success, 0, now);
    const Endpoint& ep = s.route->lease.endpoint();
    complete_lease(outcome_of(e.code), 0, now, e.message);
    s.tried.push_back(ep.id);
    const bool total_left = now < s.total_deadline;
    const bool connect_phase = s.phase == Phase::connecting;
    const RetryConfig& rc = cfg().retry;
    std::optional<RetryReason> reason;
    if (total_left && s.attempts - s.leg_base < std::max<unsigned>(1, cfg().max_attempts)) {
      if (connect_phase && e.code == Errc::connect_failed) {
        reason = RetryReason::connect_failure;  // nothing was sent: always safe
      } else if (connect_phase && e.code == Errc::timeout) {
        reason = RetryReason::connect_timeout;
      } else if (e.code == Errc::timeout && rc.on_first_byte_timeout && take_retry()) {
        reason = RetryReason::first_byte_timeout;
      } else if ((e.code == Errc::upstream_closed || e.code == Errc::connect_failed) && rc.on_reset && take_retry()) {
        reason = RetryReason::reset;
      }
    }
    if (!reason) {
      if (e.code == Errc::connect_failed || (connect_phase && e.code == Errc::timeout)) {
        e.message = "no replica of model `" + s.model + "` could be reached: " + e.message;
      }
      return fail(e, now);
    }
    const std::string model = s.model;
    s.trace_retry(*reason);
    detail::notify_observer(s.impl.observer(), [&](Observer& o) { o.on_retry(model, ep, *reason, s.attempts); });
    s.last_error = std::move(e);
    s.route.reset();
    attempt(now);
  }

  // ---- prefill/decode disaggregation (docs/disaggregation.md) ----

  // A prefill attempt failed before the decode leg began: another prefill endpoint when one is
  // left (as a retry of any attempt), else the fallback.
  void prefill_failed(Error e, OutcomeKind kind, int status, TimePoint now) {
    drop_connection();
    s.pd->reading = false;
    const Endpoint& ep = s.route->lease.endpoint();
    complete_lease(status == 0 ? outcome_of(e.code) : kind, status, now, e.message);
    s.tried.push_back(ep.id);
    const bool connect_phase = s.phase == Phase::connecting;
    const bool safe = connect_phase && (e.code == Errc::connect_failed || e.code == Errc::timeout);
    if (now < s.total_deadline && s.attempts - s.leg_base < std::max<unsigned>(1, cfg().max_attempts) &&
        s.route->pool->endpoints.size() > s.tried.size() && (safe || take_retry())) {
      const RetryReason reason = connect_phase ? (e.code == Errc::timeout ? RetryReason::connect_timeout
                                                                          : RetryReason::connect_failure)
                                 : status == 503             ? RetryReason::status_503
                                 : e.code == Errc::timeout   ? RetryReason::first_byte_timeout
                                                             : RetryReason::reset;
      s.trace_retry(reason);
      detail::notify_observer(s.impl.observer(), [&](Observer& o) { o.on_retry(s.model, ep, reason, s.attempts); });
      s.last_error = std::move(e);
      s.route.reset();
      return attempt(now);
    }
    s.last_error = e;
    s.route.reset();
    prefill_unavailable(std::move(e), now);
  }

  // No prefill endpoint is left for the request: a decode endpoint runs all of it (colocated),
  // or the client gets 503 when the model's fallback is off.
  void prefill_unavailable(Error e, TimePoint now) {
    if (s.attempts > s.leg_base && e.code == Errc::no_endpoint) e = s.last_error;
    s.pd->prefill_time = now - s.pd->started;
    if (!s.pd->fallback_allowed || now >= s.total_deadline) {
      return fail(Error{Errc::no_endpoint, "no prefill endpoint could take the request: " + e.message, "model"}, now);
    }
    s.pd->fell_back = true;
    next_leg(PdLeg::colocated, s.rewritten.empty() ? s.request.body : std::string_view(s.rewritten), now);
  }

  // The prefill answer is in: its kv_transfer_params go to the decode leg.
  void prefill_done(TimePoint now) {
    s.pd->reading = false;
    const bool reusable = s.reader.reusable() && !s.paused;
    s.has_connection = false;
    host().release(reusable);
    auto params = detail::pd_transfer_params(s.pd->answer);
    if (!params) return prefill_failed(std::move(params).error(), OutcomeKind::error, 200, now);
    const std::string_view client_body = s.rewritten.empty() ? s.request.body : std::string_view(s.rewritten);
    if (auto r = detail::pd_decode_body(client_body, params.value(), s.pd->decode_body); !r) {
      return prefill_failed(r.error(), OutcomeKind::error, 200, now);
    }
    complete_lease(OutcomeKind::success, 200, now);
    s.pd->prefill_time = now - s.pd->started;
    s.route.reset();
    next_leg(PdLeg::decode, s.pd->decode_body, now);
  }

  void next_leg(PdLeg leg, std::string_view body, TimePoint now) {
    s.pd->leg = leg;
    s.body = body;
    s.leg_base = s.attempts;
    s.tried.clear();
    s.route.reset();
    s.last_error = Error{};
    attempt(now);
  }

  // The answer started and cannot be completed: report in band the way vLLM does when the
  // client speaks SSE and the body is at an event boundary; otherwise cut it so the client
  // cannot mistake a truncated body for a complete one.
  void broken_answer(const Error& e, TimePoint now) {
    const int status = s.reader.head().status;
    complete_lease(outcome_of(e.code), status, now, e.message);
    const bool event_stream = s.reader.head_done() && !s.reader.length_known() && s.event_stream;
    report(end_of(e.code), status, now, e.message);
    if (event_stream && s.reader.at_boundary() && s.request.in_band_errors) {
      const std::string event = "data: " + to_openai_json(e) + "\n\ndata: [DONE]\n\n";
      if (host().on_body(event)) return host().on_end();
    }
    host().on_abort(e);
  }

  void finished(TimePoint now) {
    if (s.pd_on && s.pd->reading) return prefill_done(now);
    const bool reusable = s.reader.reusable() && !s.paused;
    s.has_connection = false;
    host().release(reusable);
    const int status = s.reader.head().status;
    complete_lease(OutcomeKind::success, status, now);
    report(ExchangeEnd::ok, status, now, {});
    host().on_end();
  }

  void client_gone(TimePoint now) {
    drop_connection();
    complete_lease(OutcomeKind::cancelled, s.responded ? s.reader.head().status : 0, now, "the client went away");
    report(ExchangeEnd::cancelled, s.responded ? s.reader.head().status : 499, now, "the client went away");
  }

  void data(std::string_view bytes, TimePoint now) {
    if (s.phase == Phase::sending) sent(now);  // it answered before we saw the write finish
    for (;;) {
      std::string_view payload;
      switch (s.reader.next(bytes, payload)) {
        case Step::need_more:
          if (s.phase == Phase::relaying && !s.paused) arm(ms(cfg().timeouts.idle()), now);
          return;
        case Step::error:
          return attempt_failed(Error{Errc::upstream_protocol, s.reader.error(), ""}, now);
        case Step::head:
          if (s.pd_on && s.pd->leg == PdLeg::prefill) {
            const int status = s.reader.head().status;
            if (status == 200) {  // read whole, never relayed
              s.pd->reading = true;
              s.pd->answer.clear();
              s.phase = Phase::relaying;
              arm(ms(cfg().timeouts.idle()), now);
              break;
            }
            if (status >= 500) {
              return prefill_failed(Error{Errc::upstream_protocol, "the prefill endpoint answered " + std::to_string(status), ""},
                                    OutcomeKind::success, status, now);
            }
            // Any other status is vLLM's verdict on the request itself (400: a bad parameter):
            // the client's answer, relayed as it came.
            s.pd->prefill_time = now - s.pd->started;
            s.pd->leg = PdLeg::decode;
          }
          if (s.reader.head().status == 503 && cfg().retry.on_503 && others_left() &&
              s.attempts - s.leg_base < std::max<unsigned>(1, cfg().max_attempts) && now < s.total_deadline && take_retry()) {
            // vLLM overloaded or stopping: another replica may answer. Its 503 body is not needed.
            const Endpoint& ep = s.route->lease.endpoint();
            drop_connection();
            complete_lease(OutcomeKind::success, 503, now, "the replica answered 503");
            s.trace_retry(RetryReason::status_503);
            s.tried.push_back(ep.id);
            detail::notify_observer(s.impl.observer(), [&](Observer& o) {
              o.on_retry(s.model, ep, RetryReason::status_503, s.attempts);
            });
            s.last_error = Error{Errc::no_endpoint, "every replica of model `" + s.model + "` answered 503", "model"};
            s.route.reset();
            return attempt(now);
          }
          s.phase = Phase::relaying;
          s.responded_at = now;
          arm(ms(cfg().timeouts.idle()), now);
          if (!s.send_head()) return client_gone(now);
          s.usage.begin(s.event_stream, s.reader.length_known() ? s.reader.head().content_length : 0);
          // A stream may run for minutes: the upstream head's memory is not needed again.
          if (s.event_stream) s.reader.release_head();
          break;
        case Step::body:
          if (payload.empty()) break;
          if (s.pd_on && s.pd->reading) {
            if (s.pd->answer.size() + payload.size() > detail::kMaxPrefillAnswer) {
              return attempt_failed(Error{Errc::upstream_protocol, "the prefill answer is too large", ""}, now);
            }
            s.pd->answer.append(payload);
            break;
          }
          if (s.bytes == 0) {
            s.first_body_at = now;
          } else if (s.event_stream) {
            // The time between tokens as the client sees it: one virtual call per chunk.
            detail::notify_observer(s.impl.observer(), [&](Observer& o) {
              o.on_stream_gap(s.model, s.route->lease.endpoint(), now - s.last_body_at);
            });
          }
          s.last_body_at = now;
          s.bytes += payload.size();
          s.usage.feed(payload);
          if (!host().on_body(payload)) return client_gone(now);
          if (s.phase == Phase::done) return;
          break;
        case Step::end:
          return finished(now);
      }
    }
  }
};

}  // namespace

Exchange::Exchange(Router& router, ExchangeHost& host) : s_(std::make_unique<State>(router, host)) {}

Exchange::~Exchange() {
  if (s_->phase != State::Phase::idle && s_->phase != State::Phase::done) {
    cancel(std::chrono::steady_clock::now());
  }
}

void Exchange::start(const ClientRequest& request, TimePoint now) {
  State& s = *s_;
  Rules r{s};
  s.request = request;
  s.started = now;
  const std::shared_ptr<const Snapshot> snap = s.router.snapshot();
  s.config = snap->config;
  s.body = request.body;
  s.impl.active_exchanges.fetch_add(1, std::memory_order_relaxed);
  s.counted = true;
  s.phase = Phase::connecting;  // not idle: an early failure reports once
  const RouterConfig& cfg = *s.config;
  s.total_deadline = TimePoint::max();
  std::chrono::milliseconds limit = ms(cfg.timeouts.total_ms);
  if (request.timeout.count() > 0 && (limit.count() == 0 || request.timeout < limit)) limit = request.timeout;
  if (limit.count() > 0) s.total_deadline = now + limit;
  if (s.impl.options.tracing.enabled) s.start_trace();
  if (auto e = s.check_target()) return r.fail(*e, now);
  if (auto e = s.check_headers()) return r.fail(*e, now);
  if (auto e = s.parse_body()) return r.fail(*e, now);
  if (auto e = s.check_scope()) return r.fail(*e, now);
  if (snap->disaggregated) {
    if (auto e = s.pd_begin(*snap)) return r.fail(*e, now);
    if (s.pd_on) s.pd->started = now;
  }
  r.attempt(now);
}

void Exchange::on_connected(TimePoint now) {
  if (s_->phase == Phase::connecting) Rules{*s_}.send(now);
}

void Exchange::on_connect_failed(const Error& error, TimePoint now) {
  if (s_->phase == Phase::connecting) Rules{*s_}.attempt_failed(error, now);
}

void Exchange::on_sent(TimePoint now) {
  if (s_->phase == Phase::sending) Rules{*s_}.sent(now);
}

void Exchange::on_upstream_data(std::string_view data, TimePoint now) {
  const Phase p = s_->phase;
  if (p == Phase::sending || p == Phase::awaiting || p == Phase::relaying) Rules{*s_}.data(data, now);
}

void Exchange::on_upstream_eof(TimePoint now) {
  State& s = *s_;
  if (s.phase != Phase::sending && s.phase != Phase::awaiting && s.phase != Phase::relaying) return;
  Rules r{s};
  if (s.reader.head_done() && s.reader.eof() == Step::end) return r.finished(now);
  r.connection_failed(Error{Errc::upstream_closed, s.reader.head_done() ? "upstream closed the connection mid-answer"
                                                                        : "upstream closed the connection",
                            ""},
                      now);
}

void Exchange::on_upstream_error(const Error& error, TimePoint now) {
  State& s = *s_;
  if (s.phase == Phase::connecting) return Rules{s}.attempt_failed(error, now);
  if (s.phase != Phase::sending && s.phase != Phase::awaiting && s.phase != Phase::relaying) return;
  Rules{s}.connection_failed(error, now);
}

void Exchange::on_client_paused(TimePoint now) {
  State& s = *s_;
  if (s.phase == Phase::done || s.paused) return;
  s.paused = true;
  const auto stall = s.request.client_stall.count() > 0 ? s.request.client_stall : kDefaultClientStall;
  s.stall_deadline = now + stall;
}

void Exchange::on_client_resumed(TimePoint now) {
  State& s = *s_;
  if (!s.paused) return;
  s.paused = false;
  s.stall_deadline = TimePoint::max();
  if (s.phase == Phase::relaying) Rules{s}.arm(ms(s.config->timeouts.idle()), now);
}

void Exchange::on_timer(TimePoint now) {
  State& s = *s_;
  Rules r{s};
  switch (s.phase) {
    case Phase::idle:
    case Phase::done:
      return;
    case Phase::waiting:
      if (now >= s.total_deadline || now >= s.phase_deadline) {
        s.queue_wait += now - s.wait_started;
        if (!s.wait_reason.empty()) {  // a LoRA adapter's load outlasted queue_timeout_ms
          return r.fail(Error{Errc::overloaded, s.wait_reason + ": not done within the wait; retry later", "model"}, now);
        }
        return r.fail(Error{Errc::overloaded,
                            "every replica of model `" + s.view->model + "` stayed at its request limit; retry later",
                            "model"},
                      now);
      }
      return;
    default:
      break;
  }
  if (s.paused && now >= s.stall_deadline) {
    // The client stopped reading: its problem, not the upstream's (never an upstream failure).
    r.drop_connection();
    r.complete_lease(OutcomeKind::cancelled, s.reader.head().status, now, "the client stopped reading");
    r.report(ExchangeEnd::cancelled, s.reader.head().status, now, "the client stopped reading");
    return s.host.on_abort(Error{Errc::cancelled, "the client stopped reading", ""});
  }
  if (now >= s.total_deadline) {
    s.total_deadline = now;  // no retry after this
    return r.attempt_failed(Error{Errc::timeout, "the request exceeded its total time limit", ""}, now);
  }
  if (s.paused || now < s.phase_deadline) return;
  switch (s.phase) {
    case Phase::connecting:
      return r.attempt_failed(
          Error{Errc::timeout, "connect to " + s.route->lease.endpoint().id + " timed out", ""}, now);
    case Phase::sending:
      return r.attempt_failed(Error{Errc::timeout, "writing the request upstream timed out", ""}, now);
    case Phase::awaiting:
      return r.attempt_failed(Error{Errc::timeout, "upstream sent no answer within the first-byte timeout", ""}, now);
    case Phase::relaying:
      return r.attempt_failed(Error{Errc::timeout, "upstream stalled longer than the idle timeout", ""}, now);
    default:
      return;
  }
}

void Exchange::retry(TimePoint now) {
  if (s_->phase == Phase::waiting) Rules{*s_}.attempt(now);
}

void Exchange::cancel(TimePoint now) {
  State& s = *s_;
  if (s.phase == Phase::idle || s.phase == Phase::done) return;
  Rules{s}.client_gone(now);
}

Exchange::TimePoint Exchange::deadline() const noexcept {
  const State& s = *s_;
  switch (s.phase) {
    case Phase::idle:
    case Phase::done:
      return TimePoint::max();
    case Phase::waiting:
      return std::min(s.phase_deadline, s.total_deadline);
    default:
      break;
  }
  if (s.paused) return std::min(s.stall_deadline, s.total_deadline);
  return std::min(s.phase_deadline, s.total_deadline);
}

bool Exchange::done() const noexcept { return s_->phase == Phase::done; }
bool Exchange::waiting() const noexcept { return s_->phase == Phase::waiting; }
bool Exchange::responded() const noexcept { return s_->responded; }
const Endpoint* Exchange::endpoint() const noexcept { return s_->last_endpoint.get(); }
const std::string& Exchange::model() const noexcept { return s_->model; }
unsigned Exchange::attempts() const noexcept { return s_->attempts; }
TokenUsage Exchange::usage() const noexcept {
  return s_->phase == Phase::done ? s_->final_usage : s_->usage.result(s_->event_stream, s_->request.body.size());
}

void Exchange::reset() {
  State& s = *s_;
  if (s.phase != Phase::idle && s.phase != Phase::done) cancel(std::chrono::steady_clock::now());
  s.request = ClientRequest{};
  s.view = nullptr;
  s.config.reset();
  s.rewritten.clear();
  s.body = {};
  s.phase = Phase::idle;
  s.phase_deadline = s.stall_deadline = s.total_deadline = TimePoint::max();
  s.paused = s.responded = s.pooled = s.fresh = s.has_connection = false;
  s.queue_wait = std::chrono::nanoseconds{0};
  s.route.reset();
  s.last_endpoint.reset();
  s.attempts = 0;
  s.tried.clear();
  s.last_error = Error{};
  s.reader.reset();
  s.event_stream = false;
  s.bytes = 0;
  s.usage.reset();
  s.final_usage = TokenUsage{};
  s.model.clear();
  s.pd_on = false;
  s.leg_base = 0;
  if (s.trace.on) {
    s.trace.on = s.trace.sampled = s.trace.continued = s.trace.routing = false;
    s.trace.state = {};
    s.trace.start_unix_ns = 0;
    s.trace.attempts.clear();
    s.trace.views.clear();
  }
}

VLLM_ROUTER_END_NAMESPACE
