// BlockingConnection: one accepted stream socket driven by one thread (thread model) or one
// process (fork model), presenting itself to its Session as a Peer. The stream policy (leftover
// input and max_input, water marks or max_outbox drop, close / shutdown_write / lingering close,
// idle deadline) is the StreamCore's, as under epoll; this is its blocking driver: poll/ppoll,
// the syscalls, and the cross-thread delivery and wake-up of the thread model.
//
// The owning thread sits in serve(): it reads, calls the session, flushes the outbox, and waits
// in poll() on the socket and any side channels (the fork child's relay) only when there is
// nothing to do: unless the session just answered (the peer then waits for that), a read is
// tried first while reads keep finding data (a client that sends as it connects, or streams),
// and tried less often each time one finds none. With a socket in blocking mode
// (BlockingLimits::blocking_sockets: the fork child, and the thread model for a protocol that does
// not use the Hub) and only input to wait for, the wait is the
// read itself. The session's own output is coalesced: it is written once its callback returns
// (64 KiB or more at once), so a pipelined burst of requests costs one send. Session timers live
// on this thread. No call but that read blocks (MSG_DONTWAIT), so that a full send buffer never
// keeps the thread from noticing a wake-up or a stop.
//
// Thread safety: send() from the owning thread is the session's own output; send() from any
// other thread (a Hub delivery) and deliver(), drop(), stop() are safe from anywhere on a
// wakeable connection: they queue under a mutex and wake the owner with WakeSignal (no descriptor
// per connection). Nobody but the owner touches the socket, except drop()'s shutdown(SHUT_RDWR)
// and a delivery's direct send, made under the same mutex as the close.
//
// Limits: with max_outbox set, any queued output over it drops the peer (Errc::too_slow). With
// max_outbox 0 the session's own output pauses reading above high_water (backpressure), and
// deliveries are bounded by delivery_limit, so that a slow reader never stalls a publisher.
#pragma once

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>

#include "reactor/buffer.hpp"
#include "reactor/fd.hpp"
#include "reactor/outbox.hpp"
#include "reactor/session.hpp"
#include "reactor/stream_core.hpp"
#include "reactor/timers.hpp"

namespace reactor {

// The stream limits (StreamLimits: max_outbox from Protocol::max_outbox(), water marks used
// when it is 0, max_input, idle_timeout, close_linger) and what the blocking driver adds.
struct BlockingLimits : StreamLimits {
  std::size_t delivery_limit = 4u << 20;  // max_outbox 0: bound on output queued by others
  const Protocol* protocol = nullptr;  // its last_words go to a peer dropped as idle / over input
  // The signal mask while waiting (ppoll): wakeable connections: WakeSignal::wait_mask().
  // Null: poll, with the thread's mask.
  const sigset_t* wait_mask = nullptr;
  // The sockets come in blocking mode (Acceptor::set_blocking_sockets): with nothing else to
  // wait for (no output pending, no side channel descriptor, no deadline or timer) the owner
  // waits in the read itself, as a textbook server does, instead of in poll before it. Every
  // other call on the socket passes MSG_DONTWAIT; a file to send switches it to nonblocking.
  bool blocking_sockets = false;
  // Stop requests from a signal handler (a fork child's stop signals); see SignalStop.
  const struct SignalStop* signal_stop = nullptr;
};

// A stop that a signal handler requests, for an owner that runs with the stop signals unblocked
// and has no descriptor to hear them on (a fork child: no signalfd, no mask change per wait).
// The handler calls request(): it notes the signal and, if the owner is about to wait for input
// (or is waiting), shuts that socket for reading, which ends the wait at once however it waits
// (in recv or in poll for POLLIN). serve() notes the socket, then looks for a request, then
// waits; so a request made at any moment is seen before the wait or ends it. A wait that is not
// for input (output only) blocks `signals` around a ppoll that unblocks them, as WakeSignal.
// A request makes the connection stop(now + grace): it flushes and closes orderly.
// What the handler and the owner share is the thread's own (thread_local, initial-exec: read and
// written without a call, async-signal-safe): the handler runs on the thread the signal is
// delivered to, a fork child's only thread. In a child it lies in its thread's descriptor page,
// which the fork has the child write anyway: no page of its own to copy.
struct SignalStop {
  sigset_t signals{};  // the stop signals
  std::chrono::milliseconds grace{0};

