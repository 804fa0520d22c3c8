#include "load_options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "cli.hpp"

namespace load {

std::string_view name_of(Mode m) noexcept {
  switch (m) {
    case Mode::connrate:
      return "connrate";
    case Mode::echo:
      return "echo";
    case Mode::idle:
      return "idle";
  }
  return "?";
}

std::string_view name_of(CloseMode c) noexcept {
  return c == CloseMode::rst ? "rst" : "fin";
}

bool parse_int(std::string_view text, long long min, long long max, long long& out) noexcept {
  long long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) return false;
  out = v;
  return true;
}

bool parse_seconds(std::string_view text, double min_exclusive, double max, double& out) noexcept {
  if (text.empty() || text.size() > 32) return false;
  char buf[33];
  text.copy(buf, text.size());
  buf[text.size()] = '\0';
  char* end = nullptr;
  double v = std::strtod(buf, &end);
  if (end != buf + text.size() || !std::isfinite(v) || v <= min_exclusive || v > max) return false;
  out = v;
  return true;
}

int effective_sources(const LoadOptions& o, bool loopback_ipv4_target) noexcept {
  if (o.sources > 0) return o.sources;
  if (!loopback_ipv4_target) return 1;
  if (o.mode == Mode::echo)
    return std::min(254, std::max(1, (o.idle + o.connections + 7999) / 8000));
  if (o.mode != Mode::idle) return 1;
  return std::min(254, std::max(1, (o.connections + 7999) / 8000));
}

std::string load_usage() {
  return "usage: reactor-load --target ADDR --mode connrate|echo|idle [options]\n"
         "  --target ADDR        tcp://host:port or unix:/path\n"
         "  --threads T          worker threads, each with its own epoll (default 1)\n"
         "  --duration S         seconds of load for connrate and echo (default 5)\n"
         "  --timeout S          a connect or read stalled this long is an error (default 5)\n"
         "  --json               print exactly one JSON object on stdout\n"
         "  --close rst|fin      how connections are closed (default rst: SO_LINGER {1,0}, no\n"
         "                       TIME_WAIT on the client)\n"
         "  --sources N          spread connections over source addresses 127.0.0.1..127.0.0.N\n"
         "                       (127.x targets only; default 1, in idle mode one per 8000\n"
         "                       connections)\n"
         " connrate: connect, send SIZE bytes, read them back, close, repeat\n"
         "  --concurrency C      workers (default 16)\n"
         "  --size M             bytes per connection (default 64)\n"
         " echo: persistent connections with messages in flight\n"
         "  --connections C      connections (default 50)\n"
         "  --pipeline P         messages in flight per connection (default 16)\n"
         "  --size S             bytes per message (default 64)\n"
         " idle: open connections, hold them, then check each still echoes\n"
         "  --connections N      connections (default 1000)\n"
         "  --hold S             seconds to hold them (default 5)\n"
         "  --server-pid PID     report the memory (private PSS, code pages excluded, summed\n"
         "                       over the process and its children) before and while holding\n"
         " connrate also: --count N   stop after N connections (a burst), even before --duration\n"
         " echo also:     --idle N    hold N idle connections (each proven served) during the\n"
         "                            run; --server-pid PID reports the server's CPU over it\n"
         "  --help, --version    show this help / the version and exit\n"
         "Each option may be given once.\n";
}

namespace {

// Walks argv: `--name value` or `--name=value`.
class ArgCursor {
 public:
  explicit ArgCursor(const std::vector<std::string_view>& args) : args_(args) {}
  bool done() const { return i_ >= args_.size(); }
  // Splits the next argument into its flag name and an inline value, if any.
  std::string_view next_flag() {
    std::string_view a = args_[i_++];
    has_inline_ = false;
    inline_value_ = {};
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      inline_value_ = a.substr(eq + 1);
      has_inline_ = true;
      return a.substr(0, eq);
    }
    return a;
  }
  bool has_inline_value() const { return has_inline_; }
  bool value(std::string_view& out) {
    if (has_inline_) {
      out = inline_value_;
      has_inline_ = false;
      return true;
    }
    if (done()) return false;
    out = args_[i_++];
    return true;
  }

 private:
  const std::vector<std::string_view>& args_;
  std::size_t i_ = 0;
  std::string_view inline_value_;  // a plain view and a flag: g++ 12 misreads an optional here
  bool has_inline_ = false;
};

ParseError bad_value(std::string_view flag, std::string_view value, std::string_view expected) {
  return {std::string(flag) + ": bad value '" + std::string(value) + "' (expected " +
          std::string(expected) + ")"};
}

}  // namespace

