#include "reactor/buffer.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

namespace reactor {

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      read_(std::exchange(other.read_, 0)),
      write_(std::exchange(other.write_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    read_ = std::exchange(other.read_, 0);
    write_ = std::exchange(other.write_, 0);
  }
  return *this;
}

Buffer::~Buffer() {
  release();
}

void Buffer::release() noexcept {
  if (data_ != nullptr) std::free(header());
  data_ = nullptr;
  read_ = write_ = 0;
}

bool Buffer::reserve_tail(std::size_t n) {
  const std::size_t capacity = this->capacity();
  if (capacity - write_ >= n) return true;
  std::size_t live = size();
  constexpr std::size_t kMax = std::numeric_limits<std::uint32_t>::max() - sizeof(Header);
  if (n > kMax - live) return false;
  // Slide to the front when that makes room and the live part is small; else grow.
  if (read_ > 0 && capacity - live >= n && live <= capacity / 2) {
    std::memmove(data_, data_ + read_, live);
    read_ = 0;
    write_ = static_cast<std::uint32_t>(live);
    return true;
  }
  // 512 bytes with the header: the first block is one 512-byte malloc chunk.
  std::size_t want = std::max<std::size_t>({live + n, capacity * 2, 512 - sizeof(Header)});
  if (want > kMax) want = kMax;
  auto* block = static_cast<Header*>(std::malloc(sizeof(Header) + want));
  if (block == nullptr) return false;
  block->capacity = static_cast<std::uint32_t>(want);
  auto* fresh = reinterpret_cast<std::byte*>(block + 1);
  if (live > 0) std::memcpy(fresh, data_ + read_, live);
  if (data_ != nullptr) std::free(header());
  data_ = fresh;
  read_ = 0;
  write_ = static_cast<std::uint32_t>(live);
  return true;
}

bool Buffer::append(std::span<const std::byte> bytes) {
  if (bytes.empty()) return true;
  if (!reserve_tail(bytes.size())) return false;
  std::memcpy(data_ + write_, bytes.data(), bytes.size());
  write_ += static_cast<std::uint32_t>(bytes.size());
  return true;
}

void Buffer::consume(std::size_t n) noexcept {
  if (n >= size()) {
    clear();
    return;
  }
  read_ += static_cast<std::uint32_t>(n);
}

void Buffer::clear() noexcept {
  release();
}

ssize_t Buffer::read_from(int fd) {
  std::byte spill[kSpillSize];
  iovec iov[2];
  std::size_t tail = capacity() - write_;
  iov[0] = {data_ + write_, tail};
  iov[1] = {spill, sizeof(spill)};
  int first = tail == 0 ? 1 : 0;
  ssize_t n = ::readv(fd, iov + first, 2 - first);
  if (n <= 0) return n;
  std::size_t got = static_cast<std::size_t>(n);
  std::size_t into_tail = got < tail ? got : tail;
  write_ += static_cast<std::uint32_t>(into_tail);
  if (got > into_tail && !append({spill, got - into_tail})) {
    errno = ENOMEM;
    return -1;
  }
  return n;
}

ssize_t Buffer::write_to(int fd, std::size_t max) {
  if (empty()) return 0;
  ssize_t n = ::send(fd, data_ + read_, max < size() ? max : size(), MSG_NOSIGNAL);
  if (n > 0) consume(static_cast<std::size_t>(n));
  return n;
}

}  // namespace reactor
