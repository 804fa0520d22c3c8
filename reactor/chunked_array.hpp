// ChunkedArray: an array that grows a chunk (1024 elements) at a time and never moves what it
// holds, for tables with one entry per connection. A std::vector that doubled its way to N
// elements copied them each time and left about N elements' worth of freed buffers in the heap,
// where malloc keeps them resident: 50% more memory than the entries, and a pause to copy a
// 100,000-entry table. Here growing copies nothing, and a chunk is given back once two chunks
// past the end are empty. Index access is one shift and one mask more than a vector's.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace reactor {

template <class T>
class ChunkedArray {
 public:
  static constexpr std::size_t kChunk = 1024;

  ChunkedArray() = default;
  ChunkedArray(const ChunkedArray&) = delete;
  ChunkedArray& operator=(const ChunkedArray&) = delete;
  ~ChunkedArray() {
    while (size_ > 0) pop_back();
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return slot(i); }
  const T& operator[](std::size_t i) const noexcept {
    return const_cast<ChunkedArray*>(this)->slot(i);
  }
  T& back() noexcept { return slot(size_ - 1); }

  // Throws std::bad_alloc (nothing added then), like std::vector.
  void push_back(T value) {
    if (size_ == chunks_.size() * kChunk) {
      chunks_.reserve(chunks_.size() + 1);
      chunks_.emplace_back(static_cast<T*>(::operator new(kChunk * sizeof(T))));
    }
    ::new (static_cast<void*>(&slot(size_))) T(std::move(value));
    ++size_;
  }
  void pop_back() noexcept {
    --size_;
    slot(size_).~T();
    // Hysteresis: keep one empty chunk past the end, so that an add and a remove at a chunk's
    // edge do not allocate and free each time.
    if (chunks_.size() * kChunk >= size_ + 2 * kChunk) chunks_.pop_back();
  }
  // Grows to `n` elements, the new ones copies of `value` (never shrinks).
  void grow_to(std::size_t n, const T& value) {
    while (size_ < n) push_back(value);
  }

 private:
  struct Free {
    void operator()(T* p) const noexcept { ::operator delete(p); }
  };
  T& slot(std::size_t i) noexcept { return chunks_[i / kChunk].get()[i % kChunk]; }

  std::vector<std::unique_ptr<T, Free>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace reactor
