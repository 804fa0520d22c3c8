// DatagramEndpoint: a bound UDP socket driven by the loop. Each datagram is one on_data call
// whose Peer answers the sender; boundaries are kept both ways. A datagram larger than the
// receive buffer is counted and reported (Errc::message_too_large), never silently cut.
// On a wildcard address (0.0.0.0, [::], *) a reply leaves from the address its datagram was sent
// to (IP_PKTINFO / IPV6_RECVPKTINFO), not from whichever address the route prefers: a client
// that sent to 127.0.0.2, or to one of several addresses of a host, gets its answer from there
// (a connected UDP client drops anything else).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"
#include "reactor/session.hpp"

namespace reactor {

struct DatagramStats {
  std::uint64_t received = 0;
  std::uint64_t sent = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t too_large = 0;    // arrived truncated: dropped and counted
  std::uint64_t send_failed = 0;  // the kernel refused a reply (dropped, counted)
};

class DatagramEndpoint final : public Watcher {
 public:
  static constexpr std::size_t kMaxDatagram = 65536;
  static constexpr int kMaxReadsPerWakeup = 64;
  static constexpr std::size_t kMaxQueuedReplies = 1024;

  // `max_datagram`: the receive buffer (at most kMaxDatagram); larger datagrams are reported.
  DatagramEndpoint(Loop& loop, Fd fd, std::unique_ptr<Session> session,
                   std::size_t max_datagram = kMaxDatagram);
  ~DatagramEndpoint();
  DatagramEndpoint(const DatagramEndpoint&) = delete;
  DatagramEndpoint& operator=(const DatagramEndpoint&) = delete;

  std::error_code start();
  void stop();
  Result<Address> local_address() const;
  const DatagramStats& stats() const noexcept { return stats_; }
  // Called for each datagram that arrived too large (after counting it).
  void set_error_handler(std::function<void(std::error_code, const Address&)> handler) {
    on_error_ = std::move(handler);
  }

  void on_events(std::uint32_t events) override;

 private:
  class ReplyPeer;
  // Where a datagram arrived (wildcard endpoints): the address its reply must leave from.
  struct Source {
    enum Kind : unsigned char { none, v4_info, v6_info } kind = none;  // none: the route chooses
    in_pktinfo v4{};
    in6_pktinfo v6{};
  };
  struct Pending {
    Address to;
    Source from;
    std::vector<std::byte> bytes;
  };
  void send_to(const Address& to, const Source& from, std::span<const std::byte> bytes);
  ssize_t send_now(const Address& to, const Source& from, std::span<const std::byte> bytes);
  void flush_queue();

  Loop& loop_;
  Fd fd_;
  std::unique_ptr<Session> session_;
  std::size_t max_datagram_;
  WatchId watch_ = kNoWatch;
  bool wildcard_ = false;      // bound to a wildcard address: replies carry their source
  std::deque<Pending> queue_;  // replies the kernel could not take yet (EAGAIN)
  DatagramStats stats_;
  std::function<void(std::error_code, const Address&)> on_error_;
};

}  // namespace reactor
