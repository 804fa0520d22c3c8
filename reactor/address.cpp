#include "reactor/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

#include "reactor/error.hpp"

namespace reactor {
namespace {

struct Parts {
  Transport transport;
  std::string_view host;  // brackets removed
  std::string_view port;
  std::string_view path;  // UNIX transports
};

Result<Parts> split(std::string_view url) {
  struct Scheme {
    std::string_view prefix;
    Transport transport;
  };
  static constexpr Scheme kSchemes[] = {
      {"tcp://", Transport::tcp},
      {"udp://", Transport::udp},
      {"unix:", Transport::unix_stream},
      {"seqpacket:", Transport::unix_seqpacket},
  };
  for (const auto& scheme : kSchemes) {
    if (!url.starts_with(scheme.prefix)) continue;
    std::string_view rest = url.substr(scheme.prefix.size());
    Parts parts{scheme.transport, {}, {}, {}};
    if (scheme.prefix.ends_with("://")) {  // host:port schemes
      if (rest.starts_with('[')) {
        auto close = rest.find(']');
        if (close == std::string_view::npos) return Errc::bad_host;
        parts.host = rest.substr(1, close - 1);
        rest.remove_prefix(close + 1);
        if (!rest.starts_with(':')) return Errc::missing_port;
        parts.port = rest.substr(1);
      } else {
        auto colon = rest.rfind(':');
        if (colon == std::string_view::npos) return Errc::missing_port;
        parts.host = rest.substr(0, colon);
        if (parts.host.find(':') != std::string_view::npos) return Errc::bad_host;
        parts.port = rest.substr(colon + 1);
      }
      if (parts.port.empty()) return Errc::missing_port;
      return parts;
    }
    parts.path = rest;
    if (parts.path.empty()) return Errc::empty_path;
    return parts;
  }
  return Errc::unknown_scheme;
}

Result<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return Errc::bad_port;
  }
  return static_cast<std::uint16_t>(value);
}

int socket_type_of(Transport t) {
  switch (t) {
    case Transport::tcp:
    case Transport::unix_stream:
      return SOCK_STREAM;
    case Transport::udp:
      return SOCK_DGRAM;
    case Transport::unix_seqpacket:
      return SOCK_SEQPACKET;
  }
  return SOCK_STREAM;
}

}  // namespace

std::string_view scheme_of(Transport t) noexcept {
  switch (t) {
    case Transport::tcp:
      return "tcp";
    case Transport::udp:
      return "udp";
    case Transport::unix_stream:
      return "unix";
    case Transport::unix_seqpacket:
      return "seqpacket";
  }
  return "?";
}

int Address::socket_type() const noexcept {
  return socket_type_of(transport_);
}

Result<std::vector<Address>> Address::resolve_all(std::string_view url) {
  return resolve(url, true);
}

Result<Address> Address::parse_numeric(std::string_view url) {
  auto all = resolve(url, false);
  if (!all) return all.error();
  return all->front();
}

Result<std::vector<Address>> Address::resolve(std::string_view url, bool use_resolver) {
  auto parts = split(url);
  if (!parts) return parts.error();
  std::vector<Address> out;

  if (!parts->path.empty()) {
    Address a;
    a.transport_ = parts->transport;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
    un->sun_family = AF_UNIX;
    if (parts->path.size() >= sizeof(un->sun_path)) return Errc::path_too_long;
    std::memcpy(un->sun_path, parts->path.data(), parts->path.size());
    if (parts->path.front() == '@') un->sun_path[0] = '\0';  // abstract namespace
    a.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + parts->path.size() +
                                       (parts->path.front() == '@' ? 0 : 1));
    out.push_back(a);
    return out;
  }

  auto port = parse_port(parts->port);
  if (!port) return port.error();
  std::string host(parts->host);
  if (host == "*") {
    Address any;
    any.transport_ = parts->transport;
    any.dual_stack_ = true;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&any.storage_);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_any;
    in6->sin6_port = htons(*port);
    any.length_ = sizeof(sockaddr_in6);
    out.push_back(any);
    return out;
  }
  if (host.empty()) host = "0.0.0.0";

  Address a;
  a.transport_ = parts->transport;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  if (::inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(*port);
    a.length_ = sizeof(sockaddr_in);
    out.push_back(a);
    return out;
  }
  a = Address();
  a.transport_ = parts->transport;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (::inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(*port);
    a.length_ = sizeof(sockaddr_in6);
    out.push_back(a);
    return out;
  }
  if (parts->host.find_first_of("[]/ ") != std::string_view::npos) return Errc::bad_host;
  if (!use_resolver) return Errc::host_not_numeric;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socket_type_of(parts->transport);
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc == EAI_SYSTEM) return last_errno();
  if (rc != 0) return std::error_code(rc, resolver_category());
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    Address r = from_sockaddr(ai->ai_addr, ai->ai_addrlen, parts->transport);
    if (ai->ai_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&r.storage_)->sin_port = htons(*port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&r.storage_)->sin6_port = htons(*port);
    }
    bool duplicate = false;
    for (const auto& seen : out) duplicate = duplicate || seen == r;
    if (!duplicate) out.push_back(r);
  }
  ::freeaddrinfo(list);
  if (out.empty()) return std::error_code(EAI_NONAME, resolver_category());
  return out;
}

Result<Address> Address::parse(std::string_view url) {
  auto all = resolve_all(url);
  if (!all) return all.error();
  return all->front();
}

Address Address::as_dual_stack() const noexcept {
  Address out = *this;
  if (family() == AF_INET6 &&
      IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr)) {
    out.dual_stack_ = true;
  }
  return out;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len, Transport transport) {
  Address a;
  a.transport_ = transport;
  if (len > sizeof(a.storage_)) len = sizeof(a.storage_);
  std::memcpy(&a.storage_, sa, len);
  a.length_ = len;
  return a;
}

std::uint16_t Address::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

Address Address::with_port(std::uint16_t port) const noexcept {
  Address a = *this;
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_port = htons(port);
  return a;
}

std::string Address::unix_path() const {
  if (family() != AF_UNIX) return {};
  const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
  std::size_t n =
      length_ > offsetof(sockaddr_un, sun_path) ? length_ - offsetof(sockaddr_un, sun_path) : 0;
  if (n == 0 || un->sun_path[0] == '\0') return {};
  return std::string(un->sun_path, strnlen(un->sun_path, n));
}

std::string Address::to_string() const {
  std::string out(scheme_of(transport_));
  if (family() == AF_UNIX) {
    out += ':';
    const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
    std::size_t n =
        length_ > offsetof(sockaddr_un, sun_path) ? length_ - offsetof(sockaddr_un, sun_path) : 0;
    if (n > 0 && un->sun_path[0] == '\0') {
      out += '@';
      out.append(un->sun_path + 1, n - 1);
    } else if (n > 0) {
      out.append(un->sun_path, strnlen(un->sun_path, n));
    }
    return out;
  }
  out += "://";
  char text[INET6_ADDRSTRLEN] = "";
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                sizeof(text));
    out += text;
  } else if (family() == AF_INET6 && dual_stack_) {
    out += '*';
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
                sizeof(text));
    out += '[';
    out += text;
    out += ']';
  } else {
    return out + "?";
  }
  out += ':';
  out += std::to_string(port());
  return out;
}

bool operator==(const Address& a, const Address& b) noexcept {
  return a.transport_ == b.transport_ && a.dual_stack_ == b.dual_stack_ && a.length_ == b.length_ &&
         std::memcmp(&a.storage_, &b.storage_, a.length_) == 0;
}

}  // namespace reactor
