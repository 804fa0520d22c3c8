// The fork model's Hub, split across processes over one SOCK_SEQPACKET socketpair per child.
//
// In the child, RelayClient is the Hub: every call becomes a message to the parent. All but
// publish and forget wait for the parent's answer (or acknowledgement, so that a join is in
// effect when it returns, as under the other models); deliveries that arrive meanwhile go to
// the client's outbox in order. In the parent, a LocalHub keeps the rooms and
// names; its members are RelayMembers, one per child, whose send() queues a delivery frame for
// that child (coalesced, bounded, never blocking the parent). The parent's loop watches each
// member's socket: for reading always, for writing only while frames wait (watch_on()).
//
// Wire format: a frame is [type u8][more u8][payload]; a message longer than kRelayChunk goes
// as several frames, `more` set on all but the last. Payload fields are native-endian integers
// and u32-length-prefixed strings: both ends are the same program on the same machine.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "reactor/fd.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/session.hpp"

namespace reactor {

enum class RelayType : std::uint8_t {
  join = 1,
  leave,
  publish,
  claim_name,
  release_name,
  send_to,
  rooms,
  members,
  forget,
  report,    // child -> parent, last message: ChildReport
  deliver,   // parent -> child: bytes for the client (frames are a byte stream)
  answer,    // parent -> child: the answer to the pending call
  farewell,  // child -> parent: what to publish if the child dies without a report
};

constexpr std::size_t kRelayChunk = 32 * 1024;
constexpr std::size_t kRelayHeader = 2;
constexpr std::size_t kRelayFrameMax = kRelayHeader + kRelayChunk;

// What a child tells the parent before it exits.
struct ChildReport {
  enum Outcome : std::uint8_t { clean = 0, failed = 1, rejected = 2 };
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t writes = 0;
  Outcome outcome = clean;
};

// Child side: the Hub its session sees, and a SideChannel its BlockingConnection polls.
class RelayClient final : public Hub, public SideChannel {
 public:
  // `relay` is the child's (blocking) end; `parent` tells a dropped relay (the parent cut us off
  // as too slow) from a dead parent.
  RelayClient(Fd relay, pid_t parent);
  // Deliveries go to `connection` from now on.
  void attach(BlockingConnection& connection) noexcept { connection_ = &connection; }

  void join(std::string_view room, Peer& peer) override;
  void leave(std::string_view room, Peer& peer) override;
  void publish(std::string_view room, std::span<const std::byte> bytes,
               const Peer* except) override;
  bool claim_name(std::string_view name, Peer& peer) override;
  void release_name(Peer& peer) override;
  bool send_to(std::string_view name, std::span<const std::byte> bytes) override;
  std::vector<RoomInfo> rooms() override;
  std::vector<std::string> members(std::string_view room) override;
  void forget(Peer& peer) override;
  void set_farewell(std::string_view room, std::span<const std::byte> bytes, Peer& peer) override;

  int fd() const override { return relay_.get(); }
  void on_readable(BlockingConnection& connection) override;

  // The last message before _exit.
  void report(const ChildReport& report);

 private:
  bool send_message(RelayType type, std::span<const std::byte> payload);
  std::optional<std::vector<std::byte>> call(RelayType type, std::span<const std::byte> payload);
  void lost();

  Fd relay_;
  pid_t parent_;
  BlockingConnection* connection_ = nullptr;
  bool read_closed_ = false;
  bool write_closed_ = false;
  std::vector<std::byte> frame_;    // one received frame
  std::vector<std::byte> message_;  // the message being encoded
};

// Parent side: one child as a member of the parent's LocalHub.
class RelayMember final : public Peer {
 public:
  // `relay` is the parent's (nonblocking) end. Deliveries queued over `limit` cut the child off:
  // its relay is shut for writing and the child drops its client with Errc::too_slow.
  RelayMember(Fd relay, std::string remote, std::size_t limit);

  // Peer: only send() means something here (a Hub delivery to this child).
  void send(std::span<const std::byte> bytes) override;
  using Peer::send;
  void close() override {}
  void shutdown_write() override {}
  std::size_t buffered() const override { return queued_bytes_; }
  std::string remote() const override { return remote_; }
  std::error_code send_file(int, std::uint64_t, std::uint64_t) override {
    return make_error_code(Errc::wrong_transport);
  }
  TimerId start_timer(std::chrono::milliseconds, std::chrono::milliseconds) override {
    return kNoTimer;
  }
  bool cancel_timer(TimerId) override { return false; }

  int fd() const noexcept { return relay_.get(); }
  bool wants_write() const noexcept { return !queue_.empty(); }
  // The loop watches fd() under `id` (for EPOLLIN): the member adds EPOLLOUT while frames wait
  // for room in the socket, and takes it off once they are sent.
  void watch_on(Loop& loop, WatchId id) noexcept {
    loop_ = &loop;
    watch_ = id;
  }

  // Reads up to `max_frames` frames and carries out the complete messages against `hub`.
  // False when the child is gone (EOF, error, or a malformed message): forget it then.
  bool on_readable(LocalHub& hub, std::span<std::byte> scratch, std::size_t max_frames);
  // Sends queued frames until the socket is full.
  void flush();
  const std::optional<ChildReport>& report() const noexcept { return report_; }
  // The child's farewell (room, bytes); empty room: none.
  std::pair<std::string, std::vector<std::byte>> take_farewell() {
    return {std::move(farewell_room_), std::move(farewell_bytes_)};
  }

 private:
  void handle(LocalHub& hub, RelayType type, std::span<const std::byte> payload);
  void answer(std::span<const std::byte> payload);
  void cut_off();
  void watch_output(bool on) noexcept;

  Fd relay_;
  Loop* loop_ = nullptr;
  WatchId watch_ = kNoWatch;
  bool watching_output_ = false;
  const std::string remote_;
  const std::size_t limit_;
  std::deque<std::vector<std::byte>> queue_;  // whole frames
  std::size_t queued_bytes_ = 0;
  bool cut_off_ = false;
  bool assembling_ = false;
  RelayType assembling_type_ = RelayType::join;
  std::vector<std::byte> assembled_;
  std::vector<std::byte> encoded_;
  std::optional<ChildReport> report_;
  std::string farewell_room_;
  std::vector<std::byte> farewell_bytes_;
};

}  // namespace reactor
