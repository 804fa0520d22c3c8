// textbook-echo: the smallest honest epoll echo server, written the way the textbooks do it:
// one thread, level-triggered epoll, one read into a 64 KiB stack buffer per readiness, the echo
// written straight back. Bytes the socket would not take wait in a small per-fd buffer, and only
// then is EPOLLOUT watched (and reading paused). It is the baseline the framework is measured
// against, so it uses libc only.
//
//   textbook-echo --listen tcp://127.0.0.1:0     (or unix:/path)
// prints "listening on tcp://127.0.0.1:PORT", serves until SIGINT/SIGTERM, then prints
// "summary: connections=N bytes_in=N bytes_out=N" and exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kListenerTag = -1;
constexpr int kSignalTag = -2;

struct Counters {
  unsigned long long connections = 0;
  unsigned long long bytes_in = 0;
  unsigned long long bytes_out = 0;
};

// Unsent echo bytes of one connection; empty (no heap) for almost every connection.
std::vector<std::vector<char>> g_pending;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "textbook-echo: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "textbook-echo: %s\n", message.c_str());
  std::exit(2);
}

// "tcp://A.B.C.D:PORT" (numeric IPv4) or "unix:/path". Returns the listening socket.
int open_listener(std::string_view url, std::string& bound) {
  if (url.starts_with("unix:")) {
    std::string path(url.substr(5));
    sockaddr_un sun{};
    if (path.empty() || path.size() >= sizeof(sun.sun_path))
      usage_error("bad unix path in --listen");
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.data(), path.size());
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) die("bind");
    if (::listen(fd, SOMAXCONN) != 0) die("listen");
    bound = "unix:" + path;
    return fd;
  }
  if (!url.starts_with("tcp://")) usage_error("--listen wants tcp://A.B.C.D:PORT or unix:/path");
  std::string_view rest = url.substr(6);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) usage_error("--listen: missing :PORT");
  std::string host(rest.substr(0, colon));
  std::string port(rest.substr(colon + 1));
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) usage_error("--listen: bad port");
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<std::uint16_t>(p));
  if (host == "*" || host.empty()) host = "0.0.0.0";
  if (::inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1)
    usage_error("--listen: host must be a numeric IPv4 address");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) die("bind");
  if (::listen(fd, SOMAXCONN) != 0) die("listen");
  socklen_t len = sizeof(sin);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  bound = "tcp://" + host + ":" + std::to_string(ntohs(sin.sin_port));
  return fd;
}

void watch(int ep, int op, int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, op, fd, &ev) != 0) die("epoll_ctl");
}

void close_connection(int fd) {
  std::vector<char>().swap(g_pending[static_cast<std::size_t>(fd)]);
  ::close(fd);  // also leaves the epoll set
}

// Writes as much as the socket takes; the rest is kept. False when the connection failed.
bool send_or_keep(int fd, const char* data, std::size_t size, Counters& c) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      c.bytes_out += static_cast<unsigned long long>(n);
      data += n;
      size -= static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto& pending = g_pending[static_cast<std::size_t>(fd)];
      pending.insert(pending.end(), data, data + size);
      return true;
    } else {
      return false;
    }
  }
  return true;
}

void on_readable(int ep, int fd, Counters& c) {
  char buf[64 * 1024];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    close_connection(fd);
    return;
  }
  c.bytes_in += static_cast<unsigned long long>(n);
  if (!send_or_keep(fd, buf, static_cast<std::size_t>(n), c)) {
    close_connection(fd);
    return;
  }
  // Output backed up: stop reading, wait for room.
  if (!g_pending[static_cast<std::size_t>(fd)].empty()) watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

void on_writable(int ep, int fd, Counters& c) {
  std::vector<char> pending;
  pending.swap(g_pending[static_cast<std::size_t>(fd)]);
  if (!send_or_keep(fd, pending.data(), pending.size(), c)) {
    close_connection(fd);
    return;
  }
  if (g_pending[static_cast<std::size_t>(fd)].empty()) watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
}

void on_acceptable(int ep, int listener, int& spare_fd, Counters& c) {
  for (int i = 0; i < 256; ++i) {
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: accept with the spare one and drop the connection, or the
        // level-triggered listener would wake us forever.
        ::close(spare_fd);
        int drop = ::accept(listener, nullptr, nullptr);
        if (drop >= 0) ::close(drop);
        spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        continue;
      }
      return;  // EAGAIN, or a transient error such as ECONNABORTED
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // fails harmlessly on UNIX
    if (static_cast<std::size_t>(fd) >= g_pending.size())
      g_pending.resize(static_cast<std::size_t>(fd) + 1);
    ++c.connections;
    watch(ep, EPOLL_CTL_ADD, fd, EPOLLIN);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_url;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::puts("usage: textbook-echo --listen tcp://A.B.C.D:PORT|unix:/path");
      return 0;
    }
    if (a == "--listen" && i + 1 < argc) {
      listen_url = argv[++i];
    } else if (a.starts_with("--listen=")) {
      listen_url = std::string(a.substr(9));
    } else {
      usage_error("unknown argument '" + std::string(a) + "' (usage: --listen tcp://127.0.0.1:0)");
    }
  }
  if (listen_url.empty()) usage_error("--listen is required");

  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) die("sigprocmask");
  int sfd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");

  std::string bound;
  int listener = open_listener(listen_url, bound);
  int spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = kListenerTag;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) die("epoll_ctl");
  ev.data.fd = kSignalTag;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0) die("epoll_ctl");

  std::printf("listening on %s\n", bound.c_str());
  std::fflush(stdout);

  Counters c;
  bool running = true;
  epoll_event events[256];
  while (running) {
    int n = ::epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == kListenerTag) {
        on_acceptable(ep, listener, spare_fd, c);
      } else if (fd == kSignalTag) {
        running = false;
      } else if (events[i].events & EPOLLOUT) {
        on_writable(ep, fd, c);
      } else {
        on_readable(ep, fd, c);  // EPOLLIN, or EPOLLHUP/EPOLLERR: read() reports them
      }
    }
  }
  if (bound.starts_with("unix:")) ::unlink(bound.c_str() + 5);
  std::printf("summary: connections=%llu bytes_in=%llu bytes_out=%llu\n", c.connections, c.bytes_in,
              c.bytes_out);
  std::fflush(stdout);
  return 0;
}
