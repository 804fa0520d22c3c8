// reactor-bench's command line, parsed by a pure function so its rules are unit-tested.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace bench {

// The default rows: reactor-server's models, then the libc-only textbook servers, each next to
// the model it is the baseline of. Any other name is passed to reactor-server as --model NAME.
inline const std::vector<std::string> kDefaultModels = {
    "epoll", "reuseport", "thread", "fork", "textbook epoll", "textbook thread", "textbook fork"};
// Added to the default rows when `reactor-server --help` lists them.
inline const std::vector<std::string> kOptionalModels = {"poll", "select", "prefork", "threadpool"};
// The scale suite's rows (a model the server refuses is skipped with a note).
inline const std::vector<std::string> kScaleModels = {"epoll", "poll", "select", "thread", "fork"};

// "textbook" and "textbook-X" name the textbook rows ("textbook epoll", "textbook X"); other
// names stand. "" when the name holds characters no model name has.
std::string canonical_model(std::string_view name);
bool is_textbook(const std::string& model);
// Whether a help text names `model` as a whole word ("poll" is not found in "epoll").
bool help_lists_model(std::string_view help, std::string_view model);

struct BenchOptions {
  std::string server;               // reactor-server; "" = next to reactor-bench
  std::string load;                 // reactor-load; "" = next to reactor-bench
  std::string baseline;             // textbook-echo; "" = ../bench/textbook-echo from reactor-bench
  std::string chart_script;         // gnuplot script; "" = ../bench/compare-chart.gnuplot
  std::vector<std::string> models;  // empty: the default rows (see kDefaultModels)
  std::string suite = "compare";    // compare | scale
  int rounds = 3;                   // measurements per cell (1 with --quick unless --rounds)
  std::string out_dir;              // "" = results/<UTC timestamp>
  bool quick = false;
  double phase_s = 5;    // load seconds per phase (1 with --quick, 2 in the scale suite)
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
