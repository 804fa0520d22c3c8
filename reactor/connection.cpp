#include "reactor/connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

// How often a closing connection checks whether the peer has acknowledged our data.
constexpr std::chrono::milliseconds kCloseTick{25};

// Message records in the output buffer: a native-endian u32 length, then the bytes.
using RecordLength = std::uint32_t;

// Pending output this large is written at once instead of at the end of the iteration.
constexpr std::size_t kEagerFlush = 64 * 1024;

}  // namespace

template <class F>
bool Connection::guarded(F&& call) {
  try {
    call();
    return true;
  } catch (const std::exception& e) {
    session_threw(e.what());
  } catch (...) {
    session_threw("an exception that is not a std::exception");
  }
  return false;
}

void Connection::session_threw(const char* what) {
  ++owner_.counters_.session_errors;
  if (log_enabled(LogLevel::warn)) {
    log(LogLevel::warn, "%s: the protocol handler threw: %s; closing", remote().c_str(), what);
  }
  close_now(Errc::session_failed);
}

Connection::Connection(Loop& loop, Fd fd, Transport transport, std::unique_ptr<Session> session,
                       const ConnectionOptions& options, ConnectionSet& owner)
    : loop_(loop),
      owner_(owner),
      session_(std::move(session)),
      options_(options),
      fd_(std::move(fd)),
      transport_(transport) {
  if (transport == Transport::unix_seqpacket) state_ |= kMessages;
}

Connection::~Connection() {
  loop_.cancel_flush(*this);
  if (watch_ != kNoWatch) loop_.unwatch(watch_);
  if (idle_timer_ != kNoTimer) loop_.cancel_timer(idle_timer_);
  if (session_timers_) {
    for (TimerId id : *session_timers_) loop_.cancel_timer(id);
  }
}

void Connection::start() {
  note_activity();
  auto id = loop_.watch(fd_.get(), EPOLLIN, *this);
  if (!id) {
    close_now(id.error());
    return;
  }
  watch_ = *id;
  state_ |= kWatchingIn;
  arm_idle_timer();
  guarded([&] { session_->on_open(*this); });
}

void Connection::on_events(std::uint32_t events) {
  if ((state_ & kWatchingIn) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) handle_readable();
  if (is_open() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !output_.empty()) {
    handle_writable();
  }
  // Hang-up or error that no read or write surfaced (we are neither reading nor writing): close
  // here, or a level-triggered EPOLLHUP would wake us forever.
  if (is_open() && (events & (EPOLLHUP | EPOLLERR)) && !(state_ & kWatchingIn) && output_.empty()) {
    close_now(finish_connect(fd_.get()));
  }
}

void Connection::handle_readable() {
  if (state_ & kLingering) {
    discard_input();
  } else if (state_ & kMessages) {
    read_message();
  } else {
    read_stream();
  }
}

void Connection::read_stream() {
  ssize_t n;
  if (input_.empty()) {
    // Common case: nothing held over. Read onto the stack and hand the bytes to the session
    // straight from there; only what it leaves unconsumed is copied to the heap.
    std::byte stack[Buffer::kSpillSize];
    n = ::recv(fd_.get(), stack, sizeof(stack), 0);
    if (n > 0) {
      owner_.counters_.bytes_in += static_cast<std::uint64_t>(n);
      note_activity();
      deliver({stack, static_cast<std::size_t>(n)}, false);
      return;
    }
  } else {
    n = input_.read_from(fd_.get());
    if (n > 0) {
      owner_.counters_.bytes_in += static_cast<std::uint64_t>(n);
      note_activity();
      deliver(input_.readable(), true);
      return;
    }
  }
  if (n < 0) {
    if (!would_block(errno)) close_now(last_errno());
    return;
  }
  handle_peer_eof();
}

// The peer finished sending: stop reading, tell the session, and close if our side is done too.
void Connection::handle_peer_eof() {
  state_ |= kPeerEof;
  update_interest();
  if (!guarded([&] { session_->on_eof(*this); })) return;
  if (is_open() && (state_ & kWriteShut)) close_now({});
}

