#include "bench_options.hpp"

#include <algorithm>

#include "cli.hpp"
#include "load_options.hpp"

namespace bench {

std::string bench_usage() {
  return "usage: reactor-bench [options]\n"
         "Starts an echo server under each concurrency model, drives it with reactor-load, and\n"
         "prints a comparison table; writes results.json, results.csv and chart.svg into a "
         "folder.\n"
         "  --models LIST      comma-separated rows among epoll,fork,thread,reuseport,textbook\n"
         "                     (default: all; textbook is the libc-only baseline server)\n"
         "  --quick            1 s per phase (about 30 s in all) instead of 5 s\n"
         "  --duration S       seconds of load per phase (overrides --quick)\n"
         "  --out DIR          results folder (default results/<UTC timestamp>)\n"
         "  --workers N        reuseport workers (default: one per server CPU)\n"
         "  --load-threads N   reactor-load threads (default: one per load CPU)\n"
         "  --no-pin           do not pin server and load generator to separate CPUs\n"
         "  --server PATH      reactor-server (default: next to reactor-bench)\n"
         "  --load PATH        reactor-load (default: next to reactor-bench)\n"
         "  --baseline PATH    textbook-echo (default: ../bench/textbook-echo from reactor-bench)\n"
         "  --chart-script P   gnuplot script (default: ../bench/compare-chart.gnuplot)\n"
         "  --help, --version  show this help / the version and exit\n"
         "Each option may be given once.\n";
}

BenchParseResult parse_bench_options(const std::vector<std::string_view>& args) {
  BenchOptions o;
  bool duration_given = false;
  reactor::tools::SeenOptions seen;
  for (auto a : args) {
    if (a == "--help" || a == "-h") return BenchHelp{};
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::string_view value;
    bool has_inline = false;
    if (auto eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto no_value = [&](bool& target) -> bool {
      if (has_inline) return false;
      target = true;
      return true;
    };
    if (flag == "--quick") {
      if (!no_value(o.quick)) return BenchParseError{"--quick takes no value"};
      continue;
    }
    if (flag == "--no-pin") {
      bool no_pin = false;
      if (!no_value(no_pin)) return BenchParseError{"--no-pin takes no value"};
      o.pin = false;
      continue;
    }
    static constexpr std::string_view kWithValue[] = {
        "--models", "--duration", "--out",      "--workers",     "--load-threads",
        "--server", "--load",     "--baseline", "--chart-script"};
    if (std::find(std::begin(kWithValue), std::end(kWithValue), flag) == std::end(kWithValue)) {
      return BenchParseError{reactor::tools::unknown_option(flag)};
    }
    if (!seen.first_time(flag)) return BenchParseError{reactor::tools::given_twice(flag)};
    if (!has_inline) {
      if (i + 1 >= args.size()) return BenchParseError{std::string(flag) + " needs a value"};
      value = args[++i];
    }
    auto bad = [&](std::string_view expected) {
      return BenchParseError{std::string(flag) + ": bad value '" + std::string(value) +
                             "' (expected " + std::string(expected) + ")"};
    };
    long long n = 0;
    if (flag == "--models") {
      o.models.clear();
      std::size_t start = 0;
      while (start <= value.size()) {
        auto comma = value.find(',', start);
        if (comma == std::string_view::npos) comma = value.size();
        std::string name(value.substr(start, comma - start));
        if (std::find(kAllModels.begin(), kAllModels.end(), name) == kAllModels.end()) {
          return bad("a comma-separated list of epoll, fork, thread, reuseport, textbook");
        }
        if (std::find(o.models.begin(), o.models.end(), name) == o.models.end())
          o.models.push_back(name);
        start = comma + 1;
      }
    } else if (flag == "--duration") {
      if (!load::parse_seconds(value, 0, 3600, o.phase_s)) return bad("seconds in (0, 3600]");
      duration_given = true;
    } else if (flag == "--out") {
      if (value.empty()) return bad("a directory");
      o.out_dir = std::string(value);
    } else if (flag == "--workers") {
      if (!load::parse_int(value, 1, 1024, n)) return bad("an integer 1..1024");
      o.workers = static_cast<int>(n);
    } else if (flag == "--load-threads") {
      if (!load::parse_int(value, 1, 256, n)) return bad("an integer 1..256");
      o.load_threads = static_cast<int>(n);
    } else {
      if (value.empty()) return bad("a path");
      std::string path(value);
      if (flag == "--server")
        o.server = path;
      else if (flag == "--load")
        o.load = path;
      else if (flag == "--baseline")
        o.baseline = path;
      else
        o.chart_script = path;
    }
  }
  if (o.quick && !duration_given) o.phase_s = 1;
  return o;
}

}  // namespace bench
