// reactor-load's command line: a pure parser from argv to LoadOptions, so every rule about what
// is accepted is unit-tested without sockets. Errors come back as one line of text.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace load {

enum class Mode { connrate, echo, idle };
enum class CloseMode { rst, fin };  // abortive (SO_LINGER {1,0}) or orderly close

std::string_view name_of(Mode m) noexcept;
std::string_view name_of(CloseMode c) noexcept;

struct LoadOptions {
  Mode mode = Mode::echo;
  std::string target;  // tcp://host:port or unix:/path (resolved later)
  int threads = 1;
  double duration_s = 5;  // connrate and echo: how long new work is started
  double timeout_s = 5;   // a connect or read stalled this long is an error
  bool json = false;
  int concurrency = 16;   // connrate: workers looping connect/send/recv/close
  std::size_t size = 64;  // bytes per connection (connrate) or per message (echo)
  int connections = 50;   // echo: persistent connections; idle: connections to hold
  bool connections_given = false;
  int pipeline = 16;     // echo: messages in flight per connection
  double hold_s = 5;     // idle: how long to hold the connections
  pid_t server_pid = 0;  // idle: the process tree's memory; echo: its CPU over the echo
  long long count = 0;   // connrate: stop after this many connections (0 = run for duration)
  int idle = 0;          // echo: idle connections held open (and proven served) during the run
  CloseMode close = CloseMode::rst;
  int sources = 0;  // source addresses 127.0.0.1 .. 127.0.0.N; 0 = auto (see below)
};

struct HelpRequested {};
struct ParseError {
  std::string message;  // one line, no trailing newline
};
using ParseResult = std::variant<LoadOptions, HelpRequested, ParseError>;

// The number of loopback source addresses to use. An explicit --sources stands. Auto: 1, except
// idle mode toward a 127.x target, which takes one source per 8000 connections (past ~14000
// connections from one source address the kernel's ephemeral port search turns quadratic).
int effective_sources(const LoadOptions& options, bool loopback_ipv4_target) noexcept;

// argv without the program name.
ParseResult parse_load_options(const std::vector<std::string_view>& args);
std::string load_usage();

// Strict numeric parsing shared by the tools' command lines: whole string, in range.
bool parse_int(std::string_view text, long long min, long long max, long long& out) noexcept;
bool parse_seconds(std::string_view text, double min_exclusive, double max, double& out) noexcept;

}  // namespace load
