#include "reactor/models/blocking_connection.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <limits>
#include <optional>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

// Output the session queued this large is written at once instead of after its callback.
constexpr std::size_t kEagerFlush = 64 * 1024;

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

BlockingConnection::BlockingConnection(Fd socket, std::string remote, const BlockingLimits& limits,
                                       BlockingCounters& counters, bool wakeable)
    : limits_(limits), counters_(counters), remote_(std::move(remote)), socket_(std::move(socket)) {
  std::error_code ec = set_nonblocking(socket_.get(), true);
  if (!ec && wakeable) {
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) ec = last_errno();
  }
  if (ec) {
    dropped_ = true;  // serve() runs on_open, then closes with this reason at once
    drop_reason_ = ec;
  }
}

BlockingConnection::~BlockingConnection() = default;

std::error_code BlockingConnection::serve(Session& session,
                                          std::span<SideChannel* const> side_channels) {
  owner_.store(std::this_thread::get_id(), std::memory_order_release);
  session_ = &session;
  last_activity_ = Clock::now();
  guarded([&] { session.on_open(*this); });

  std::vector<pollfd> fds;
  fds.reserve(2 + side_channels.size());
  std::error_code reason;
  for (;;) {
    auto now = Clock::now();
    run_timers(now);
    if (unflushed_) {  // what the session sent since the last round goes out in one write
      unflushed_ = false;
      flush();
    }
    if (auto due = due_close(now)) {
      reason = *due;
      break;
    }
    bool reading = want_read();
    short events = reading ? POLLIN : 0;
    if (buffered() > 0) events |= POLLOUT;
    fds.clear();
    fds.push_back({socket_.get(), events, 0});
    if (wake_) fds.push_back({wake_.get(), POLLIN, 0});
    for (SideChannel* side : side_channels) fds.push_back({side->fd(), POLLIN, 0});

    int rc = ::poll(fds.data(), fds.size(), poll_timeout_ms(now));
    if (rc < 0) {
      if (errno != EINTR) fail(last_errno());
      continue;
    }
    if (rc == 0) continue;  // a deadline: due_close decides

    std::size_t next = 1;
    if (wake_) {
      if (fds[next].revents != 0) {
        std::uint64_t count;
        [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof(count));
      }
      ++next;
    }
    for (SideChannel* side : side_channels) {
      if (fds[next++].revents != 0) side->on_readable(*this);
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

  if (!reason) linger();
  if ((reason == Errc::idle_timeout || reason == Errc::input_too_large) &&
      limits_.protocol != nullptr && buffered() == 0) {
    say_last_words(reason);
  }
  close_socket();
  timers_.reset();  // no timer fires after on_close
  session_ = nullptr;
  if (reason && reason != Errc::session_failed && reason != Errc::shutting_down &&
      log_enabled(LogLevel::info)) {
    const bool dropped = reason == Errc::idle_timeout || reason == Errc::input_too_large ||
                         reason == Errc::too_slow;
    if (dropped) log(LogLevel::info, "%s: dropped: %s", remote_.c_str(), reason.message().c_str());
  }
  try {
    session.on_close(reason);
  } catch (...) {
    // A throwing on_close has nothing left to lose: the connection is gone already.
  }
  return reason;
}

std::optional<std::error_code> BlockingConnection::due_close(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (dropped_) return drop_reason_;
  if (outbox_.empty()) {
    if (close_wanted_ || stopping_ || hung_up_) return std::error_code();
    if (shutdown_wanted_ && !write_shut_) {
      ::shutdown(socket_.get(), SHUT_WR);
      write_shut_ = true;
    }
    if (write_shut_ && peer_eof_) return std::error_code();
  } else {
    if (stopping_ && now >= stop_deadline_) return make_error_code(Errc::shutting_down);
    if (close_wanted_ && now >= close_deadline_) return errno_code(ETIMEDOUT);
  }
  if (limits_.idle_timeout.count() > 0 && !close_wanted_ && !stopping_ &&
      now - last_activity_ >= limits_.idle_timeout) {
    return make_error_code(Errc::idle_timeout);
  }
  return std::nullopt;
}

bool BlockingConnection::want_read() {
  std::size_t pending;
  {
    std::lock_guard lock(mutex_);
    if (close_wanted_ || stopping_ || dropped_ || peer_eof_) return false;
    pending = outbox_.size();
  }
  if (limits_.max_outbox == 0) {
    if (pending > limits_.high_water) {
      read_paused_ = true;
    } else if (read_paused_ && pending <= limits_.low_water) {
      read_paused_ = false;
    }
  }
  return !read_paused_;
}

int BlockingConnection::poll_timeout_ms(Clock::time_point now) const {
  auto deadline = timers_ ? timers_->next_deadline() : Clock::time_point::max();
  std::lock_guard lock(mutex_);
  if (stopping_) deadline = std::min(deadline, stop_deadline_);
  if (close_wanted_) deadline = std::min(deadline, close_deadline_);
  if (limits_.idle_timeout.count() > 0 && !close_wanted_ && !stopping_) {
    deadline = std::min(deadline, last_activity_ + limits_.idle_timeout);
  }
  return deadline == Clock::time_point::max() ? -1 : ms_until(now, deadline);
}

void BlockingConnection::read_once(Session& session) {
  ssize_t n;
  if (input_.empty()) {
    // Common case: nothing held over. Read onto the stack and hand the bytes to the session
    // straight from there; only what it leaves unconsumed is copied to the heap.
    std::byte stack[Buffer::kSpillSize];
    n = ::recv(socket_.get(), stack, sizeof(stack), 0);
    if (n > 0) {
      counters_.bytes_in.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      last_activity_ = Clock::now();
      present(session, {stack, static_cast<std::size_t>(n)}, false);
      return;
    }
  } else {
    n = input_.read_from(socket_.get());
    if (n > 0) {
      counters_.bytes_in.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      last_activity_ = Clock::now();
      present(session, input_.readable(), true);
      return;
    }
  }
  if (n < 0) {
    if (!would_block(errno)) fail(last_errno());
    return;
  }
  {
    std::lock_guard lock(mutex_);
    peer_eof_ = true;
  }
  guarded([&] { session.on_eof(*this); });
}

void BlockingConnection::present(Session& session, std::span<const std::byte> bytes,
                                 bool from_input) {
  std::size_t consumed = 0;
  if (!guarded([&] { consumed = session.on_data(*this, bytes); })) return;
  if (consumed > bytes.size()) consumed = bytes.size();
  if (from_input) {
    input_.consume(consumed);
  } else if (consumed < bytes.size() && !input_.append(bytes.subspan(consumed))) {
    fail(errno_code(ENOMEM));
    return;
  }
  if (input_.size() > limits_.max_input) fail(Errc::input_too_large);
}

void BlockingConnection::send(std::span<const std::byte> bytes) {
  bool own = std::this_thread::get_id() == owner_id();
  enqueue(bytes, own ? Source::own : Source::other);
}

void BlockingConnection::deliver(std::span<const std::byte> bytes) {
  enqueue(bytes, Source::other);
}

void BlockingConnection::enqueue(std::span<const std::byte> bytes, Source source) {
  if (bytes.empty()) return;
  bool wake_owner = false;
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || dropped_ || close_wanted_ || shutdown_wanted_ || write_shut_) return;
    wake_owner = enqueue_locked(bytes, source) && source == Source::other;
  }
  if (wake_owner) wake();
  if (source == Source::own) {
    unflushed_ = true;
    if (buffered() >= kEagerFlush) flush();  // a large reply does not wait for the callback's end
  }
}

