#include "reactor/connection.hpp"

#include <sys/socket.h>

#include <algorithm>
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

// The connection's timers, allocated with the first one (an idle connection without an idle
// timeout has none).
struct Connection::Timers {
  TimerId deadline = kNoTimer;                 // the idle deadline; once closing, the close tick
  TimerId first = kNoTimer;                    // armed by the session: the first
  std::unique_ptr<std::vector<TimerId>> more;  // ... and any others
};

template <class F>
bool Connection::guarded(F&& call) {
  return StreamCore::guard(call, [this](const char* what) { session_threw(what); });
}

void Connection::session_threw(const char* what) {
  ++owner_.counters_.session_errors;
  if (log_enabled(LogLevel::warn)) {
    log(LogLevel::warn, "%s: the protocol handler threw: %s; closing", remote().c_str(), what);
  }
  close_now(Errc::session_failed);
}

// `loop` must be the owner's: the connection reaches it through the owner.
Connection::Connection([[maybe_unused]] Loop& loop, Fd fd, Transport transport,
                       std::unique_ptr<Session> session, const ConnectionOptions& options,
                       ConnectionSet& owner)
    : owner_(owner),
      session_(std::move(session)),
      core_(owner.loop_.now()),
      options_index_(owner.options_index(options)),
      fd_(std::move(fd)) {
  static_assert(static_cast<unsigned>(Transport::unix_seqpacket) < 4, "two bits hold it");
  core_.driver_bits() |=
      static_cast<std::uint8_t>(static_cast<unsigned>(transport) << kTransportShift);
  if (transport == Transport::unix_seqpacket) core_.driver_bits() |= kMessages;
}

Connection::~Connection() {
  Loop& l = loop();
  l.cancel_flush(*this);
  if (watch_generation_ != 0) l.unwatch(watch_id());
  cancel_timers();
}

void Connection::start() {
  note_activity();
  auto id = loop().watch(fd_.get(), EPOLLIN, *this);
  if (!id) {
    close_now(id.error());
    return;
  }
  watch_generation_ = watch_generation(*id);
  core_.driver_bits() |= kWatchingIn;
  arm_idle_timer();
  guarded([&] { session_->on_open(*this); });
}

void Connection::on_events(std::uint32_t events) {
  if (has(kWatchingIn) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) handle_readable();
  if (is_open() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !core_.outbox().empty()) {
    handle_writable();
  }
  // Hang-up or error that no read or write surfaced (we are neither reading nor writing): close
  // here, or a level-triggered EPOLLHUP would wake us forever.
  if (is_open() && (events & (EPOLLHUP | EPOLLERR)) && !has(kWatchingIn) &&
      core_.outbox().empty()) {
    close_now(finish_connect(fd_.get()));
  }
}

void Connection::handle_readable() {
  if (core_.lingering()) {
    discard_input();
  } else if (has(kMessages)) {
    read_message();
  } else {
    read_stream();
  }
}

