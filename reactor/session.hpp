// The protocol interface, sans-IO: the only header a protocol (built-in or plugin) needs.
//
// A Session never touches a socket. It receives bytes and decides what to send, so the same
// object runs under the epoll loop, a forked child, or a thread with blocking I/O.
//
// Lifetime rules, the same under every model:
//  - A Peer is borrowed. It stays valid from on_open until on_close returns; keep a pointer to it
//    (for a Hub) no longer than that.
//  - Session callbacks for one connection never run concurrently and never nest in each other.
//  - on_close runs exactly once, after the connection's descriptor is gone; Peer calls made then
//    are ignored. Leave rooms and release names there.
//  - Callbacks must not block and should not throw; a throwing session loses its connection
//    (closed with Errc::session_failed), not the server.
//  - Over UDP one Session serves the whole endpoint: on_data is called once per datagram with a
//    Peer that answers the datagram's sender; on_open/on_eof are not called, and that Peer has
//    no timers and no send_file.
//  - Session timers (Peer::start_timer) fire as on_timer on the session's own thread, between its
//    other callbacks; every timer of a connection is cancelled when it closes, so none fires
//    after on_close.
//  - Output is coalesced: what a session sends while the server handles one batch of events goes
//    out in as few syscalls as possible (one per connection in the common case) before the
//    server waits again. Sending many small pieces is cheap.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/error.hpp"
#include "reactor/timer_id.hpp"

namespace reactor {

inline std::span<const std::byte> as_bytes(std::string_view text) noexcept {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}
inline std::string_view as_text(std::span<const std::byte> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The connection as a session sees it.
class Peer {
 public:
  // Queues a copy and sends as soon as the transport allows; never blocks. On message transports
  // (UDP, SEQPACKET) one call is one message. If the protocol's max_outbox is exceeded the
  // connection is dropped and its session gets on_close(Errc::too_slow).
  virtual void send(std::span<const std::byte> bytes) = 0;
  void send(std::string_view text) { send(as_bytes(text)); }
  // Closes once everything queued has been sent.
  virtual void close() = 0;
  // Sends FIN once everything queued has been sent; reading goes on.
  virtual void shutdown_write() = 0;
  // Bytes accepted by send() and not yet handed to the kernel.
  virtual std::size_t buffered() const = 0;
  // The remote end as a URL: "tcp://[::1]:51234", "unix:" (unnamed UNIX peers have no path).
  virtual std::string remote() const = 0;

  // Queues `length` bytes of the file `fd` from `offset`, after everything sent before and ahead
  // of everything sent after. The peer keeps its own duplicate of `fd`: close yours at once if you
  // like. Stream transports use sendfile(2) (read+send where it cannot work), a chunk at a time as
  // the socket takes it: the file is never read into memory, and its unsent bytes count towards
  // buffered() and the high-water mark. Errors (nothing queued): Errc::wrong_transport on message
  // transports, EBADF for a bad descriptor, EINVAL from a thread other than the connection's
  // where its socket blocks (thread model, a protocol that does not use the Hub).
  virtual std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) = 0;

  // Arms a timer: after `delay` (then every `period`, if non-zero) the session's on_timer runs
  // with this timer's id. Millisecond resolution; O(log n). Returns kNoTimer where the transport
  // has no timers (the UDP endpoint's Peer) or the connection is closed.
  virtual TimerId start_timer(std::chrono::milliseconds delay,
                              std::chrono::milliseconds period = std::chrono::milliseconds(0)) = 0;
  // False if the timer had already fired (one-shot), was cancelled, or is not this peer's.
  virtual bool cancel_timer(TimerId id) = 0;

 protected:
  ~Peer() = default;
};

struct RoomInfo {
  std::string name;
  std::size_t members = 0;
};

// Fan-out between the sessions of one server, implemented by each concurrency model (a plain
// map under epoll, a mutex under threads, a relay in the parent under fork).
// Delivery through the Hub is a Peer::send on the receiving side: same outbox, same limits.
// Room names and names compare ignoring ASCII case (A-Z = a-z; other bytes as they are): "Dev"
// and "dev" are one room, "Alice" and "alice" one name. Lists keep spellings: a name as its
// holder last claimed it, a room as the peer whose join created it spelled it.
class Hub {
 public:
  virtual void join(std::string_view room, Peer& peer) = 0;
  virtual void leave(std::string_view room, Peer& peer) = 0;
  // Sends `bytes` to every member of `room` except `except` (may be null).
  virtual void publish(std::string_view room, std::span<const std::byte> bytes,
                       const Peer* except) = 0;
  // Server-wide unique names (chat nicks). claim_name replaces the peer's previous name; false if
  // another peer holds it in any spelling. A peer claiming a new spelling of its own name keeps
  // it, listed as now spelled.
  virtual bool claim_name(std::string_view name, Peer& peer) = 0;
  virtual void release_name(Peer& peer) = 0;
  // Delivers to the peer holding `name`; false if nobody does.
  virtual bool send_to(std::string_view name, std::span<const std::byte> bytes) = 0;
  // Rooms with at least one member, sorted by name ignoring case.
  virtual std::vector<RoomInfo> rooms() = 0;
  // Names of the members of `room` that hold a name, sorted ignoring case.
  virtual std::vector<std::string> members(std::string_view room) = 0;
  // Leaves every room and releases the name: what a session does in on_close.
  virtual void forget(Peer& peer) = 0;
  // What the hub publishes to `room` for this peer if it vanishes without its session's on_close
  // (a fork-model child killed by a signal): chat's "* NAME left". Replaces the previous one;
  // empty bytes clear it. Models whose sessions always hear on_close ignore it (the default).
  virtual void set_farewell(std::string_view /*room*/, std::span<const std::byte> /*bytes*/,
                            Peer& /*peer*/) {}

