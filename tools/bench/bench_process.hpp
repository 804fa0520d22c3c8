// Child processes for reactor-bench and the integration tests: spawn with a captured stdout, a
// stderr log file and an optional CPU set; read lines with deadlines; stop with a signal and a
// bounded wait. Nothing here sleeps to synchronise: every wait is a poll() with a deadline.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace bench {

using Millis = std::chrono::milliseconds;

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the program path
  std::vector<int> cpus;          // empty: inherit the caller's affinity
  std::string stderr_path;        // empty: inherit stderr; else truncate and write there
};

class Child {
 public:
  // Starts the program; on failure (not executable, missing) returns nullopt and sets `error`.
  static std::optional<Child> spawn(const SpawnOptions& options, std::string& error);

  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;  // kills and reaps the child it replaces
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();  // kills (SIGKILL) and reaps a child still running

  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return status_ < 0; }
  int exit_status() const noexcept { return status_; }  // raw wait status once reaped
  // Once reaped: the process's whole CPU time (user + system, all threads, and every child it
  // reaped), from wait4's rusage: exact, with no /proc sampling race.
  double cpu_seconds() const noexcept { return cpu_seconds_; }

  // The next stdout line (without '\n'), or nullopt at EOF or when the deadline passes.
  std::optional<std::string> read_line(Millis timeout);
  // Collects stdout until EOF or the deadline; returns everything not yet returned.
  std::string read_all(Millis timeout);
  // Waits for the process to exit within the timeout; true once reaped.
  bool wait(Millis timeout);
  // Sends `sig`, then waits up to `timeout` for the exit while collecting stdout; SIGKILL if it
  // does not exit. Returns the stdout not yet read (output written before the exit).
  std::string stop(int sig, Millis timeout);
  void kill_now();

 private:
  Child() = default;
  void release() noexcept;
  bool try_reap();
  // Moves available stdout bytes into buffer_; false at EOF.
  bool pull();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int pid_fd_ = -1;  // pidfd when the kernel has it, for poll()able exit
  int status_ = -1;
  double cpu_seconds_ = 0;
  bool out_eof_ = false;
  std::string buffer_;
};

// "exit 3", "killed by SIGSEGV"...
std::string describe_wait_status(int status);
// The last non-empty line of a (log) file, or "".
std::string last_line_of(const std::string& path);
// The directory holding the running executable (/proc/self/exe).
std::string self_dir();
// Finds an executable on PATH, or "".
std::string find_on_path(const std::string& name);
bool is_executable(const std::string& path);

}  // namespace bench
