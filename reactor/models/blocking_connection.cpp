#include "reactor/models/blocking_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/error.hpp"
#include "reactor/hot.hpp"
#include "reactor/log.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

// Output the session queued this large is written at once instead of after its callback.
constexpr std::size_t kEagerFlush = 64 * 1024;
// Reads in a row without waiting: a client that keeps the socket full still lets the side
// channels be polled now and then.
constexpr unsigned kMaxSpeculativeReads = 16;
// A read that finds nothing is not tried first again for up to this many waits.
constexpr unsigned kMaxSpeculationBackoff = 64;
// A connection's first read, onto the stack.
constexpr std::size_t kFirstRead = 2048;

void on_wake_signal(int) {}

// SignalStop's state: the calling thread's (see there).
struct StopState {
  volatile sig_atomic_t requested = 0;
  volatile sig_atomic_t reading_fd = -1;
};
[[gnu::tls_model("initial-exec")]] thread_local StopState t_stop;

// Tells threads apart (BlockingConnection::owner_): the address of the thread's own state.
const void* this_thread_mark() noexcept {
  return &t_stop;
}

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

int ms_until(BlockingConnection::Clock::time_point now,
             BlockingConnection::Clock::time_point deadline) {
  if (deadline <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                              : static_cast<int>(ms);
}

}  // namespace

WakeSignal::WakeSignal() {
  struct sigaction current {};
  if (::sigaction(kSignal, nullptr, &current) != 0) {
    error_ = last_errno();
    return;
  }
  const bool handled = (current.sa_flags & SA_SIGINFO) != 0
                           ? current.sa_sigaction != nullptr
                           : current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
  if (!handled) {
    // Ignored signals are discarded, and would not end a wait: a handler that does nothing.
    struct sigaction action {};
    action.sa_handler = on_wake_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (::sigaction(kSignal, &action, nullptr) != 0) {
      error_ = last_errno();
      return;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kSignal);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, &previous_); rc != 0) {
    error_ = errno_code(rc);
    return;
  }
  restore_ = true;
  wait_mask_ = previous_;
  sigdelset(&wait_mask_, kSignal);
}

