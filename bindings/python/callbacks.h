// The Python module's callbacks into Python: policies written in Python, the observer, and the
// conversions they share (outcome kinds, seconds). Internal to bindings/python.
#pragma once

#include <pybind11/pybind11.h>

#include <vllm_router/vllm_router.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vllm_router::python {

namespace py = pybind11;
namespace vr = vllm_router;
using namespace pybind11::literals;  // NOLINT: "kind"_a in the observer

inline std::string_view kind_name(vr::OutcomeKind kind) {
  switch (kind) {
    case vr::OutcomeKind::success: return "success";
    case vr::OutcomeKind::connect_failure: return "connect_failure";
    case vr::OutcomeKind::timeout: return "timeout";
    case vr::OutcomeKind::upstream_closed: return "upstream_closed";
    case vr::OutcomeKind::cancelled: return "cancelled";
    case vr::OutcomeKind::error: return "error";
  }
  return "error";
}

inline vr::OutcomeKind kind_from(std::string_view name) {
  for (auto k : {vr::OutcomeKind::success, vr::OutcomeKind::connect_failure, vr::OutcomeKind::timeout,
                 vr::OutcomeKind::upstream_closed, vr::OutcomeKind::cancelled, vr::OutcomeKind::error}) {
    if (kind_name(k) == name) return k;
  }
  throw py::value_error("unknown outcome kind '" + std::string(name) +
                        "' (success, connect_failure, timeout, upstream_closed, cancelled, error)");
}

inline double seconds(std::chrono::nanoseconds ns) { return static_cast<double>(ns.count()) / 1e9; }

// ------------------------------------------------------------------ policies and observer

/// A candidate as a Python policy sees it (a copy; plain value).
struct PyCandidate {
  std::string endpoint_id;
  std::uint32_t weight = 1;
  std::int64_t in_flight = 0;
  std::uint64_t requests = 0;
  std::uint64_t failures = 0;
  std::size_t slot = 0;
  std::int32_t waiting = -1;
  std::int32_t running = -1;
  float kv_cache_usage = -1.0F;
};

/// The request facts a Python policy sees.
struct PyPickRequest {
  std::string model;
  bool stream = false;
  std::string session_key;
  std::string prompt_prefix;
};

// A Python exception raised inside a policy: the pick runs on the thread that called route() or
// forward(), so it is kept here and re-raised when that call returns.
inline thread_local std::optional<py::error_already_set> t_policy_error;

inline void reraise_policy_error() {
  if (t_policy_error) {
    py::error_already_set e = std::move(*t_policy_error);
    t_policy_error.reset();
    throw e;
  }
}

// Releases a Python reference with the GIL held, whatever thread drops the last owner.
inline void release_with_gil(py::object& obj) {
  if (!obj || !Py_IsInitialized()) {
    obj.release();  // interpreter gone: leak rather than crash
    return;
  }
  py::gil_scoped_acquire gil;
  obj = py::object();
}

class PyPolicy final : public vr::Policy {
 public:
  PyPolicy(std::string name, py::object fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  ~PyPolicy() override { release_with_gil(fn_); }
  std::string_view name() const noexcept override { return name_; }
  std::size_t pick(const vr::PickContext& ctx, std::span<const vr::Candidate> candidates) const override {
    py::gil_scoped_acquire gil;
    try {
      py::list list;
      for (const vr::Candidate& c : candidates) {
        const auto load = c.state->sample();
        list.append(PyCandidate{c.endpoint->id, c.endpoint->weight, load.in_flight, load.requests,
                                load.failures, c.slot, load.waiting, load.running, load.kv_cache_usage});
      }
      PyPickRequest request{ctx.request.model, ctx.request.stream, ctx.request.session_key,
                            std::string(ctx.request.prompt_prefix)};
      py::object chosen = fn_(list, request);
      const auto index = chosen.cast<std::ptrdiff_t>();
      if (index < 0 || static_cast<std::size_t>(index) >= candidates.size()) {
        throw py::index_error("policy '" + name_ + "' returned " + std::to_string(index) + " for " +
                              std::to_string(candidates.size()) + " candidates");
      }
      return static_cast<std::size_t>(index);
    } catch (py::error_already_set& e) {
      if (!t_policy_error) t_policy_error.emplace(std::move(e));
    } catch (const py::cast_error& e) {
      PyErr_SetString(PyExc_TypeError, (std::string("policy must return an int: ") + e.what()).c_str());
      if (!t_policy_error) t_policy_error.emplace();
    } catch (const py::builtin_exception& e) {
      e.set_error();
      if (!t_policy_error) t_policy_error.emplace();
    }
    return 0;
  }

 private:
  std::string name_;
  mutable py::object fn_;
};

class PyObserver final : public vr::Observer {
 public:
  explicit PyObserver(py::object fn) : fn_(std::move(fn)) {}
  ~PyObserver() override { release_with_gil(fn_); }
  void on_outcome(std::string_view model, const vr::Endpoint& endpoint, const vr::Outcome& outcome) override {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      fn_(std::string(model), endpoint.id,
          py::dict("kind"_a = std::string(kind_name(outcome.kind)), "status"_a = outcome.status,
                   "ttfb"_a = seconds(outcome.ttfb), "latency"_a = seconds(outcome.latency),
                   "bytes"_a = outcome.bytes));
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("vllm_router observer");
    }
  }

 private:
  py::object fn_;
};

}  // namespace vllm_router::python
