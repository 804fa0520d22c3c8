// Child processes for integration tests: Process spawns a program with its stdout and stderr on
// pipes, waits for output or exit with a bound (poll on the pipes and a pidfd, never a sleep) and
// kills what is left when it goes out of scope. ServerProcess runs reactor-server on top of it.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/error.hpp"
#include "reactor/fd.hpp"
#include "reactor/models/registry.hpp"
#include "summary.hpp"

extern char** environ;

namespace test {

using namespace std::chrono_literals;

// The models every multi-model test runs, in order: the model registry's. A model
// reactor-server cannot start yet is reported and skipped (see start_server).
inline const std::vector<std::string_view> kServerModels = [] {
  std::vector<std::string_view> names;
  for (const auto& m : reactor::models()) names.push_back(m.name);
  return names;
}();

inline const reactor::ModelInfo& model_info(std::string_view name) {
  const reactor::ModelInfo* info = reactor::find_model(name);
  REQUIRE_MESSAGE(info != nullptr, "no model '" << std::string(name) << "' in the registry");
  return *info;
}

// {"--workers", n} for a model that takes workers, else nothing.
inline std::vector<std::string> workers_args(std::string_view model, int n) {
  if (!model_info(model).takes_workers) return {};
  return {"--workers", std::to_string(n)};
}

// False, after a MESSAGE, when `model` does not run protocols that use the hub (chat).
inline bool model_serves_hub(std::string_view model) {
  if (model_info(model).serves_hub) return true;
  MESSAGE("skipped: the '" << std::string(model)
                           << "' model does not run hub protocols (its registry entry says so)");
  return false;
}

// False, after a MESSAGE, when `model` does not serve `transport` (its registry entry).
inline bool model_serves(std::string_view model, reactor::Transport transport) {
  if (model_info(model).transports & reactor::mask_of(transport)) return true;
  MESSAGE("skipped: the '" << std::string(model) << "' model does not serve "
                           << std::string(reactor::scheme_of(transport)));
  return false;
}

// A spawned program in its own process group. Owns the child: the destructor SIGKILLs the group
// if it is still running and reaps the child, so a failed test leaves no process behind.
class Process {
 public:
  // Spawns `path` with `args` (argv[1..]); stdin is /dev/null. Check ok() / error().
  Process(const std::string& path, const std::vector<std::string>& args) { spawn(path, args); }
  Process(Process&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        pidfd_(std::move(other.pidfd_)),
        out_pipe_(std::move(other.out_pipe_)),
        err_pipe_(std::move(other.err_pipe_)),
        out_(std::move(other.out_)),
        err_(std::move(other.err_)),
        status_(other.status_),
        error_(other.error_) {}
  Process& operator=(Process&&) = delete;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { kill_and_reap(); }

  bool ok() const noexcept { return !error_; }
  std::error_code error() const noexcept { return error_; }
  pid_t pid() const noexcept { return pid_; }
  bool exited() const noexcept { return status_.has_value(); }
  // Everything read so far.
  const std::string& out() const noexcept { return out_; }
  const std::string& err() const noexcept { return err_; }

  bool signal(int sig) const noexcept { return pid_ > 0 && !exited() && ::kill(pid_, sig) == 0; }

  // Reads output until `done()` holds (checked after every read) or the child exits or `limit`
  // passes. Returns done().
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (exited()) {
        drain();
        return done();
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd fds[3];
      nfds_t n = 0;
      if (out_pipe_) fds[n++] = {out_pipe_.get(), POLLIN, 0};
      if (err_pipe_) fds[n++] = {err_pipe_.get(), POLLIN, 0};
      // Without a pidfd (very old kernels) exit is noticed by checking every 10 ms.
      int timeout = static_cast<int>(left.count());
      if (pidfd_) {
        fds[n++] = {pidfd_.get(), POLLIN, 0};
      } else {
        timeout = std::min(timeout, 10);
      }
      if (::poll(fds, n, timeout) < 0 && errno != EINTR) return false;
      read_available();
      reap(WNOHANG);
    }
    return true;
  }

  // Waits (bounded) for the child to exit and collects the rest of its output. The raw wait
  // status, or nullopt if it is still running after `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    pump_until([this] { return exited(); }, limit);
    return status_;
  }

  // Exit code if the child exited normally, -1 if still running, 128 + N if killed by signal N.
  int exit_code() const noexcept {
    if (!status_) return -1;
    if (WIFEXITED(*status_)) return WEXITSTATUS(*status_);
    if (WIFSIGNALED(*status_)) return 128 + WTERMSIG(*status_);
    return -1;
  }

