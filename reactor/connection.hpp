// Connection: one accepted or connected stream (or SEQPACKET) socket driven by the loop,
// presenting itself to its Session as a Peer. The stream policy (leftover input and max_input,
// the outbox's water marks or max_outbox drop, close / shutdown_write / lingering close, idle
// deadline) is the StreamCore's; Connection is its epoll driver: readiness events, the syscalls,
// and loop timers for the core's deadlines.
//
// - Output is coalesced: what sessions send during one loop iteration is appended to the outbox
//   and written once, with one send (or sendfile per file range), before the loop waits again
//   (Loop::defer_flush); 64 KiB or more pending is written at once. What the socket does not take
//   waits, and EPOLLOUT is watched only while it is non-empty. Message transports (SEQPACKET) send
//   each message at once.
// - Output above the high-water mark pauses reading until it drains below the low-water mark
//   (backpressure from a slow reader), unless the protocol sets max_outbox, in which case a peer
//   over it is dropped with Errc::too_slow.
// - Peer EOF is delivered as on_eof; we may still send. close() and shutdown_write() take effect
//   once pending output is flushed. A close never discards output the kernel already took: if
//   the peer may still be sending, we send FIN and discard its input until it closes or has
//   acknowledged our data (closing with unread input would answer with RST, which drops our
//   unsent bytes), all bounded by close_linger.
// - A closed connection unwatches at once, is moved to the loop's retired list, and its session
//   hears on_close after the current batch; it is never destroyed inside its own callback.
// - Compact (96 bytes; an idle connection costs little more, see ConnectionSet): the loop and
//   the options are reached through the ConnectionSet (held once there), the record comes from
//   the set's slab (no malloc header), the loop's queues call us with no virtual function of
//   theirs (two vptrs, Watcher's and Peer's), the close reason is the core's int code, the flags
//   and the transport share the core's word and our small fields its tail padding, the watch id
//   is our fd plus a 32-bit generation, and timers (idle deadline, close tick, the session's)
//   live in a small block allocated with the first one.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "reactor/buffer.hpp"
#include "reactor/chunked_array.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"
#include "reactor/outbox.hpp"
#include "reactor/session.hpp"
#include "reactor/slab.hpp"
#include "reactor/stream_core.hpp"

namespace reactor {

// The stream limits (StreamLimits: water marks, max_outbox, max_input, idle_timeout,
// close_linger) and what the epoll driver adds.
struct ConnectionOptions : StreamLimits {
  Hub* hub = nullptr;  // if set, a closed peer is forgotten there after its on_close
  // If set, its last_words go to a peer dropped as idle or over max_input (when nothing of ours
  // is pending, so they cannot land inside a half-sent reply).
  const Protocol* protocol = nullptr;
};

// Server-wide counters, updated as connections live and die.
struct ConnectionCounters {
  std::uint64_t opened = 0;
  std::uint64_t closed = 0;
  std::uint64_t failed = 0;  // closed with an error (reset, too slow, idle, ...)
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t messages_too_large = 0;
  std::uint64_t read_pauses = 0;     // times backpressure stopped reading
  std::uint64_t writes = 0;          // output syscalls (send, sendfile)
  std::uint64_t session_errors = 0;  // connections lost to a throwing session
};

class ConnectionSet;

class Connection final : public Watcher, public Peer, public Flushable {
 public:
  Connection(Loop& loop, Fd fd, Transport transport, std::unique_ptr<Session> session,
             const ConnectionOptions& options, ConnectionSet& owner);
  ~Connection();

  // Registers with the loop and calls on_open. On error the connection is already retired.
  void start();