  // Async-signal-safe: from the handler (keeps errno).
  static void request(int signo) noexcept;
  // The calling thread's: the signal requested (0 for none), taken (cleared) by take().
  static int requested() noexcept;
  static int take() noexcept;
  // The socket a wait for input is on, -1 for none.
  static void reading(int fd) noexcept;
};

// How other threads wake a connection's owner without a descriptor per connection: the owner
// threads keep kSignal blocked, except while serve() waits (ppoll with wait_mask()), so a wake-up
// sent at any moment ends the wait in progress or the next one. The handler does nothing.
// Construct it on the thread that then starts the owner threads (they inherit its mask); it
// restores that thread's mask when destroyed. SIGURG is ignored by default and unused unless a
// socket has an owner (F_SETOWN): run() installs the handler when SIGURG has none and leaves it
// (SA_RESTART: other system calls go on; a handler already installed is kept and sees the
// wake-ups).
class WakeSignal {
 public:
  static constexpr int kSignal = SIGURG;

  WakeSignal();
  ~WakeSignal();
  WakeSignal(const WakeSignal&) = delete;
  WakeSignal& operator=(const WakeSignal&) = delete;

  std::error_code error() const noexcept { return error_; }
  // The calling thread's mask as it was, with the stop signals it blocked, minus kSignal.
  const sigset_t* wait_mask() const noexcept { return &wait_mask_; }

 private:
  sigset_t previous_{};
  sigset_t wait_mask_{};
  std::error_code error_;
  bool restore_ = false;
};

// Byte totals shared by the connections of one server; updated as bytes move.
struct BlockingCounters {
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> writes{0};  // output syscalls (send, sendfile)
};

class BlockingConnection;

// A descriptor the owning thread waits on besides its socket (fork child: its relay).
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

