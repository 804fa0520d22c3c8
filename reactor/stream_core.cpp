#include "reactor/stream_core.hpp"

namespace reactor {

StreamCore::Next StreamCore::close(Clock::time_point now, const StreamLimits& limits) noexcept {
  if (flags_ & (kClosed | kCloseWanted)) return Next::nothing;
  flags_ |= kCloseWanted;
  if (outbox_.empty() && (flags_ & kPeerEof)) return Next::close;  // nothing left either way
  // Bound the whole close: a peer that never reads, or never stops sending, must not keep us.
  flags_ |= kClosing;
  mark_ = now + limits.close_linger;
  return outbox_.empty() ? Next::linger : Next::nothing;
}

StreamCore::Next StreamCore::shutdown_write() noexcept {
  if (flags_ & (kClosed | kShutdownWanted | kWriteShut | kCloseWanted)) return Next::nothing;
  flags_ |= kShutdownWanted;
  return outbox_.empty() ? flushed() : Next::nothing;
}

StreamCore::Next StreamCore::flushed() noexcept {
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

std::error_code StreamCore::expired(Clock::time_point now,
                                    const StreamLimits& limits) const noexcept {
  if (flags_ & kClosed) return {};
  if (flags_ & kClosing) return now >= mark_ ? errno_code(ETIMEDOUT) : std::error_code();
  if (limits.idle_timeout.count() > 0 && now - mark_ >= limits.idle_timeout) {
    return Errc::idle_timeout;
  }
  return {};
}

bool StreamCore::set_closed(std::error_code reason) noexcept {
  if (flags_ & kClosed) return false;
  flags_ |= kClosed;
  reason_ = encode(reason);
  return true;
}

std::int32_t StreamCore::encode(std::error_code ec) noexcept {
  if (!ec) return 0;
  if (ec.category() == reactor_category()) return -ec.value();
  if (ec.category() == std::system_category() || ec.category() == std::generic_category()) {
    return ec.value();
  }
  return EIO;  // no other category reaches a stream's close
}

std::error_code StreamCore::decode(std::int32_t code) noexcept {
  if (code == 0) return {};
  if (code < 0) return make_error_code(static_cast<Errc>(-code));
  return errno_code(code);
}

}  // namespace reactor
