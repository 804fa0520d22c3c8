// Acceptor: watches a listening socket and accepts in a bounded loop until EAGAIN.
// On EMFILE/ENFILE it releases a reserved descriptor to accept-and-close the surplus
// connection, so the listener never spins, and logs once per burst.
#pragma once

#include <cstdint>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"

namespace reactor {

class AcceptHandler {
 public:
  virtual void on_accept(Fd fd) = 0;

 protected:
  ~AcceptHandler() = default;
};

struct AcceptorStats {
  std::uint64_t accepted = 0;
  std::uint64_t shed = 0;           // accepted and closed at once for lack of descriptors
  std::uint64_t fd_exhaustion = 0;  // EMFILE/ENFILE events
};

class Acceptor final : public Watcher {
 public:
  static constexpr int kMaxAcceptsPerWakeup = 64;

  Acceptor(Loop& loop, Fd listener, Transport transport, AcceptHandler& handler);
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
  Result<Address> local_address() const;
  const AcceptorStats& stats() const noexcept { return stats_; }

  void on_events(std::uint32_t events) override;

 private:
  void shed_one();
  void pause_briefly();

  Loop& loop_;
  Fd listener_;
  Fd reserve_;  // held open so EMFILE can be answered
  Transport transport_;
  AcceptHandler& handler_;
  WatchId watch_ = kNoWatch;
  TimerId resume_timer_ = kNoTimer;
  AcceptorStats stats_;
  bool in_exhaustion_burst_ = false;
  bool owns_path_ = true;
};

}  // namespace reactor
