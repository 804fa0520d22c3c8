#include "reactor/models/relay_hub.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "reactor/error.hpp"

namespace reactor {
namespace {

constexpr std::size_t kMaxMessage = 64u << 20;  // a larger message is a broken child
constexpr std::size_t kMaxFramesPerWakeup = 64;

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK;
}

// Appends payload fields to a byte vector.
class Writer {
 public:
  explicit Writer(std::vector<std::byte>& out) : out_(out) { out_.clear(); }
  void u8(std::uint8_t v) { raw(&v, sizeof(v)); }
  void u32(std::uint32_t v) { raw(&v, sizeof(v)); }
  void u64(std::uint64_t v) { raw(&v, sizeof(v)); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    raw(s.data(), s.size());
  }
  void rest(std::span<const std::byte> bytes) { raw(bytes.data(), bytes.size()); }

 private:
  // resize + memcpy rather than insert: g++ 12 at -O3 misreads small inserts as overflows.
  void raw(const void* p, std::size_t n) {
    if (n == 0) return;
    std::size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }
  std::vector<std::byte>& out_;
};

// Reads payload fields; a short payload sets ok() to false and yields zeros.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool ok() const noexcept { return ok_; }
  std::uint8_t u8() { return number<std::uint8_t>(); }
  std::uint32_t u32() { return number<std::uint32_t>(); }
  std::uint64_t u64() { return number<std::uint64_t>(); }
  std::string_view str() {
    std::uint32_t n = u32();
    if (!take(n)) return {};
    return as_text(in_.subspan(pos_ - n, n));
  }
  std::span<const std::byte> rest() {
    auto out = in_.subspan(pos_);
    pos_ = in_.size();
    return out;
  }

 private:
  template <class T>
  T number() {
    T v{};
    if (take(sizeof(T))) std::memcpy(&v, in_.data() + pos_ - sizeof(T), sizeof(T));
    return v;
  }
  bool take(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

std::byte header_byte(RelayType type) {
  return static_cast<std::byte>(type);
}

}  // namespace

// ---- child side ----

RelayClient::RelayClient(Fd relay, pid_t parent)
    : relay_(std::move(relay)), parent_(parent), frame_(kRelayFrameMax + 1) {}

bool RelayClient::send_message(RelayType type, std::span<const std::byte> payload) {
  if (write_closed_) return false;
  do {
    std::size_t n = std::min(payload.size(), kRelayChunk);
    std::byte header[kRelayHeader] = {header_byte(type),
                                      static_cast<std::byte>(n < payload.size() ? 1 : 0)};
    iovec iov[2] = {{header, sizeof(header)}, {const_cast<std::byte*>(payload.data()), n}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    ssize_t sent;
    do {
      sent = ::sendmsg(relay_.get(), &msg, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      write_closed_ = true;
      lost();
      return false;
    }
    payload = payload.subspan(n);
  } while (!payload.empty());
  return true;
}

std::optional<std::vector<std::byte>> RelayClient::call(RelayType type,
                                                        std::span<const std::byte> payload) {
  if (read_closed_ || !send_message(type, payload)) return std::nullopt;
  std::vector<std::byte> answer;
  for (;;) {
    ssize_t n = ::recv(relay_.get(), frame_.data(), frame_.size(), 0);
    if (n < 0 && (errno == EINTR || errno == ECONNRESET)) continue;  // see RelayMember
    if (n < static_cast<ssize_t>(kRelayHeader)) {
      read_closed_ = true;
      lost();
      return std::nullopt;
    }
    auto type_got = static_cast<RelayType>(frame_[0]);
    bool more = frame_[1] != std::byte{0};
    std::span<const std::byte> body(frame_.data() + kRelayHeader, n - kRelayHeader);
    if (type_got == RelayType::deliver) {
      if (connection_ != nullptr) connection_->deliver(body);
    } else if (type_got == RelayType::answer) {
      answer.insert(answer.end(), body.begin(), body.end());
      if (!more) return answer;
    }
  }
}

void RelayClient::on_readable(BlockingConnection& connection) {
  for (std::size_t i = 0; i < kMaxFramesPerWakeup && !read_closed_; ++i) {
    ssize_t n = ::recv(relay_.get(), frame_.data(), frame_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNRESET) continue;  // see RelayMember::on_readable
      if (would_block(errno)) return;
    }
    if (n < static_cast<ssize_t>(kRelayHeader)) {
      read_closed_ = true;
      lost();
      return;
    }
    if (static_cast<RelayType>(frame_[0]) == RelayType::deliver) {
      connection.deliver(
          {frame_.data() + kRelayHeader, static_cast<std::size_t>(n) - kRelayHeader});
    }
  }
}

void RelayClient::lost() {
  if (connection_ == nullptr) return;
  // A live parent closes our relay only to cut us off as too slow; else it is gone.
  connection_->drop(::getppid() == parent_ ? make_error_code(Errc::too_slow)
                                           : make_error_code(Errc::shutting_down));
}

// join, leave and release_name wait for the parent's acknowledgement, as under the other models:
// once join returns, every publish the parent handles afterwards reaches us.
void RelayClient::join(std::string_view room, Peer&) {
  Writer w(message_);
  w.str(room);
  call(RelayType::join, message_);
}

void RelayClient::leave(std::string_view room, Peer&) {
  Writer w(message_);
  w.str(room);
  call(RelayType::leave, message_);
}

void RelayClient::set_farewell(std::string_view room, std::span<const std::byte> bytes, Peer&) {
  Writer w(message_);
  w.str(room);
  w.rest(bytes);
  send_message(RelayType::farewell, message_);
}

void RelayClient::publish(std::string_view room, std::span<const std::byte> bytes,
                          const Peer* except) {
  Writer w(message_);
  // The child has one peer: a non-null `except` can only be this child's.
  w.u8(except != nullptr ? 1 : 0);
  w.str(room);
  w.rest(bytes);
  send_message(RelayType::publish, message_);
}

bool RelayClient::claim_name(std::string_view name, Peer&) {
  Writer w(message_);
  w.str(name);
  auto answer = call(RelayType::claim_name, message_);
  if (!answer) return false;
  Reader r(*answer);
  return r.u8() != 0 && r.ok();
}

void RelayClient::release_name(Peer&) {
  call(RelayType::release_name, {});
}

bool RelayClient::send_to(std::string_view name, std::span<const std::byte> bytes) {
  Writer w(message_);
  w.str(name);
  w.rest(bytes);
  auto answer = call(RelayType::send_to, message_);
  if (!answer) return false;
  Reader r(*answer);
  return r.u8() != 0 && r.ok();
}

std::vector<RoomInfo> RelayClient::rooms() {
  std::vector<RoomInfo> out;
  auto answer = call(RelayType::rooms, {});
  if (!answer) return out;
  Reader r(*answer);
  std::uint32_t count = r.u32();
  for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
    RoomInfo info;
    info.name = std::string(r.str());
    info.members = static_cast<std::size_t>(r.u64());
    if (r.ok()) out.push_back(std::move(info));
  }
  return out;
}

std::vector<std::string> RelayClient::members(std::string_view room) {
  std::vector<std::string> out;
  Writer w(message_);
  w.str(room);
  auto answer = call(RelayType::members, message_);
  if (!answer) return out;
  Reader r(*answer);
  std::uint32_t count = r.u32();
  for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
    auto name = r.str();
    if (r.ok()) out.emplace_back(name);
  }
  return out;
}

