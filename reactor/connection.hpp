// Connection: one accepted or connected stream (or SEQPACKET) socket driven by the loop,
// presenting itself to its Session as a Peer.
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
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "reactor/buffer.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"
#include "reactor/outbox.hpp"
#include "reactor/session.hpp"

namespace reactor {

struct ConnectionOptions {
  std::size_t high_water = 1u << 20;               // pause reading above this much pending output
  std::size_t low_water = 256u << 10;              // resume below this
  std::size_t max_outbox = 0;                      // 0: backpressure; else drop the peer above it
  std::size_t max_input = 1u << 20;                // unconsumed input allowed before closing
  std::chrono::milliseconds idle_timeout{0};       // 0: none
  std::chrono::milliseconds close_linger{10'000};  // bound on flushing after close()
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
  std::uint64_t read_pauses = 0;  // times backpressure stopped reading
  std::uint64_t writes = 0;       // output syscalls (send, sendfile)
  std::uint64_t session_errors = 0;  // connections lost to a throwing session
};

class ConnectionSet;

class Connection final : public Watcher, public Peer, public Retired, public Flushable {
 public:
  Connection(Loop& loop, Fd fd, Transport transport, std::unique_ptr<Session> session,
             const ConnectionOptions& options, ConnectionSet& owner);
  ~Connection() override;

  // Registers with the loop and calls on_open. On error the connection is already retired.
  void start();

  // Peer
  void send(std::span<const std::byte> bytes) override;
  using Peer::send;
  void close() override;
  void shutdown_write() override;
  std::size_t buffered() const noexcept override { return output_.size(); }
  std::string remote() const override;
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) override;
  TimerId start_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period) override;
  bool cancel_timer(TimerId id) override;

  // Closes now, discarding pending output; the session hears on_close(reason).
  void abort(std::error_code reason);
  bool is_open() const noexcept { return fd_.get() >= 0; }
  bool reading_paused() const noexcept { return (state_ & kReadPaused) != 0; }
  int fd() const noexcept { return fd_.get(); }

  void on_events(std::uint32_t events) override;
  void finalize() override;
  void flush() override;

  // Connection records come from a small per-thread free list: accepting and closing then costs
  // no malloc/free. A record is always freed on the loop thread that made it.
  static void* operator new(std::size_t size);
  static void operator delete(void* p) noexcept;

 private:
  friend class ConnectionSet;
  enum State : std::uint16_t {
    kReadPaused = 1,      // backpressure
    kPeerEof = 2,         // read side finished
    kCloseWanted = 4,     // close once output drains
    kShutdownWanted = 8,  // shutdown(SHUT_WR) once output drains
    kWriteShut = 16,
    kWatchingOut = 32,
    kMessages = 64,  // SEQPACKET: keep message boundaries
    kWatchingIn = 128,
    kClosing = 256,    // close() called: the close_linger clock runs
    kLingering = 512,  // FIN sent; discarding input until the peer closes or has our data
  };

  template <class F>
  bool guarded(F&& call);  // runs a session callback; a throw closes with session_failed
  void session_threw(const char* what);
  void write_out();
  void on_session_timer(TimerId id);
  void say_last_words(std::error_code reason);
  void handle_readable();
  void read_stream();
  void read_message();
  void handle_peer_eof();
  void finish_close();
  void discard_input();
  void on_close_tick();
  void deliver(std::span<const std::byte> bytes, bool from_input_buffer);
  void handle_writable();
  void flush_done();
  bool send_message_now(std::span<const std::byte> bytes);
  void update_interest();
  void close_now(std::error_code reason);
  void arm_idle_timer();
  void on_idle_timer();
  void note_activity() noexcept { last_activity_ = loop_.now(); }

  Loop& loop_;
  ConnectionSet& owner_;
  std::unique_ptr<Session> session_;
  const ConnectionOptions& options_;
  Buffer input_;
  Outbox output_;  // in message mode: [u32 length][bytes] records in output_.bytes()
  std::unique_ptr<std::vector<TimerId>> session_timers_;  // armed by the session
  Loop::Clock::time_point last_activity_;
  WatchId watch_ = kNoWatch;
  TimerId idle_timer_ = kNoTimer;
  std::error_code close_reason_;
  std::uint32_t index_ = 0;  // position in owner_
  Fd fd_;
  std::uint16_t state_ = 0;
  std::uint16_t close_ticks_ = 0;  // close_tick periods since close()
  Transport transport_;
};

// Owns the live connections of one server; a closing connection leaves it for the loop's
// retired list. Connections are kept in a vector with O(1) swap-removal.
class ConnectionSet {
 public:
  explicit ConnectionSet(Loop& loop) : loop_(loop) {}
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

  Loop& loop_;
  std::vector<std::unique_ptr<Connection>> live_;
  ConnectionCounters counters_;
};

}  // namespace reactor
