// Echo (RFC 862): every byte received is sent back unchanged. On message transports (UDP,
// SEQPACKET) each on_data is one message, so each message is echoed as one message.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "reactor/session.hpp"

namespace reactor::protocols {

class EchoSession final : public Session {
 public:
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override;

  // Sessions come from one slab shared by every thread (under a mutex: the thread and threadpool
  // models open and close sessions on several): an echo session is one vptr, 8 bytes there,
  // where malloc would take its smallest chunk, 32. A fork model's child makes its one session in
  // the stack storage its driver lends (SessionStorage), and writes no page of the pool's.
  static void* operator new(std::size_t size);
  static void operator delete(void* p) noexcept;
};

// Uses backpressure (max_outbox 0): a client that does not read stops being read from.
class EchoProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> open(Hub& hub) override;
};

inline constexpr ProtocolInfo kEchoInfo{"echo", "RFC 862 echo: sends every byte back",
                                        kAllTransports, false};

// Registry factory: echo takes no arguments.
std::unique_ptr<Protocol> make_echo(std::string_view args, std::string& error);

}  // namespace reactor::protocols