void Connection::read_stream() {
  ssize_t n;
  Buffer& input = core_.input();
  if (input.empty()) {
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
    n = input.read_from(fd_.get());
    if (n > 0) {
      owner_.counters_.bytes_in += static_cast<std::uint64_t>(n);
      note_activity();
      deliver(input.readable(), true);
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
  core_.peer_finished();
  update_interest();
  if (!guarded([&] { session_->on_eof(*this); })) return;
  if (is_open() && core_.done()) close_now({});
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
  if (msg.msg_flags & MSG_TRUNC) {  // cut to the buffer: dropped whole, not counted as read
    ++owner_.counters_.messages_too_large;
    if (log_enabled(LogLevel::info)) {
      log(LogLevel::info, "%s: dropped: a message over %zu bytes", remote().c_str(), sizeof(stack));
    }
    close_now(Errc::message_too_large);
    return;
  }
  owner_.counters_.bytes_in += static_cast<std::uint64_t>(n);
  note_activity();
  deliver({stack, static_cast<std::size_t>(n)}, false);
}

void Connection::deliver(std::span<const std::byte> bytes, bool from_input_buffer) {
  std::size_t consumed = 0;
  if (!guarded([&] { consumed = session_->on_data(*this, bytes); })) return;
  if (!is_open()) return;
  if (has(kMessages)) return;  // each message is whole: nothing is held over
  if (auto ec = core_.keep_leftover(bytes, consumed, from_input_buffer, options())) close_now(ec);
}

void Connection::send(std::span<const std::byte> bytes) {
  if (!is_open() || !core_.accepts_output()) return;
  Outbox& output = core_.outbox();
  if (has(kMessages)) {
    if (output.empty() && send_message_now(bytes)) return;
    if (!is_open()) return;
    if (core_.over_outbox(options(), bytes.size())) {
      close_now(Errc::too_slow);
      return;
    }
    RecordLength length = static_cast<RecordLength>(bytes.size());
    if (!output.bytes().append({reinterpret_cast<const std::byte*>(&length), sizeof(length)}) ||
        !output.bytes().append(bytes)) {
      close_now(errno_code(ENOMEM));
      return;
    }
    update_interest();
    return;
  }
  if (bytes.empty()) return;
  if (!output.append(bytes)) {
    close_now(errno_code(ENOMEM));
    return;
  }
  if (output.size() >= kEagerFlush || core_.over_outbox(options())) {
    write_out();  // do not let a large reply pile up until the end of the iteration
    if (!is_open()) return;
    if (core_.over_outbox(options())) close_now(Errc::too_slow);
    return;
  }
  loop().defer_flush(*this);
}

std::error_code Connection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (has(kMessages)) return Errc::wrong_transport;
  if (!is_open() || !core_.accepts_output()) return errno_code(EPIPE);
  if (auto ec = core_.outbox().append_file(fd, offset, length)) return ec;
  loop().defer_flush(*this);
  return {};
}

void Connection::flush() {
  if (is_open() && !core_.outbox().empty()) write_out();
}

Connection::Timers& Connection::timers() {
  if (!timers_) timers_ = std::make_unique<Timers>();
  return *timers_;
}

// Gives the block back once nothing is armed: a connection idle again holds no timer memory.
void Connection::release_unused_timers() noexcept {
  if (timers_ && timers_->deadline == kNoTimer && timers_->first == kNoTimer &&
      (!timers_->more || timers_->more->empty())) {
    timers_.reset();
  }
}

TimerId Connection::deadline_timer() const noexcept {
  return timers_ ? timers_->deadline : kNoTimer;
}

void Connection::set_deadline_timer(TimerId id) {
  if (id == kNoTimer && !timers_) return;
  timers().deadline = id;
}

TimerId Connection::start_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period) {
  if (!is_open()) return kNoTimer;
  if (delay.count() < 0) delay = std::chrono::milliseconds(0);
  Timers& t = timers();
  const TimerId id =
      loop().add_timer(delay, period, [this] { on_session_timer(loop().current_timer()); });
  if (t.first == kNoTimer) {
    t.first = id;  // the common case (one keep-alive or expiry timer) allocates nothing more
  } else {
    if (!t.more) t.more = std::make_unique<std::vector<TimerId>>();
    t.more->push_back(id);
  }
  return id;
}

bool Connection::forget_session_timer(TimerId id) noexcept {
  if (id == kNoTimer || !timers_) return false;
  Timers& t = *timers_;
  if (t.first == id) {
    t.first = kNoTimer;
    return true;
  }
  if (!t.more) return false;
  auto& ids = *t.more;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] != id) continue;
    ids[i] = ids.back();
    ids.pop_back();
    return true;
  }
  return false;
}

void Connection::cancel_timers() noexcept {
  if (!timers_) return;
  Loop& l = loop();
  Timers& t = *timers_;
  if (t.deadline != kNoTimer) l.cancel_timer(t.deadline);
  if (t.first != kNoTimer) l.cancel_timer(t.first);
  if (t.more) {
    for (TimerId id : *t.more) l.cancel_timer(id);
  }
  timers_.reset();
}

bool Connection::cancel_timer(TimerId id) {
  const bool cancelled = forget_session_timer(id) && loop().cancel_timer(id);
  release_unused_timers();
  return cancelled;
}

