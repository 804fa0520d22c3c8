#include "reactor/error.hpp"

#include <netdb.h>

#include "reactor/hot.hpp"

namespace reactor {

const std::error_category* const detail::system_category = &std::system_category();

namespace {

class ReactorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "reactor"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::unknown_scheme:
        return "unknown scheme (expected tcp://, udp://, unix: or seqpacket:)";
      case Errc::missing_port:
        return "missing port (expected host:port)";
      case Errc::bad_port:
        return "bad port (expected a number from 0 to 65535)";
      case Errc::bad_host:
        return "bad host (IPv6 literals go in brackets: [::1])";
      case Errc::path_too_long:
        return "UNIX socket path too long (at most 107 bytes)";
      case Errc::empty_path:
        return "empty UNIX socket path";
      case Errc::message_too_large:
        return "message larger than the receive buffer";
      case Errc::too_slow:
        return "peer too slow: outbox overflowed";
      case Errc::idle_timeout:
        return "idle timeout";
      case Errc::input_too_large:
        return "unconsumed input over the limit";
      case Errc::session_failed:
        return "protocol handler failed";
      case Errc::wrong_transport:
        return "operation does not fit this transport";
      case Errc::shutting_down:
        return "server shutting down";
      case Errc::host_not_numeric:
        return "host is not a numeric IP address";
      case Errc::too_many_connections:
        return "too many connections";
      case Errc::fd_too_large:
        return "descriptor above FD_SETSIZE (1024): the select model cannot watch it";
    }
    return "unknown reactor error";
  }
};

class ResolverCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "resolver"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

// Namespace-scope constants built at load time rather than function-local statics: no guard
// variable and no atexit registration the first time an error is made, which a forked child
// would otherwise pay for (two copy-on-write page faults) on every connection.
constinit const ReactorCategory kReactorCategory;
constinit const ResolverCategory kResolverCategory;

}  // namespace

REACTOR_HOT const std::error_category& reactor_category() noexcept {
  return kReactorCategory;
}

const std::error_category& resolver_category() noexcept {
  return kResolverCategory;
}

std::string describe(std::string_view what, std::error_code ec) {
  std::string text(what);
  text += ": ";
  text += ec.message();
  return text;
}

}  // namespace reactor
