#include "bench_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

namespace bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

int millis_left(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

}  // namespace

std::optional<Child> Child::spawn(const SpawnOptions& options, std::string& error) {
  if (options.argv.empty()) {
    error = "nothing to run";
    return std::nullopt;
  }
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  int out[2];
  int exec_error[2];  // the child reports a failed exec here; closes on a successful one
  if (::pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return std::nullopt;
  }
  if (::pipe2(exec_error, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    ::close(out[0]);
    ::close(out[1]);
    return std::nullopt;
  }
  int err_fd = -1;
  if (!options.stderr_path.empty()) {
    err_fd = ::open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0) {
      error = options.stderr_path + ": " + std::strerror(errno);
      for (int fd : {out[0], out[1], exec_error[0], exec_error[1]}) ::close(fd);
      return std::nullopt;
    }
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (int cpu : options.cpus) CPU_SET(cpu, &cpus);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
    if (!options.cpus.empty()) ::sched_setaffinity(0, sizeof(cpus), &cpus);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the driver, even if it is killed
    if (::getppid() != parent) ::_exit(127);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    int e = errno;
    ssize_t ignored = ::write(exec_error[1], &e, sizeof(e));
    (void)ignored;
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(out[1]);
  ::close(exec_error[1]);
  if (err_fd >= 0) ::close(err_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(fork_errno);
    ::close(out[0]);
    ::close(exec_error[0]);
    return std::nullopt;
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_error[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_error[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(out[0]);
    error = options.argv[0] + ": " + std::strerror(child_errno);
    return std::nullopt;
  }
  Child c;
  c.pid_ = pid;
  c.out_fd_ = out[0];
  c.pid_fd_ = open_pidfd(pid);
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      out_fd_(std::exchange(o.out_fd_, -1)),
      pid_fd_(std::exchange(o.pid_fd_, -1)),
      status_(std::exchange(o.status_, 0)),
      out_eof_(o.out_eof_),
      buffer_(std::move(o.buffer_)) {}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    release();
    pid_ = std::exchange(o.pid_, -1);
    out_fd_ = std::exchange(o.out_fd_, -1);
    pid_fd_ = std::exchange(o.pid_fd_, -1);
    status_ = std::exchange(o.status_, 0);
    out_eof_ = o.out_eof_;
    buffer_ = std::move(o.buffer_);
  }
  return *this;
}

Child::~Child() {
  release();
}

void Child::release() noexcept {
  if (pid_ > 0 && running()) kill_now();
  if (out_fd_ >= 0) ::close(out_fd_);
  if (pid_fd_ >= 0) ::close(pid_fd_);
  pid_ = out_fd_ = pid_fd_ = -1;
}

bool Child::try_reap() {
  if (!running()) return true;
  int status = 0;
  rusage usage{};
  pid_t r = ::wait4(pid_, &status, WNOHANG, &usage);
  if (r == pid_) {
    status_ = status;
    cpu_seconds_ = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                   static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    return true;
  }
  return false;
}

bool Child::pull() {
  if (out_eof_) return false;
  char buf[4096];
  ssize_t n = ::read(out_fd_, buf, sizeof(buf));
  if (n > 0) {
    buffer_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  out_eof_ = true;
  return false;
}

std::optional<std::string> Child::read_line(Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (out_eof_) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, millis_left(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return std::nullopt;
    pull();
  }
}

std::string Child::read_all(Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (!out_eof_) {
    pollfd p{out_fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, millis_left(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) break;
    pull();
  }
  return std::exchange(buffer_, {});
}

bool Child::wait(Millis timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (!try_reap()) {
    int left = millis_left(deadline);
    if (left == 0) return false;
    if (pid_fd_ >= 0) {
      pollfd p{pid_fd_, POLLIN, 0};
      ::poll(&p, 1, left);
    } else {
      ::poll(nullptr, 0, std::min(left, 5));  // no pidfd: check for the exit every 5 ms
    }
  }
  return true;
}

std::string Child::stop(int sig, Millis timeout) {
  if (running()) ::kill(pid_, sig);
  auto deadline = SteadyClock::now() + timeout;
  // Collect stdout until the process is gone. Its own children may keep the pipe open after
  // it exits, so the exit, not EOF, ends the wait.
  while (!try_reap()) {
    int left = millis_left(deadline);
    if (left == 0) break;
    pollfd p[2] = {{out_eof_ ? -1 : out_fd_, POLLIN, 0}, {pid_fd_, POLLIN, 0}};
    int rc = ::poll(p, 2, pid_fd_ >= 0 ? left : std::min(left, 5));
    if (rc > 0 && (p[0].revents & (POLLIN | POLLHUP))) pull();
  }
  if (running()) kill_now();
  // Whatever the process wrote before it exited is in the pipe now.
  if (!out_eof_) {
    int flags = ::fcntl(out_fd_, F_GETFL);
    ::fcntl(out_fd_, F_SETFL, flags | O_NONBLOCK);
    while (pull()) {
    }
    out_eof_ = false;  // not necessarily EOF: a grandchild may hold the pipe
  }
  return std::exchange(buffer_, {});
}

void Child::kill_now() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  rusage usage{};
  if (::wait4(pid_, &status, 0, &usage) == pid_) {
    status_ = status;
    cpu_seconds_ = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                   static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
}

std::string describe_wait_status(int status) {
  if (status < 0) return "still running";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") + (name ? name : std::to_string(WTERMSIG(status)).c_str());
  }
  return "status " + std::to_string(status);
}

std::string last_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<std::size_t>(n));
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool is_executable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0;
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::string all(path);
  std::size_t start = 0;
  while (start <= all.size()) {
    auto end = all.find(':', start);
    if (end == std::string::npos) end = all.size();
    std::string candidate = end > start ? all.substr(start, end - start) : std::string(1, '.');
    candidate += '/';
    candidate += name;
    if (is_executable(candidate)) return candidate;
    start = end + 1;
  }
  return {};
}

}  // namespace bench
