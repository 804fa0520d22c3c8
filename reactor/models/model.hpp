// Model: one way to drive a Protocol's sessions (epoll, fork, thread, reuseport). reactor-server
// picks one by name; every model serves the same Protocol over TCP and UNIX stream listeners.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "reactor/address.hpp"
#include "reactor/result.hpp"
#include "reactor/session.hpp"

namespace reactor {

struct ModelOptions {
  std::chrono::milliseconds idle_timeout{0};       // 0: none
  std::size_t max_connections = 0;                 // 0: unlimited
  std::chrono::milliseconds shutdown_grace{5000};  // flushing time after SIGINT/SIGTERM
  unsigned workers = 0;                            // reuseport: loops (0 = one per core)
  // A line on stderr when a stop signal (SIGINT, SIGTERM, SIGHUP) starts the graceful stop and
  // when a second one ends it at once (reactor-server sets it; a library user may not want it).
  bool announce_stop = false;
  // The protocol's sessions talk to each other through the Hub (ProtocolInfo::uses_hub). Under
  // fork, only such protocols pay for the relay (a socketpair per child, the parent polling it);
  // the others run as a textbook fork-per-connection server.
  bool uses_hub = true;
};

struct ServerStats {
  std::uint64_t accepted = 0;  // connections served
  std::uint64_t closed = 0;
  std::uint64_t failed = 0;    // closed with an error (reset, too slow, idle, ...)
  std::uint64_t rejected = 0;  // over max_connections
  std::uint64_t shed = 0;      // dropped for lack of file descriptors
  std::uint64_t live = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t datagrams_in = 0;
  std::uint64_t datagrams_out = 0;
  std::uint64_t datagrams_too_large = 0;
  std::uint64_t messages_too_large =
      0;                          // SEQPACKET messages over 64 KiB (each closed its connection)
  std::uint64_t read_pauses = 0;  // backpressure events (epoll model)
  std::uint64_t writes = 0;       // output syscalls on stream connections (send, sendfile)
};

// Totals of several servers (reuseport's loops, threadpool's threads, prefork's workers).
inline ServerStats& operator+=(ServerStats& total, const ServerStats& s) noexcept {
  total.accepted += s.accepted;
  total.closed += s.closed;
  total.failed += s.failed;
  total.rejected += s.rejected;
  total.shed += s.shed;
  total.live += s.live;
  total.bytes_in += s.bytes_in;
  total.bytes_out += s.bytes_out;
  total.datagrams_in += s.datagrams_in;
  total.datagrams_out += s.datagrams_out;
  total.datagrams_too_large += s.datagrams_too_large;
  total.messages_too_large += s.messages_too_large;
  total.read_pauses += s.read_pauses;
  total.writes += s.writes;
  return total;
}

class Model {
 public:
  virtual ~Model() = default;
  // Binds (port 0 -> a real port) and returns the bound address. Call before run().
  virtual Result<Address> listen(const Address& address) = 0;
  // Serves until SIGINT/SIGTERM/SIGHUP (blocked and taken through a signalfd or equivalent) or
  // request_stop(); then stops accepting, flushes within shutdown_grace, closes, returns. A
  // second stop signal during the grace period closes every connection at once.
  virtual std::error_code run() = 0;
  // Thread-safe.
  virtual void request_stop() = 0;
  // Totals; exact once run() has returned.
  virtual ServerStats stats() const = 0;
};

}  // namespace reactor

namespace reactor {

// A connection the server turns away (over max_connections): logged at info with the peer's
// address, then the protocol's last_words(Errc::too_many_connections) are sent, best effort and
// never blocking. The caller closes `fd`.
void refuse_connection(int fd, Transport transport, const Protocol& protocol) noexcept;

}  // namespace reactor