WakeSignal::~WakeSignal() {
  if (restore_) ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

REACTOR_HOT BlockingConnection::BlockingConnection(Fd socket, std::string&& remote,
                                       const BlockingLimits& limits, BlockingCounters& counters,
                                       bool wakeable)
    : limits_(limits),
      counters_(counters),
      wakeable_(wakeable),
      socket_(std::move(socket)),
      core_(limits.idle_timeout.count() > 0 ? Clock::now() : Clock::time_point()) {
  // Taken only if given: moving an empty string still copies its terminator (a call to memcpy,
  // one more page of libc's code for a forked child to fault in).
  if (!remote.empty()) remote_ = std::move(remote);
  blocking_ = limits_.blocking_sockets;
  // A wakeable owner must wait where a wake-up ends the wait: in ppoll (wait_mask), or in a read
  // that a stop, close or drop ends by shutting the socket for reading (end_blocked_read_locked).
  if (wakeable_ && limits_.wait_mask == nullptr) {
    core_.set_closed(errno_code(EINVAL));  // serve() runs on_open, then closes with this reason
  }
}

BlockingConnection::~BlockingConnection() = default;

REACTOR_HOT std::error_code BlockingConnection::serve(Session& session,
                                          std::span<SideChannel* const> side_channels) {
  if (wakeable_) owner_thread_ = ::pthread_self();
  owner_.store(this_thread_mark(), std::memory_order_release);
  session_ = &session;
  note_activity();
  guarded([&] { session.on_open(*this); });

  pollfd few[4];
  std::vector<pollfd> many;
  pollfd* fds = few;
  const std::size_t nfds = 1 + side_channels.size();
  if (nfds > std::size(few)) {
    many.resize(nfds);
    fds = many.data();
  }
  // The loop ends only with due_close's reason: no default std::error_code (whose constructor
  // calls into libstdc++, one more code page for a forked child to fault in).
  const std::error_code reason = [&]() -> std::error_code {
    for (;;) {
      Now now;
      run_timers(now);
      const bool answered = unflushed_;
      if (unflushed_) {  // what the session sent since the last round goes out in one write
        unflushed_ = false;
        flush();
      }
      if (auto due = due_close(now)) return *due;
      std::size_t pending = 0;
      const bool reading = want_read(pending);
      if (blocking_ && reading && pending == 0 && side_channels.empty() &&
          poll_timeout_ms(now) < 0) {
        // Nothing to wait for but input, and no deadline: wait in the read (one syscall, not
        // poll + read), as a textbook server does.
        read_blocking(session);
        continue;
      }
      if (reading && pending == 0 && !answered && speculate()) {
        // Input is likely there already (a client that sends as it connects, or streams): read it
        // without asking poll first. Not after an answer: the peer is likely waiting for it.
        const bool found = read_once(session) != ReadResult::would_block;
        speculated(found);
        if (found) continue;
      }
      short events = reading ? POLLIN : 0;
      if (pending > 0) events |= POLLOUT;
      fds[0] = {socket_.get(), events, 0};
      for (std::size_t i = 0; i < side_channels.size(); ++i) {
        fds[1 + i] = {side_channels[i]->fd(), POLLIN, 0};
      }

      int rc = wait(fds, nfds, poll_timeout_ms(now));
      waited();
      if (rc < 0) {
        if (errno != EINTR) {
          fail(last_errno());
        } else {  // woken (WakeSignal), or a stop signal
          take_stop_request();
        }
        continue;
      }
      if (rc == 0) continue;  // a deadline: due_close decides

      for (std::size_t i = 0; i < side_channels.size(); ++i) {
        if (fds[1 + i].revents != 0) side_channels[i]->on_readable(*this);
      }

      short revents = fds[0].revents;
      if (revents & POLLNVAL) {
        fail(errno_code(EBADF));
        continue;
      }
      if (revents & (POLLOUT | POLLERR | POLLHUP)) flush();
      if (reading && (revents & (POLLIN | POLLERR | POLLHUP))) {
        read_once(session);
      } else if ((revents & (POLLERR | POLLHUP)) && buffered() == 0) {
        // Hang-up or error that no read or write surfaced (we are neither reading nor writing):
        // close now, or a level-triggered POLLHUP would wake us forever.
        std::error_code ec = finish_connect(socket_.get());
        if (ec) {
          fail(ec);
        } else {
          hung_up_ = true;
        }
      }
    }
  }();

  if (!reason) linger();
  if (limits_.protocol != nullptr && StreamCore::is_drop(reason)) {
    bool last_words = false;
    {
      std::lock_guard lock(mutex_);
      last_words = core_.says_last_words(reason);
    }
    if (last_words) say_last_words(reason);
  }
  if (StreamCore::is_drop(reason) && log_enabled(LogLevel::info)) {
    log(LogLevel::info, "%s: dropped: %s", remote().c_str(), reason.message().c_str());
  }
  close_socket();
  timers_.reset();  // no timer fires after on_close
  session_ = nullptr;
  try {
    session.on_close(reason);
  } catch (...) {
    // A throwing on_close has nothing left to lose: the connection is gone already.
  }
  owner_.store(nullptr, std::memory_order_release);  // nothing left to wake
  return reason;
}

int BlockingConnection::wait(pollfd* fds, std::size_t count, int timeout_ms) {
  if (limits_.wait_mask == nullptr && limits_.signal_stop == nullptr) {
    return ::poll(fds, count, timeout_ms);
  }
  timespec timeout{};
  timespec* bound = nullptr;
  if (timeout_ms >= 0) {
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1'000'000L;
    bound = &timeout;
  }
  if (limits_.signal_stop != nullptr) return wait_for_stop(fds, count, bound);
  // WakeSignal::kSignal is unblocked for the wait only: one sent before it ends it at once.
  return ::ppoll(fds, count, bound, limits_.wait_mask);
}

// The stop signals are unblocked. A wait for input on the socket is ended by the handler's
// shutdown(SHUT_RD) once reading_fd is set; any other wait blocks the signals from before the
// check until ppoll unblocks them, so one sent in between ends it at once.
int BlockingConnection::wait_for_stop(pollfd* fds, std::size_t count, const timespec* timeout) {
  const SignalStop& stop = *limits_.signal_stop;
  int rc = -1;
  if ((fds[0].events & POLLIN) != 0) {
    SignalStop::reading(fds[0].fd);
    if (take_stop_request()) {
      errno = EINTR;
    } else {
      rc = ::ppoll(fds, count, timeout, nullptr);
    }
    read_returned(0);
    return rc;
  }
  sigset_t open;
  if (int e = ::pthread_sigmask(SIG_BLOCK, &stop.signals, &open); e != 0) {
    errno = e;
    return -1;
  }
  if (take_stop_request()) {
    errno = EINTR;
  } else {
    rc = ::ppoll(fds, count, timeout, &open);
  }
  const int saved = errno;
  ::pthread_sigmask(SIG_SETMASK, &open, nullptr);
  errno = saved;
  return rc;
}

REACTOR_HOT BlockingConnection::ReadResult BlockingConnection::read_blocking(Session& session) {
  if (wakeable_) {
    // Noted before the look at the requests, which stop(), close() and drop() make under the
    // same mutex: a request made before the look is seen here, one made after it finds the note
    // and ends the read (end_blocked_read_locked).
    reading_blocked_.store(true, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    if (ends_blocked_read_locked()) {
      reading_blocked_.store(false, std::memory_order_relaxed);
      return ReadResult::interrupted;
    }
  }
  if (limits_.signal_stop != nullptr) {
    SignalStop::reading(socket_.get());
    if (take_stop_request()) {
      SignalStop::reading(-1);
      return ReadResult::interrupted;
    }
  }
  return read_once(session, 0);  // the read clears reading_fd as it returns (read_returned)
}

// After a read with `flags` 0 (or a wait for input): a stop request no longer needs to end it.
REACTOR_HOT void BlockingConnection::read_returned(int flags) noexcept {
  if (flags != 0) return;
  if (limits_.signal_stop != nullptr) SignalStop::reading(-1);
  // A request that still finds the note shuts a socket this connection stops reading anyway.
  if (wakeable_) reading_blocked_.store(false, std::memory_order_relaxed);
}

// What another thread asked for that ends a read in progress: the server stops, the session
// closes (from another thread), or the connection was dropped.
bool BlockingConnection::ends_blocked_read_locked() const noexcept {
  return stopping_ || core_.closed() || core_.close_wanted();
}

// Under the mutex, after a request that ends_blocked_read_locked(): an owner waiting in a
// blocking read wakes with end of input (recv returns 0), at once if it has not entered it yet.
// The socket cannot close meanwhile: the owner closes it under the mutex.
void BlockingConnection::end_blocked_read_locked() noexcept {
  if (socket_ && reading_blocked_.load(std::memory_order_relaxed)) {  // only set if blocking_
    ::shutdown(socket_.get(), SHUT_RD);
  }
}

bool BlockingConnection::take_stop_request() {
  if (limits_.signal_stop == nullptr || SignalStop::take() == 0) return false;
  stop(Clock::now() + limits_.signal_stop->grace);
  return true;
}

void SignalStop::request(int signo) noexcept {
  const int saved = errno;
  t_stop.requested = signo;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const int fd = t_stop.reading_fd;
  if (fd >= 0) ::shutdown(fd, SHUT_RD);
  errno = saved;
}

int SignalStop::requested() noexcept {
  return t_stop.requested;
}

int SignalStop::take() noexcept {
  const int signo = t_stop.requested;
  if (signo != 0) t_stop.requested = 0;
  return signo;
}

// Before a wait: noted before the owner looks for a request (the fence keeps the order against
// the handler, which runs on this thread).
void SignalStop::reading(int fd) noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_stop.reading_fd = fd;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

bool BlockingConnection::speculate() const noexcept {
  return speculation_skip_ == 0 && speculative_reads_ < kMaxSpeculativeReads;
}

void BlockingConnection::speculated(bool found) {
  if (found) {
    ++speculative_reads_;
    speculation_backoff_ = 0;
    return;
  }
  // A request-response client: its next request comes after our answer, not with it. Try less
  // often, so that each round costs poll + read rather than read + poll + read.
  speculation_backoff_ =
      speculation_backoff_ == 0 ? 1 : std::min(speculation_backoff_ * 2, kMaxSpeculationBackoff);
  speculation_skip_ = speculation_backoff_ + 1;  // the wait that follows this miss counts too
}

void BlockingConnection::waited() {
  speculative_reads_ = 0;
  if (speculation_skip_ > 0) --speculation_skip_;
}

REACTOR_HOT std::optional<std::error_code> BlockingConnection::due_close(Now& now) {
  std::lock_guard lock(mutex_);
  core_.note_activity(read_at_);
  if (core_.closed()) return core_.reason();
  if (core_.outbox().empty()) {
    if (stopping_ || hung_up_) return std::error_code();
    using Next = StreamCore::Next;
    switch (core_.flushed()) {
      case Next::close:
      case Next::linger:  // serve() lingers once out of its loop
      case Next::shutdown_close:
        return std::error_code();
      case Next::shutdown:
        ::shutdown(socket_.get(), SHUT_WR);
        break;
      case Next::nothing:
        break;
    }
    if (core_.done()) return std::error_code();
  } else if (stopping_ && now() >= stop_deadline_) {
    return make_error_code(Errc::shutting_down);
  }
  // A close that did not finish in close_linger; an idle peer (not while the server stops).
  if ((core_.closing() || !stopping_) && core_.deadline(limits_) != Clock::time_point::max()) {
    if (auto ec = core_.expired(now(), limits_)) return ec;
  }
  return std::nullopt;
}

REACTOR_HOT bool BlockingConnection::want_read(std::size_t& pending) {
  std::lock_guard lock(mutex_);
  pending = core_.outbox().size();
  core_.update_backpressure(limits_);
  return !stopping_ && core_.wants_input();
}

REACTOR_HOT int BlockingConnection::poll_timeout_ms(Now& now) const {
  auto deadline = timers_ ? timers_->next_deadline() : Clock::time_point::max();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) deadline = std::min(deadline, stop_deadline_);
    if (core_.closing() || !stopping_) deadline = std::min(deadline, core_.deadline(limits_));
  }
  return deadline == Clock::time_point::max() ? -1 : ms_until(now(), deadline);
}

