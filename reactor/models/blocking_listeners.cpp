#include "reactor/models/blocking_listeners.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

constexpr int kMaxAcceptsPerWakeup = 64;
constexpr std::chrono::milliseconds kPauseAfterError{100};

Fd open_reserve() {
  return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

}  // namespace

BlockingListeners::BlockingListeners() : reserve_(open_reserve()) {}

BlockingListeners::~BlockingListeners() {
  close_all();
}

Result<Address> BlockingListeners::add(const Address& address) {
  if (address.transport() != Transport::tcp && address.transport() != Transport::unix_stream) {
    return Errc::wrong_transport;
  }
  auto fd = listen_on(address);
  if (!fd) return fd.error();
  auto bound = local_address(fd->get(), address.transport());
  if (!bound) return bound.error();
  listeners_.push_back({std::move(*fd), address.transport(), bound->unix_path(), {}});
  return bound;
}

void BlockingListeners::watch(std::vector<pollfd>& fds) const {
  auto now = Clock::now();
  for (const auto& listener : listeners_) {
    short events = listener.fd && listener.paused_until <= now ? POLLIN : 0;
    fds.push_back({listener.fd.get(), events, 0});
  }
}

int BlockingListeners::timeout_ms(Clock::time_point now) const {
  int timeout = -1;
  for (const auto& listener : listeners_) {
    if (listener.paused_until <= now) continue;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(listener.paused_until - now).count();
    int wait = static_cast<int>(std::min<long long>(ms, std::numeric_limits<int>::max()));
    if (timeout < 0 || wait < timeout) timeout = wait;
  }
  return timeout;
}

void BlockingListeners::accept_ready(const pollfd* fds, std::vector<AcceptedSocket>& out) {
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    if (listeners_[i].fd && (fds[i].revents & (POLLIN | POLLERR | POLLHUP))) {
      accept_from(listeners_[i], out);
    }
  }
}

void BlockingListeners::accept_from(Listener& listener, std::vector<AcceptedSocket>& out) {
  for (int i = 0; i < kMaxAcceptsPerWakeup; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd = ::accept4(listener.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      in_exhaustion_burst_ = false;  // a connection got a descriptor: the burst is over
      out.push_back(
          {Fd(fd), listener.transport,
           Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, listener.transport)});
      continue;
    }
    switch (errno) {
      case EAGAIN:
      case EINTR:
        return;
      case ECONNABORTED:  // the peer gave up while queued: try the next one
      case EPROTO:
        continue;
      case EMFILE:
      case ENFILE:
        shed_one(listener);
        continue;
      default:
        // ENOBUFS, ENOMEM and friends: back off rather than spin.
        log(LogLevel::warn, "accept: %s; pausing the listener briefly", std::strerror(errno));
        listener.paused_until = Clock::now() + kPauseAfterError;
        return;
    }
  }
}

// Out of descriptors: free the reserved one, accept the surplus connection and close it at once
// (the client sees a clean close rather than a hang), then take the reserve back.
void BlockingListeners::shed_one(Listener& listener) {
  if (!in_exhaustion_burst_) {  // once per burst, as the epoll Acceptor says it
    log(LogLevel::warn, "out of file descriptors (%s); shedding new connections until some close",
        std::strerror(errno));
    in_exhaustion_burst_ = true;
  }
  reserve_.reset();
  int fd = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    shed_.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
  }
  reserve_ = open_reserve();
  if (fd < 0 || !reserve_) listener.paused_until = Clock::now() + kPauseAfterError;
}

void BlockingListeners::close_all() {
  for (auto& listener : listeners_) {
    if (!listener.fd) continue;
    listener.fd.reset();
    if (!listener.unix_path.empty()) ::unlink(listener.unix_path.c_str());
  }
}

void BlockingListeners::close_in_child() noexcept {
  for (auto& listener : listeners_) listener.fd.reset();
  listeners_.clear();
  reserve_.reset();
}

void BlockingListeners::pause_all(std::chrono::milliseconds pause) {
  const auto until = Clock::now() + pause;
  for (auto& listener : listeners_) {
    if (listener.paused_until < until) listener.paused_until = until;
  }
}

}  // namespace reactor
