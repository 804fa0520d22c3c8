// textbook-thread-echo --listen tcp://127.0.0.1:0: the thread model's baseline: blocking accept,
// one detached std::thread per connection looping read/write. Prints "listening on ..."; on
// SIGTERM "summary: connections=N bytes_in=N bytes_out=N".
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "textbook_listen.hpp"

namespace {
std::atomic<unsigned long long> g_in{0}, g_out{0};

void serve(int fd) {
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    g_in += static_cast<unsigned long long>(n);
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = ::send(fd, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += w;
      g_out += static_cast<unsigned long long>(w);
    }
    if (off < n) break;
  }
  ::close(fd);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::strcmp(argv[1], "--listen") != 0) {
    std::fprintf(stderr, "usage: textbook-thread-echo --listen tcp://A.B.C.D:PORT\n");
    return 2;
  }
  std::string bound;
  int listener = listen_on(argv[2], bound);
  if (listener < 0) {
    std::fprintf(stderr, "textbook-thread-echo: cannot listen on %s\n", argv[2]);
    return 2;
  }
  // SIGTERM/SIGINT go to a waiter thread; it prints the summary and exits the process.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // inherited by every connection thread
  ::signal(SIGPIPE, SIG_IGN);
  static std::atomic<unsigned long long> accepted{0};
  std::thread([stop] {
    int sig = 0;
    ::sigwait(&stop, &sig);
    std::printf("summary: connections=%llu bytes_in=%llu bytes_out=%llu\n", accepted.load(),
                g_in.load(), g_out.load());
    std::fflush(stdout);
    std::_Exit(0);
  }).detach();
  std::printf("listening on %s\n", bound.c_str());
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    ++accepted;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    try {
      std::thread(serve, fd).detach();
    } catch (const std::system_error&) {
      ::close(fd);  // no thread to be had: refuse this one
    }
  }
}