// The owner's reads note their time here without the mutex; due_close() hands it to the core.
// Only the idle deadline needs it: without one, no clock read per read.
REACTOR_HOT void BlockingConnection::note_activity() {
  if (idle_clock()) read_at_ = Clock::now();
}

REACTOR_HOT void BlockingConnection::note_output_locked() {
  if (idle_clock()) core_.note_activity(Clock::now());
}

REACTOR_HOT BlockingConnection::ReadResult BlockingConnection::read_once(Session& session, int flags) {
  Buffer& input = core_.input();
  if (input.empty()) {
    // Common case: nothing held over. Read onto the stack and hand the bytes to the session
    // straight from there; only what it leaves unconsumed is copied to the heap. Reads take a
    // small buffer until one fills it: a peer that sends small requests then never makes us
    // touch (and, in a forked child, fault in) the stack pages of a 64 KiB one; a peer that
    // streams gets the large one from its second read on.
    return large_reads_ ? read_onto_stack<Buffer::kSpillSize>(session, flags)
                        : read_onto_stack<kFirstRead>(session, flags);
  }
  // A nonblocking socket needs no flag (and readv is what the epoll Connection calls too).
  const ssize_t n = input.read_from(socket_.get(), blocking_ ? flags : 0);
  read_returned(flags);
  if (n > 0) {
    counters_.bytes_in.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    note_activity();
    present(session, input.readable(), true);
    return ReadResult::data;
  }
  return read_ended(session, n);
}

