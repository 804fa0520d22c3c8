#include "process.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <sys/syscall.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "reactor/error.hpp"
#include "reactor/fd.hpp"

extern char** environ;

namespace test {
namespace {

bool make_pipe(reactor::Fd& read_end, reactor::Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

// Appends what the (nonblocking) pipe holds now; false at EOF or on an error.
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

std::string_view name_of(std::string_view assignment) {
  return assignment.substr(0, assignment.find('='));
}

// In the child, before exec: async-signal-safe calls only. Reports errno on `report` and exits.
[[noreturn]] void child_fail(int report) {
  const int e = errno;
  [[maybe_unused]] const ssize_t n = ::write(report, &e, sizeof e);
  ::_exit(127);
}

}  // namespace

struct Process::State {
  pid_t pid = -1;
  reactor::Fd pidfd;
  reactor::Fd out_pipe;
  reactor::Fd err_pipe;
  reactor::Fd wake_read;  // the reader thread quits when this becomes readable
  reactor::Fd wake_write;
  std::error_code error;
  std::thread reader;
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t changes = 0;  // bumped under `mutex` on every read and on exit
  std::string out_read;       // what the reader thread read and out() has not taken yet
  std::string err_read;
  std::string out;  // everything taken by out(), err(): changed only by the caller's thread
  std::string err;
  std::optional<int> status;

  void spawn(const std::string& path, const std::vector<std::string>& args,
             const SpawnOptions& options);
  void read_loop();
  ~State();
};

void Process::State::spawn(const std::string& path, const std::vector<std::string>& args,
                           const SpawnOptions& options) {
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  std::vector<std::string> strings = {path};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> added = options.env;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view name = name_of(*e);
    const auto named = [&](std::string_view other) { return name_of(other) == name; };
    if (std::none_of(options.unset_env.begin(), options.unset_env.end(), named) &&
        std::none_of(added.begin(), added.end(), named)) {
      envp.push_back(*e);
    }
  }
  for (std::size_t i = 0; i < added.size(); ++i) {
    // A later assignment to the same name wins.
    const auto later = [&](const std::string& other) {
      return name_of(other) == name_of(added[i]);
    };
    if (std::none_of(added.begin() + static_cast<std::ptrdiff_t>(i) + 1, added.end(), later)) {
      envp.push_back(added[i].data());
    }
  }
  envp.push_back(nullptr);

  reactor::Fd out_write, err_write, exec_read, exec_write;
  if (!make_pipe(out_pipe, out_write) || !make_pipe(err_pipe, err_write) ||
      !make_pipe(exec_read, exec_write) || !make_pipe(wake_read, wake_write)) {
    error = reactor::errno_code(errno);
    return;
  }
  const rlimit files{options.max_files, options.max_files};
  const rlimit tasks{options.max_tasks, options.max_tasks};
  const int report = exec_write.get();

