#include "server_args.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "cli.hpp"
#include "reactor/models/registry.hpp"

namespace reactor::tools {

const char* const kServerUsage =
    "usage: reactor-server --protocol NAME --listen ADDR [--listen ADDR ...] [options]\n"
    "\n"
    "Serves a protocol on one or more addresses until SIGINT, SIGTERM or SIGHUP, then flushes\n"
    "(up to --shutdown-grace), closes and prints a summary; a second signal while it flushes\n"
    "closes every connection at once.\n"
    "\n"
    "  --protocol NAME        protocol to serve (see --list-protocols)\n"
    "  --args STRING          protocol configuration, if the protocol takes any\n"
    "  --listen ADDR          tcp://HOST:PORT, tcp://[IPv6]:PORT, udp://HOST:PORT, unix:/PATH,\n"
    "                         seqpacket:/PATH; port 0 picks a free port; repeatable.\n"
    "                         tcp://*:PORT is IPv4 and IPv6; tcp://[::]:PORT IPv6 only\n"
    "  --model MODEL          concurrency model (default epoll; see --list-models)\n"
    "  --workers N            loops, threads or processes of a model with WORKERS 'yes' in\n"
    "                         --list-models (default: one per core)\n"
    "  --plugin FILE.so       load a protocol plugin; repeatable\n"
    "  --hub redis://HOST:PORT[?ttl=SECONDS]  share chat rooms and nicks with every server on\n"
    "                         that Redis (epoll and reuseport; exit 1 if Redis is unreachable)\n"
    "  --idle-timeout SECONDS close connections silent for this long; 0 means never (the\n"
    "                         default); in milliseconds: 0.0001 is refused, not rounded to 0\n"
    "  --max-connections N    refuse connections beyond N, 1 to 100000000 (default: no limit;\n"
    "                         0 is refused)\n"
    "  --shutdown-grace SECONDS  time to flush on shutdown, 0 = none (default 5); in\n"
    "                         milliseconds, like --idle-timeout\n"
    "  --log-level LEVEL      error, warn (default), info (also drops and refusals, with the\n"
    "                         peer's address) or debug; messages go to stderr\n"
    "  --list-protocols       list the protocols (built-in and from --plugin) and exit\n"
    "  --list-models          list the concurrency models and exit\n"
    "  --help                 show this help and exit\n"
    "  --version              print the version and exit\n"
    "\n"
    "Prints one line per listener, 'listening on ADDR' with the bound address. Exit status:\n"
    "0 after a clean shutdown, 1 if a listener cannot be set up, 2 for bad arguments. Options\n"
    "other than --listen and --plugin may be given once.\n";

namespace {

// Seconds with millisecond resolution. A positive value that would round to 0 ms is refused:
// 0 means "never"/"none", which is not what such a value asks for.
bool parse_seconds(std::string_view text, std::chrono::milliseconds& out) {
  std::string copy(text);
  char* end = nullptr;
  double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(value) || value < 0 ||
      value > 86400.0 * 365) {
    return false;
  }
  const long long ms = std::llround(value * 1000);
  if (value > 0 && ms == 0) return false;
  out = std::chrono::milliseconds(ms);
  return true;
}

template <class T>
bool parse_count(std::string_view text, T& out, T max) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) return false;
  out = value;
  return true;
}

}  // namespace

std::optional<ServerArgs> parse_server_args(const std::vector<std::string_view>& argv,
                                            std::string& error) {
  ServerArgs args;
  SeenOptions seen;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    std::string_view flag = argv[i];
    std::string_view value;
    bool has_inline = false;
    if (flag.starts_with("--")) {
      if (auto eq = flag.find('='); eq != std::string_view::npos) {
        value = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
        has_inline = true;
      }
    }
    auto take = [&]() -> bool {
      if (flag != "--listen" && flag != "--plugin" && !seen.first_time(flag)) {
        error = given_twice(flag);
        return false;
      }
      if (has_inline) return true;
      if (i + 1 >= argv.size()) {
        error = std::string(flag) + " needs a value";
        return false;
      }
      value = argv[++i];
      return true;
    };
    auto bad = [&](std::string_view what) {
      error = std::string(flag) + ": " + std::string(what) + ": '" + std::string(value) + "'";
      return std::nullopt;
    };
    if (flag == "--help" || flag == "-h") {
      args.help = true;
    } else if (flag == "--list-protocols") {
      args.list_protocols = true;
    } else if (flag == "--list-models") {
      args.list_models = true;
    } else if (flag == "--protocol") {
      if (!take()) return std::nullopt;
      if (value.empty()) return bad("empty protocol name");
      args.protocol = value;
    } else if (flag == "--args") {
      if (!take()) return std::nullopt;
      args.protocol_args = value;
    } else if (flag == "--listen") {
      if (!take()) return std::nullopt;
      if (value.empty()) return bad("empty address");
      args.listen.emplace_back(value);
    } else if (flag == "--plugin") {
      if (!take()) return std::nullopt;
      if (value.empty()) return bad("empty path");
      args.plugins.emplace_back(value);
    } else if (flag == "--hub") {
      if (!take()) return std::nullopt;
      if (!value.starts_with("redis://")) return bad("expected redis://HOST:PORT");
      args.hub = value;
    } else if (flag == "--model") {
      if (!take()) return std::nullopt;
      if (find_model(value) == nullptr) {
        return bad("unknown model (expected " + model_names(", ") + ")");
      }
      args.model = value;
    } else if (flag == "--workers") {
      if (!take()) return std::nullopt;
      if (!parse_count(value, args.workers, 1024u) || args.workers == 0) {
        return bad("expected a number from 1 to 1024");
      }
    } else if (flag == "--idle-timeout") {
      if (!take()) return std::nullopt;
      if (!parse_seconds(value, args.idle_timeout)) {
        return bad("expected seconds, 0 (never) or from 0.001 (e.g. 30 or 0.5)");
      }
    } else if (flag == "--shutdown-grace") {
      if (!take()) return std::nullopt;
      if (!parse_seconds(value, args.shutdown_grace)) {
        return bad("expected seconds, 0 (none) or from 0.001");
      }
    } else if (flag == "--log-level") {
      if (!take()) return std::nullopt;
      if (!parse_log_level(value, args.log_level)) {
        return bad("expected error, warn, info or debug");
      }
    } else if (flag == "--max-connections") {
      if (!take()) return std::nullopt;
      if (!parse_count(value, args.max_connections, std::size_t{100'000'000}) ||
          args.max_connections == 0) {
        return bad("expected a whole number from 1 to 100000000 (omit it for no limit)");
      }
    } else {
      error = unknown_option(argv[i]);
      return std::nullopt;
    }
  }
  if (args.help || args.list_protocols || args.list_models) return args;
  if (args.protocol.empty()) {
    error = "--protocol is required (see --list-protocols)";
    return std::nullopt;
  }
  if (args.listen.empty()) {
    error = "at least one --listen ADDR is required";
    return std::nullopt;
  }
  if (args.workers != 0 && !find_model(args.model)->takes_workers) {
    std::string takers;
    for (const ModelInfo& m : models()) {
      if (m.takes_workers) takers += (takers.empty() ? "" : ", ") + std::string(m.name);
    }
    error = "--workers does not apply to --model " + args.model + " (only to " + takers + ")";
    return std::nullopt;
  }
  if (!args.hub.empty() && args.model != "epoll" && args.model != "reuseport") {
    error = "--hub runs on --model epoll or reuseport only (not " + args.model + ")";
    return std::nullopt;
  }
  return args;
}

}  // namespace reactor::tools