  // Peer
  void send(std::span<const std::byte> bytes) override;
  using Peer::send;
  void close() override;
  void shutdown_write() override;
  std::size_t buffered() const noexcept override { return core_.outbox().size(); }
  std::string remote() const override;
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) override;
  TimerId start_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period) override;
  bool cancel_timer(TimerId id) override;

  // Closes now, discarding pending output; the session hears on_close(reason).
  void abort(std::error_code reason);
  bool is_open() const noexcept { return fd_.get() >= 0; }
  bool reading_paused() const noexcept { return core_.reading_paused(); }
  int fd() const noexcept { return fd_.get(); }

  void on_events(std::uint32_t events) override;
  void finalize();  // Loop::retire: after the batch, tells the session (on_close)
  void flush();     // Loop::defer_flush: writes what this iteration queued

  // The record comes from the owner's slab: `new (owner) Connection(..., owner)`, and `delete`
  // gives it back there. Closing and accepting then cost no malloc/free.
  static void* operator new(std::size_t size, ConnectionSet& owner);
  static void operator delete(void* p, ConnectionSet& owner) noexcept;  // a throwing constructor
  static void operator delete(Connection* c, std::destroying_delete_t) noexcept;

 private:
  friend class ConnectionSet;
  struct Timers;
  enum DriverBit : std::uint8_t {  // in the core's flag word
    kWatchingIn = 1,
    kWatchingOut = 2,
    kMessages = 4,  // SEQPACKET: keep message boundaries
  };
  static constexpr int kTransportShift = 3;  // bits 3-4 of the word: the Transport

  Loop& loop() const noexcept;
  const ConnectionOptions& options() const noexcept;
  bool has(DriverBit bit) const noexcept { return (core_.driver_bits() & bit) != 0; }
  Transport transport() const noexcept {
    return static_cast<Transport>((core_.driver_bits() >> kTransportShift) & 3);
  }
  WatchId watch_id() const noexcept { return make_watch_id(fd_.get(), watch_generation_); }
  template <class F>
  bool guarded(F&& call);  // runs a session callback; a throw closes with session_failed
  void session_threw(const char* what);
  // Does what the core answered (mostly nothing: no call then).
  void act(StreamCore::Next next) {
    if (next != StreamCore::Next::nothing) carry_out(next);
  }
  void carry_out(StreamCore::Next next);
  void write_out();
  Timers& timers();  // allocated on first use (throws std::bad_alloc, like add_timer)
  void release_unused_timers() noexcept;
  TimerId deadline_timer() const noexcept;
  void set_deadline_timer(TimerId id);
  void on_session_timer(TimerId id);
  bool forget_session_timer(TimerId id) noexcept;
  void cancel_timers() noexcept;
  void say_last_words(std::error_code reason);
  void handle_readable();
  void read_stream();
  void read_message();
  void handle_peer_eof();
  void discard_input();
  void on_close_tick();
  void deliver(std::span<const std::byte> bytes, bool from_input_buffer);
  void handle_writable();
  bool send_message_now(std::span<const std::byte> bytes);
  void update_interest();
  void close_now(std::error_code reason);
  void arm_idle_timer();
  void on_idle_timer();
  void note_activity() noexcept { core_.note_activity(loop().now()); }

  std::uint32_t index_ = 0;  // position in owner_
  ConnectionSet& owner_;
  std::unique_ptr<Session> session_;
  // in message mode: [u32 length][bytes] records in its outbox's bytes(). no_unique_address: the
  // next fields go into its tail padding (the ABI reuses it only for a potentially-overlapping
  // subobject).
  [[no_unique_address]] StreamCore core_;
  std::uint16_t options_index_ = 0;  // in owner_'s table
  Fd fd_;
  std::uint32_t watch_generation_ = 0;  // with fd_, our WatchId; 0: not watched
  std::unique_ptr<Timers> timers_;
};

// Owns the live connections of one server; a closing connection leaves it for the loop's
// retired list. Connections are kept in a chunked array with O(1) swap-removal, their records
// in the set's slab. An idle connection costs its 96-byte record, its slot here (8 bytes), the
// loop's watch table entry (12 bytes) and its session.
class ConnectionSet {
 public:
  explicit ConnectionSet(Loop& loop) noexcept : loop_(loop) {}
  ~ConnectionSet();
  ConnectionSet(const ConnectionSet&) = delete;
  ConnectionSet& operator=(const ConnectionSet&) = delete;

  // Takes ownership and starts it (on_open runs now).
  Connection& open(Fd fd, Transport transport, std::unique_ptr<Session> session,
                   const ConnectionOptions& options);
  std::size_t size() const noexcept { return live_.size(); }
  // close() every connection: each goes once its output is flushed.
  void close_all();
  void abort_all(std::error_code reason);
  ConnectionCounters& counters() noexcept { return counters_; }
  const ConnectionCounters& counters() const noexcept { return counters_; }

 private:
  friend class Connection;
  void retire(Connection& c);
  std::uint16_t options_index(const ConnectionOptions& options) {
    if (!options_.empty() && options_[0] == &options) return 0;  // one server, one options
    return add_options(options);
  }
  std::uint16_t add_options(const ConnectionOptions& options);

  Slab records_{sizeof(Connection)};  // first: freed last, after every record went back
  Loop& loop_;
  ChunkedArray<std::unique_ptr<Connection>> live_;
  std::vector<const ConnectionOptions*> options_;  // the distinct options of live connections
  ConnectionCounters counters_;
};

inline Loop& Connection::loop() const noexcept {
  return owner_.loop_;
}

inline const ConnectionOptions& Connection::options() const noexcept {
  return *owner_.options_[options_index_];
}

}  // namespace reactor