void Connection::read_message() {
  std::byte stack[Buffer::kSpillSize];
  iovec iov{stack, sizeof(stack)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t n = ::recvmsg(fd_.get(), &msg, 0);
  if (n < 0) {
    if (!would_block(errno)) close_now(last_errno());
    return;
  }
  if (n == 0) {  // SEQPACKET: EOF (a zero-length message reads the same and is taken as EOF)
    handle_peer_eof();
    return;
  }
  owner_.counters_.bytes_in += static_cast<std::uint64_t>(n);
  note_activity();
  if (msg.msg_flags & MSG_TRUNC) {
    ++owner_.counters_.messages_too_large;
    close_now(Errc::message_too_large);
    return;
  }
  deliver({stack, static_cast<std::size_t>(n)}, false);
}

void Connection::deliver(std::span<const std::byte> bytes, bool from_input_buffer) {
  std::size_t consumed = 0;
  if (!guarded([&] { consumed = session_->on_data(*this, bytes); })) return;
  if (!is_open()) return;
  if (state_ & kMessages) return;  // each message is whole: nothing is held over
  if (consumed > bytes.size()) consumed = bytes.size();
  if (from_input_buffer) {
    input_.consume(consumed);
  } else if (consumed < bytes.size() && !input_.append(bytes.subspan(consumed))) {
    close_now(errno_code(ENOMEM));
    return;
  }
  if (input_.size() > options_.max_input) close_now(Errc::input_too_large);
}

void Connection::send(std::span<const std::byte> bytes) {
  if (!is_open() || (state_ & (kCloseWanted | kShutdownWanted | kWriteShut))) return;
  if (state_ & kMessages) {
    if (output_.empty() && send_message_now(bytes)) return;
    if (!is_open()) return;
    if (options_.max_outbox && output_.size() + bytes.size() > options_.max_outbox) {
      close_now(Errc::too_slow);
      return;
    }
    RecordLength length = static_cast<RecordLength>(bytes.size());
    if (!output_.bytes().append({reinterpret_cast<const std::byte*>(&length), sizeof(length)}) ||
        !output_.bytes().append(bytes)) {
      close_now(errno_code(ENOMEM));
      return;
    }
    update_interest();
    return;
  }
  if (bytes.empty()) return;
  if (!output_.append(bytes)) {
    close_now(errno_code(ENOMEM));
    return;
  }
  if (output_.size() >= kEagerFlush ||
      (options_.max_outbox && output_.size() > options_.max_outbox)) {
    write_out();  // do not let a large reply pile up until the end of the iteration
    if (!is_open()) return;
    if (options_.max_outbox && output_.size() > options_.max_outbox) {
      close_now(Errc::too_slow);
    }
    return;
  }
  loop_.defer_flush(*this);
}

std::error_code Connection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (state_ & kMessages) return Errc::wrong_transport;
  if (!is_open() || (state_ & (kCloseWanted | kShutdownWanted | kWriteShut))) {
    return errno_code(EPIPE);
  }
  if (auto ec = output_.append_file(fd, offset, length)) return ec;
  loop_.defer_flush(*this);
  return {};
}

void Connection::flush() {
  if (is_open() && !output_.empty()) write_out();
}

TimerId Connection::start_timer(std::chrono::milliseconds delay,
                                std::chrono::milliseconds period) {
  if (!is_open()) return kNoTimer;
  if (!session_timers_) session_timers_ = std::make_unique<std::vector<TimerId>>();
  const TimerId id = loop_.add_timer(delay < std::chrono::milliseconds(0) ? std::chrono::milliseconds(0) : delay,
                                     period, [this] { on_session_timer(loop_.current_timer()); });
  session_timers_->push_back(id);
  return id;
}

bool Connection::cancel_timer(TimerId id) {
  if (!session_timers_ || id == kNoTimer) return false;
  auto& ids = *session_timers_;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] != id) continue;
    ids[i] = ids.back();
    ids.pop_back();
    return loop_.cancel_timer(id);
  }
  return false;
}

void Connection::on_session_timer(TimerId id) {
  if (!is_open() || !session_timers_) return;
  // A one-shot timer is spent once it fires: forget it before the session may arm another.
  if (!loop_.timer_armed(id)) {
    auto& ids = *session_timers_;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == id) {
        ids[i] = ids.back();
        ids.pop_back();
        break;
      }
    }
  }
  guarded([&] { session_->on_timer(*this, id); });
}

// True when the kernel took the whole message; false when it must wait (EAGAIN) or the
// connection failed (then it is closed).
bool Connection::send_message_now(std::span<const std::byte> bytes) {
  ++owner_.counters_.writes;
  ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (n >= 0) {
    owner_.counters_.bytes_out += static_cast<std::uint64_t>(n);
    note_activity();
    return true;
  }
  if (!would_block(errno)) close_now(last_errno());
  return false;
}

void Connection::handle_writable() {
  if (state_ & kMessages) {
    while (!output_.empty()) {
      auto pending = output_.bytes().readable();
      RecordLength length;
      std::memcpy(&length, pending.data(), sizeof(length));
      if (!send_message_now(pending.subspan(sizeof(length), length))) {
        if (is_open()) update_interest();
        return;
      }
      output_.bytes().consume(sizeof(length) + length);
    }
  } else {
    write_out();
    return;
  }
  if (output_.empty()) {
    flush_done();
  }
  if (is_open()) update_interest();
}

