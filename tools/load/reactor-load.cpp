// reactor-load: an epoll load generator for echo servers. Modes: connrate (connections per
// second), echo (pipelined messages per second and latency), idle (many held connections and the
// server's memory per connection). See --help; --json prints one object for scripts.
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "load_engine.hpp"
#include "load_options.hpp"
#include "load_report.hpp"
#include "reactor/address.hpp"
#include "reactor/error.hpp"

namespace {

bool is_loopback_ipv4(const reactor::Address& a) {
  if (a.family() != AF_INET) return false;
  auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
  return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "reactor-load: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (reactor::tools::wants_version(args)) {
    std::printf("%s %.*s\n", "reactor-load", static_cast<int>(reactor::tools::kVersion.size()),
                reactor::tools::kVersion.data());
    return 0;
  }
  auto parsed = load::parse_load_options(args);
  if (std::holds_alternative<load::HelpRequested>(parsed)) {
    std::fputs(load::load_usage().c_str(), stdout);
    return 0;
  }
  if (auto* err = std::get_if<load::ParseError>(&parsed)) return usage_error(err->message);
  auto options = std::get<load::LoadOptions>(parsed);

  auto target = reactor::Address::parse(options.target);
  if (!target) return usage_error(reactor::describe("--target " + options.target, target.error()));
  if (target->transport() != reactor::Transport::tcp &&
      target->transport() != reactor::Transport::unix_stream) {
    return usage_error("--target " + options.target +
                       ": only tcp:// and unix: targets are supported");
  }
  if (options.sources > 1 && !is_loopback_ipv4(*target)) {
    return usage_error("--sources needs a loopback IPv4 target (127.x.x.x)");
  }
  options.sources = load::effective_sources(options, is_loopback_ipv4(*target));

  bool tty = ::isatty(STDERR_FILENO) == 1;
  load::ProgressFn progress;
  if (tty) {
    progress = [&options](const load::LoadProgress& p, double elapsed) {
      static const char* kIdlePhases[] = {"ramping up", "holding", "checking"};
      if (options.mode == load::Mode::idle) {
        std::fprintf(stderr, "\r[idle] %5.1fs %s: %llu connected, %llu errors   ", elapsed,
                     kIdlePhases[p.phase.load()],
                     static_cast<unsigned long long>(p.connections.load()),
                     static_cast<unsigned long long>(p.errors.load()));
      } else {
        std::fprintf(stderr, "\r[%s] %5.1fs %llu connections, %llu msgs, %llu errors   ",
                     std::string(load::name_of(options.mode)).c_str(), elapsed,
                     static_cast<unsigned long long>(p.connections.load()),
                     static_cast<unsigned long long>(p.msgs.load()),
                     static_cast<unsigned long long>(p.errors.load()));
      }
    };
  }

  load::LoadTotals totals = load::run_load(options, *target, progress);
  if (tty) std::fputs("\r\033[K", stderr);
  if (!totals.fatal.empty()) {
    std::fprintf(stderr, "reactor-load: %s\n", totals.fatal.c_str());
    return 1;
  }
  if (options.json) {
    std::printf("%s\n", load::report_json(options, totals).c_str());
  } else {
    std::fputs(load::report_text(options, totals).c_str(), stdout);
  }
  return totals.errors() == 0 && totals.failed == 0 ? 0 : 1;
}
