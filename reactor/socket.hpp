// Thin socket helpers over the POSIX calls, returning error codes instead of -1/errno.
// Every descriptor they create is nonblocking and close-on-exec unless said otherwise.
#pragma once

#include <chrono>
#include <cstddef>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/result.hpp"

namespace reactor {

struct ListenOptions {
  int backlog = 1024;
  bool reuse_address = true;  // SO_REUSEADDR: restart without waiting out TIME_WAIT
  bool reuse_port = false;    // SO_REUSEPORT: several listeners share one port (one per loop)
  bool v6_only = true;        // IPv6 listeners accept only IPv6 (a "*" address never is)
  // Remove a leftover socket file before bind; a live one (a connect() probe is accepted) is
  // left alone and listen_on fails with EADDRINUSE.
  bool unlink_stale_unix_path = true;
  bool blocking = false;  // blocking listener, for the fork/thread models
  bool no_delay = true;   // TCP_NODELAY, inherited by accepted sockets (no call per accept)
};

// Stream and seqpacket: socket+bind+listen. UDP: socket+bind.
Result<Fd> listen_on(const Address& address, const ListenOptions& options = {});

// A stream listener for a model that serves TCP and UNIX stream only (fork, thread): the socket
// and the address it is bound to (port 0 -> the real port); other transports give
// Errc::wrong_transport.
struct StreamListener {
  Fd fd;
  Address bound;
};
Result<StreamListener> listen_stream(const Address& address);

// A new socket for `address`'s family/type (nonblocking unless `blocking`).
Result<Fd> open_socket(const Address& address, bool blocking = false);

// Starts a nonblocking connect. On success `in_progress` tells whether to wait for writability
// (then call finish_connect). UDP sockets are connected at once.
Result<Fd> start_connect(const Address& address, bool& in_progress);
// After writability: the connect's outcome (SO_ERROR).
std::error_code finish_connect(int fd);
// Blocking connect with a deadline, for clients and tests. Returns a BLOCKING socket.
Result<Fd> connect_blocking(const Address& address, std::chrono::milliseconds timeout);

// The address the kernel bound (port 0 -> the real port) or the peer's address.
Result<Address> local_address(int fd, Transport transport);
Result<Address> peer_address(int fd, Transport transport);

std::error_code set_nonblocking(int fd, bool on);
std::error_code set_no_delay(int fd, bool on);
std::error_code set_reuse_port(int fd, bool on);
// SO_LINGER {1, 0}: close() sends RST and leaves no TIME_WAIT.
std::error_code set_linger_abort(int fd);
std::error_code set_receive_timeout(int fd, std::chrono::milliseconds timeout);
std::error_code set_send_timeout(int fd, std::chrono::milliseconds timeout);
std::error_code set_buffer_sizes(int fd, int receive_bytes, int send_bytes);  // 0 = leave as is

// Bytes we sent that the peer has not yet taken (SIOCOUTQ: unacknowledged on TCP, unread on
// UNIX sockets); -1 if the kernel cannot tell. Closing with unread input answers with RST, which
// drops exactly these bytes: a graceful close waits for 0 (or the peer's EOF) first.
int unacknowledged_bytes(int fd) noexcept;

// SIGPIPE must never kill the process: every send in the library uses MSG_NOSIGNAL, and this
// sets SIG_IGN as a fallback for writes the library does not make (idempotent).
void ignore_sigpipe() noexcept;

// Blocking helpers for simple clients, the thread/fork models and tests. They retry on EINTR.
// send_all: every byte or an error. recv_some: >0 bytes, 0 at EOF, or an error.
std::error_code send_all(int fd, const void* data, std::size_t size);
Result<std::size_t> recv_some(int fd, void* data, std::size_t size);
// Reads exactly `size` bytes unless EOF or an error comes first (returns what it got).
Result<std::size_t> recv_exact(int fd, void* data, std::size_t size);

}  // namespace reactor
