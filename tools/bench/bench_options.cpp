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
         "  --models LIST      comma-separated rows: any reactor-server model (epoll, fork,\n"
         "                     thread, reuseport, poll, ...) and textbook-epoll, textbook-thread,\n"
         "                     textbook-fork (libc-only baselines; 'textbook' = textbook-epoll).\n"
         "                     Default: epoll, reuseport, thread, fork, the three textbook\n"
         "                     servers, and poll, select, prefork, threadpool when the server\n"
         "                     lists them. A model the server refuses is skipped with a note.\n"
         "  --suite NAME       compare (default: the table) or scale (echo throughput and CPU\n"
         "                     per message while 0..18k idle connections are held)\n"
         "  --rounds N         measurements per cell (default 3; the median is shown with the\n"
         "                     min-max spread, every sample is kept in the JSON and CSV)\n"
         "  --quick            1 round, fewer and 1 s phases (under a minute in all)\n"
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

std::string canonical_model(std::string_view name) {
  if (name.empty()) return {};
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ' ';
    if (!ok) return {};
  }
  if (name == "textbook") return "textbook epoll";
  if (name.starts_with("textbook-") || name.starts_with("textbook ")) {
    std::string kind(name.substr(9));
    if (kind != "epoll" && kind != "thread" && kind != "fork") return {};
    return "textbook " + kind;
  }
  if (name.find(' ') != std::string_view::npos) return {};
  return std::string(name);
}

bool is_textbook(const std::string& model) {
  return model.starts_with("textbook ");
}

bool help_lists_model(std::string_view help, std::string_view model) {
  auto word_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (std::size_t pos = help.find(model); pos != std::string_view::npos;
       pos = help.find(model, pos + 1)) {
    bool left = pos == 0 || !word_char(help[pos - 1]);
    std::size_t end = pos + model.size();
    bool right = end == help.size() || !word_char(help[end]);
    if (left && right) return true;
  }
  return false;
}

BenchParseResult parse_bench_options(const std::vector<std::string_view>& args) {
  BenchOptions o;
  bool duration_given = false, rounds_given = false;
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
        "--models", "--duration", "--out",          "--workers", "--load-threads", "--server",
        "--load",   "--baseline", "--chart-script", "--rounds",  "--suite"};
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
        std::string name = canonical_model(value.substr(start, comma - start));
        if (name.empty()) {
          return bad(
              "a comma-separated list of model names (epoll, fork, thread, reuseport, "
              "textbook-epoll, ...)");
        }
        if (std::find(o.models.begin(), o.models.end(), name) == o.models.end())
          o.models.push_back(name);
        start = comma + 1;
      }
    } else if (flag == "--rounds") {
      if (!load::parse_int(value, 1, 100, n)) return bad("an integer 1..100");
      o.rounds = static_cast<int>(n);
      rounds_given = true;
    } else if (flag == "--suite") {
      if (value != "compare" && value != "scale") return bad("compare or scale");
      o.suite = std::string(value);
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
  if (o.suite == "scale" && !duration_given) o.phase_s = 2;
  if (o.quick && !duration_given) o.phase_s = 1;
  if (o.quick && !rounds_given) o.rounds = 1;
  return o;
}

}  // namespace bench
