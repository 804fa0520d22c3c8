// BlockingConnection: one accepted stream socket driven by one thread (thread model) or one
// process (fork model), presenting itself to its Session as a Peer.
//
// The owning thread sits in serve(): poll() on the socket, a wake eventfd and any side channels
// (the fork child's relay and signals), reads, calls the session, flushes the outbox. The
// session's own output is coalesced: it is written once its callback returns (64 KiB or more at
// once), so a pipelined burst of requests costs one send. Session timers live on this thread. The socket
// is nonblocking so that a full send buffer never keeps the thread from noticing a wake-up.
//
// Thread safety: send() from the owning thread is the session's own output; send() from any
// other thread (a Hub delivery) and deliver(), drop(), stop() are safe from anywhere: they queue
// under a mutex and wake the owner. Nobody but the owner touches the socket, except drop()'s
// shutdown(SHUT_RDWR), made under the same mutex as the close.
//
// Limits: with max_outbox set, any queued output over it drops the peer (Errc::too_slow). With
// max_outbox 0 the session's own output pauses reading above high_water (backpressure), and
// deliveries are bounded by delivery_limit, so that a slow reader never stalls a publisher.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "reactor/buffer.hpp"
#include "reactor/fd.hpp"
#include "reactor/outbox.hpp"
#include "reactor/session.hpp"
#include "reactor/timers.hpp"

namespace reactor {

struct BlockingLimits {
  std::size_t max_outbox = 0;                      // Protocol::max_outbox(); 0: see below
  std::size_t delivery_limit = 4u << 20;           // max_outbox 0: bound on output queued by others
  std::size_t high_water = 1u << 20;               // max_outbox 0: stop reading above this
  std::size_t low_water = 256u << 10;              // ... and resume below this
  std::size_t max_input = 1u << 20;                // Protocol::max_input()
  std::chrono::milliseconds idle_timeout{0};       // 0: none
  std::chrono::milliseconds close_linger{10'000};  // bound on flushing after close()
  const Protocol* protocol = nullptr;  // its last_words go to a peer dropped as idle / over input
};

// Byte totals shared by the connections of one server; updated as bytes move.
struct BlockingCounters {
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> writes{0};  // output syscalls (send, sendfile)
};

class BlockingConnection;

// A descriptor the owning thread waits on besides its socket (fork child: relay, signals).
class SideChannel {
 public:
  virtual int fd() const = 0;
  // `fd()` is readable or hung up; called on the owning thread, between session callbacks.
  virtual void on_readable(BlockingConnection& connection) = 0;

 protected:
  ~SideChannel() = default;
};

class BlockingConnection final : public Peer {
 public:
  using Clock = std::chrono::steady_clock;

  // `socket` must be a connected stream socket (it is made nonblocking). `wakeable`: create an
  // eventfd so that other threads can wake serve() (thread model); without it only the owning
  // thread may queue output (fork child).
  BlockingConnection(Fd socket, std::string remote, const BlockingLimits& limits,
                     BlockingCounters& counters, bool wakeable);
  ~BlockingConnection();
  BlockingConnection(const BlockingConnection&) = delete;
  BlockingConnection& operator=(const BlockingConnection&) = delete;

  // Drives `session` on the calling thread (on_open ... on_close) until the connection closes.
  // Returns the reason given to on_close: empty for an orderly close.
  std::error_code serve(Session& session, std::span<SideChannel* const> side_channels = {});

  // Peer
  void send(std::span<const std::byte> bytes) override;
  using Peer::send;
  void close() override;
  void shutdown_write() override;
  std::size_t buffered() const override;
  std::string remote() const override { return remote_; }
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) override;
  TimerId start_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period) override;
  bool cancel_timer(TimerId id) override;

  // Any thread: queues output from another session (a Hub delivery), bounded by the limits.
  void deliver(std::span<const std::byte> bytes);
  // Any thread: closes as soon as the owner wakes, discarding pending output.
  void drop(std::error_code reason);
  // Any thread: the server is stopping. Stop reading, flush, close orderly; at `deadline` drop
  // what is left with Errc::shutting_down.
  void stop(Clock::time_point deadline);

 private:
  enum class Source { own, other };
  void enqueue(std::span<const std::byte> bytes, Source source);
  bool enqueue_locked(std::span<const std::byte> bytes, Source source);
  void wake() noexcept;
  void fail(std::error_code reason);
  void drop_locked(std::error_code reason);
  std::thread::id owner_id() const noexcept { return owner_.load(std::memory_order_acquire); }
  // Why the connection must close now, if it must.
  std::optional<std::error_code> due_close(Clock::time_point now);
  bool want_read();
  int poll_timeout_ms(Clock::time_point now) const;
  template <class F>
  bool guarded(F&& call);
  void run_timers(Clock::time_point now);
  void say_last_words(std::error_code reason);
  void read_once(Session& session);
  void present(Session& session, std::span<const std::byte> bytes, bool from_input);
  void flush();
  void linger();
  void close_socket();

  const BlockingLimits& limits_;
  BlockingCounters& counters_;
  const std::string remote_;
  Fd wake_;  // eventfd, when wakeable

  std::atomic<std::thread::id> owner_{};  // the thread in serve()

  // Owner thread only.
  Buffer input_;
  Session* session_ = nullptr;          // while serve() runs
  std::unique_ptr<TimerQueue> timers_;  // session timers, made on first use
  bool unflushed_ = false;              // the session queued output since the last flush
  Clock::time_point last_activity_{};
  bool read_paused_ = false;
  bool hung_up_ = false;

  // Guarded by mutex_: the outbox, the socket's life, and requests from other threads.
  mutable std::mutex mutex_;
  Fd socket_;
  Outbox outbox_;
  std::error_code drop_reason_;
  bool dropped_ = false;
  bool close_wanted_ = false;
  bool shutdown_wanted_ = false;
  bool write_shut_ = false;
  bool stopping_ = false;
  bool peer_eof_ = false;
  Clock::time_point close_deadline_ = Clock::time_point::max();
  Clock::time_point stop_deadline_ = Clock::time_point::max();
};

}  // namespace reactor
