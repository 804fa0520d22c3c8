// Error codes the library adds to errno's: bad addresses, resolver failures, protocol limits.
#pragma once

#include <string>
#include <system_error>

namespace reactor {

enum class Errc {
  unknown_scheme = 1,    // "ftp://..." or no scheme at all
  missing_port,          // "tcp://host" with no ":port"
  bad_port,              // not a number, or outside 0..65535
  bad_host,              // empty host, or unbalanced [ ] around an IPv6 literal
  path_too_long,         // UNIX path longer than sun_path allows
  empty_path,            // "unix:" with nothing after it
  message_too_large,     // a datagram or message bigger than the receive buffer
  too_slow,              // peer's outbox overflowed: it was dropped
  idle_timeout,          // no traffic for the configured idle time
  input_too_large,       // session left more unconsumed input than allowed
  session_failed,        // the protocol handler threw; its connection was closed
  wrong_transport,       // operation does not fit the address's transport
  shutting_down,         // server is stopping
  host_not_numeric,      // parse_numeric() got a host name
  too_many_connections,  // refused: the server is at its connection limit
  fd_too_large,          // select backend: descriptor number >= FD_SETSIZE
};

const std::error_category& reactor_category() noexcept;
// getaddrinfo's EAI_* codes, so "no such host" reads as the resolver says it.
const std::error_category& resolver_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), reactor_category()};
}
namespace detail {
// std::system_category(), looked up once at start-up: an error code then costs no call into
// libstdc++ (a forked child that sees its first error faults in no page of its code for it).
extern const std::error_category* const system_category;
}  // namespace detail

inline std::error_code errno_code(int e) noexcept {
  const std::error_category* category = detail::system_category;
  return {e, category != nullptr ? *category : std::system_category()};  // null: before start-up
}
inline std::error_code last_errno() noexcept {
  return errno_code(errno);
}

// "what: message", the way tools print one failure on one line.
std::string describe(std::string_view what, std::error_code ec);

}  // namespace reactor

template <>
struct std::is_error_code_enum<reactor::Errc> : std::true_type {};
