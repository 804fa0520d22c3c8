// ServerProcess: reactor-server as a child process for the fault suite. Spawned with fork/exec,
// stdout and stderr on pipes that a reader thread drains (a chatty server never blocks on a full
// pipe), RLIMIT_NOFILE and RLIMIT_NPROC optionally lowered and the user optionally changed in the
// child before exec, and every wait bounded.
// The destructor SIGKILLs the child's process group if it is still running and reaps it.
#pragma once

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "reactor/fd.hpp"

namespace fault {

struct ServerConfig {
  std::string protocol = "echo";
  std::string model = "epoll";
  std::vector<std::string> extra_args;  // e.g. {"--idle-timeout", "0.5"}
  rlim_t max_files = 0;                 // RLIMIT_NOFILE for the child; 0 = inherit ours
  rlim_t max_tasks = 0;                 // RLIMIT_NPROC for the child; 0 = inherit ours
  uid_t user = 0;  // nonzero: the child runs as this user and group (we must be root)
  std::vector<std::string> extra_env;  // "NAME=value" added to ours (a later one wins)
};

// The "summary: key=N ..." line reactor-server prints on exit.
using Summary = std::map<std::string, std::uint64_t>;
Summary parse_summary(const std::string& output);

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Spawns `path` listening on tcp://127.0.0.1:0 and waits (bounded) for its "listening on"
  // line. Returns an empty string on success, else what went wrong (with the server's stderr).
  std::string start(const std::string& path, const ServerConfig& config,
                    std::chrono::seconds limit = std::chrono::seconds(10));

  pid_t pid() const noexcept { return pid_; }
  std::uint16_t port() const noexcept { return port_; }
  sockaddr_in address() const noexcept;

  bool signal(int signo) const noexcept;
  // Waits (bounded) for the child to exit; true once it has been reaped.
  bool wait_exit(std::chrono::milliseconds limit);
  // SIGTERM, then wait_exit. Returns an empty string on a clean exit 0 with a summary line,
  // else what went wrong.
  std::string stop(std::chrono::milliseconds limit);
  bool exited() const noexcept { return status_.has_value(); }
  // Exit code, 128 + N if killed by signal N, -1 while running.
  int exit_code() const noexcept;

  Summary summary() const { return parse_summary(output()); }
  std::string output() const;  // stdout so far
  std::string errors() const;  // stderr so far

 private:
  void drain_pipes();
  bool reap(int flags);
  void kill_and_reap();

  pid_t pid_ = -1;
  reactor::Fd pidfd_;
  std::uint16_t port_ = 0;
  std::optional<int> status_;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_;
  std::string err_;
  reactor::Fd out_pipe_;
  reactor::Fd err_pipe_;
  reactor::Fd stop_pipe_read_;  // the reader thread quits when this becomes readable
  reactor::Fd stop_pipe_write_;
  bool pipes_closed_ = false;
};

}  // namespace fault