 private:
  void spawn(const std::string& path, const std::vector<std::string>& args) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return fail(errno);
    out_pipe_.reset(out[0]);
    reactor::Fd out_write(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return fail(errno);
    err_pipe_.reset(err[0]);
    reactor::Fd err_write(err[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);  // dup2 clears close-on-exec
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);  // its own group: cleanup reaches forked workers too
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return fail(rc);
    pid_ = pid;
    const long pidfd = ::syscall(SYS_pidfd_open, pid_, 0);
    if (pidfd >= 0) pidfd_.reset(static_cast<int>(pidfd));
    for (int fd : {out_pipe_.get(), err_pipe_.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  }

  void fail(int e) {
    error_ = reactor::errno_code(e);
    out_pipe_.reset();
    err_pipe_.reset();
  }

  void read_available() {
    read_pipe(out_pipe_, out_);
    read_pipe(err_pipe_, err_);
  }

  static void read_pipe(reactor::Fd& pipe, std::string& into) {
    char chunk[4096];
    while (pipe) {
      const ssize_t n = ::read(pipe.get(), chunk, sizeof chunk);
      if (n > 0) {
        into.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        pipe.reset();  // EOF (or an error: nothing more will come)
      } else if (errno == EAGAIN) {
        return;
      }
    }
  }

  // After exit: what the child wrote before exiting is in the pipes already. Forked workers may
  // still hold the write ends, so read what is there instead of waiting for EOF.
  void drain() { read_available(); }

  void reap(int flags) {
    if (pid_ <= 0 || exited()) return;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, flags);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) status_ = status;
  }

  void kill_and_reap() {
    if (pid_ <= 0) return;
    if (!exited()) {
      ::kill(-pid_, SIGKILL);  // the group we created for it, forked workers included
      ::kill(pid_, SIGKILL);   // in case it left the group
      reap(0);
    }
    pid_ = -1;
  }

  pid_t pid_ = -1;
  reactor::Fd pidfd_;
  reactor::Fd out_pipe_;
  reactor::Fd err_pipe_;
  std::string out_;
  std::string err_;
  std::optional<int> status_;
  std::error_code error_;
};

// The lines of `text` (without their '\n'); an unterminated last line counts.
inline std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find('\n'), text.size());
    lines.emplace_back(text.substr(0, end));
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return lines;
}

// Runs a program to completion (bounded) and returns it exited; fails the test if it does not.
inline Process run_to_exit(const std::string& path, const std::vector<std::string>& args,
                           std::chrono::milliseconds limit = 10s) {
  Process p(path, args);
  REQUIRE_MESSAGE(p.ok(), "cannot spawn " << path << ": " << p.error().message());
  REQUIRE_MESSAGE(p.wait_exit(limit).has_value(),
                  path << " still running after " << limit.count() << " ms; stderr: " << p.err());
  return p;
}

// reactor-server started with some --listen addresses, and the addresses it reported.
struct ServerProcess {
  Process process;
  std::vector<reactor::Address> addresses;
};

// Starts reactor-server and waits (bounded) for one "listening on ADDR" line per --listen.
// Returns nullopt, after a MESSAGE, when the server exits 1 saying it cannot start the chosen
// model (a model not wired in yet); any other failure fails the test.
inline std::optional<ServerProcess> start_server(const std::string& path,
                                                 const std::vector<std::string>& args) {
  std::size_t listeners = 0;
  std::string model = "epoll";
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--listen") ++listeners;
    if (args[i] == "--model" && i + 1 < args.size()) model = args[i + 1];
  }
  auto count_listening = [](const std::string& out) {
    std::size_t n = 0;
    for (const auto& line : lines_of(out)) n += line.starts_with("listening on ") ? 1 : 0;
    return n;
  };
  Process p(path, args);
  REQUIRE_MESSAGE(p.ok(), "cannot spawn " << path << ": " << p.error().message());
  // Whole lines only: a partial last line is not yet a complete address.
  const bool up = p.pump_until(
      [&] { return count_listening(p.out().substr(0, p.out().rfind('\n') + 1)) >= listeners; },
      10s);
  if (!up && p.exited() && p.exit_code() == 1 &&
      p.err().find("cannot start the " + model + " model") != std::string::npos) {
    MESSAGE("skipped: reactor-server cannot start the '"
            << model << "' model yet (" << p.err().substr(0, p.err().find('\n')) << ")");
    return std::nullopt;
  }
  REQUIRE_MESSAGE(up, "reactor-server did not report " << listeners << " listeners; exit "
                                                       << p.exit_code() << "; stdout: " << p.out()
                                                       << "; stderr: " << p.err());
  ServerProcess server{std::move(p), {}};
  for (const auto& line : lines_of(server.process.out())) {
    if (!line.starts_with("listening on ")) continue;
    const std::string url = line.substr(std::strlen("listening on "));
    auto address = reactor::Address::parse(url);
    REQUIRE_MESSAGE(address.ok(), reactor::describe(url, address.error()));
    server.addresses.push_back(*address);
  }
  return server;
}

// Sends SIGTERM, waits (bounded) for a clean exit and returns the summary. Fails the test
// unless the server exits 0 within `limit` and prints its summary.
inline std::map<std::string, std::uint64_t> stop_server(ServerProcess& server,
                                                        std::chrono::milliseconds limit = 15s) {
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
