#include "forked_child.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace test {

ForkedChild::ForkedChild(const std::function<int(int report_fd)>& body) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  reactor::Fd read_end(fds[0]);
  reactor::Fd write_end(fds[1]);
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::setpgid(0, 0);  // its own group: cleanup reaches what it forks too
    read_end.reset();
    ::_exit(body(write_end.get()));
  }
  ::setpgid(pid_, pid_);
  const long pidfd = ::syscall(SYS_pidfd_open, pid_, 0);
  if (pidfd >= 0) pidfd_.reset(static_cast<int>(pidfd));
  report_ = std::move(read_end);
}

ForkedChild::~ForkedChild() {
  if (pid_ <= 0 || !running()) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  reap(0);
}

bool ForkedChild::reap(int flags) {
  if (pid_ <= 0 || status_) return status_.has_value();
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = status;
  return status_.has_value();
}

bool ForkedChild::running() {
  return pid_ > 0 && !reap(WNOHANG);
}

bool ForkedChild::signal(int sig) {
  return running() && ::kill(pid_, sig) == 0;
}

std::optional<int> ForkedChild::wait_exit(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!reap(WNOHANG)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    // Without a pidfd (old kernels) exit is noticed by checking every 10 ms.
    pollfd fd{pidfd_.get(), POLLIN, 0};
    ::poll(&fd, pidfd_ ? 1 : 0,
           static_cast<int>(pidfd_ ? left.count() : std::min<long>(left.count(), 10)));
  }
  return status_;
}

bool ForkedChild::read(void* data, std::size_t size, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{report_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(report_.get(), p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::optional<std::string> ForkedChild::read_text(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::uint32_t length = 0;
  if (!read(&length, sizeof length, limit)) return std::nullopt;
  std::string text(length, '\0');
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (length > 0 && !read(text.data(), length, std::max(left, std::chrono::milliseconds(1))))
    return std::nullopt;
  return text;
}

bool ForkedChild::write_all(int fd, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool ForkedChild::send_text(int fd, std::string_view text) noexcept {
  const auto length = static_cast<std::uint32_t>(text.size());
  return write_all(fd, &length, sizeof length) && write_all(fd, text.data(), text.size());
}

}  // namespace test