void RelayClient::forget(Peer&) {
  send_message(RelayType::forget, {});
}

void RelayClient::report(const ChildReport& report) {
  Writer w(message_);
  w.u64(report.bytes_in);
  w.u64(report.bytes_out);
  w.u64(report.writes);
  w.u8(report.outcome);
  send_message(RelayType::report, message_);
}

// ---- parent side ----

RelayMember::RelayMember(Fd relay, std::string remote, std::size_t limit)
    : relay_(std::move(relay)), remote_(std::move(remote)), limit_(limit) {}

void RelayMember::send(std::span<const std::byte> bytes) {
  if (cut_off_ || bytes.empty()) return;
  if (bytes.size() > limit_ || queued_bytes_ > limit_ - bytes.size()) {
    cut_off();
    return;
  }
  while (!bytes.empty()) {
    // Deliveries are a byte stream: top up the last queued delivery frame before starting one.
    if (queue_.empty() || queue_.back()[0] != header_byte(RelayType::deliver) ||
        queue_.back().size() >= kRelayFrameMax) {
      queue_.emplace_back(std::vector<std::byte>{header_byte(RelayType::deliver), std::byte{0}});
    }
    auto& frame = queue_.back();
    std::size_t n = std::min(bytes.size(), kRelayFrameMax - frame.size());
    frame.insert(frame.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    queued_bytes_ += n;
    bytes = bytes.subspan(n);
  }
  flush();
}

void RelayMember::answer(std::span<const std::byte> payload) {
  if (cut_off_) return;
  do {
    std::size_t n = std::min(payload.size(), kRelayChunk);
    std::vector<std::byte> frame{header_byte(RelayType::answer),
                                 static_cast<std::byte>(n < payload.size() ? 1 : 0)};
    frame.insert(frame.end(), payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n));
    queued_bytes_ += n;
    queue_.push_back(std::move(frame));
    payload = payload.subspan(n);
  } while (!payload.empty());
  flush();
}

void RelayMember::flush() {
  while (!queue_.empty() && !cut_off_) {
    const auto& frame = queue_.front();
    ssize_t n = ::send(relay_.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        watch_output(true);
        return;
      }
      cut_off();  // the child is gone; its EOF follows on the read side
      return;
    }
    queued_bytes_ -= frame.size() - kRelayHeader;
    queue_.pop_front();
  }
  watch_output(false);
}