// Returns true when the owner thread must look: output was queued for it or the peer dropped.
bool BlockingConnection::enqueue_locked(std::span<const std::byte> bytes, Source source) {
  if (outbox_.empty() && source == Source::other) {
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
      last_activity_ = Clock::now();
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    if (bytes.empty()) return false;
  }
  std::size_t limit = limits_.max_outbox;
  if (limit == 0) {
    limit =
        source == Source::own ? std::numeric_limits<std::size_t>::max() : limits_.delivery_limit;
  }
  bool was_empty = outbox_.empty();  // else the owner already has output to wait for
  if (bytes.size() > limit - outbox_.size()) {
    drop_locked(Errc::too_slow);
    return true;
  }
  if (!outbox_.append(bytes)) {
    drop_locked(errno_code(ENOMEM));
    return true;
  }
  return was_empty;
}

void BlockingConnection::close() {
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || close_wanted_ || dropped_) return;
    close_wanted_ = true;
    close_deadline_ = Clock::now() + limits_.close_linger;
  }
  if (std::this_thread::get_id() != owner_id()) wake();
}

void BlockingConnection::shutdown_write() {
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || shutdown_wanted_ || write_shut_ || close_wanted_ || dropped_) return;
    shutdown_wanted_ = true;
  }
  if (std::this_thread::get_id() != owner_id()) wake();
}

