// Child processes for the tests, one harness for all of them.
//
// Process runs a program (fork + exec) in its own process group, stdin /dev/null, stdout and
// stderr on pipes that a reader thread drains as they fill (a chatty child never blocks on a full
// pipe), optionally with more environment, lowered RLIMIT_NOFILE / RLIMIT_NPROC or another user.
// Every wait is bounded and event-driven (the reader wakes on the pipes and a pidfd, never a
// sleep); the destructor SIGKILLs the group of a child still running and reaps it, so a failed
// test leaves no process behind.
//
// ServerProcess is a Process running reactor-server (or any program that prints one "listening on
// ADDR" line per listener and a "summary: key=N ..." line on exit) with the addresses it bound.
// ForkedChild (forked_child.hpp) is the other kind: a copy of this process running a server
// built in the test.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/models/registry.hpp"
#include "summary.hpp"

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

// How the child is set up before exec; the defaults change nothing.
struct SpawnOptions {
  std::vector<std::string> env;        // "NAME=value" added to ours (a later one wins)
  std::vector<std::string> unset_env;  // NAMEs left out of ours
  rlim_t max_files = 0;                // RLIMIT_NOFILE for the child; 0 = inherit ours
  rlim_t max_tasks = 0;                // RLIMIT_NPROC for the child; 0 = inherit ours
  uid_t user = 0;  // nonzero: the child runs as this user and group (we must be root)
};

class Process {
 public:
  Process();  // nothing spawned: ok() is false
  // Spawns `path` with `args` (argv[1..]). Check ok() / error() (a failed exec is an error).
  Process(const std::string& path, const std::vector<std::string>& args,
          const SpawnOptions& options = {});
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;  // kills and reaps the child it replaces
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  bool ok() const noexcept;
  std::error_code error() const noexcept;
  pid_t pid() const noexcept;
  bool exited() const;
  // Everything read so far. The reference stays valid as long as the Process; the string grows
  // (and may move) only when a later call to the same function finds new output.
  const std::string& out() const;
  const std::string& err() const;

  bool signal(int sig) const;

  // Waits until `done()` holds (checked whenever output arrives, and on exit) or the child exits
  // or `limit` passes. Returns done().
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit);

  // Waits (bounded) for the child to exit; what it wrote before exiting has been read then. The
  // raw wait status, or nullopt if it is still running after `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit);

  // Exit code if the child exited normally, -1 if still running, 128 + N if killed by signal N.
  int exit_code() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The lines of `text` (without their '\n'); an unterminated last line counts.
std::vector<std::string> lines_of(std::string_view text);

// Runs a program to completion (bounded) and returns it exited; fails the test if it does not.
Process run_to_exit(const std::string& path, const std::vector<std::string>& args,
                    std::chrono::milliseconds limit = 10s, const SpawnOptions& options = {});

// The "summary: key=N ..." line a server prints on exit.
using Summary = std::map<std::string, std::uint64_t>;

// A server program as a child process, and the addresses its "listening on" lines reported.
struct ServerProcess {
  Process process;
  std::vector<reactor::Address> addresses;

  // Spawns `path` with `args` and waits (bounded) for one "listening on ADDR" line per --listen
  // (at least one). Returns an empty string on success, else what went wrong (exit status,
  // stdout, stderr), for REQUIRE_MESSAGE.
  std::string start(const std::string& path, const std::vector<std::string>& args,
                    const SpawnOptions& options = {}, std::chrono::milliseconds limit = 10s);
  // SIGTERM, then a bounded wait. Returns an empty string on a clean exit 0 with a summary line,
  // else what went wrong.
  std::string stop(std::chrono::milliseconds limit);

  pid_t pid() const noexcept { return process.pid(); }
  // The first address as an IPv4 socket address (for ClientLoop): 127.0.0.1 and its port.
  sockaddr_in address() const;
  Summary summary() const { return parse_summary(process.out()); }
};

// Starts reactor-server and waits (bounded) for its "listening on" lines. Returns nullopt, after
// a MESSAGE, when the server exits 1 saying it cannot start the chosen model (a model not wired
// in yet); any other failure fails the test.
std::optional<ServerProcess> start_server(const std::string& path,
                                          const std::vector<std::string>& args);

// Sends SIGTERM, waits (bounded) for a clean exit and returns the summary. Fails the test
// unless the server exits 0 within `limit` and prints its summary.
Summary stop_server(ServerProcess& server, std::chrono::milliseconds limit = 15s);

}  // namespace test
