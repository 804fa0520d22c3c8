// reactor-bench's command line, parsed by a pure function so its rules are unit-tested.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace bench {

// Every row the driver knows: reactor-server's models, then the libc-only baseline.
inline const std::vector<std::string> kAllModels = {"epoll", "fork", "thread", "reuseport",
                                                    "textbook"};

struct BenchOptions {
  std::string server;        // reactor-server; "" = next to reactor-bench
  std::string load;          // reactor-load; "" = next to reactor-bench
  std::string baseline;      // textbook-echo; "" = ../bench/textbook-echo from reactor-bench
  std::string chart_script;  // gnuplot script; "" = ../bench/compare-chart.gnuplot
  std::vector<std::string> models = kAllModels;
  std::string out_dir;  // "" = results/<UTC timestamp>
  bool quick = false;
  double phase_s = 5;    // load seconds per phase (1 with --quick unless --duration)
  int workers = 0;       // reuseport workers; 0 = one per server CPU
  int load_threads = 0;  // 0 = one per load CPU
  bool pin = true;
};

struct BenchHelp {};
struct BenchParseError {
  std::string message;
};
using BenchParseResult = std::variant<BenchOptions, BenchHelp, BenchParseError>;

BenchParseResult parse_bench_options(const std::vector<std::string_view>& args);
std::string bench_usage();

}  // namespace bench
