// StreamCore: the policy of one stream connection, with no I/O: the input a session left
// unconsumed and its max_input bound, the outbox and its high/low-water backpressure (or the
// max_outbox drop), the close / shutdown_write / lingering-close state machine bounded by
// close_linger, the idle deadline, and the close reason. It makes no syscall and knows no loop:
// a driver (the epoll Connection, the blocking BlockingConnection) does the reads, writes and
// waits, tells the core what happened (bytes arrived and what the session consumed, peer EOF,
// output drained, the time) and does what the core answers (close, shutdown, linger, pause).
//
// Lifecycle, as muduo's TcpConnection::StateE: open → (close wanted: flushing) → lingering (FIN
// sent, discarding input until the peer closes or has our bytes) → closed. shutdown_write is a
// side path: once output drains, FIN; closed when the peer's EOF has come too.
//
// Compact on purpose (an idle epoll connection carries one): one time stamp serves as the last
// activity while open and as the close deadline once closing; the close reason is an int code;
// the flags share one word with 8 bits the driver may use for its own state.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <span>
#include <system_error>

#include "reactor/buffer.hpp"
#include "reactor/error.hpp"
#include "reactor/outbox.hpp"

namespace reactor {

// The limits a stream driver applies, from the protocol and the server's options.
struct StreamLimits {
  std::size_t high_water = 1u << 20;               // pause reading above this much pending output
  std::size_t low_water = 256u << 10;              // resume below this
  std::size_t max_outbox = 0;                      // 0: backpressure; else drop the peer above it
  std::size_t max_input = 1u << 20;                // unconsumed input allowed before closing
  std::chrono::milliseconds idle_timeout{0};       // 0: none
  std::chrono::milliseconds close_linger{10'000};  // bound on flushing after close()
};

class StreamCore {
 public:
  using Clock = std::chrono::steady_clock;

  // What the driver does next.
  enum class Next : std::uint8_t {
    nothing,
    close,           // close now, orderly (empty reason)
    shutdown,        // shutdown(SHUT_WR) now
    shutdown_close,  // shutdown(SHUT_WR), then close orderly: the peer finished already
    linger,          // closing with output flushed and the peer maybe still sending: if it has
                     // acknowledged all our bytes close now, else shutdown(SHUT_WR) and lingered()
  };

  explicit StreamCore(Clock::time_point now) noexcept : mark_(now) {}

  Buffer& input() noexcept { return input_; }
  Outbox& outbox() noexcept { return outbox_; }
  const Outbox& outbox() const noexcept { return outbox_; }

  bool closed() const noexcept { return flags_ & kClosed; }
  bool peer_eof() const noexcept { return flags_ & kPeerEof; }
  bool reading_paused() const noexcept { return flags_ & kReadPaused; }
  bool close_wanted() const noexcept { return flags_ & kCloseWanted; }
  bool closing() const noexcept { return flags_ & kClosing; }  // the close_linger clock runs
  bool lingering() const noexcept { return flags_ & kLingering; }
  bool write_shut() const noexcept { return flags_ & kWriteShut; }
  // Whether the session may still queue output (send, send_file).
  bool accepts_output() const noexcept {
    return !(flags_ & (kClosed | kCloseWanted | kShutdownWanted | kWriteShut));
  }
  // Whether the driver reads: to deliver, or while lingering to discard.
  bool wants_input() const noexcept {
    return (flags_ & kLingering) || !(flags_ & (kClosed | kReadPaused | kPeerEof | kCloseWanted));
  }
  // Bits the driver keeps in the core's flag word (its own watch state and the like).
  std::uint8_t& driver_bits() noexcept { return driver_bits_; }
  std::uint8_t driver_bits() const noexcept { return driver_bits_; }

  // Traffic moved at `now`: the idle clock restarts (not once closing: the close deadline
  // stands). A time older than the last one noted changes nothing.
  void note_activity(Clock::time_point now) noexcept {
    if (!(flags_ & kClosing) && now > mark_) mark_ = now;
  }