template <std::size_t N>
REACTOR_HOT BlockingConnection::ReadResult BlockingConnection::read_onto_stack(Session& session, int flags) {
  std::byte stack[N];
  const ssize_t n = ::recv(socket_.get(), stack, sizeof(stack), flags);
  read_returned(flags);
  if (n > 0) {
    if (static_cast<std::size_t>(n) == N) large_reads_ = true;
    counters_.bytes_in.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    note_activity();
    present(session, {stack, static_cast<std::size_t>(n)}, false);
    return ReadResult::data;
  }
  return read_ended(session, n);
}

// A read that brought no bytes: `n` is 0 (end of input) or -1.
REACTOR_HOT BlockingConnection::ReadResult BlockingConnection::read_ended(Session& session, ssize_t n) {
  // A stop request ended the read (its shutdown(SHUT_RD): an end of input that is ours).
  if ((n == 0 || errno == EINTR) && limits_.signal_stop != nullptr &&
      SignalStop::requested() != 0) {
    return ReadResult::interrupted;
  }
  if (n == 0 && wakeable_ && blocking_) {
    std::lock_guard lock(mutex_);
    if (ends_blocked_read_locked()) return ReadResult::interrupted;  // ours, as above
  }
  if (n < 0) {
    if (would_block(errno)) return ReadResult::would_block;
    fail(last_errno());
    return ReadResult::error;
  }
  {
    std::lock_guard lock(mutex_);
    core_.peer_finished();
  }
  guarded([&] { session.on_eof(*this); });
  return ReadResult::eof;
}

