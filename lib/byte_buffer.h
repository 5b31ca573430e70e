// Internal: a growing byte buffer written at its end in place: extend(n) hands out n bytes to
// fill, never zero-filled (std::string::resize would), the capacity kept across clear().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>

namespace vllm_router::detail {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& o) noexcept
      : data_(std::move(o.data_)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = std::exchange(o.size_, 0);
    cap_ = std::exchange(o.cap_, 0);
    return *this;
  }

  char* data() noexcept { return data_.get(); }
  const char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return cap_; }
  void clear() noexcept { size_ = 0; }
  /// Gives the memory back (after a burst).
  void release() noexcept {
    data_.reset();
    size_ = cap_ = 0;
  }
  void swap(ByteBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(cap_, o.cap_);
  }

  /// Writes `n` bytes at once at the end (make room first): the caller fills them.
  char* extend(std::size_t n) {
    room(n);
    char* p = data_.get() + size_;
    size_ += n;
    return p;
  }

 protected:
  void room(std::size_t more) {
    if (size_ + more > cap_) grow(more);
  }
  void grow(std::size_t more) {
    const std::size_t cap = std::max({cap_ * 2, size_ + more, std::size_t{4096}});
    std::unique_ptr<char[]> data(new char[cap]);  // not zero-filled
    if (size_ != 0) std::memcpy(data.get(), data_.get(), size_);
    data_ = std::move(data);
    cap_ = cap;
  }

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
};

}  // namespace vllm_router::detail
