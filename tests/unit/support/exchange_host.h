// Test helper: an ExchangeHost that records what the exchange asks for, answers connects and
// sends from a script, and a router over made-up endpoints (no sockets anywhere).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "vllm_router/exchange.h"
#include "vllm_router/router.h"

namespace vllm_router::testing {

struct RecordingHost final : ExchangeHost {
  // Script: what connect() and send() answer, in order (defaults when empty).
  std::deque<Connect> connects;
  std::deque<Send> sends;
  Error connect_error{Errc::connect_failed, "refused", ""};

  // Record.
  std::vector<std::string> connected;  // endpoint ids, in order ("+fresh" when fresh)
  std::vector<std::string> heads;      // upstream request heads sent
  std::vector<std::string> bodies;     // upstream request bodies sent
  std::vector<bool> releases;          // reusable flags
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::uint64_t> length;
  bool event_stream = false;
  std::string body;
  bool ended = false;
  bool aborted = false;
  bool waited = false;
  std::optional<Error> error;
  Error abort_error;
  bool refuse_body = false;  // the client is gone

  Connect connect(const Endpoint& endpoint, bool fresh, Error& e) override {
    connected.push_back(endpoint.id + (fresh ? "+fresh" : ""));
    Connect c = Connect::connected;
    if (!connects.empty()) {
      c = connects.front();
      connects.pop_front();
    }
    if (c == Connect::failed) e = connect_error;
    return c;
  }
  Send send(std::string_view head, std::string_view b, Error& e) override {
    heads.emplace_back(head);
    bodies.emplace_back(b);
    Send s = Send::done;
    if (!sends.empty()) {
      s = sends.front();
      sends.pop_front();
    }
    if (s == Send::failed) e = Error{Errc::upstream_closed, "broken pipe", ""};
    return s;
  }
  void release(bool reusable) override { releases.push_back(reusable); }
  bool on_head(const ResponseHead& head) override {
    status = head.status;
    headers.clear();
    for (const auto& f : head.headers) headers.emplace_back(std::string(f.name), std::string(f.value));
    length = head.content_length;
    event_stream = head.event_stream;
    return true;
  }
  bool on_body(std::string_view data) override {
    if (refuse_body) return false;
    body.append(data);
    return true;
  }
  void on_end() override { ended = true; }
  void on_abort(const Error& e) override {
    aborted = true;
    abort_error = e;
  }
  void on_error(const Error& e) override { error = e; }
  void on_wait() override { waited = true; }

  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return {};
  }
};

/// Records every observer event as a line.
struct EventLog final : Observer {
  std::vector<std::string> events;
  std::vector<ExchangeSummary> summaries;  // views are dangling: read only scalar fields
  std::vector<std::string> summary_models;
  std::vector<std::string> summary_errors;
  std::vector<std::string> summary_paths;
  std::vector<std::string> summary_clients;
  std::vector<std::string> gaps;  // "model endpoint milliseconds" per on_stream_gap
  void on_outcome(std::string_view model, const Endpoint& ep, const Outcome& o) override {
    events.push_back("outcome " + std::string(model) + " " + ep.id + " " + std::to_string(static_cast<int>(o.kind)) +
                     " " + std::to_string(o.status) + " bytes=" + std::to_string(o.bytes));
  }
  void on_pick(std::string_view, const Endpoint& ep, const PickEvent&) override { events.push_back("pick " + ep.id); }
  void on_retry(std::string_view, const Endpoint& ep, RetryReason reason, unsigned attempt) override {
    events.push_back("retry " + ep.id + " " + std::to_string(static_cast<int>(reason)) + " " + std::to_string(attempt));
  }
  void on_exchange(const ExchangeSummary& s) override {
    summaries.push_back(s);
    summary_models.emplace_back(s.model);
    summary_errors.emplace_back(s.error);
    summary_paths.emplace_back(s.path);
    summary_clients.emplace_back(s.client_address);
    events.push_back("exchange " + std::to_string(s.status));
  }
  void on_stream_gap(std::string_view model, const Endpoint& ep, std::chrono::nanoseconds gap) override {
    gaps.push_back(std::string(model) + " " + ep.id + " " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(gap).count()));
  }
  std::size_t count(std::string_view prefix) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  }
};

/// Model "m" (alias "alias-m") on `n` made-up endpoints http://10.0.0.<i>:8000 (no network is used).
inline RouterConfig fleet_config(std::size_t n) {
  RouterConfig c;
  ModelConfig m;
  m.name = "m";
  m.aliases = {"alias-m"};
  for (std::size_t i = 1; i <= n; ++i) {
    m.endpoints.push_back(EndpointConfig{"http://10.0.0." + std::to_string(i) + ":8000", 1, ""});
  }
  c.models = {m};
  c.timeouts.connect_ms = 100;
  c.timeouts.read_ms = 1000;
  c.timeouts.write_ms = 200;
  return c;
}

}  // namespace vllm_router::testing