REACTOR_HOT void BlockingConnection::present(Session& session, std::span<const std::byte> bytes,
                                 bool from_input) {
  std::size_t consumed = 0;
  if (!guarded([&] { consumed = session.on_data(*this, bytes); })) return;
  if (auto ec = core_.keep_leftover(bytes, consumed, from_input, limits_)) fail(ec);
}

REACTOR_HOT void BlockingConnection::send(std::span<const std::byte> bytes) {
  bool own = this_thread_mark() == owner_id();
  enqueue(bytes, own ? Source::own : Source::other);
}

REACTOR_HOT void BlockingConnection::deliver(std::span<const std::byte> bytes) {
  enqueue(bytes, Source::other);
}

REACTOR_HOT void BlockingConnection::enqueue(std::span<const std::byte> bytes, Source source) {
  if (bytes.empty()) return;
  bool wake_owner = false;
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || !core_.accepts_output()) return;
    wake_owner = enqueue_locked(bytes, source) && source == Source::other;
  }
  if (wake_owner) wake();
  if (source == Source::own) {
    unflushed_ = true;
    if (buffered() >= kEagerFlush) flush();  // a large reply does not wait for the callback's end
  }
}

// Returns true when the owner thread must look: output was queued for it or the peer dropped.
REACTOR_HOT bool BlockingConnection::enqueue_locked(std::span<const std::byte> bytes, Source source) {
  Outbox& outbox = core_.outbox();
  if (outbox.empty() && source == Source::other) {
    // Writes go out at once when the socket takes them; only the rest is queued. Deliveries
    // from other threads (Hub) do the same, under the mutex and without blocking: the kernel
    // buffer then absorbs a burst as it does under epoll, so a reader that keeps up is not
    // dropped just because its own thread was not scheduled in time.
    counters_.writes.fetch_add(1, std::memory_order_relaxed);
    ssize_t n = ::send(socket_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && !would_block(errno)) {
      drop_locked(last_errno());
      return true;
    }
    if (n > 0) {
      counters_.bytes_out.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      note_output_locked();
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    if (bytes.empty()) return false;
  }
  std::size_t limit = limits_.max_outbox;
  if (limit == 0) {
    limit =
        source == Source::own ? std::numeric_limits<std::size_t>::max() : limits_.delivery_limit;
  }
  bool was_empty = outbox.empty();  // else the owner already has output to wait for
  if (bytes.size() > limit - outbox.size()) {
    drop_locked(Errc::too_slow);
    return true;
  }
  if (!outbox.append(bytes, &spare_)) {
    drop_locked(errno_code(ENOMEM));
    return true;
  }
  return was_empty;
}

REACTOR_HOT void BlockingConnection::close() {
  const bool own = this_thread_mark() == owner_id();
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || core_.closed() || core_.close_wanted()) return;
    core_.close(Clock::now(), limits_);  // what to do next, due_close() asks on the owner
    if (!own) end_blocked_read_locked();
  }
  if (!own) wake();
}