 protected:
  ~Hub() = default;
};

// One per connection (one per endpoint over UDP).
class Session {
 public:
  virtual ~Session() = default;
  virtual void on_open(Peer&) {}
  // Returns how many bytes it consumed. On stream transports the rest is kept and presented
  // again, in front of new bytes; on message transports each call is one whole message.
  virtual std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) = 0;
  // The peer half-closed (sent FIN). We may still send. Default: close after flushing.
  virtual void on_eof(Peer& peer) { peer.close(); }
  // A timer armed with peer.start_timer is due. A one-shot timer's id is spent once this runs.
  virtual void on_timer(Peer& /*peer*/, TimerId /*id*/) {}
  // The connection is gone: empty code for an orderly close, else why.
  virtual void on_close(std::error_code) {}
};

// One per server: configuration plus the session factory. Must be usable from several threads
// (thread and reuseport models call open() concurrently) if it keeps mutable state.
class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual std::unique_ptr<Session> open(Hub& hub) = 0;
  // Max bytes queued towards one peer before it is dropped as too slow; 0 = no limit (the
  // connection then applies backpressure: it stops reading while its output is above the
  // high-water mark).
  virtual std::size_t max_outbox() const { return 0; }
  // Max unconsumed input a session may leave before the connection is closed.
  virtual std::size_t max_input() const { return 1u << 20; }
  // Bytes sent (best effort, never blocking) to a connection the server refuses or drops before
  // it is closed: `reason` is Errc::too_many_connections, idle_timeout, input_too_large or
  // too_slow. Redis answers "-ERR max number of clients reached\r\n". Default: nothing.
  virtual std::string last_words(std::error_code /*reason*/) const { return {}; }
};

// What a protocol is, for registries, --list-protocols and plugins.
struct ProtocolInfo {
  std::string_view name;
  std::string_view summary;              // one line
  unsigned transports = kAllTransports;  // TransportMask bits
  bool uses_hub = false;
  // Sessions share state in this process (one store): models whose connections share no memory
  // (fork) refuse the protocol.
  bool shares_memory = false;
};

// Storage a driver lends to the next session made on its thread. The fork model's child serves
// one connection and exits: it lends a few bytes of its stack, a page it writes anyway, so that
// its session costs no heap page (a copy-on-write fault, some 3% of what a connection costs that
// model). A session class may take the storage in its operator new and must then give it back in
// its operator delete (echo's does); other classes allocate as usual and never see it.
class SessionStorage {
 public:
  // Lends `bytes` to take() on this thread while this object lives. A session made in them must
  // be destroyed first.
  explicit SessionStorage(std::span<std::byte> bytes) noexcept;
  ~SessionStorage();
  SessionStorage(const SessionStorage&) = delete;
  SessionStorage& operator=(const SessionStorage&) = delete;

  // The lent bytes, if this thread has them, not yet taken, and they fit; else nullptr.
  static void* take(std::size_t size, std::size_t align) noexcept;
  // True if `p` is what take() returned on this thread: it is free again. False: not lent.
  static bool give_back(void* p) noexcept;

 private:
  SessionStorage* outer_;
  std::span<std::byte> bytes_;
  bool taken_ = false;
};

}  // namespace reactor
