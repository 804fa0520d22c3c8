#include "load_worker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "load_pattern.hpp"
#include "reactor/socket.hpp"

namespace load::engine {

namespace {

constexpr std::size_t kIoChunk = 64 * 1024;

constexpr std::uint64_t pack(std::uint32_t slot, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | slot;
}

}  // namespace

int Dialer::dial(std::uint64_t n, bool& connected) const {
  connected = false;
  int fd = ::socket(target_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (!target_.is_unix()) (void)reactor::set_no_delay(fd, true);
  if (close_ == CloseMode::rst) (void)reactor::set_linger_abort(fd);
  if (sources_ > 1) {
    int one = 1;
    // Port chosen at connect() time from the 4-tuple, not at bind(): more ports per source.
    (void)::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr =
        htonl(0x7F000001u + static_cast<std::uint32_t>(n % static_cast<std::uint64_t>(sources_)));
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof(src)) != 0) {
      int e = errno;
      ::close(fd);
      return -e;
    }
  }
  if (::connect(fd, target_.sockaddr_ptr(), target_.length()) == 0) {
    connected = true;
    return fd;
  }
  if (errno == EINPROGRESS || errno == EINTR) return fd;
  int e = errno;
  ::close(fd);
  return -e;
}

Io write_pending(int fd, Stream& s, LoadTotals& t, bool& progressed) {
  unsigned char buf[kIoChunk];
  while (s.sent < s.queued) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(s.queued - s.sent, kIoChunk));
    fill_pattern(s.seed, s.sent, buf, n);
    ssize_t w = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (w > 0) {
      s.sent += static_cast<std::uint64_t>(w);
      t.bytes_sent += static_cast<std::uint64_t>(w);
      progressed = true;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::blocked;
    return Io::error;
  }
  return Io::done;
}

Io read_echo(int fd, Stream& s, LoadTotals& t, bool& progressed) {
  unsigned char buf[kIoChunk];
  while (s.received < s.sent) {
    std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(s.sent - s.received, kIoChunk));
    ssize_t r = ::recv(fd, buf, want, 0);
    if (r > 0) {
      auto n = static_cast<std::size_t>(r);
      t.bytes_received += n;
      progressed = true;
      if (!matches_pattern(s.seed, s.received, buf, n)) return Io::mismatch;
      s.received += n;
      continue;
    }
    if (r == 0) return Io::eof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::blocked;
    return Io::error;
  }
  return Io::done;
}

void count_failure(Io io, LoadTotals& t) {
  if (io == Io::mismatch)
    ++t.errors_verify;
  else
    ++t.errors_io;
}

Worker::Worker(const Shared& shared, int thread_index, int share)
    : sh_(shared), o_(*shared.options), thread_index_(thread_index), share_(share) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) totals_.fatal = "epoll_create1 failed";
}

Worker::~Worker() {
  for (int fd : kept_open_) ::close(fd);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void Worker::run() {
  if (epoll_fd_ < 0) return;
  Nanos now = now_ns();
  start(now);
  Nanos next_tick = now + kTick;
  epoll_event events[256];
  while (!finished()) {
    now = now_ns();
    int wait_ms = static_cast<int>(std::max<Nanos>(0, (next_tick - now + 999'999) / 1'000'000));
    int n = ::epoll_wait(epoll_fd_, events, 256, wait_ms);
    for (int i = 0; i < n; ++i) {
      auto slot = static_cast<std::uint32_t>(events[i].data.u64);
      auto generation = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
      if (slot < generations_.size() && generations_[slot] == generation) {
        on_event(slot, events[i].events, now_ns());  // fresh: latencies end at this event
      }
    }
    now = now_ns();
    if (now >= next_tick) {
      on_tick(now);
      publish();
      next_tick = now + kTick;
    }
  }
  publish();
}

int Worker::open_for(std::uint32_t slot, bool& connected) {
  int fd = sh_.dialer->dial(next_dial_++ * static_cast<std::uint64_t>(o_.threads) +
                                static_cast<std::uint64_t>(thread_index_),
                            connected);
  if (fd < 0) return fd;
  if (slot >= generations_.size()) generations_.resize(slot + 1, 0);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = pack(slot, ++generations_[slot]);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

void Worker::close_slot(std::uint32_t slot, int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
  ++generations_[slot];
}

void Worker::retire_slot(std::uint32_t slot, int& fd) {
  if (fd >= 0) kept_open_.push_back(fd);
  fd = -1;
  ++generations_[slot];
}

std::uint64_t Worker::next_seed() {
  return (static_cast<std::uint64_t>(thread_index_) << 40) + (seed_counter_++ << 20);
}

void Worker::publish() {
  sh_.progress->connections.fetch_add(totals_.connections - published_.connections,
                                      std::memory_order_relaxed);
  sh_.progress->msgs.fetch_add(totals_.msgs - published_.msgs, std::memory_order_relaxed);
  sh_.progress->errors.fetch_add(totals_.errors() - published_errors_, std::memory_order_relaxed);
  published_.connections = totals_.connections;
  published_.msgs = totals_.msgs;
  published_errors_ = totals_.errors();
}

}  // namespace load::engine