void Connection::on_session_timer(TimerId id) {
  if (!is_open()) return;
  // A one-shot timer is spent once it fires: forget it before the session may arm another.
  if (!loop().timer_armed(id)) forget_session_timer(id);
  guarded([&] { session_->on_timer(*this, id); });
  if (is_open()) release_unused_timers();
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
  Outbox& output = core_.outbox();
  if (has(kMessages)) {
    while (!output.empty()) {
      auto pending = output.bytes().readable();
      RecordLength length;
      std::memcpy(&length, pending.data(), sizeof(length));
      if (!send_message_now(pending.subspan(sizeof(length), length))) {
        if (is_open()) update_interest();
        return;
      }
      output.bytes().consume(sizeof(length) + length);
    }
  } else {
    write_out();
    return;
  }
  act(core_.flushed());
  if (is_open()) update_interest();
}

void Connection::write_out() {
  loop().cancel_flush(*this);  // written now: nothing left for the end of the iteration
  ssize_t n = core_.outbox().write_to(fd_.get(), owner_.counters_.writes);
  if (n < 0) {
    close_now(last_errno());
    return;
  }
  if (n > 0) {
    owner_.counters_.bytes_out += static_cast<std::uint64_t>(n);
    note_activity();
  }
  if (core_.outbox().empty()) act(core_.flushed());
  if (is_open()) update_interest();
}

void Connection::carry_out(StreamCore::Next next) {
  using Next = StreamCore::Next;
  switch (next) {
    case Next::nothing:
      return;
    case Next::close:
      close_now({});
      return;
    case Next::shutdown:
    case Next::shutdown_close:
      ::shutdown(fd_.get(), SHUT_WR);
      if (next == Next::shutdown_close) close_now({});
      return;
    case Next::linger:
      if (unacknowledged_bytes(fd_.get()) == 0) {
        close_now({});  // the peer has all our bytes: even an RST can no longer lose any
        return;
      }
      ::shutdown(fd_.get(), SHUT_WR);
      core_.lingered(loop().now(), options());
      update_interest();
      return;
  }
}

void Connection::update_interest() {
  if (!is_open()) return;
  if (core_.update_backpressure(options())) ++owner_.counters_.read_pauses;
  bool want_in = core_.wants_input();
  // Output that only waits for this iteration's flush needs no EPOLLOUT (that flush decides).
  bool want_out = !core_.outbox().empty() && !flush_queued();
  bool have_in = has(kWatchingIn);
  bool have_out = has(kWatchingOut);
  if (want_in == have_in && want_out == have_out) return;
  std::uint32_t events = (want_in ? EPOLLIN : 0u) | (want_out ? EPOLLOUT : 0u);
  if (auto ec = loop().modify(watch_id(), events)) {
    close_now(ec);
    return;
  }
  std::uint8_t& bits = core_.driver_bits();
  bits = static_cast<std::uint8_t>((bits & ~(kWatchingIn | kWatchingOut)) |
                                   (want_in ? kWatchingIn : 0) | (want_out ? kWatchingOut : 0));
}

void Connection::close() {
  if (!is_open() || core_.close_wanted()) return;
  const StreamCore::Next next = core_.close(loop().now(), options());
  if (next == StreamCore::Next::close) {  // the common case: nothing left either way
    close_now({});
    return;
  }
  // The close tick replaces the idle timer: it bounds the close by close_linger and, once
  // lingering, checks whether the peer has acknowledged our data.
  Timers& t = timers();
  if (t.deadline != kNoTimer) loop().cancel_timer(t.deadline);
  t.deadline = loop().add_timer(kCloseTick, kCloseTick, [this] { on_close_tick(); });
  if (next == StreamCore::Next::linger) {
    act(next);
    return;
  }
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
  if (core_.lingering() && unacknowledged_bytes(fd_.get()) == 0) {
    close_now({});
    return;
  }
  if (auto ec = core_.expired(loop().now(), options())) close_now(ec);
}

void Connection::shutdown_write() {
  if (is_open()) act(core_.shutdown_write());
}

void Connection::abort(std::error_code reason) {
  close_now(reason);
}

std::string Connection::remote() const {
  auto address =
      is_open() ? peer_address(fd_.get(), transport()) : Result<Address>(Errc::shutting_down);
  return address ? address->to_string() : "(closed)";
}

void Connection::arm_idle_timer() {
  if (options().idle_timeout.count() <= 0 || core_.closing()) return;
  auto wait =
      std::chrono::ceil<std::chrono::milliseconds>(core_.deadline(options()) - loop().now());
  if (wait.count() < 1) wait = std::chrono::milliseconds(1);
  Timers& t = timers();
  t.deadline = loop().after(wait, [this] { on_idle_timer(); });
}

