// Buffer: contiguous bytes with read and write indices. Grows on demand and gives its memory
// back when drained, so an idle connection owns no heap buffer at all. One pointer (8 bytes):
// the capacity and both indices live in a small header in front of the heap block, not in
// every (mostly empty) Buffer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace reactor {

class Buffer {
  struct Header {
    std::uint32_t capacity;
    std::uint32_t read;
    std::uint32_t write;
    std::uint32_t spare;  // 1: the block is a Spare (not ours to free); keeps the bytes 16-aligned
  };

 public:
  static constexpr std::size_t kSpillSize = 64 * 1024;

  // Storage that the caller owns for a Buffer's first block, so that small contents cost no
  // malloc: a blocking connection keeps one for its replies (a forked child's malloc writes heap
  // pages it shares copy-on-write with its parent). A Buffer given it (append) keeps it until it
  // is drained or outgrows it; one Buffer uses it at a time, and it must outlive that use.
  class Spare {
   public:
    static constexpr std::size_t kBytes = 512 - sizeof(Header);  // what fits without a malloc

   private:
    friend class Buffer;
    alignas(16) std::byte raw_[512];  // as malloc's blocks: the bytes after the header 16-aligned
  };

  Buffer() noexcept = default;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  // A held block is never empty: draining it frees it.
  std::size_t size() const noexcept { return block_ ? block_->write - block_->read : 0; }
  bool empty() const noexcept { return block_ == nullptr; }
  std::size_t capacity() const noexcept { return block_ ? block_->capacity : 0; }
  std::span<const std::byte> readable() const noexcept {
    if (!block_) return {};
    return {data() + block_->read, size()};
  }

  // False when the buffer cannot grow (over 4 GiB or out of memory); nothing is appended then.
  // An empty buffer takes `spare` (if given) for what fits in it.
  [[nodiscard]] bool append(std::span<const std::byte> bytes, Spare* spare = nullptr);
  // Drops `n` readable bytes from the front; frees the memory once empty.
  void consume(std::size_t n) noexcept;
  void clear() noexcept;

  // One readv into the free tail plus a 64 KiB stack spill; what lands in the spill is appended.
  // Returns readv's result (-1 with errno on error, 0 at EOF). With `recv_flags` (a socket:
  // MSG_DONTWAIT on one in blocking mode) one recvmsg with them instead.
  ssize_t read_from(int fd, int recv_flags = 0);
  // One send (MSG_NOSIGNAL | MSG_DONTWAIT: never blocks, whatever the socket's mode) of the
  // readable bytes (at most `max`); consumes what the kernel took.
  ssize_t write_to(int fd, std::size_t max = SIZE_MAX);

 private:
  std::byte* data() const noexcept { return reinterpret_cast<std::byte*>(block_ + 1); }
  bool reserve_tail(std::size_t n, Spare* spare);
  void release() noexcept;

  Header* block_ = nullptr;  // one malloc'ed block (or a Spare): the header, then `capacity` bytes
};

}  // namespace reactor