  const pid_t child = ::fork();
  if (child < 0) {
    error = reactor::errno_code(errno);
    return;
  }
  if (child == 0) {
    ::setpgid(0, 0);  // its own group: cleanup reaches forked workers too
    if (options.max_files != 0 && ::setrlimit(RLIMIT_NOFILE, &files) != 0) child_fail(report);
    if (options.max_tasks != 0 && ::setrlimit(RLIMIT_NPROC, &tasks) != 0) child_fail(report);
    if (options.user != 0 && (::setgroups(0, nullptr) != 0 || ::setgid(options.user) != 0 ||
                              ::setuid(options.user) != 0)) {
      child_fail(report);
    }
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out_write.get(), 1) < 0 ||
        ::dup2(err_write.get(), 2) < 0) {  // dup2 clears close-on-exec
      child_fail(report);
    }
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signo : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD})
      ::sigaction(signo, &default_action, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Nothing else of ours leaks into the child; `report` closes itself on exec.
    ::syscall(SYS_close_range, 3u, static_cast<unsigned>(report) - 1, 0u);
    ::syscall(SYS_close_range, static_cast<unsigned>(report) + 1, ~0u, 0u);
    ::execve(argv[0], argv.data(), envp.data());
    child_fail(report);
  }
  ::setpgid(child, child);  // also here: whichever runs first, the group exists before any kill
  pid = child;
  out_write.reset();
  err_write.reset();
  exec_write.reset();
  // EOF on the exec pipe: exec succeeded. An errno: the child could not be set up or exec'd.
  int child_errno = 0;
  pollfd exec_done{exec_read.get(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&exec_done, 1, 10'000);
  } while (ready < 0 && errno == EINTR);
  ssize_t n = -1;
  if (ready == 1) {
    do {
      n = ::read(exec_read.get(), &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
  }
  if (n != 0) {
    error = reactor::errno_code(n == static_cast<ssize_t>(sizeof child_errno) ? child_errno
                                                                              : ETIMEDOUT);
    ::kill(child, SIGKILL);
    int st = 0;
    while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    status = st;
    out_pipe.reset();
    err_pipe.reset();
    return;
  }
  const long fd = ::syscall(SYS_pidfd_open, child, 0);
  if (fd >= 0) pidfd.reset(static_cast<int>(fd));
  for (int p : {out_pipe.get(), err_pipe.get()}) ::fcntl(p, F_SETFL, O_NONBLOCK);
  reader = std::thread([this] { read_loop(); });
}

void Process::State::read_loop() {
  bool out_open = true, err_open = true;
  for (;;) {
    bool reaped;
    {
      std::lock_guard lock(mutex);
      reaped = status.has_value();
    }
    if (reaped && !out_open && !err_open) return;
    pollfd fds[4];
    nfds_t n = 0;
    fds[n++] = {wake_read.get(), POLLIN, 0};
    if (out_open) fds[n++] = {out_pipe.get(), POLLIN, 0};
    if (err_open) fds[n++] = {err_pipe.get(), POLLIN, 0};
    // Without a pidfd (very old kernels) exit is noticed by checking every 10 ms.
    int timeout = -1;
    if (!reaped && pidfd) {
      fds[n++] = {pidfd.get(), POLLIN, 0};
    } else if (!reaped) {
      timeout = 10;
    }
    if (::poll(fds, n, timeout) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    std::lock_guard lock(mutex);
    if (out_open) out_open = read_available(out_pipe.get(), out_read);
    if (err_open) err_open = read_available(err_pipe.get(), err_read);
    if (!reaped) {
      int st = 0;
      pid_t r;
      do {
        r = ::waitpid(pid, &st, WNOHANG);
      } while (r < 0 && errno == EINTR);
      if (r == pid) {
        status = st;
        // What the child wrote before exiting is in the pipes now. Forked workers may still hold
        // the write ends, so take what is there instead of waiting for EOF.
        if (out_open) out_open = read_available(out_pipe.get(), out_read);
        if (err_open) err_open = read_available(err_pipe.get(), err_read);
      }
    }
    ++changes;
    changed.notify_all();
  }
}

Process::State::~State() {
  {
    std::lock_guard lock(mutex);
    if (pid > 0 && !status) {
      ::kill(-pid, SIGKILL);  // the group we created for it, forked workers included
      ::kill(pid, SIGKILL);   // in case it left the group
    }
  }
  if (reader.joinable()) {
    const char byte = 0;
    [[maybe_unused]] const ssize_t n = ::write(wake_write.get(), &byte, 1);
    reader.join();
  }
  if (pid > 0 && !status) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

Process::Process(const std::string& path, const std::vector<std::string>& args,
                 const SpawnOptions& options)
    : state_(std::make_unique<State>()) {
  state_->spawn(path, args, options);
}
Process::Process() = default;
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;

bool Process::ok() const noexcept {
  return state_ != nullptr && !state_->error;
}
std::error_code Process::error() const noexcept {
  return state_ == nullptr ? std::make_error_code(std::errc::no_child_process) : state_->error;
}
pid_t Process::pid() const noexcept {
  return state_ == nullptr ? -1 : state_->pid;
}
bool Process::exited() const {
  if (state_ == nullptr) return false;
  std::lock_guard lock(state_->mutex);
  return state_->status.has_value();
}
namespace {
const std::string kNothing;
}  // namespace

const std::string& Process::out() const {
  if (state_ == nullptr) return kNothing;
  std::lock_guard lock(state_->mutex);
  state_->out += state_->out_read;
  state_->out_read.clear();
  return state_->out;
}
const std::string& Process::err() const {
  if (state_ == nullptr) return kNothing;
  std::lock_guard lock(state_->mutex);
  state_->err += state_->err_read;
  state_->err_read.clear();
  return state_->err;
}

bool Process::signal(int sig) const {
  if (state_ == nullptr) return false;
  // Under the lock the reader cannot reap the child meanwhile: the pid is still ours.
  std::lock_guard lock(state_->mutex);
  return state_->pid > 0 && !state_->status && ::kill(state_->pid, sig) == 0;
}

bool Process::pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  if (state_ == nullptr || !state_->reader.joinable()) return done();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::uint64_t seen;
    bool finished;
    {
      std::lock_guard lock(state_->mutex);
      seen = state_->changes;
      finished = state_->status.has_value();
    }
    // done() reads out() and err(), which take the lock: it runs without it.
    if (done()) return true;
    if (finished) return false;
    std::unique_lock lock(state_->mutex);
    if (!state_->changed.wait_until(lock, deadline, [&] { return state_->changes != seen; })) {
      lock.unlock();
      return done();
    }
  }
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds limit) {
  pump_until([this] { return exited(); }, limit);
  if (state_ == nullptr) return std::nullopt;
  std::lock_guard lock(state_->mutex);
  return state_->status;
}

int Process::exit_code() const {
  if (state_ == nullptr) return -1;
  std::lock_guard lock(state_->mutex);
  const auto& status = state_->status;
  if (!status) return -1;
  if (WIFEXITED(*status)) return WEXITSTATUS(*status);
  if (WIFSIGNALED(*status)) return 128 + WTERMSIG(*status);
  return -1;
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find('\n'), text.size());
    lines.emplace_back(text.substr(0, end));
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return lines;
}

Process run_to_exit(const std::string& path, const std::vector<std::string>& args,
                    std::chrono::milliseconds limit, const SpawnOptions& options) {
  Process p(path, args, options);
  REQUIRE_MESSAGE(p.ok(), "cannot spawn " << path << ": " << p.error().message());
  REQUIRE_MESSAGE(p.wait_exit(limit).has_value(),
                  path << " still running after " << limit.count() << " ms; stderr: " << p.err());
  return p;
}

namespace {

constexpr std::string_view kListening = "listening on ";

// The complete lines of `out`: a partial last line is not yet a whole address.
std::string complete_lines(std::string out) {
  out.resize(out.rfind('\n') + 1);  // npos + 1 == 0
  return out;
}

std::size_t count_listening(const std::string& out) {
  std::size_t n = 0;
  for (const auto& line : lines_of(out)) n += line.starts_with(kListening) ? 1 : 0;
  return n;
}

std::string program_name(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

}  // namespace

std::string ServerProcess::start(const std::string& path, const std::vector<std::string>& args,
                                 const SpawnOptions& options, std::chrono::milliseconds limit) {
  std::size_t listeners = 0;
  for (const auto& a : args) listeners += a == "--listen" || a.starts_with("--listen=") ? 1 : 0;
  listeners = std::max<std::size_t>(listeners, 1);
  const std::string name = program_name(path);
  addresses.clear();
  process = Process(path, args, options);
  if (!process.ok()) return "cannot spawn " + path + ": " + process.error().message();
  const bool up = process.pump_until(
      [&] { return count_listening(complete_lines(process.out())) >= listeners; }, limit);
  const std::string out = complete_lines(process.out());
  if (!up) {
    const std::string why =
        process.exited() ? name + " exited " + std::to_string(process.exit_code()) +
                               " before reporting " + std::to_string(listeners) + " listeners"
                         : name + " did not report " + std::to_string(listeners) +
                               " listeners within " + std::to_string(limit.count()) + " ms";
    return why + "; stdout: " + process.out() + "; stderr: " + process.err();
  }
  for (const auto& line : lines_of(out)) {
    if (!line.starts_with(kListening)) continue;
    const std::string url = line.substr(kListening.size());
    auto address = reactor::Address::parse(url);
    if (!address) return name + " said " + line + ": " + reactor::describe(url, address.error());
    addresses.push_back(*address);
  }
  return {};
}

std::string ServerProcess::stop(std::chrono::milliseconds limit) {
  if (!process.signal(SIGTERM))
    return "the server is not running (exit " + std::to_string(process.exit_code()) + ")";
  if (!process.wait_exit(limit)) {
    return "the server is still running " + std::to_string(limit.count()) +
           " ms after SIGTERM; stderr: " + process.err();
  }
  if (process.exit_code() != 0) {
    return "the server exited " + std::to_string(process.exit_code()) +
           "; stderr: " + process.err();
  }
  if (summary().empty()) return "no summary line in: " + process.out();
  return {};
}

sockaddr_in ServerProcess::address() const {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(addresses.empty() ? 0 : addresses.front().port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::optional<ServerProcess> start_server(const std::string& path,
                                          const std::vector<std::string>& args) {
  std::string model = "epoll";
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--model") model = args[i + 1];
  }
  ServerProcess server;
  const std::string error = server.start(path, args);
  if (!error.empty() && server.process.exited() && server.process.exit_code() == 1 &&
      server.process.err().find("cannot start the " + model + " model") != std::string::npos) {
    const std::string err = server.process.err();
    MESSAGE("skipped: reactor-server cannot start the '" << model << "' model yet ("
                                                         << err.substr(0, err.find('\n')) << ")");
    return std::nullopt;
  }
  REQUIRE_MESSAGE(error.empty(), error);
  return server;
}

Summary stop_server(ServerProcess& server, std::chrono::milliseconds limit) {
  REQUIRE(server.process.signal(SIGTERM));
  const auto status = server.process.wait_exit(limit);
  REQUIRE_MESSAGE(status.has_value(), "reactor-server still running "
                                          << limit.count()
                                          << " ms after SIGTERM; stderr: " << server.process.err());
  CHECK_MESSAGE(server.process.exit_code() == 0,
                "exit " << server.process.exit_code() << "; stderr: " << server.process.err());
  auto summary = parse_summary(server.process.out());
  CHECK_MESSAGE(!summary.empty(), "no summary line in: " << server.process.out());
  return summary;
}

}  // namespace test
