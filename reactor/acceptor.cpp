#include "reactor/acceptor.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {
Fd open_reserve() {
  return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}
// The loop's thread is the only writer: a plain load and store, no locked instruction.
void bump(std::atomic<std::uint64_t>& counter) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
}  // namespace

Acceptor::Acceptor(Loop& loop, Fd listener, Transport transport, AcceptHandler& handler)
    : loop_(loop),
      listener_(std::move(listener)),
      reserve_(open_reserve()),
      transport_(transport),
      handler_(&handler) {}

Acceptor::Acceptor(Loop& loop, Fd listener, Transport transport, PeerAcceptHandler& handler)
    : loop_(loop),
      listener_(std::move(listener)),
      reserve_(open_reserve()),
      transport_(transport),
      peer_handler_(&handler) {}

Acceptor::~Acceptor() {
  stop();
}

std::error_code Acceptor::start() {
  auto id = loop_.watch(listener_.get(), EPOLLIN, *this);
  if (!id) return id.error();
  watch_ = *id;
  return {};
}

void Acceptor::stop() {
  if (watch_ != kNoWatch) loop_.unwatch(watch_);
  watch_ = kNoWatch;
  if (resume_timer_ != kNoTimer) loop_.cancel_timer(resume_timer_);
  resume_timer_ = kNoTimer;
  if (listener_ && owns_path_) {
    if (auto local = reactor::local_address(listener_.get(), transport_)) {
      std::string path = local->unix_path();
      if (!path.empty()) ::unlink(path.c_str());
    }
  }
  listener_.reset();
}

Result<Address> Acceptor::local_address() const {
  return reactor::local_address(listener_.get(), transport_);
}

void Acceptor::on_events(std::uint32_t) {
  int budget = kMaxAcceptsPerWakeup;
  if (adaptive_ && loop_.now() - last_wakeup_end_ > kBacklogGap) budget = 1;
  if (peer_handler_ != nullptr) {
    accept_ready<true>(budget);
  } else {
    accept_ready<false>(budget);
  }
  if (adaptive_) last_wakeup_end_ = Loop::Clock::now();
}

template <bool kWithPeer>
void Acceptor::accept_ready(int budget) {
  for (int i = 0; i < budget; ++i) {
    // The handler may have paused or stopped us (out of processes, shutting down).
    if (!listener_ || resume_timer_ != kNoTimer) return;
    sockaddr_storage peer;
    socklen_t peer_length = sizeof(peer);
    int fd = kWithPeer ? ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer),
                                   &peer_length, accept_flags_)
                       : ::accept4(listener_.get(), nullptr, nullptr, accept_flags_);
    if (fd >= 0) {
      bump(stats_.accepted);
      in_exhaustion_burst_ = false;
      if constexpr (kWithPeer) {
        peer_handler_->on_accept(Fd(fd), Address::from_sockaddr(reinterpret_cast<sockaddr*>(&peer),
                                                                peer_length, transport_));
      } else {
        handler_->on_accept(Fd(fd));
      }
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
        shed_one();
        continue;
      default:
        // ENOBUFS, ENOMEM and friends: back off rather than spin.
        log(LogLevel::warn, "accept: %s; pausing the listener briefly", std::strerror(errno));
        pause_briefly();
        return;
    }
  }
}

// Out of descriptors: free the reserved one, accept the surplus connection and close it at
// once (the client sees a clean close rather than a hang), then take the reserve back.
void Acceptor::shed_one() {
  bump(stats_.fd_exhaustion);
  if (!in_exhaustion_burst_) {
    log(LogLevel::warn, "out of file descriptors (%s); shedding new connections until some close",
        std::strerror(errno));
    in_exhaustion_burst_ = true;
  }
  reserve_.reset();
  int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    bump(stats_.shed);
    ::close(fd);
  }
  reserve_ = open_reserve();
  if (fd < 0 || !reserve_) pause_briefly();  // could not shed: wait instead of spinning
}

void Acceptor::pause(std::chrono::milliseconds pause) {
  if (watch_ == kNoWatch || resume_timer_ != kNoTimer) return;
  loop_.modify(watch_, 0);
  resume_timer_ = loop_.after(pause, [this] { resume(); });
}

void Acceptor::resume() {
  resume_timer_ = kNoTimer;
  if (!reserve_) reserve_ = open_reserve();
  if (watch_ != kNoWatch) loop_.modify(watch_, EPOLLIN);
}

}  // namespace reactor
