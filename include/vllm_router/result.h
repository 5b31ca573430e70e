// Result<T>: a value or an Error, the library's exception-free error model.
#pragma once

#include <utility>
#include <variant>

#include "vllm_router/error.h"
#include "vllm_router/export.h"

VLLM_ROUTER_BEGIN_NAMESPACE

/// Either a T or an Error. Check `ok()` (or `operator bool`) before `value()`.
/// Not thread-safe for concurrent mutation; a plain value type.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)
  Result(Errc code, std::string message, std::string param = {})
      : v_(Error{code, std::move(message), std::move(param)}) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  /// The value. Precondition: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }

  /// The error. Precondition: !ok().
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }
  Errc code() const noexcept { return ok() ? Errc::ok : std::get<1>(v_).code; }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing but may fail.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  Result(Errc code, std::string message, std::string param = {})
      : error_{code, std::move(message), std::move(param)}, ok_(false) {}

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }
  Errc code() const noexcept { return ok_ ? Errc::ok : error_.code; }

 private:
  Error error_{};
  bool ok_ = true;
};

VLLM_ROUTER_END_NAMESPACE