void Connection::on_idle_timer() {
  set_deadline_timer(kNoTimer);
  if (auto ec = core_.expired(loop().now(), options())) {
    close_now(ec);
  } else {
    arm_idle_timer();  // there was traffic: wait out the rest of the period
  }
}

void Connection::say_last_words(std::error_code reason) {
  const std::string words = options().protocol->last_words(reason);
  if (words.empty()) return;
  ++owner_.counters_.writes;
  [[maybe_unused]] ssize_t n =
      ::send(fd_.get(), words.data(), words.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void Connection::close_now(std::error_code reason) {
  if (!is_open()) return;
  if (StreamCore::is_drop(reason)) {
    if (log_enabled(LogLevel::info)) {
      log(LogLevel::info, "%s: dropped: %s", remote().c_str(), reason.message().c_str());
    }
    if (options().protocol != nullptr && core_.says_last_words(reason)) say_last_words(reason);
  }
  Loop& l = loop();
  l.cancel_flush(*this);
  cancel_timers();
  // Our socket was accepted or created here and never duplicated: closing it below removes it
  // from epoll, so no EPOLL_CTL_DEL (one syscall less per connection).
  if (watch_generation_ != 0) l.unwatch_before_close(watch_id());
  watch_generation_ = 0;
  fd_.reset();
  core_.input().clear();
  core_.outbox().clear();
  core_.set_closed(reason);
  auto& counters = owner_.counters_;
  ++counters.closed;
  if (reason) ++counters.failed;
  owner_.retire(*this);
}

void Connection::finalize() {
  auto session = std::move(session_);
  try {
    session->on_close(core_.reason());
  } catch (...) {
    // A throwing on_close has nothing left to lose: the connection is gone already.
  }
  // Whatever the session did, no Hub may keep a pointer to a peer that is about to go.
  if (Hub* hub = options().hub) hub->forget(*this);
}

void* Connection::operator new(std::size_t size, ConnectionSet& owner) {
  void* p = size == sizeof(Connection) ? owner.records_.allocate() : nullptr;
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void Connection::operator delete(void* p, ConnectionSet& owner) noexcept {
  owner.records_.deallocate(p);
}

void Connection::operator delete(Connection* c, std::destroying_delete_t) noexcept {
  ConnectionSet& owner = c->owner_;
  c->~Connection();
  owner.records_.deallocate(c);
}

ConnectionSet::~ConnectionSet() {
  abort_all(Errc::shutting_down);
  loop_.destroy_retired();
}

Connection& ConnectionSet::open(Fd fd, Transport transport, std::unique_ptr<Session> session,
                                const ConnectionOptions& options) {
  std::unique_ptr<Connection> connection(
      new (*this) Connection(loop_, std::move(fd), transport, std::move(session), options, *this));
  Connection& c = *connection;
  c.index_ = static_cast<std::uint32_t>(live_.size());
  live_.push_back(std::move(connection));
  ++counters_.opened;
  c.start();
  return c;
}

// Connections keep an index into this table rather than a reference each: a server passes the
// same options to every open. A full table keeps only what live connections still use.
std::uint16_t ConnectionSet::add_options(const ConnectionOptions& options) {
  for (std::size_t i = 0; i < options_.size(); ++i) {
    if (options_[i] == &options) return static_cast<std::uint16_t>(i);
  }
  if (options_.size() > UINT16_MAX) {
    std::vector<const ConnectionOptions*> used;
    for (std::size_t i = 0; i < live_.size(); ++i) {
      Connection* c = live_[i].get();
      const ConnectionOptions* o = options_[c->options_index_];
      auto at = std::find(used.begin(), used.end(), o);
      if (at == used.end()) at = used.insert(used.end(), o);
      c->options_index_ = static_cast<std::uint16_t>(at - used.begin());
    }
    options_ = std::move(used);  // (65,536 live connections with options each: not supported)
  }
  options_.push_back(&options);
  return static_cast<std::uint16_t>(options_.size() - 1);
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
  for (std::size_t i = 0; i < live_.size(); ++i) snapshot.push_back(live_[i].get());
  for (Connection* c : snapshot) c->close();
}

void ConnectionSet::abort_all(std::error_code reason) {
  while (!live_.empty()) live_.back()->close_now(reason);
}

}  // namespace reactor
