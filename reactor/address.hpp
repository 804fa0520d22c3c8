// Address: one value type for every endpoint the library speaks, written as a URL:
//   tcp://host:port   tcp://[::1]:port   udp://host:port   unix:/path   seqpacket:/path
// ("unix:@name" / "seqpacket:@name" use Linux's abstract namespace). Host names are resolved
// with getaddrinfo. Wildcards: "tcp://*:P" is every interface of both families (one dual-stack
// IPv6 socket that also takes IPv4 as ::ffff:a.b.c.d; plain IPv4 where IPv6 is unavailable);
// "tcp://:P" and "tcp://0.0.0.0:P" are every IPv4 interface; "tcp://[::]:P" is IPv6 only.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/result.hpp"

namespace reactor {

enum class Transport : std::uint8_t { tcp, udp, unix_stream, unix_seqpacket };

// Bit set of transports, for a protocol to say what it can run over.
enum TransportMask : unsigned {
  kTcp = 1u << 0,
  kUdp = 1u << 1,
  kUnixStream = 1u << 2,
  kUnixSeqpacket = 1u << 3,
  kAllTransports = kTcp | kUdp | kUnixStream | kUnixSeqpacket,
};
constexpr unsigned mask_of(Transport t) noexcept {
  return 1u << static_cast<unsigned>(t);
}

std::string_view scheme_of(Transport t) noexcept;  // "tcp", "udp", "unix", "seqpacket"
// Connection-oriented transports listen and accept; udp does neither.
constexpr bool is_connection_oriented(Transport t) noexcept {
  return t != Transport::udp;
}
// Transports that keep message boundaries (one send = one receive).
constexpr bool is_message_oriented(Transport t) noexcept {
  return t == Transport::udp || t == Transport::unix_seqpacket;
}

class Address {
 public:
  Address() = default;

  // Parses and resolves (first getaddrinfo answer). Errors name what is wrong; callers prefix the
  // input: describe(url, result.error()).
  static Result<Address> parse(std::string_view url);
  // Every address a host name resolves to, in getaddrinfo's order.
  static Result<std::vector<Address>> resolve_all(std::string_view url);
  // Like parse, but never asks the resolver: a host must be a numeric IPv4/IPv6 address (or
  // empty/*). For fuzzers and tests that must not send DNS queries.
  static Result<Address> parse_numeric(std::string_view url);
  // From a kernel-filled sockaddr (accept, recvfrom, getsockname).
  static Address from_sockaddr(const sockaddr* sa, socklen_t len, Transport transport);

  Transport transport() const noexcept { return transport_; }
  int family() const noexcept { return storage_.ss_family; }
  int socket_type() const noexcept;  // SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET
  const sockaddr* sockaddr_ptr() const noexcept {
    return reinterpret_cast<const sockaddr*>(&storage_);
  }
  socklen_t length() const noexcept { return length_; }
  std::uint16_t port() const noexcept;  // 0 for UNIX-domain addresses
  // The same address with another port (IP addresses only; UNIX ones come back unchanged).
  Address with_port(std::uint16_t port) const noexcept;
  // "*": the IPv6 wildcard, to be listened on with IPV6_V6ONLY off (listen_on does).
  bool dual_stack() const noexcept { return dual_stack_; }
  // The IPv6 wildcard marked as serving both families (what local_address() finds for a socket
  // bound to [::] with IPV6_V6ONLY off); any other address comes back unchanged.
  Address as_dual_stack() const noexcept;
  bool is_unix() const noexcept { return family() == AF_UNIX; }
  // The filesystem path of a UNIX address ("" when abstract or not UNIX).
  std::string unix_path() const;

  // Back to the URL form parse() takes: "tcp://[::1]:8080", "unix:/tmp/s".
  std::string to_string() const;

  friend bool operator==(const Address& a, const Address& b) noexcept;

 private:
  static Result<std::vector<Address>> resolve(std::string_view url, bool use_resolver);

  sockaddr_storage storage_{};
  socklen_t length_ = 0;
  Transport transport_ = Transport::tcp;
  bool dual_stack_ = false;
};

}  // namespace reactor
