// The trace of an Exchange (RouterOptions::tracing): W3C trace context from the client's
// headers, the spans' facts as routing decisions and attempts happen, and the summary's view of
// them. The upstream traceparent is written by build_upstream_head (exchange_http.cpp).
#include <algorithm>
#include <chrono>

#include "exchange_state.h"
#include "vllm_router/tracing.h"

VLLM_ROUTER_BEGIN_NAMESPACE

// A single valid traceparent continues the client's trace (two are ambiguous: a new trace);
// its tracestate goes on with it (every tracestate header is forwarded; the spans carry the
// first).
void Exchange::State::start_trace() {
  const TracingOptions& options = impl.options.tracing;
  trace.state = {};
  trace.routing = false;
  trace.attempts.clear();
  std::string_view parent;
  int parents = 0;
  for (const HeaderField& h : request.headers) {
    if (detail::is_traceparent(h.name)) {
      parent = h.value;
      ++parents;
    } else if (trace.state.empty() && detail::is_tracestate(h.name)) {
      trace.state = h.value;
    }
  }
  std::optional<TraceParent> tp;
  if (parents == 1) tp = parse_traceparent(parent);
  trace.on = true;
  trace.continued = tp.has_value();
  if (tp) {
    std::copy(tp->trace_id.begin(), tp->trace_id.end(), trace.trace_id);
    std::copy(tp->parent_id.begin(), tp->parent_id.end(), trace.parent_id);
    trace.trace_bits = {detail::hex16_value(trace.trace_id), detail::hex16_value(trace.trace_id + 16)};
    trace.parent_bits = detail::hex16_value(trace.parent_id);
    trace.sampled = tp->sampled();
  } else {
    trace.state = {};  // it belongs to a trace we do not continue
    trace.trace_bits = detail::new_trace_id(trace.trace_id);
    trace.sampled = detail::ratio_sampled(trace.trace_id, options.sampling);
  }
  trace.span_bits = detail::new_span_id(trace.span_id);
  if (trace.sampled) {
    trace.start_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  }
}

// The trace's facts into the summary (tracing on).
void Exchange::State::trace_summary(ExchangeSummary& sum, TimePoint now, std::string_view error) {
  Trace& t = trace;
  sum.trace_id = std::string_view(t.trace_id, 32);
  sum.span_id = std::string_view(t.span_id, 16);
  sum.trace_id_high = t.trace_bits.high;
  sum.trace_id_low = t.trace_bits.low;
  sum.span_id_bits = t.span_bits;
  if (t.continued) {
    sum.parent_span_id = std::string_view(t.parent_id, 16);
    sum.parent_span_id_bits = t.parent_bits;
  }
  sum.trace_state = t.state;
  sum.sampled = t.sampled;
  if (!t.sampled) return;
  sum.start_unix_ns = t.start_unix_ns;
  if (t.routing) trace_routing_failed(now, error);  // it waited for capacity, or found none
  t.views.clear();
  for (TraceAttempt& a : t.attempts) {
    AttemptTrace v = a.facts;
    v.route_span_id = std::string_view(a.route_span, 16);
    v.route_span_bits = a.route_span_bits;
    if (v.endpoint != nullptr) {
      v.span_id = std::string_view(a.span, 16);
      v.span_bits = a.span_bits;
    }
    v.error = a.error;
    t.views.push_back(v);
  }
  sum.trace_attempts = t.views;
}

// A routing decision begins (sampled traces: its span starts; a wait for capacity is in it).
void Exchange::State::trace_routing(TimePoint now) {
  if (!trace.sampled || trace.routing) return;
  trace.routing = true;
  trace.route_started = now;
}

// The routing decision found no endpoint: its span ends with `error`.
void Exchange::State::trace_routing_failed(TimePoint now, std::string_view error) {
  if (!trace.routing) return;
  trace.routing = false;
  TraceAttempt& a = trace.attempts.emplace_back();
  a.route_span_bits = detail::new_span_id(a.route_span);
  a.facts.route_start = trace.route_started - started;
  a.facts.route_end = a.facts.start = a.facts.end = now - started;
  if (view != nullptr) a.facts.model = view->model;  // the request's own copy
  a.ended = true;
  a.error.assign(error);
}

// The route was taken: a routing span and the attempt's span begin.
void Exchange::State::trace_routed(TimePoint now) {
  trace.attempt_span_bits = detail::new_span_id(trace.attempt_span);
  if (!trace.sampled) return;
  trace.routing = false;
  const Route& r = *route;
  TraceAttempt& a = trace.attempts.emplace_back();
  a.route_span_bits = detail::new_span_id(a.route_span);
  std::copy_n(trace.attempt_span, 16, a.span);
  a.span_bits = trace.attempt_span_bits;
  a.snapshot = r.snapshot;
  AttemptTrace& f = a.facts;
  f.endpoint = &r.lease.endpoint();
  f.model = r.resolution.upstream;
  f.policy = r.pick.policy;
  f.candidates = r.pick.candidates;
  f.panic = r.pick.panic;
  f.prefix_match = r.pick.prefix_match;
  if (pd_on) f.leg = detail::pd_leg_name(pd->leg);
  f.route_start = trace.route_started - started;
  f.route_end = f.start = now - started;
}

// The current attempt's span ends.
void Exchange::State::trace_attempt_end(OutcomeKind kind, int status, TimePoint now, std::string_view error) {
  if (!trace.sampled || trace.attempts.empty()) return;
  TraceAttempt& a = trace.attempts.back();
  if (a.ended) return;
  a.ended = true;
  a.facts.end = now - started;
  a.facts.outcome = kind;
  a.facts.status = status;
  a.error.assign(error);
}

void Exchange::State::trace_retry(RetryReason reason) {
  if (!trace.sampled || trace.attempts.empty()) return;
  trace.attempts.back().facts.retried = true;
  trace.attempts.back().facts.retry_reason = reason;
}

VLLM_ROUTER_END_NAMESPACE