void RelayMember::watch_output(bool on) noexcept {
  if (on == watching_output_ || loop_ == nullptr || watch_ == kNoWatch) return;
  watching_output_ = on;
  loop_->modify(watch_, on ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

void RelayMember::cut_off() {
  if (cut_off_) return;
  cut_off_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  ::shutdown(relay_.get(), SHUT_WR);
  watch_output(false);
}

bool RelayMember::on_readable(LocalHub& hub, std::span<std::byte> scratch, std::size_t max_frames) {
  for (std::size_t i = 0; i < max_frames; ++i) {
    ssize_t n = ::recv(relay_.get(), scratch.data(), scratch.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      // ECONNRESET: the child exited with deliveries unread. The kernel reports that once, ahead
      // of what the child sent before exiting (its report included): read on until EOF.
      if (errno == EINTR || errno == ECONNRESET) continue;
      return would_block(errno);
    }
    // EOF (we never send empty frames), or a frame that is short or larger than allowed.
    if (n < static_cast<ssize_t>(kRelayHeader) || static_cast<std::size_t>(n) > scratch.size()) {
      return false;
    }
    auto type = static_cast<RelayType>(scratch[0]);
    bool more = scratch[1] != std::byte{0};
    std::span<const std::byte> body(scratch.data() + kRelayHeader,
                                    static_cast<std::size_t>(n) - kRelayHeader);
    if (!assembling_ && !more) {
      handle(hub, type, body);
      continue;
    }
    if (!assembling_) {
      assembling_ = true;
      assembling_type_ = type;
      assembled_.clear();
    }
    if (assembled_.size() + body.size() > kMaxMessage) return false;
    assembled_.insert(assembled_.end(), body.begin(), body.end());
    if (!more) {
      assembling_ = false;
      handle(hub, assembling_type_, assembled_);
      assembled_.clear();
      if (assembled_.capacity() > kRelayFrameMax) assembled_.shrink_to_fit();
    }
  }
  return true;
}

void RelayMember::handle(LocalHub& hub, RelayType type, std::span<const std::byte> payload) {
  Reader r(payload);
  switch (type) {
    case RelayType::join: {
      auto room = r.str();
      if (r.ok()) hub.join(room, *this);
      answer({});
      break;
    }
    case RelayType::leave: {
      auto room = r.str();
      if (r.ok()) hub.leave(room, *this);
      answer({});
      break;
    }
    case RelayType::publish: {
      bool except_self = r.u8() != 0;
      auto room = r.str();
      auto bytes = r.rest();
      if (r.ok()) hub.publish(room, bytes, except_self ? this : nullptr);
      break;
    }
    case RelayType::farewell: {
      auto room = r.str();
      auto bytes = r.rest();
      if (r.ok()) {
        farewell_room_.assign(bytes.empty() ? std::string_view() : room);
        farewell_bytes_.assign(bytes.begin(), bytes.end());
      }
      break;
    }
    case RelayType::claim_name: {
      auto name = r.str();
      bool ok = r.ok() && hub.claim_name(name, *this);
      Writer w(encoded_);
      w.u8(ok ? 1 : 0);
      answer(encoded_);
      break;
    }
    case RelayType::release_name:
      hub.release_name(*this);
      answer({});
      break;
    case RelayType::send_to: {
      auto name = r.str();
      auto bytes = r.rest();
      bool ok = r.ok() && hub.send_to(name, bytes);
      Writer w(encoded_);
      w.u8(ok ? 1 : 0);
      answer(encoded_);
      break;
    }
    case RelayType::rooms: {
      auto rooms = hub.rooms();
      Writer w(encoded_);
      w.u32(static_cast<std::uint32_t>(rooms.size()));
      for (const auto& room : rooms) {
        w.str(room.name);
        w.u64(room.members);
      }
      answer(encoded_);
      break;
    }
    case RelayType::members: {
      auto room = r.str();
      std::vector<std::string> names;
      if (r.ok()) names = hub.members(room);
      Writer w(encoded_);
      w.u32(static_cast<std::uint32_t>(names.size()));
      for (const auto& name : names) w.str(name);
      answer(encoded_);
      break;
    }
    case RelayType::forget:
      hub.forget(*this);
      break;
    case RelayType::report: {
      ChildReport report;
      report.bytes_in = r.u64();
      report.bytes_out = r.u64();
      report.writes = r.u64();
      auto outcome = r.u8();
      if (r.ok() && outcome <= ChildReport::rejected) {
        report.outcome = static_cast<ChildReport::Outcome>(outcome);
        report_ = report;
      }
      break;
    }
    case RelayType::deliver:
    case RelayType::answer:
      break;  // parent-to-child types: ignore
  }
}

}  // namespace reactor