void Connection::write_out() {
  loop_.cancel_flush(*this);  // written now: nothing left for the end of the iteration
  ssize_t n = output_.write_to(fd_.get(), owner_.counters_.writes);
  if (n < 0) {
    close_now(last_errno());
    return;
  }
  if (n > 0) {
    owner_.counters_.bytes_out += static_cast<std::uint64_t>(n);
    note_activity();
  }
  if (output_.empty()) flush_done();
  if (is_open()) update_interest();
}

void Connection::flush_done() {
  if (state_ & kCloseWanted) {
    finish_close();
    return;
  }
  if ((state_ & kShutdownWanted) && !(state_ & kWriteShut)) {
    ::shutdown(fd_.get(), SHUT_WR);
    state_ |= kWriteShut;
    if (state_ & kPeerEof) close_now({});
  }
}

void Connection::update_interest() {
  if (!is_open()) return;
  if (!options_.max_outbox) {
    if (output_.size() > options_.high_water && !(state_ & kReadPaused)) {
      state_ |= kReadPaused;
      ++owner_.counters_.read_pauses;
    } else if ((state_ & kReadPaused) && output_.size() <= options_.low_water) {
      state_ &= ~kReadPaused;
    }
  }
  bool want_in = (state_ & kLingering) || !(state_ & (kReadPaused | kPeerEof | kCloseWanted));
  // Output that only waits for this iteration's flush needs no EPOLLOUT (that flush decides).
  bool want_out = !output_.empty() && !flush_queued();
  bool have_in = state_ & kWatchingIn;
  bool have_out = state_ & kWatchingOut;
  if (want_in == have_in && want_out == have_out) return;
  std::uint32_t events = (want_in ? EPOLLIN : 0u) | (want_out ? EPOLLOUT : 0u);
  if (auto ec = loop_.modify(watch_, events)) {
    close_now(ec);
    return;
  }
  state_ = static_cast<std::uint16_t>((state_ & ~(kWatchingIn | kWatchingOut)) |
                                      (want_in ? kWatchingIn : 0) | (want_out ? kWatchingOut : 0));
}

void Connection::close() {
  if (!is_open() || (state_ & kCloseWanted)) return;
  state_ |= kCloseWanted;
  if (output_.empty() && (state_ & kPeerEof)) {  // the common case: nothing left either way
    close_now({});
    return;
  }
  // Bound the whole close: a peer that never reads, or never stops sending, must not keep us.
  if (idle_timer_ != kNoTimer) loop_.cancel_timer(idle_timer_);
  state_ |= kClosing;
  close_ticks_ = 0;
  idle_timer_ = loop_.add_timer(kCloseTick, kCloseTick, [this] { on_close_tick(); });
  if (output_.empty()) {
    finish_close();
    return;
  }
  update_interest();
}

// Output is flushed to the kernel and we want to close.
void Connection::finish_close() {
  if (state_ & kPeerEof) {  // everything the peer sent has been read: a plain close sends FIN
    close_now({});
    return;
  }
  if (unacknowledged_bytes(fd_.get()) == 0) {
    close_now({});  // the peer has all our bytes: even an RST can no longer lose any
    return;
  }
  ::shutdown(fd_.get(), SHUT_WR);
  state_ |= kWriteShut | kLingering;
  update_interest();
}

void Connection::discard_input() {
  std::byte sink[Buffer::kSpillSize];
  for (int i = 0; i < 4; ++i) {
    ssize_t n = ::recv(fd_.get(), sink, sizeof(sink), 0);
    if (n == 0) {
      close_now({});
      return;
    }
    if (n < 0) {
      if (!would_block(errno)) close_now(last_errno());
      return;
    }
  }
}

void Connection::on_close_tick() {
  ++close_ticks_;
  if ((state_ & kLingering) && unacknowledged_bytes(fd_.get()) == 0) {
    close_now({});
    return;
  }
  if (close_ticks_ * kCloseTick >= options_.close_linger) close_now(errno_code(ETIMEDOUT));
}

void Connection::shutdown_write() {
  if (!is_open() || (state_ & (kShutdownWanted | kWriteShut | kCloseWanted))) return;
  state_ |= kShutdownWanted;
  if (output_.empty()) flush_done();
}

void Connection::abort(std::error_code reason) {
  close_now(reason);
}

std::string Connection::remote() const {
  auto address =
      is_open() ? peer_address(fd_.get(), transport_) : Result<Address>(Errc::shutting_down);
  return address ? address->to_string() : "(closed)";
}

void Connection::arm_idle_timer() {
  if (options_.idle_timeout.count() <= 0 || (state_ & kClosing)) return;
  auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(loop_.now() - last_activity_);
  auto wait = options_.idle_timeout - elapsed;
  if (wait.count() < 1) wait = std::chrono::milliseconds(1);
  idle_timer_ = loop_.after(wait, [this] { on_idle_timer(); });
}