std::size_t BlockingConnection::buffered() const {
  std::lock_guard lock(mutex_);
  return outbox_.size();
}

void BlockingConnection::drop(std::error_code reason) {
  bool own = std::this_thread::get_id() == owner_id();
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || dropped_) return;
    drop_locked(reason);
    // Unblocks a peer that waits on us, even if the owner is slow to wake.
    if (!own) ::shutdown(socket_.get(), SHUT_RDWR);
  }
  if (!own) wake();
}

void BlockingConnection::stop(Clock::time_point deadline) {
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || stopping_) return;
    stopping_ = true;
    stop_deadline_ = deadline;
  }
  if (std::this_thread::get_id() != owner_id()) wake();
}

void BlockingConnection::fail(std::error_code reason) {
  std::lock_guard lock(mutex_);
  drop_locked(reason);
}

void BlockingConnection::drop_locked(std::error_code reason) {
  if (dropped_) return;
  dropped_ = true;
  drop_reason_ = reason;
  outbox_.clear();
}

void BlockingConnection::flush() {
  std::lock_guard lock(mutex_);
  if (!socket_ || outbox_.empty()) return;
  // One pass writes until the socket is full (or a budget is spent); POLLOUT brings us back.
  std::uint64_t writes = 0;
  ssize_t n = outbox_.write_to(socket_.get(), writes);
  counters_.writes.fetch_add(writes, std::memory_order_relaxed);
  if (n < 0) {
    drop_locked(last_errno());
    return;
  }
  if (n > 0) {
    counters_.bytes_out.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    last_activity_ = Clock::now();
  }
}

// A graceful close must not lose output the kernel already took: with unread input, close()
// answers with RST and drops our unacknowledged bytes. So unless the peer already finished or
// has everything, send FIN and discard its input until it closes or has our data, bounded by
// close_linger (and cut short when the model drops us at its shutdown deadline).
void BlockingConnection::linger() {
  if (peer_eof_ || unacknowledged_bytes(socket_.get()) == 0) return;
  ::shutdown(socket_.get(), SHUT_WR);
  auto deadline = Clock::now() + limits_.close_linger;
  std::byte sink[Buffer::kSpillSize];
  for (;;) {
    pollfd p{socket_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, 25);  // also a period to re-check what the peer has acknowledged
    if (rc < 0 && errno != EINTR) return;
    if (rc > 0) {
      ssize_t n = ::recv(socket_.get(), sink, sizeof(sink), 0);
      if (n == 0 || (n < 0 && !would_block(errno))) return;
    }
    if (unacknowledged_bytes(socket_.get()) == 0 || Clock::now() >= deadline) return;
    std::lock_guard lock(mutex_);
    if (dropped_) return;
  }
}

void BlockingConnection::close_socket() {
  {
    std::lock_guard lock(mutex_);
    socket_.reset();
    outbox_.clear();
  }
  input_.clear();
}

void BlockingConnection::wake() noexcept {
  if (!wake_) return;
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

std::error_code BlockingConnection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  const bool own = std::this_thread::get_id() == owner_id();
  {
    std::lock_guard lock(mutex_);
    if (!socket_ || dropped_ || close_wanted_ || shutdown_wanted_ || write_shut_) {
      return errno_code(EPIPE);
    }
    if (auto ec = outbox_.append_file(fd, offset, length)) return ec;
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
  if (std::this_thread::get_id() != owner_id() || session_ == nullptr) return kNoTimer;
  if (!timers_) timers_ = std::make_unique<TimerQueue>();
  if (delay.count() < 0) delay = std::chrono::milliseconds(0);
  return timers_->add(Clock::now() + delay, period, [this] {
    const TimerId id = timers_->running();
    guarded([&] { session_->on_timer(*this, id); });
  });
}

bool BlockingConnection::cancel_timer(TimerId id) {
  if (std::this_thread::get_id() != owner_id() || !timers_) return false;
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

void BlockingConnection::run_timers(Clock::time_point now) {
  if (timers_) timers_->run_due(now);
}

template <class F>
bool BlockingConnection::guarded(F&& call) {
  const char* what = nullptr;
  std::string text;
  try {
    call();
    return true;
  } catch (const std::exception& e) {
    text = e.what();
    what = text.c_str();
  } catch (...) {
    what = "an exception that is not a std::exception";
  }
  log(LogLevel::warn, "%s: the protocol handler threw: %s; closing", remote_.c_str(), what);
  fail(Errc::session_failed);
  return false;
}


}  // namespace reactor