  // The session consumed `consumed` of `bytes` (the readable input itself when `from_input`,
  // else bytes read elsewhere): keeps the rest. Returns why to close now (out of memory,
  // input_too_large), or nothing.
  std::error_code keep_leftover(std::span<const std::byte> bytes, std::size_t consumed,
                                bool from_input, const StreamLimits& limits) {
    if (consumed > bytes.size()) consumed = bytes.size();
    if (from_input) {
      input_.consume(consumed);
    } else if (consumed < bytes.size() && !input_.append(bytes.subspan(consumed))) {
      return errno_code(ENOMEM);
    }
    if (input_.size() > limits.max_input) return Errc::input_too_large;
    return {};
  }

  // Output is queued or written: applies the water marks. True when reading pauses now (a
  // counter may count it). With max_outbox set there is no pause: the peer is dropped instead.
  bool update_backpressure(const StreamLimits& limits) noexcept {
    if (limits.max_outbox) return false;
    const std::uint64_t pending = outbox_.size();
    if (pending > limits.high_water && !(flags_ & kReadPaused)) {
      flags_ |= kReadPaused;
      return true;
    }
    if ((flags_ & kReadPaused) && pending <= limits.low_water) flags_ &= ~kReadPaused;
    return false;
  }
  // max_outbox set and the outbox (plus `more` about to be queued) over it: drop as too_slow.
  bool over_outbox(const StreamLimits& limits, std::uint64_t more = 0) const noexcept {
    return limits.max_outbox && outbox_.size() + more > limits.max_outbox;
  }

  // The session asked to close once output is flushed. Starts the close_linger clock unless the
  // answer is to close at once.
  Next close(Clock::time_point now, const StreamLimits& limits) noexcept;
  // The session asked for shutdown_write once output is flushed.
  Next shutdown_write() noexcept;
  // The outbox is empty (all written to the kernel): what a pending close or shutdown does now.
  Next flushed() noexcept;
  // The peer finished sending. The driver tells the session (on_eof), then asks done().
  void peer_finished() noexcept { flags_ |= kPeerEof; }
  // Both directions are finished: close.
  bool done() const noexcept {
    return (flags_ & (kWriteShut | kPeerEof)) == (kWriteShut | kPeerEof);
  }
  // Next::linger was answered with shutdown(SHUT_WR): discard input until the peer closes,
  // within close_linger since close() (or since `now`, for a close the server decided).
  void lingered(Clock::time_point now, const StreamLimits& limits) noexcept {
    flags_ |= kWriteShut | kLingering;
    if (!(flags_ & kClosing)) {
      flags_ |= kClosing;
      mark_ = now + limits.close_linger;
    }
  }

  // When the core next needs the time: the close deadline while closing, else the idle
  // deadline; Clock::time_point::max() for none.
  Clock::time_point deadline(const StreamLimits& limits) const noexcept {
    if (flags_ & kClosing) return mark_;
    if (limits.idle_timeout.count() > 0) return mark_ + limits.idle_timeout;
    return Clock::time_point::max();
  }
  // It is `now`: the reason to close if a deadline passed (ETIMEDOUT for a close that did not
  // finish within close_linger, idle_timeout), else nothing.
  std::error_code expired(Clock::time_point now, const StreamLimits& limits) const noexcept;

  // Closed for `reason` (empty: orderly); the first reason stands. True the first time.
  bool set_closed(std::error_code reason) noexcept;
  std::error_code reason() const noexcept { return decode(reason_); }

  // A close for one of these drops the peer (logged as such).
  static bool is_drop(std::error_code reason) noexcept {
    if (!reason || reason.category() != reactor_category()) return false;
    const auto e = static_cast<Errc>(reason.value());
    return e == Errc::idle_timeout || e == Errc::input_too_large || e == Errc::too_slow;
  }
  // Whether the protocol's last_words go out for `reason`: dropped as idle or over max_input,
  // with nothing of ours pending (so they cannot land inside a half-sent reply).
  bool says_last_words(std::error_code reason) const noexcept {
    return is_drop(reason) && reason != Errc::too_slow && outbox_.empty();
  }

