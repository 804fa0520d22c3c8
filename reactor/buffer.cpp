#include "reactor/buffer.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "reactor/hot.hpp"

namespace reactor {

Buffer::Buffer(Buffer&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    block_ = std::exchange(other.block_, nullptr);
  }
  return *this;
}

Buffer::~Buffer() {
  release();
}

void Buffer::release() noexcept {
  if (block_ != nullptr && block_->spare == 0) std::free(block_);
  block_ = nullptr;
}

bool Buffer::reserve_tail(std::size_t n, Spare* spare) {
  if (block_ == nullptr && spare != nullptr && n <= Spare::kBytes) {
    block_ = new (spare->raw_) Header{static_cast<std::uint32_t>(Spare::kBytes), 0, 0, 1};
    return true;
  }
  const std::size_t capacity = this->capacity();
  const std::size_t write = block_ ? block_->write : 0;
  if (capacity - write >= n) return true;
  const std::size_t live = size();
  constexpr std::size_t kMax = std::numeric_limits<std::uint32_t>::max() - sizeof(Header);
  if (n > kMax - live) return false;
  // Slide to the front when that makes room and the live part is small; else grow.
  if (block_ && block_->read > 0 && capacity - live >= n && live <= capacity / 2) {
    std::memmove(data(), data() + block_->read, live);
    block_->read = 0;
    block_->write = static_cast<std::uint32_t>(live);
    return true;
  }
  // 512 bytes with the header: the first block is one 512-byte malloc chunk.
  std::size_t want = std::max<std::size_t>({live + n, capacity * 2, 512 - sizeof(Header)});
  if (want > kMax) want = kMax;
  auto* fresh = static_cast<Header*>(std::malloc(sizeof(Header) + want));
  if (fresh == nullptr) return false;
  fresh->capacity = static_cast<std::uint32_t>(want);
  fresh->read = 0;
  fresh->write = static_cast<std::uint32_t>(live);
  fresh->spare = 0;
  if (live > 0) std::memcpy(fresh + 1, data() + block_->read, live);
  release();
  block_ = fresh;
  return true;
}

namespace {

// Copies up to 128 bytes in moves the compiler emits itself (two overlapping halves of a fixed
// size), longer runs with memcpy: a small reply costs no call into libc, and a forked child
// that sends only small ones touches (and faults in) one page of libc's code less.
template <std::size_t N>
void copy_halves(std::byte* to, const std::byte* from, std::size_t n) noexcept {
  std::byte head[N], tail[N];  // both read before either is written: overlap is fine
  __builtin_memcpy(head, from, N);
  __builtin_memcpy(tail, from + n - N, N);
  __builtin_memcpy(to, head, N);
  __builtin_memcpy(to + n - N, tail, N);
}

void copy_bytes(std::byte* to, const std::byte* from, std::size_t n) noexcept {
  if (n > 128) {
    std::memcpy(to, from, n);
  } else if (n > 64) {
    copy_halves<64>(to, from, n);
  } else if (n > 32) {
    copy_halves<32>(to, from, n);
  } else if (n > 16) {
    copy_halves<16>(to, from, n);
  } else if (n > 8) {
    copy_halves<8>(to, from, n);
  } else if (n >= 4) {
    copy_halves<4>(to, from, n);
  } else {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
  }
}

}  // namespace

REACTOR_HOT bool Buffer::append(std::span<const std::byte> bytes, Spare* spare) {
  if (bytes.empty()) return true;
  if (!reserve_tail(bytes.size(), spare)) return false;
  copy_bytes(data() + block_->write, bytes.data(), bytes.size());
  block_->write += static_cast<std::uint32_t>(bytes.size());
  return true;
}

void Buffer::consume(std::size_t n) noexcept {
  if (n >= size()) {
    clear();
    return;
  }
  block_->read += static_cast<std::uint32_t>(n);
}

REACTOR_HOT void Buffer::clear() noexcept {
  release();
}

ssize_t Buffer::read_from(int fd, int recv_flags) {
  std::byte spill[kSpillSize];
  iovec iov[2];
  const std::size_t tail = block_ ? block_->capacity - block_->write : 0;
  iov[0] = {tail > 0 ? data() + block_->write : nullptr, tail};
  iov[1] = {spill, sizeof(spill)};
  int first = tail == 0 ? 1 : 0;
  ssize_t n;
  if (recv_flags == 0) {
    n = ::readv(fd, iov + first, 2 - first);
  } else {
    msghdr msg{};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = static_cast<std::size_t>(2 - first);
    n = ::recvmsg(fd, &msg, recv_flags);
  }
  if (n <= 0) return n;
  std::size_t got = static_cast<std::size_t>(n);
  std::size_t into_tail = got < tail ? got : tail;
  if (into_tail > 0) block_->write += static_cast<std::uint32_t>(into_tail);
  if (got > into_tail && !append({spill, got - into_tail})) {
    errno = ENOMEM;
    return -1;
  }
  return n;
}

REACTOR_HOT ssize_t Buffer::write_to(int fd, std::size_t max) {
  if (empty()) return 0;
  const std::size_t pending = size();
  ssize_t n =
      ::send(fd, data() + block_->read, max < pending ? max : pending, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n > 0) consume(static_cast<std::size_t>(n));
  return n;
}

}  // namespace reactor
