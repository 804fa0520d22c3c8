// textbook-fork-echo --listen tcp://127.0.0.1:0: the fork model's baseline, as in Stevens' UNP
// (5.10): blocking accept, a child per connection looping read/write, a SIGCHLD handler reaping
// with waitpid (not SA_NOCLDWAIT: the kernel then drops the children's CPU time, and the bench
// charges a server its children's CPU through wait4), the parent closes its copy. Prints
// "listening on ..."; on SIGTERM "summary: connections=N bytes_in=N bytes_out=N".
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "textbook_listen.hpp"

namespace {
volatile sig_atomic_t g_stop = 0;
int g_listener = -1;
void on_stop(int) {  // also wakes an accept() the flag was checked just before
  g_stop = 1;
  ::shutdown(g_listener, SHUT_RDWR);
}
void on_child(int) {  // reaps every child that has exited
  int saved = errno;
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  errno = saved;
}
struct Shared {
  std::atomic<unsigned long long> bytes_in{0}, bytes_out{0};
};

void serve(int fd, Shared* shared) {
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    shared->bytes_in += static_cast<unsigned long long>(n);
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(fd, buf + off, static_cast<std::size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;
      off += w;
      shared->bytes_out += static_cast<unsigned long long>(w);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::strcmp(argv[1], "--listen") != 0) {
    std::fprintf(stderr, "usage: textbook-fork-echo --listen tcp://A.B.C.D:PORT\n");
    return 2;
  }
  std::string bound;
  int listener = g_listener = listen_on(argv[2], bound);
  if (listener < 0) {
    std::fprintf(stderr, "textbook-fork-echo: cannot listen on %s\n", argv[2]);
    return 2;
  }
  void* page =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* shared = new (page) Shared;  // MAP_FAILED: the kernel is out of memory; crash
  struct sigaction sa {};
  sa.sa_handler = on_child;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  ::sigaction(SIGCHLD, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  sa.sa_handler = on_stop;
  sa.sa_flags = 0;  // no SA_RESTART: SIGTERM interrupts accept()
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  std::printf("listening on %s\n", bound.c_str());
  std::fflush(stdout);
  unsigned long long connections = 0;
  while (!g_stop) {
    int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;  // EINTR (stop), or a transient error
    ++connections;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::fork() == 0) {
      ::close(listener);
      ::signal(SIGTERM, SIG_DFL);
      serve(fd, shared);
      ::_exit(0);
    }
    ::close(fd);  // the parent's copy; the child holds the connection
  }
  std::printf("summary: connections=%llu bytes_in=%llu bytes_out=%llu\n", connections,
              shared->bytes_in.load(), shared->bytes_out.load());
  std::fflush(stdout);
  return 0;
}