  // Runs a session callback. True when it returned; when it threw, `threw(what)` runs (inside
  // the handler, while `what` is alive) and the driver closes with Errc::session_failed.
  template <class F, class OnThrow>
  static bool guard(F&& call, OnThrow&& threw) {
    try {
      call();
      return true;
    } catch (const std::exception& e) {
      threw(e.what());
    } catch (...) {
      threw("an exception that is not a std::exception");
    }
    return false;
  }

  // Close reasons as one int: 0 none, > 0 an errno value, < 0 a reactor Errc.
  static std::int32_t encode(std::error_code ec) noexcept { return ec ? encode_error(ec) : 0; }
  static std::error_code decode(std::int32_t code) noexcept {
    return code == 0 ? std::error_code() : decode_error(code);
  }

 private:
  static std::int32_t encode_error(std::error_code ec) noexcept;
  static std::error_code decode_error(std::int32_t code) noexcept;

  enum Flag : std::uint8_t {
    kReadPaused = 1,      // backpressure
    kPeerEof = 2,         // read side finished
    kCloseWanted = 4,     // close once output drains
    kShutdownWanted = 8,  // shutdown(SHUT_WR) once output drains
    kWriteShut = 16,
    kClosing = 32,    // close(): mark_ is the close deadline
    kLingering = 64,  // FIN sent; discarding input until the peer closes or has our data
    kClosed = 128,
  };

  Buffer input_;
  Outbox outbox_;
  Clock::time_point mark_;  // last activity; the close deadline once kClosing
  std::int32_t reason_ = 0;
  std::uint8_t flags_ = 0;
  std::uint8_t driver_bits_ = 0;
};

// Once per connection or per flush: inline, so that a driver pays no call for them.
inline StreamCore::Next StreamCore::close(Clock::time_point now,
                                          const StreamLimits& limits) noexcept {
  if (flags_ & (kClosed | kCloseWanted)) return Next::nothing;
  flags_ |= kCloseWanted;
  if (outbox_.empty() && (flags_ & kPeerEof)) return Next::close;  // nothing left either way
  // Bound the whole close: a peer that never reads, or never stops sending, must not keep us.
  flags_ |= kClosing;
  mark_ = now + limits.close_linger;
  return outbox_.empty() ? Next::linger : Next::nothing;
}

inline StreamCore::Next StreamCore::shutdown_write() noexcept {
  if (flags_ & (kClosed | kShutdownWanted | kWriteShut | kCloseWanted)) return Next::nothing;
  flags_ |= kShutdownWanted;
  return outbox_.empty() ? flushed() : Next::nothing;
}

inline StreamCore::Next StreamCore::flushed() noexcept {
  if (flags_ & (kClosed | kLingering)) return Next::nothing;
  if (flags_ & kCloseWanted) {
    // Everything the peer sent has been read: a plain close sends FIN. Else closing with unread
    // input would answer with RST, which drops our unacknowledged bytes: linger.
    return (flags_ & kPeerEof) ? Next::close : Next::linger;
  }
  if ((flags_ & kShutdownWanted) && !(flags_ & kWriteShut)) {
    flags_ |= kWriteShut;
    return (flags_ & kPeerEof) ? Next::shutdown_close : Next::shutdown;
  }
  return Next::nothing;
}

inline std::error_code StreamCore::expired(Clock::time_point now,
                                           const StreamLimits& limits) const noexcept {
  if (flags_ & kClosed) return {};
  if (flags_ & kClosing) return now >= mark_ ? errno_code(ETIMEDOUT) : std::error_code();
  if (limits.idle_timeout.count() > 0 && now - mark_ >= limits.idle_timeout) {
    return Errc::idle_timeout;
  }
  return {};
}

inline bool StreamCore::set_closed(std::error_code reason) noexcept {
  if (flags_ & kClosed) return false;
  flags_ |= kClosed;
  reason_ = encode(reason);
  return true;
}

}  // namespace reactor