ParseResult parse_load_options(const std::vector<std::string_view>& args) {
  LoadOptions o;
  bool mode_given = false;
  bool duration_given = false;
  bool concurrency_given = false, pipeline_given = false, hold_given = false;
  bool pid_given = false, count_given = false, idle_given = false;
  for (auto a : args) {
    if (a == "--help" || a == "-h") return HelpRequested{};
  }
  ArgCursor cur(args);
  reactor::tools::SeenOptions seen;
  while (!cur.done()) {
    std::string_view flag = cur.next_flag();
    if (flag == "--json") {
      if (cur.has_inline_value()) return ParseError{"--json takes no value"};
      o.json = true;
      continue;
    }
    std::string_view v;
    if (!flag.starts_with("--")) return ParseError{reactor::tools::unknown_option(flag)};
    static constexpr std::string_view kKnown[] = {
        "--target",   "--mode",    "--threads",     "--duration", "--timeout",
        "--close",    "--sources", "--concurrency", "--size",     "--connections",
        "--pipeline", "--hold",    "--server-pid",  "--count",    "--idle"};
    bool known = false;
    for (auto k : kKnown) known = known || k == flag;
    if (!known) return ParseError{reactor::tools::unknown_option(flag)};
    if (!seen.first_time(flag)) return ParseError{reactor::tools::given_twice(flag)};
    if (!cur.value(v)) return ParseError{std::string(flag) + " needs a value"};
    long long n = 0;
    if (flag == "--target") {
      if (v.empty()) return bad_value(flag, v, "tcp://host:port or unix:/path");
      o.target = std::string(v);
    } else if (flag == "--mode") {
      if (v == "connrate")
        o.mode = Mode::connrate;
      else if (v == "echo")
        o.mode = Mode::echo;
      else if (v == "idle")
        o.mode = Mode::idle;
      else
        return bad_value(flag, v, "connrate, echo or idle");
      mode_given = true;
    } else if (flag == "--threads") {
      if (!parse_int(v, 1, 256, n)) return bad_value(flag, v, "an integer 1..256");
      o.threads = static_cast<int>(n);
    } else if (flag == "--duration") {
      if (!parse_seconds(v, 0, 86400, o.duration_s))
        return bad_value(flag, v, "seconds in (0, 86400]");
      duration_given = true;
    } else if (flag == "--timeout") {
      if (!parse_seconds(v, 0, 3600, o.timeout_s))
        return bad_value(flag, v, "seconds in (0, 3600]");
    } else if (flag == "--close") {
      if (v == "rst")
        o.close = CloseMode::rst;
      else if (v == "fin")
        o.close = CloseMode::fin;
      else
        return bad_value(flag, v, "rst or fin");
    } else if (flag == "--sources") {
      if (!parse_int(v, 1, 254, n)) return bad_value(flag, v, "an integer 1..254");
      o.sources = static_cast<int>(n);
    } else if (flag == "--concurrency") {
      if (!parse_int(v, 1, 100000, n)) return bad_value(flag, v, "an integer 1..100000");
      o.concurrency = static_cast<int>(n);
      concurrency_given = true;
    } else if (flag == "--size") {
      if (!parse_int(v, 1, 64 << 20, n)) return bad_value(flag, v, "bytes 1..67108864");
      o.size = static_cast<std::size_t>(n);
    } else if (flag == "--connections") {
      if (!parse_int(v, 1, 1000000, n)) return bad_value(flag, v, "an integer 1..1000000");
      o.connections = static_cast<int>(n);
      o.connections_given = true;
    } else if (flag == "--pipeline") {
      if (!parse_int(v, 1, 65536, n)) return bad_value(flag, v, "an integer 1..65536");
      o.pipeline = static_cast<int>(n);
      pipeline_given = true;
    } else if (flag == "--hold") {
      if (!parse_seconds(v, -1, 86400, o.hold_s) || o.hold_s < 0) {
        return bad_value(flag, v, "seconds in [0, 86400]");
      }
      hold_given = true;
    } else if (flag == "--server-pid") {
      if (!parse_int(v, 1, 0x7fffffff, n)) return bad_value(flag, v, "a process id");
      o.server_pid = static_cast<pid_t>(n);
      pid_given = true;
    } else if (flag == "--count") {
      if (!parse_int(v, 1, 1000000000, n)) return bad_value(flag, v, "an integer 1..1000000000");
      o.count = n;
      count_given = true;
    } else if (flag == "--idle") {
      if (!parse_int(v, 0, 1000000, n)) return bad_value(flag, v, "an integer 0..1000000");
      o.idle = static_cast<int>(n);
      idle_given = true;
    }
  }
  if (o.target.empty()) return ParseError{"--target is required (tcp://host:port or unix:/path)"};
  if (!mode_given) return ParseError{"--mode is required (connrate, echo or idle)"};
  auto not_for = [&](bool given, std::string_view flag) -> std::optional<ParseError> {
    if (!given) return std::nullopt;
    return ParseError{std::string(flag) + " does not apply to --mode " +
                      std::string(name_of(o.mode))};
  };
  std::optional<ParseError> misplaced;
  switch (o.mode) {
    case Mode::connrate:
      if (!misplaced) misplaced = not_for(o.connections_given, "--connections");
      if (!misplaced) misplaced = not_for(pipeline_given, "--pipeline");
      if (!misplaced) misplaced = not_for(hold_given, "--hold");
      if (!misplaced) misplaced = not_for(pid_given, "--server-pid");
      if (!misplaced) misplaced = not_for(idle_given, "--idle");
      break;
    case Mode::echo:
      if (!misplaced) misplaced = not_for(concurrency_given, "--concurrency");
      if (!misplaced) misplaced = not_for(hold_given, "--hold");
      if (!misplaced) misplaced = not_for(count_given, "--count");
      break;
    case Mode::idle:
      if (!misplaced) misplaced = not_for(concurrency_given, "--concurrency");
      if (!misplaced) misplaced = not_for(pipeline_given, "--pipeline");
      if (!misplaced) misplaced = not_for(duration_given, "--duration (idle uses --hold)");
      if (!misplaced) misplaced = not_for(count_given, "--count");
      if (!misplaced) misplaced = not_for(idle_given, "--idle");
      if (!o.connections_given) o.connections = 1000;
      break;
  }
  if (misplaced) return *misplaced;
  return o;
}

}  // namespace load
