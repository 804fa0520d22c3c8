#include "server_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "../summary.hpp"

extern char** environ;

namespace fault {
namespace {

constexpr std::string_view kListening = "listening on tcp://127.0.0.1:";

bool make_pipe(reactor::Fd& read_end, reactor::Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

// Appends what the pipe holds now; false at EOF or on an error.
bool read_available(int fd, std::string& into) {
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      into.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

// The port of the first complete "listening on" line, 0 if there is none yet.
std::uint16_t listening_port(const std::string& out) {
  const std::size_t at = out.find(kListening);
  if (at == std::string::npos) return 0;
  const std::size_t end = out.find('\n', at);
  if (end == std::string::npos) return 0;
  const std::string digits = out.substr(at + kListening.size(), end - at - kListening.size());
  const unsigned long port = std::strtoul(digits.c_str(), nullptr, 10);
  return port > 0 && port < 65536 ? static_cast<std::uint16_t>(port) : 0;
}

}  // namespace

Summary parse_summary(const std::string& output) {
  return test::parse_summary(output);
}

ServerProcess::~ServerProcess() {
  kill_and_reap();
  if (stop_pipe_write_) {
    const char byte = 0;
    [[maybe_unused]] const ssize_t n = ::write(stop_pipe_write_.get(), &byte, 1);
  }
  if (reader_.joinable()) reader_.join();
}

std::string ServerProcess::start(const std::string& path, const ServerConfig& config,
                                 std::chrono::seconds limit) {
  std::vector<std::string> args = {path,        "--protocol",        config.protocol,
                                   "--listen",  "tcp://127.0.0.1:0", "--model",
                                   config.model};
  args.insert(args.end(), config.extra_args.begin(), config.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Our environment, less MALLOC_PERTURB_ (meson test sets it): it makes malloc write every
  // byte it hands out, and the server's RSS would then show buffer capacity, not use.
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "MALLOC_PERTURB_=", 16) != 0) envp.push_back(*e);
  }
  std::vector<std::string> extra_env = config.extra_env;
  for (auto& e : extra_env) envp.push_back(e.data());
  envp.push_back(nullptr);

  reactor::Fd out_write, err_write;
  if (!make_pipe(out_pipe_, out_write) || !make_pipe(err_pipe_, err_write) ||
      !make_pipe(stop_pipe_read_, stop_pipe_write_)) {
    return std::string("pipe: ") + std::strerror(errno);
  }
  const rlimit files{config.max_files, config.max_files};
  const rlimit tasks{config.max_tasks, config.max_tasks};

  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    // The child: async-signal-safe calls only until exec.
    ::setpgid(0, 0);
    if (config.max_files != 0 && ::setrlimit(RLIMIT_NOFILE, &files) != 0) ::_exit(126);
    if (config.max_tasks != 0 && ::setrlimit(RLIMIT_NPROC, &tasks) != 0) ::_exit(126);
    if (config.user != 0 && (::setgroups(0, nullptr) != 0 || ::setgid(config.user) != 0 ||
                             ::setuid(config.user) != 0)) {
      ::_exit(126);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out_write.get(), 1) < 0 ||
        ::dup2(err_write.get(), 2) < 0) {
      ::_exit(126);
    }
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signo : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD})
      ::sigaction(signo, &default_action, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  pid_ = pid;
  const long pidfd = ::syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) pidfd_.reset(static_cast<int>(pidfd));
  out_write.reset();
  err_write.reset();
  for (int fd : {out_pipe_.get(), err_pipe_.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  reader_ = std::thread([this] { drain_pipes(); });

  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, limit, [this] { return listening_port(out_) != 0 || pipes_closed_; });
  port_ = listening_port(out_);
  if (port_ != 0) return {};
  std::string why = pipes_closed_ ? "reactor-server exited before listening"
                                  : "reactor-server did not report its port in time";
  return why + "; stdout: " + out_ + "; stderr: " + err_;
}

void ServerProcess::drain_pipes() {
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? out_pipe_.get() : -1, POLLIN, 0},
                     {err_open ? err_pipe_.get() : -1, POLLIN, 0},
                     {stop_pipe_read_.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) break;
    if (fds[2].revents != 0) break;
    std::lock_guard lock(mutex_);
    if (out_open && fds[0].revents != 0) out_open = read_available(out_pipe_.get(), out_);
    if (err_open && fds[1].revents != 0) err_open = read_available(err_pipe_.get(), err_);
    changed_.notify_all();
  }
  std::lock_guard lock(mutex_);
  pipes_closed_ = true;
  changed_.notify_all();
}

sockaddr_in ServerProcess::address() const noexcept {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool ServerProcess::signal(int signo) const noexcept {
  return pid_ > 0 && !exited() && ::kill(pid_, signo) == 0;
}

bool ServerProcess::reap(int flags) {
  if (pid_ <= 0 || exited()) return exited();
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = status;
  return exited();
}

bool ServerProcess::wait_exit(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!reap(WNOHANG)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    // Without a pidfd (old kernels) exit is noticed by checking every 10 ms.
    pollfd fd{pidfd_.get(), POLLIN, 0};
    ::poll(&fd, pidfd_ ? 1 : 0,
           pidfd_ ? static_cast<int>(left.count())
                  : static_cast<int>(std::min<long>(left.count(), 10)));
  }
  // What the child wrote before exiting is in the pipes: let the reader take all of it.
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, std::chrono::seconds(5), [this] { return pipes_closed_; });
  return true;
}

std::string ServerProcess::stop(std::chrono::milliseconds limit) {
  if (!signal(SIGTERM))
    return "reactor-server is not running (exit " + std::to_string(exit_code()) + ")";
  if (!wait_exit(limit)) {
    return "reactor-server still running " + std::to_string(limit.count()) +
           " ms after SIGTERM; stderr: " + errors();
  }
  if (exit_code() != 0) {
    return "reactor-server exited " + std::to_string(exit_code()) + "; stderr: " + errors();
  }
  if (summary().empty()) return "no summary line in: " + output();
  return {};
}

int ServerProcess::exit_code() const noexcept {
  if (!status_) return -1;
  if (WIFEXITED(*status_)) return WEXITSTATUS(*status_);
  if (WIFSIGNALED(*status_)) return 128 + WTERMSIG(*status_);
  return -1;
}

std::string ServerProcess::output() const {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string ServerProcess::errors() const {
  std::lock_guard lock(mutex_);
  return err_;
}

void ServerProcess::kill_and_reap() {
  if (pid_ <= 0 || exited()) return;
  ::kill(-pid_, SIGKILL);  // its own process group: forked workers too
  ::kill(pid_, SIGKILL);
  reap(0);
}

}  // namespace fault
