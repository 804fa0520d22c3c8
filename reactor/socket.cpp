#include "reactor/socket.hpp"

#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>

#include "reactor/error.hpp"

namespace reactor {
namespace {

std::error_code set_int_option(int fd, int level, int name, int value) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return last_errno();
  return {};
}

// A socket file at a UNIX address: stale (left by a server that died) when a connect is refused,
// live when it is accepted, queued (backlog full) or answered by a listener of another type.
bool is_live_unix_socket(const Address& address) {
  Fd probe(::socket(AF_UNIX, address.socket_type() | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return false;
  if (::connect(probe.get(), address.sockaddr_ptr(), address.length()) == 0) return true;
  return errno == EAGAIN || errno == EINPROGRESS || errno == EPROTOTYPE || errno == EINTR;
}

}  // namespace

Result<Fd> open_socket(const Address& address, bool blocking) {
  int type = address.socket_type() | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK);
  Fd fd(::socket(address.family(), type, 0));
  if (!fd) return last_errno();
  return fd;
}

Result<Fd> listen_on(const Address& address, const ListenOptions& options) {
  auto fd = open_socket(address, options.blocking);
  if (!fd && address.dual_stack() && fd.error() == std::errc::address_family_not_supported) {
    // No IPv6 on this host: "*" is then every IPv4 interface.
    auto ipv4_any = Address::parse_numeric(std::string(scheme_of(address.transport())) +
                                           "://0.0.0.0:" + std::to_string(address.port()));
    if (!ipv4_any) return ipv4_any.error();
    return listen_on(*ipv4_any, options);
  }
  if (!fd) return fd.error();
  int s = fd->get();
  if (address.is_unix()) {
    std::string path = address.unix_path();
    if (options.unlink_stale_unix_path && !path.empty()) {
      // Only a socket left by an earlier run: never unlink a regular file someone pointed us at,
      // nor the socket of a server that is still running (a connect() probe tells them apart).
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (is_live_unix_socket(address)) return errno_code(EADDRINUSE);
        ::unlink(path.c_str());
      }
    }
  } else {
    if (options.reuse_address) {
      if (auto ec = set_int_option(s, SOL_SOCKET, SO_REUSEADDR, 1)) return ec;
    }
    if (options.reuse_port) {
      if (auto ec = set_reuse_port(s, true)) return ec;
    }
    if (options.no_delay && address.transport() == Transport::tcp) {
      if (auto ec = set_no_delay(s, true)) return ec;
    }
    if (address.family() == AF_INET6) {
      const bool v6_only = options.v6_only && !address.dual_stack();
      if (auto ec = set_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, v6_only ? 1 : 0)) {
        return ec;
      }
    }
  }
  if (::bind(s, address.sockaddr_ptr(), address.length()) != 0) return last_errno();
  if (is_connection_oriented(address.transport()) && ::listen(s, options.backlog) != 0) {
    return last_errno();
  }
  return fd;
}

Result<Fd> start_connect(const Address& address, bool& in_progress) {
  in_progress = false;
  auto fd = open_socket(address);
  if (!fd) return fd.error();
  if (::connect(fd->get(), address.sockaddr_ptr(), address.length()) == 0) return fd;
  // EINTR: the connect goes on asynchronously, like EINPROGRESS. EAGAIN (a UNIX listener's
  // backlog is full) is returned to the caller, who may retry.
  if (errno == EINPROGRESS || errno == EINTR) {
    in_progress = true;
    return fd;
  }
  return last_errno();
}

std::error_code finish_connect(int fd) {
  int error = 0;
  socklen_t len = sizeof(error);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return last_errno();
  return error ? errno_code(error) : std::error_code();
}

Result<Fd> connect_blocking(const Address& address, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool in_progress = false;
    auto fd = start_connect(address, in_progress);
    if (!fd && fd.error() == std::errc::resource_unavailable_try_again) {
      // UNIX listener backlog full: wait a little for the server to accept, within the deadline.
      if (std::chrono::steady_clock::now() >= deadline) return errno_code(ETIMEDOUT);
      ::poll(nullptr, 0, 5);
      continue;
    }
    if (!fd) return fd.error();
    while (in_progress) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return errno_code(ETIMEDOUT);
      pollfd p{fd->get(), POLLOUT, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno != EINTR) return last_errno();
      if (rc > 0) {
        if (auto ec = finish_connect(fd->get())) return ec;
        in_progress = false;
      }
    }
    if (auto ec = set_nonblocking(fd->get(), false)) return ec;
    return fd;
  }
}

Result<StreamListener> listen_stream(const Address& address) {
  if (address.transport() != Transport::tcp && address.transport() != Transport::unix_stream) {
    return Errc::wrong_transport;
  }
  auto fd = listen_on(address);
  if (!fd) return fd.error();
  auto bound = local_address(fd->get(), address.transport());
  if (!bound) return bound.error();
  return StreamListener{std::move(*fd), std::move(*bound)};
}

Result<Address> local_address(int fd, Transport transport) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return last_errno();
  Address local = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, transport);
  if (ss.ss_family == AF_INET6) {
    // Bound to [::] with IPV6_V6ONLY off ("tcp://*:P"): it serves both families, and says so.
    int v6only = 1;
    socklen_t optlen = sizeof(v6only);
    if (::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) == 0 && v6only == 0) {
      local = local.as_dual_stack();
    }
  }
  return local;
}

Result<Address> peer_address(int fd, Transport transport) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return last_errno();
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, transport);
}

std::error_code set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return last_errno();
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) return last_errno();
  return {};
}

std::error_code set_no_delay(int fd, bool on) {
  return set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

std::error_code set_reuse_port(int fd, bool on) {
  return set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, on ? 1 : 0);
}

std::error_code set_linger_abort(int fd) {
  linger l{1, 0};
  if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0) return last_errno();
  return {};
}

namespace {
std::error_code set_timeout(int fd, int name, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, name, &tv, sizeof(tv)) != 0) return last_errno();
  return {};
}
}  // namespace

std::error_code set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
  return set_timeout(fd, SO_RCVTIMEO, timeout);
}

std::error_code set_send_timeout(int fd, std::chrono::milliseconds timeout) {
  return set_timeout(fd, SO_SNDTIMEO, timeout);
}

std::error_code set_buffer_sizes(int fd, int receive_bytes, int send_bytes) {
  if (receive_bytes > 0) {
    if (auto ec = set_int_option(fd, SOL_SOCKET, SO_RCVBUF, receive_bytes)) return ec;
  }
  if (send_bytes > 0) {
    if (auto ec = set_int_option(fd, SOL_SOCKET, SO_SNDBUF, send_bytes)) return ec;
  }
  return {};
}

int unacknowledged_bytes(int fd) noexcept {
  int queued = 0;
  return ::ioctl(fd, SIOCOUTQ, &queued) == 0 ? queued : -1;
}

void ignore_sigpipe() noexcept {
  struct sigaction sa {};
  ::sigaction(SIGPIPE, nullptr, &sa);
  if (sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &sa, nullptr);
  }
}

std::error_code send_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

Result<std::size_t> recv_some(int fd, void* data, std::size_t size) {
  for (;;) {
    ssize_t n = ::recv(fd, data, size, 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_errno();
  }
}

Result<std::size_t> recv_exact(int fd, void* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    auto n = recv_some(fd, static_cast<char*>(data) + got, size - got);
    if (!n) return n.error();
    if (*n == 0) break;
    got += *n;
  }
  return got;
}

}  // namespace reactor