void BlockingConnection::shutdown_write() {
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || !core_.accepts_output()) return;
    // Nothing pending: FIN now (under the mutex, as drop's shutdown); the owner closes once the
    // peer's EOF has come too. Else the owner's flush leads there (due_close).
    if (core_.shutdown_write() != StreamCore::Next::nothing) ::shutdown(socket_.get(), SHUT_WR);
  }
  if (this_thread_mark() != owner_id()) wake();
}

std::size_t BlockingConnection::buffered() const {
  std::lock_guard lock(mutex_);
  return core_.outbox().size();
}

void BlockingConnection::drop(std::error_code reason) {
  bool own = this_thread_mark() == owner_id();
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || core_.closed()) return;
    drop_locked(reason);
    // Unblocks a peer that waits on us, even if the owner is slow to wake.
    if (!own) ::shutdown(socket_.get(), SHUT_RDWR);
  }
  if (!own) wake();
}

void BlockingConnection::stop(Clock::time_point deadline) {
  const bool own = this_thread_mark() == owner_id();
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || stopping_) return;
    stopping_ = true;
    stop_deadline_ = deadline;
    if (!own) end_blocked_read_locked();
  }
  if (!own) wake();
}

void BlockingConnection::fail(std::error_code reason) {
  std::lock_guard lock(mutex_);
  drop_locked(reason);
}

void BlockingConnection::drop_locked(std::error_code reason) {
  if (core_.set_closed(reason)) core_.outbox().clear();
}

REACTOR_HOT void BlockingConnection::flush() {
  std::lock_guard lock(mutex_);
  if (!socket_ || core_.outbox().empty()) return;
  // One pass writes until the socket is full (or a budget is spent); POLLOUT brings us back.
  std::uint64_t writes = 0;
  ssize_t n = core_.outbox().write_to(socket_.get(), writes);
  counters_.writes.fetch_add(writes, std::memory_order_relaxed);
  if (n < 0) {
    drop_locked(last_errno());
    return;
  }
  if (n > 0) {
    counters_.bytes_out.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    note_output_locked();
  }
}

// A graceful close must not lose output the kernel already took: with unread input, close()
// answers with RST and drops our unacknowledged bytes. So unless the peer already finished or
// has everything, send FIN and discard its input until it closes or has our data, bounded by
// close_linger since close() (or since now, for a stop or hang-up), and cut short when the model
// drops us at its shutdown deadline.
void BlockingConnection::linger() {
  {
    std::lock_guard lock(mutex_);
    if (core_.peer_eof()) return;
  }
  if (unacknowledged_bytes(socket_.get()) == 0) return;
  ::shutdown(socket_.get(), SHUT_WR);
  {
    std::lock_guard lock(mutex_);
    core_.lingered(Clock::now(), limits_);
  }
  std::byte sink[Buffer::kSpillSize];
  for (;;) {
    pollfd p{socket_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, 25);  // also a period to re-check what the peer has acknowledged
    if (rc < 0 && errno != EINTR) return;
    if (rc > 0) {
      ssize_t n = ::recv(socket_.get(), sink, sizeof(sink), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && !would_block(errno))) return;
    }
    if (unacknowledged_bytes(socket_.get()) == 0) return;
    std::lock_guard lock(mutex_);
    if (core_.closed() || core_.expired(Clock::now(), limits_)) return;
  }
}

