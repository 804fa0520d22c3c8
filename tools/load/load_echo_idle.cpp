#include "load_echo_idle.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "reactor/socket.hpp"

namespace load::engine {

IdleSet::~IdleSet() {
  for (auto& c : conns_) {
    if (c.fd >= 0) ::close(c.fd);
  }
  if (ep_ >= 0) ::close(ep_);
}

std::uint64_t IdleSet::open(LoadTotals& t) {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) return 0;
  conns_.resize(static_cast<std::size_t>(want_));
  std::size_t next = 0, pending = 0, ready = 0;
  epoll_event events[256];
  Nanos next_scan = now_ns() + kTick;
  while (next < conns_.size() || pending > 0) {
    while (next < conns_.size() && pending < static_cast<std::size_t>(kMaxConnectingPerThread)) {
      Conn& c = conns_[next];
      bool connected = false;
      int fd = dialer_.dial(next, connected);
      if (fd < 0) {
        t.connect_error(-fd);
        ++t.failed;
        ++next;
        continue;
      }
      c.fd = fd;
      c.last = now_ns();
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = next;
      ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
      ++next;
      ++pending;
    }
    int n = ::epoll_wait(ep_, events, 256, 20);
    for (int k = 0; k < n; ++k) {
      Conn& c = conns_[events[k].data.u64];
      if (c.state == Conn::ready || c.fd < 0) continue;
      int before = c.state;
      step(c, events[k].events, t);
      if (c.state == Conn::ready) ++ready;
      if (c.state == Conn::ready || c.fd < 0) {
        if (before != Conn::ready) --pending;
      }
    }
    Nanos now = now_ns();
    if (now >= next_scan) {
      for (auto& c : conns_) {
        if (c.fd >= 0 && c.state != Conn::ready && now - c.last > stall_) {
          if (c.state == Conn::connecting)
            t.connect_error(ETIMEDOUT);
          else
            ++t.errors_timeout;
          drop(c, t);
          --pending;
        }
      }
      next_scan = now + kTick;
    }
  }
  // Held from here on: no events are wanted until the set closes.
  for (auto& c : conns_) {
    if (c.fd >= 0) ::epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
  }
  return ready;
}

void IdleSet::drop(Conn& c, LoadTotals& t) {
  ::close(c.fd);
  c.fd = -1;
  ++t.failed;
}

void IdleSet::step(Conn& c, std::uint32_t events, LoadTotals& t) {
  if (c.state == Conn::connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (auto ec = reactor::finish_connect(c.fd)) {
      t.connect_error(ec.value());
      drop(c, t);
      return;
    }
    ++t.connections;
    char probe = 'i';
    if (::send(c.fd, &probe, 1, MSG_NOSIGNAL) != 1) {
      ++t.errors_io;
      drop(c, t);
      return;
    }
    ++t.bytes_sent;
    c.state = Conn::probing;
    c.last = now_ns();
  }
  if (c.state == Conn::probing) {
    char back = 0;
    ssize_t r = ::recv(c.fd, &back, 1, 0);
    if (r == 1 && back == 'i') {
      ++t.bytes_received;
      c.state = Conn::ready;
    } else if (r == 1) {
      ++t.errors_verify;
      drop(c, t);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      ++t.errors_io;
      drop(c, t);
    }
  }
}

}  // namespace load::engine
