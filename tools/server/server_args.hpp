// reactor-server's command line, parsed by a pure function (unit-tested and fuzzed).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/log.hpp"

namespace reactor::tools {

struct ServerArgs {
  std::string protocol;
  std::string protocol_args;
  std::vector<std::string> listen;
  std::vector<std::string> plugins;
  std::string hub;  // redis://HOST:PORT: rooms and names shared through Redis; empty: local
  std::string model = "epoll";
  std::chrono::milliseconds idle_timeout{0};
  std::size_t max_connections = 0;
  unsigned workers = 0;
  std::chrono::milliseconds shutdown_grace{5000};
  LogLevel log_level = LogLevel::warn;
  bool list_protocols = false;
  bool list_models = false;
  bool help = false;
};

// On error returns nullopt and a one-line message in `error` (no "usage" text).
std::optional<ServerArgs> parse_server_args(const std::vector<std::string_view>& argv,
                                            std::string& error);

extern const char* const kServerUsage;

}  // namespace reactor::tools