REACTOR_HOT void BlockingConnection::close_socket() {
  {
    std::lock_guard lock(mutex_);
    socket_.reset();
    core_.outbox().clear();
  }
  core_.input().clear();
}

// The owner is alive while anyone may call this (its model and the Hub let go of the connection
// before its thread ends); before serve() and after it there is nobody to wake.
void BlockingConnection::wake() noexcept {
  if (!wakeable_ || owner_id() == nullptr) return;
  ::pthread_kill(owner_thread_, WakeSignal::kSignal);
}

std::string BlockingConnection::remote() const {
  std::lock_guard lock(mutex_);
  return remote_locked();
}

// As the epoll Connection: the peer's address while the socket is open (looked up once),
// "(closed)" after.
const std::string& BlockingConnection::remote_locked() const {
  static const std::string closed = "(closed)";
  if (!remote_.empty()) return remote_;
  if (!socket_) return closed;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(socket_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    remote_ = "(unknown)";
    return remote_;
  }
  // Stream sockets only: a UNIX one is unix_stream, any other family TCP.
  const Transport transport = ss.ss_family == AF_UNIX ? Transport::unix_stream : Transport::tcp;
  remote_ = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, transport).to_string();
  return remote_;
}

std::error_code BlockingConnection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  const bool own = this_thread_mark() == owner_id();
  // Only the owner may switch its socket to nonblocking, and a blocking socket's sendfile would
  // block whoever flushes it: another thread's file waits for nothing, it is refused.
  if (!own && limits_.blocking_sockets) return errno_code(EINVAL);
  if (own && blocking_) {  // sendfile takes no MSG_DONTWAIT: from now on, poll before reading
    if (auto ec = set_nonblocking(socket_.get(), true)) return ec;
    blocking_ = false;
  }
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || !core_.accepts_output()) return errno_code(EPIPE);
    if (auto ec = core_.outbox().append_file(fd, offset, length)) return ec;
  }
  if (own) {
    unflushed_ = true;
  } else {
    wake();
  }
  return {};
}

// Session timers are the owner thread's: a call from elsewhere arms nothing.
TimerId BlockingConnection::start_timer(std::chrono::milliseconds delay,
                                        std::chrono::milliseconds period) {
  if (this_thread_mark() != owner_id() || session_ == nullptr) return kNoTimer;
  if (!timers_) timers_ = std::make_unique<TimerQueue>();
  if (delay.count() < 0) delay = std::chrono::milliseconds(0);
  return timers_->add(Clock::now() + delay, period, [this] {
    const TimerId id = timers_->running();
    guarded([&] { session_->on_timer(*this, id); });
  });
}

bool BlockingConnection::cancel_timer(TimerId id) {
  if (this_thread_mark() != owner_id() || !timers_) return false;
  return timers_->cancel(id);
}

void BlockingConnection::say_last_words(std::error_code reason) {
  try {
    const std::string words = limits_.protocol->last_words(reason);
    if (words.empty()) return;
    std::lock_guard lock(mutex_);
    if (!socket_) return;
    counters_.writes.fetch_add(1, std::memory_order_relaxed);
    [[maybe_unused]] ssize_t n =
        ::send(socket_.get(), words.data(), words.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  } catch (...) {  // a throwing last_words loses its words, not the connection's close
  }
}

void BlockingConnection::run_timers(Now& now) {
  if (timers_) timers_->run_due(now());
}

template <class F>
bool BlockingConnection::guarded(F&& call) {
  if (StreamCore::guard(call, [&](const char* what) {
        log(LogLevel::warn, "%s: the protocol handler threw: %s; closing", remote().c_str(), what);
      })) {
    return true;
  }
  fail(Errc::session_failed);
  return false;
}

}  // namespace reactor