  // `socket` must be a connected stream socket, nonblocking (as the Acceptor hands them over)
  // unless `limits.blocking_sockets`.
  // `remote`: the peer as a URL, or empty to look it up (getpeername) when first asked.
  // `wakeable`: other threads may queue output, drop() and stop() (thread model); the owner thread
  // must then keep WakeSignal::kSignal blocked and `limits.wait_mask` be set. Without it only the
  // owning thread may (fork child). A wakeable connection with `limits.blocking_sockets` waits in
  // its read as a textbook thread-per-connection server does, which a stop, a close or a drop
  // from another thread ends (they shut the socket for reading), but output queued by another
  // thread does not: for sessions nobody else sends to (a protocol that does not use the Hub),
  // as their output from other threads then waits for the peer's next input once the socket's
  // buffer is full.
  BlockingConnection(Fd socket, std::string&& remote, const BlockingLimits& limits,
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
  std::string remote() const override;
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
  enum class ReadResult { data, eof, error, would_block, interrupted };
  void enqueue(std::span<const std::byte> bytes, Source source);
  bool enqueue_locked(std::span<const std::byte> bytes, Source source);
  void wake() noexcept;
  void fail(std::error_code reason);
  void drop_locked(std::error_code reason);
  const void* owner_id() const noexcept { return owner_.load(std::memory_order_acquire); }
  const std::string& remote_locked() const;
  // Whether to read before waiting, and what that read found.
  bool speculate() const noexcept;
  void speculated(bool found);
  void waited();
  int wait(pollfd* fds, std::size_t count, int timeout_ms);
  // Waits for input in the read itself (blocking_sockets): interrupted when a stop came first.
  ReadResult read_blocking(Session& session);
  // With a SignalStop: acts on a request, if one came; true if it did.
  bool take_stop_request();
  // wait() with a SignalStop (see there).
  int wait_for_stop(pollfd* fds, std::size_t count, const timespec* timeout);
  void read_returned(int flags) noexcept;
  bool ends_blocked_read_locked() const noexcept;
  void end_blocked_read_locked() noexcept;
  // The time, read from the clock when first asked in one round of serve() (a connection with
  // no deadline and no timer never asks: a forked child then touches no clock code or vDSO).
  class Now {
   public:
    Clock::time_point operator()() {
      if (!read_) {
        at_ = Clock::now();
        read_ = true;
      }
      return at_;
    }

   private:
    Clock::time_point at_{};
    bool read_ = false;
  };
  bool idle_clock() const noexcept { return limits_.idle_timeout.count() > 0; }
  // Why the connection must close now, if it must.
  std::optional<std::error_code> due_close(Now& now);
  // Whether to read; `pending`: the output queued.
  bool want_read(std::size_t& pending);
  int poll_timeout_ms(Now& now) const;
  void note_activity();       // a read brought bytes
  void note_output_locked();  // bytes went out: the idle clock restarts
  template <class F>
  bool guarded(F&& call);
  void run_timers(Now& now);
  void say_last_words(std::error_code reason);
  // `flags`: MSG_DONTWAIT, or 0 to wait in the read (a blocking socket).
  ReadResult read_once(Session& session, int flags = MSG_DONTWAIT);
  template <std::size_t N>
  [[gnu::noinline]] ReadResult read_onto_stack(Session& session, int flags);
  ReadResult read_ended(Session& session, ssize_t n);
  void present(Session& session, std::span<const std::byte> bytes, bool from_input);
  void flush();
  void linger();
  void close_socket();

  const BlockingLimits& limits_;
  BlockingCounters& counters_;
  const bool wakeable_;

  // The thread in serve(), by the address of its own SignalStop state: known inline, where
  // std::this_thread::get_id() is a call into a page of libc's that a forked child has not mapped.
  std::atomic<const void*> owner_{nullptr};
  pthread_t owner_thread_{};  // wakeable: written before owner_, read after it, for wake()

  // Owner thread only.
  Session* session_ = nullptr;          // while serve() runs
  std::unique_ptr<TimerQueue> timers_;  // session timers, made on first use
  bool unflushed_ = false;              // the session queued output since the last flush
  Clock::time_point read_at_{};         // the last read that brought bytes (see note_activity)
  bool hung_up_ = false;
  bool large_reads_ = false;        // a read filled the small buffer (see read_once)
  bool blocking_ = false;           // the socket is in blocking mode (see blocking_sockets)
  unsigned speculative_reads_ = 0;  // in a row without waiting, bounded (side channels, fairness)
  unsigned speculation_skip_ = 0;   // waits to go before the next speculative read
  unsigned speculation_backoff_ = 0;

  // Guarded by mutex_: the core (except its input, the owner's alone), the socket's life, and
  // requests from other threads. The core is closed (with the reason) once the connection is
  // dropped: it then closes as soon as the owner looks.
  // Taken only on a wakeable connection: on another (the fork child's) no other thread can come,
  // and the lock would cost a forked child 64 KiB more of libc's code to fault in.
  class OwnersMutex {
   public:
    explicit OwnersMutex(bool shared) noexcept : shared_(shared) {}
    void lock() {
      if (shared_) mutex_.lock();
    }
    void unlock() noexcept {
      if (shared_) mutex_.unlock();
    }

   private:
    std::mutex mutex_;
    const bool shared_;
  };
  mutable OwnersMutex mutex_{wakeable_};
  mutable std::string remote_;  // looked up when first asked if not given
  Fd socket_;
  Buffer::Spare spare_;  // the outbox's first block: a small reply costs no malloc (before core_)
  StreamCore core_;
  bool stopping_ = false;
  Clock::time_point stop_deadline_ = Clock::time_point::max();
  // The owner is in (or about to enter) a blocking read: written by the owner, read under mutex_
  // by the thread that makes a request ending it (see read_blocking).
  std::atomic<bool> reading_blocked_{false};
};

}  // namespace reactor
