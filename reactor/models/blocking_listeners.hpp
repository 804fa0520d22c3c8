// BlockingListeners: the accepting side of the fork and thread models. Stream listeners (TCP and
// UNIX) are polled together with the model's own descriptors; accept keeps a reserved
// descriptor so that at EMFILE the surplus connection is accepted and closed (counted as shed)
// instead of leaving the listener readable forever.
#pragma once

#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/result.hpp"

namespace reactor {

struct AcceptedSocket {
  Fd fd;  // nonblocking, close-on-exec
  Transport transport;
  Address peer;  // as accept4 reported it (no getpeername per connection)

  // "tcp://1.2.3.4:5" or "unix:" for an unnamed UNIX client: what logs call the peer.
  std::string remote() const { return peer.to_string(); }
};

class BlockingListeners {
 public:
  using Clock = std::chrono::steady_clock;

  BlockingListeners();
  ~BlockingListeners();  // close_all()
  BlockingListeners(const BlockingListeners&) = delete;
  BlockingListeners& operator=(const BlockingListeners&) = delete;

  // Binds and listens; returns the bound address (port 0 -> the real port). TCP and UNIX stream
  // only: UDP and SEQPACKET give Errc::wrong_transport (they run on the epoll model).
  Result<Address> add(const Address& address);
  std::size_t size() const noexcept { return listeners_.size(); }

  // Appends one pollfd per listener, in order (no events while a listener is paused).
  void watch(std::vector<pollfd>& fds) const;
  // Poll timeout that ends the earliest pause, -1 if none.
  int timeout_ms(Clock::time_point now) const;
  // Accepts what is ready, `fds` being the pollfds watch() appended (a bounded number per
  // listener, so that other work is not starved).
  void accept_ready(const pollfd* fds, std::vector<AcceptedSocket>& out);

  // Stops accepting: closes the listeners and unlinks their UNIX socket files.
  void close_all();
  // Stops accepting on every listener for `pause` (out of threads or processes: accepting more
  // would only close them unserved, over and over).
  void pause_all(std::chrono::milliseconds pause);
  // In a forked child: closes the descriptors but leaves the socket files to the parent.
  void close_in_child() noexcept;

  std::uint64_t shed() const noexcept { return shed_.load(std::memory_order_relaxed); }

 private:
  struct Listener {
    Fd fd;
    Transport transport;
    std::string unix_path;  // unlinked by close_all
    Clock::time_point paused_until{};
  };
  void accept_from(Listener& listener, std::vector<AcceptedSocket>& out);
  void shed_one(Listener& listener);

  std::vector<Listener> listeners_;
  Fd reserve_;  // /dev/null, given up at EMFILE to accept and close one surplus connection
  std::atomic<std::uint64_t> shed_{0};  // read by stats() from any thread
  bool in_exhaustion_burst_ = false;    // "out of file descriptors" was logged
};

}  // namespace reactor