void Connection::on_idle_timer() {
  idle_timer_ = kNoTimer;
  if (loop_.now() - last_activity_ >= options_.idle_timeout) {
    close_now(Errc::idle_timeout);
  } else {
    arm_idle_timer();  // there was traffic: wait out the rest of the period
  }
}

void Connection::say_last_words(std::error_code reason) {
  const std::string words = options_.protocol->last_words(reason);
  if (words.empty()) return;
  ++owner_.counters_.writes;
  [[maybe_unused]] ssize_t n =
      ::send(fd_.get(), words.data(), words.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void Connection::close_now(std::error_code reason) {
  if (!is_open()) return;
  const bool dropped = reason == Errc::idle_timeout || reason == Errc::input_too_large ||
                       reason == Errc::too_slow;
  if (dropped) {
    if (log_enabled(LogLevel::info)) {
      log(LogLevel::info, "%s: dropped: %s", remote().c_str(), reason.message().c_str());
    }
    if (options_.protocol != nullptr && reason != Errc::too_slow && output_.empty()) {
      say_last_words(reason);
    }
  }
  loop_.cancel_flush(*this);
  if (session_timers_) {
    for (TimerId id : *session_timers_) loop_.cancel_timer(id);
    session_timers_.reset();
  }
  // Our socket was accepted or created here and never duplicated: closing it below removes it
  // from epoll, so no EPOLL_CTL_DEL (one syscall less per connection).
  if (watch_ != kNoWatch) loop_.unwatch_before_close(watch_);
  watch_ = kNoWatch;
  if (idle_timer_ != kNoTimer) loop_.cancel_timer(idle_timer_);
  idle_timer_ = kNoTimer;
  fd_.reset();
  input_.clear();
  output_.clear();
  close_reason_ = reason;
  auto& counters = owner_.counters_;
  ++counters.closed;
  if (reason) ++counters.failed;
  owner_.retire(*this);
}

void Connection::finalize() {
  auto session = std::move(session_);
  try {
    session->on_close(close_reason_);
  } catch (...) {
    // A throwing on_close has nothing left to lose: the connection is gone already.
  }
  // Whatever the session did, no Hub may keep a pointer to a peer that is about to go.
  if (options_.hub != nullptr) options_.hub->forget(*this);
}

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kCacheRecords = false;  // let the sanitizers see every use after free
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kCacheRecords = false;
#else
constexpr bool kCacheRecords = true;
#endif
#else
constexpr bool kCacheRecords = true;
#endif

// Freed Connection records, kept for reuse on this thread (bounded: a burst of closes returns
// the surplus to malloc).
struct RecordCache {
  static constexpr std::size_t kMax = 1024;
  std::vector<void*> free;
  ~RecordCache() {
    for (void* p : free) ::operator delete(p);
  }
};
thread_local RecordCache record_cache;

}  // namespace

void* Connection::operator new(std::size_t size) {
  auto& cache = record_cache.free;
  if (kCacheRecords && size == sizeof(Connection) && !cache.empty()) {
    void* p = cache.back();
    cache.pop_back();
    return p;
  }
  return ::operator new(size);
}

void Connection::operator delete(void* p) noexcept {
  auto& cache = record_cache.free;
  if (kCacheRecords && p != nullptr && cache.size() < RecordCache::kMax) {
    try {
      cache.push_back(p);
      return;
    } catch (...) {  // no memory to remember it: give it back instead
    }
  }
  ::operator delete(p);
}

ConnectionSet::~ConnectionSet() {
  abort_all(Errc::shutting_down);
  loop_.destroy_retired();
}

Connection& ConnectionSet::open(Fd fd, Transport transport, std::unique_ptr<Session> session,
                                const ConnectionOptions& options) {
  auto connection = std::make_unique<Connection>(loop_, std::move(fd), transport,
                                                 std::move(session), options, *this);
  Connection& c = *connection;
  c.index_ = static_cast<std::uint32_t>(live_.size());
  live_.push_back(std::move(connection));
  ++counters_.opened;
  c.start();
  return c;
}

void ConnectionSet::retire(Connection& c) {
  std::uint32_t index = c.index_;
  std::unique_ptr<Connection> owned = std::move(live_[index]);
  if (index + 1 != live_.size()) {
    live_[index] = std::move(live_.back());
    live_[index]->index_ = index;
  }
  live_.pop_back();
  loop_.retire(std::move(owned));
}

void ConnectionSet::close_all() {
  // close() may retire a connection (reordering live_): walk a snapshot of raw pointers that
  // stay valid until the loop's next drain.
  std::vector<Connection*> snapshot;
  snapshot.reserve(live_.size());
  for (auto& c : live_) snapshot.push_back(c.get());
  for (Connection* c : snapshot) c->close();
}

void ConnectionSet::abort_all(std::error_code reason) {
  while (!live_.empty()) live_.back()->close_now(reason);
}


}  // namespace reactor
