// ForkedChild: a copy of this process, made with fork(), that runs a server the test builds
// itself (a model under test, or an EpollServer with a small descriptor limit) and talks back
// through a pipe: the addresses it bound, then what it counted. Every read and wait is bounded
// (poll on the pipe and a pidfd, never a sleep); the destructor SIGKILLs the child's process
// group if it is still running and reaps it.
//
// fork() from a threaded process is unsafe: fork before starting threads of your own, and let
// the child run single-threaded code (or models that start threads after the fork).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "reactor/fd.hpp"

namespace test {

class ForkedChild {
 public:
  // Forks; the child runs body(report_fd) and _exits with what it returns (no destructors, no
  // doctest: report failures as exit codes). Fails the test if fork fails.
  explicit ForkedChild(const std::function<int(int report_fd)>& body);
  ~ForkedChild();
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;

  pid_t pid() const noexcept { return pid_; }
  // Still running (reaps it if it has exited).
  bool running();
  bool signal(int sig);
  // Waits (bounded) for the child to exit. The raw wait status, or nullopt after `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit);

  // Reads exactly `size` bytes from the report pipe within `limit`; false on EOF or timeout.
  bool read(void* data, std::size_t size, std::chrono::milliseconds limit);
  // Reads a string the child sent with send_text; nullopt on EOF or timeout.
  std::optional<std::string> read_text(std::chrono::milliseconds limit);

  // In the child: writes all of `data` (async-signal-safe); false on an error.
  static bool write_all(int fd, const void* data, std::size_t size) noexcept;
  // In the child: a length-prefixed string for read_text.
  static bool send_text(int fd, std::string_view text) noexcept;

 private:
  bool reap(int flags);

  pid_t pid_ = -1;
  reactor::Fd pidfd_;
  reactor::Fd report_;
  std::optional<int> status_;
};

}  // namespace test
