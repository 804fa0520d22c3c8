// Acceptor: watches a listening socket and accepts in a bounded loop until EAGAIN.
// On EMFILE/ENFILE it releases a reserved descriptor to accept-and-close the surplus
// connection, so the listener never spins, and logs once per burst. The one accept path of every
// model: the epoll servers', and the fork and thread parents' (their loops run nothing else hot).
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"

namespace reactor {

// Takes each accepted connection (nonblocking unless set_blocking_sockets, close-on-exec).
class AcceptHandler {
 public:
  virtual void on_accept(Fd fd) = 0;

 protected:
  ~AcceptHandler() = default;
};

// The same, with the peer's address as accept4 reported it (no getpeername per connection).
class PeerAcceptHandler {
 public:
  virtual void on_accept(Fd fd, const Address& peer) = 0;

 protected:
  ~PeerAcceptHandler() = default;
};

// Written by the loop's thread only; readable from any thread (a model's stats()).
struct AcceptorStats {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> shed{0};  // accepted and closed at once for lack of descriptors
  std::atomic<std::uint64_t> fd_exhaustion{0};  // EMFILE/ENFILE events
};

class Acceptor final : public Watcher {
 public:
  static constexpr int kMaxAcceptsPerWakeup = 64;

  Acceptor(Loop& loop, Fd listener, Transport transport, AcceptHandler& handler);
  Acceptor(Loop& loop, Fd listener, Transport transport, PeerAcceptHandler& handler);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  std::error_code start();
  // Stops accepting and closes the listening socket (unlinks a UNIX path it bound, unless
  // leave_path() was called).
  void stop();
  // The UNIX socket file belongs to someone else (a prefork worker's inherited listener: the
  // parent and the other workers still serve it): stop() leaves it in place.
  void leave_path() noexcept { owns_path_ = false; }
  // Stops accepting for `pause`, then resumes (the handler cannot take connections now: out of
  // processes or threads; accepting more would only close them unserved, over and over). From
  // on_accept too: the rest of that wake-up's accepts wait as well. An earlier pause still
  // running is kept.
  void pause(std::chrono::milliseconds pause);
  // How many connections one wake-up accepts. Default: up to kMaxAcceptsPerWakeup, until EAGAIN.
  // Adaptive: one when the loop slept before this wake-up (the queue was empty when it went to
  // wait: most likely this connection is alone), the default when the listener was ready again
  // at once (a backlog: drain it). A server that takes its connections one at a time (a process
  // or thread per connection) then pays one epoll_wait + accept4 per connection, without a
  // third call failing with EAGAIN, and still drains a burst in one wake-up.
  void set_adaptive_budget(bool adaptive) noexcept { adaptive_ = adaptive; }
  // Hands connections over in blocking mode: for a handler that gives each one to a process or
  // thread of its own, which may then wait in a read instead of in poll before it (the fork
  // model). The handler must not block on them itself (MSG_DONTWAIT).
  void set_blocking_sockets(bool blocking) noexcept {
    accept_flags_ = blocking ? SOCK_CLOEXEC : SOCK_NONBLOCK | SOCK_CLOEXEC;
  }
  // A wake-up this soon after the previous one ended found the listener ready without sleeping.
  static constexpr std::chrono::microseconds kBacklogGap{20};

  // The listening and reserve descriptors (-1 for none), for a process forked from the loop's
  // thread that never runs the loop and closes them itself: not unwatched (the epoll interest
  // list is the parent's too), the socket file left to the parent, nothing written (no
  // copy-on-write fault).
  std::array<int, 2> own_descriptors() const noexcept { return {listener_.get(), reserve_.get()}; }
  Result<Address> local_address() const;
  const AcceptorStats& stats() const noexcept { return stats_; }

  void on_events(std::uint32_t events) override;

 private:
  template <bool kWithPeer>
  void accept_ready(int budget);
  void shed_one();
  void pause_briefly() { pause(std::chrono::milliseconds(100)); }
  void resume();

  Loop& loop_;
  Fd listener_;
  Fd reserve_;  // held open so EMFILE can be answered
  Transport transport_;
  AcceptHandler* handler_ = nullptr;  // one of these two is set
  PeerAcceptHandler* peer_handler_ = nullptr;
  WatchId watch_ = kNoWatch;
  TimerId resume_timer_ = kNoTimer;
  AcceptorStats stats_;
  Loop::Clock::time_point last_wakeup_end_{};  // adaptive budget only
  int accept_flags_ = SOCK_NONBLOCK | SOCK_CLOEXEC;
  bool adaptive_ = false;
  bool in_exhaustion_burst_ = false;
  bool owns_path_ = true;
};

}  // namespace reactor
