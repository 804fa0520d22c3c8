// The textbook baselines' listening socket: "tcp://A.B.C.D:PORT" (numeric IPv4, port 0 = any),
// blocking, SO_REUSEADDR. Returns the fd (and the bound address) or -1. libc only.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

inline int listen_on(const char* url, std::string& bound) {
  std::string u(url);
  if (u.rfind("tcp://", 0) != 0 || u.rfind(':') < 6) return -1;
  std::string host = u.substr(6, u.rfind(':') - 6);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<std::uint16_t>(std::atoi(u.c_str() + u.rfind(':') + 1)));
  if (::inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 || ::listen(fd, SOMAXCONN))
    return -1;
  socklen_t len = sizeof(sin);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  bound = "tcp://" + host + ":" + std::to_string(ntohs(sin.sin_port));
  return fd;
}
