// Buffer: contiguous bytes with read and write indices. Grows on demand and gives its memory
// back when drained, so an idle connection owns no heap buffer at all. 16 bytes: the capacity
// lives in a small header in front of the heap block, not in every (mostly empty) Buffer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace reactor {

class Buffer {
 public:
  static constexpr std::size_t kSpillSize = 64 * 1024;

  Buffer() noexcept = default;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  std::size_t size() const noexcept { return write_ - read_; }
  bool empty() const noexcept { return write_ == read_; }
  std::size_t capacity() const noexcept { return data_ ? header()->capacity : 0; }
  std::span<const std::byte> readable() const noexcept { return {data_ + read_, size()}; }

  // False when the buffer cannot grow (over 4 GiB or out of memory); nothing is appended then.
  [[nodiscard]] bool append(std::span<const std::byte> bytes);
  // Drops `n` readable bytes from the front; frees the memory once empty.
  void consume(std::size_t n) noexcept;
  void clear() noexcept;

  // One readv into the free tail plus a 64 KiB stack spill; what lands in the spill is appended.
  // Returns readv's result (-1 with errno on error, 0 at EOF).
  ssize_t read_from(int fd);
  // One send (MSG_NOSIGNAL) of the readable bytes (at most `max`); consumes what the kernel took.
  ssize_t write_to(int fd, std::size_t max = SIZE_MAX);

 private:
  struct Header {
    std::uint32_t capacity;
    std::uint32_t unused;  // keeps the bytes 8-aligned
  };
  Header* header() const noexcept { return reinterpret_cast<Header*>(data_) - 1; }
  bool reserve_tail(std::size_t n);
  void release() noexcept;

  std::byte* data_ = nullptr;  // just after a Header in one malloc'ed block
  std::uint32_t read_ = 0;
  std::uint32_t write_ = 0;
};

}  // namespace reactor
