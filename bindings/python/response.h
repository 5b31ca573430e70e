// The Python module's Response: a forwarded answer whose body a background thread relays into a
// bounded queue that Python iterates (the GIL released while waiting).
#pragma once

#include <pybind11/pybind11.h>

#include <vllm_router/vllm_router.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace vllm_router::python {

namespace py = pybind11;
namespace vr = vllm_router;

/// Raises the matching RouterError subclass with .code (errc name), .status (HTTP), .param.
[[noreturn]] void raise_error(const vr::Error& error);


class PyResponse {
 public:
  static constexpr std::size_t kMaxQueued = 4u << 20;  // bytes buffered ahead of the consumer

  PyResponse(std::shared_ptr<vr::Router> router, vr::Response response, std::shared_ptr<vr::CancelToken> cancel)
      : router_(std::move(router)),
        cancel_(std::move(cancel)),
        exchange_(std::make_unique<vr::Response>(std::move(response))) {
    status_ = exchange_->status();
    for (const vr::Header& h : exchange_->headers()) headers_.emplace_back(h.name, h.value);
    endpoint_id_ = exchange_->endpoint().id;
    model_ = exchange_->model();
    attempts_ = exchange_->attempts();
    if (auto length = exchange_->content_length()) content_length_ = *length;
    // The relay pushes; Python pulls: a thread runs it, a bounded queue between (backpressure).
    worker_ = std::thread([this] { run(); });
  }

  ~PyResponse() { close(); }

  PyResponse(const PyResponse&) = delete;
  PyResponse& operator=(const PyResponse&) = delete;

  py::bytes next() {
    std::string chunk;
    std::optional<vr::Error> error;
    for (;;) {
      bool ready = false;
      {
        py::gil_scoped_release nogil;
        std::unique_lock<std::mutex> lock(mutex_);
        ready = cv_.wait_for(lock, std::chrono::milliseconds(100),
                             [this] { return !chunks_.empty() || done_; });
        if (ready) {
          if (!chunks_.empty()) {
            chunk = std::move(chunks_.front());
            chunks_.pop_front();
            queued_ -= chunk.size();
            cv_.notify_all();
          } else if (error_) {
            error = std::move(error_);
            error_.reset();
          } else {
            finished_ = true;
          }
        }
      }
      if (ready) break;
      if (PyErr_CheckSignals() != 0) {  // Ctrl-C while waiting on the upstream
        close();
        throw py::error_already_set();
      }
    }
    if (!chunk.empty()) return py::bytes(chunk);
    if (error) raise_error(*error);
    throw py::stop_iteration();
  }

  py::bytes read() {
    std::string all;
    for (;;) {
      try {
        all += next().cast<std::string>();
      } catch (py::stop_iteration&) {
        break;
      }
    }
    return py::bytes(all);
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
    cancel_->cancel();  // stops a relay still waiting for the upstream at once (harmless after it)
    if (worker_.joinable()) {
      if (PyGILState_Check() != 0) {
        py::gil_scoped_release nogil;  // the relay may call a Python observer
        worker_.join();
      } else {
        worker_.join();
      }
    }
    exchange_.reset();  // closes an upstream connection whose body did not end (cancels it)
  }

  int status() const { return status_; }
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }
  const std::string& endpoint_id() const { return endpoint_id_; }
  const std::string& model() const { return model_; }
  unsigned attempts() const { return attempts_; }
  std::optional<std::uint64_t> content_length() const { return content_length_; }

 private:
  class QueueSink final : public vr::BodySink {
   public:
    explicit QueueSink(PyResponse& r) : r_(r) {}
    bool write(const char* data, std::size_t size) override {
      std::unique_lock<std::mutex> lock(r_.mutex_);
      r_.cv_.wait(lock, [this] { return r_.closed_ || r_.queued_ < kMaxQueued; });
      if (r_.closed_) return false;
      r_.chunks_.emplace_back(data, size);
      r_.queued_ += size;
      r_.cv_.notify_all();
      return true;
    }
    bool alive() override {
      std::lock_guard<std::mutex> lock(r_.mutex_);
      return !r_.closed_;
    }

   private:
    PyResponse& r_;
  };

  void run() {
    QueueSink sink(*this);
    auto relayed = exchange_->relay(sink);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!relayed && !closed_) error_ = relayed.error();
    done_ = true;
    cv_.notify_all();
  }

  std::shared_ptr<vr::Router> router_;
  std::shared_ptr<vr::CancelToken> cancel_;
  std::unique_ptr<vr::Response> exchange_;
  int status_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string endpoint_id_;
  std::string model_;
  unsigned attempts_ = 1;
  std::optional<std::uint64_t> content_length_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  std::size_t queued_ = 0;
  bool done_ = false;
  bool closed_ = false;
  bool finished_ = false;
  std::optional<vr::Error> error_;
  std::thread worker_;
};

}  // namespace vllm_router::python
