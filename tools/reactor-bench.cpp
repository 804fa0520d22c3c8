// reactor-bench: the model comparison. For each model (reactor-server's epoll, fork, thread,
// reuseport, and the libc-only textbook-echo baseline) and each phase (connection rate at 1, 16
// and 64 concurrent clients; pipelined echo throughput) it starts a fresh server, drives it with
// reactor-load, and charges the server's CPU time over the load phase to the work done. Prints an
// aligned table and writes results.json, results.csv and chart.svg into a results folder.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench_options.hpp"
#include "bench_process.hpp"
#include "bench_table.hpp"
#include "cli.hpp"
#include "load_json.hpp"
#include "load_proc.hpp"

namespace {

using bench::Millis;
using load::JsonValue;

constexpr std::size_t kMessageSize = 64;
constexpr int kEchoConnections = 50;
constexpr int kEchoPipeline = 16;
constexpr double kLoadTimeoutS = 5;
constexpr Millis kStartTimeout{10'000};
constexpr Millis kStopTimeout{10'000};

struct PhaseSpec {
  const char* key;    // results.json / csv name
  const char* label;  // progress and table header
  bool echo;
  int concurrency;  // connrate only
};
constexpr PhaseSpec kPhases[] = {
    {"connrate_c1", "conn/s c=1", false, 1},
    {"connrate_c16", "conn/s c=16", false, 16},
    {"connrate_c64", "conn/s c=64", false, 64},
    {"echo", "echo msg/s", true, 0},
};

struct ServerSummary {
  std::uint64_t connections = 0, bytes_in = 0, bytes_out = 0;
};

struct PhaseResult {
  bool started = false;  // the server came up (false: the model is skipped)
  bool ran = false;      // the load generator produced a report
  std::string note;
  std::string load_json;  // reactor-load's report, verbatim
  JsonValue load;
  double server_cpu_s = -1;
  std::optional<ServerSummary> summary;

  double rate() const {
    return ran ? load.number_or(load.find("msgs_per_sec") ? "msgs_per_sec" : "conn_per_sec", -1)
               : -1;
  }
  double p99_us() const { return ran ? load.number_or("p99_us", -1) : -1; }
  std::uint64_t errors() const { return ran ? load.u64_or("errors", 0) : 0; }
  std::uint64_t work() const {  // connections (connrate) or messages (echo)
    if (!ran) return 0;
    return load.find("msgs") ? load.u64_or("msgs", 0) : load.u64_or("connections", 0);
  }
};

struct Row {
  std::string model;
  bool skipped = false;
  std::string note;
  std::map<std::string, PhaseResult> phases;

  const PhaseResult* phase(const std::string& key) const {
    auto it = phases.find(key);
    return it == phases.end() ? nullptr : &it->second;
  }
  double rate(const std::string& key) const {
    const PhaseResult* p = phase(key);
    return p ? p->rate() : -1;
  }
  // Server CPU microseconds per unit of work, over the given phases.
  double cost_us(std::initializer_list<const char*> keys) const {
    double cpu = 0;
    std::uint64_t work = 0;
    for (const char* k : keys) {
      const PhaseResult* p = phase(k);
      if (!p || !p->ran || p->server_cpu_s < 0) return -1;
      cpu += p->server_cpu_s;
      work += p->work();
    }
    return work ? cpu * 1e6 / static_cast<double>(work) : -1;
  }
  std::uint64_t errors() const {
    std::uint64_t n = 0;
    for (const auto& [k, p] : phases) n += p.errors();
    return n;
  }
};

struct Plan {
  bench::BenchOptions options;
  std::string server, load, baseline, chart_script;
  std::vector<int> server_cpus, load_cpus;
  int load_threads = 1;
  int workers = 1;
  std::string pinning;  // one line for the output
  std::string logs_dir;
};

std::string utc_stamp(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), format, &tm);
  return buf;
}

bool make_dirs(const std::string& path) {
  std::string partial;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    partial = path.substr(0, slash);
    if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
    start = slash + 1;
  }
  return true;
}

std::string cpu_list(const std::vector<int>& cpus) {
  std::string s;
  for (int c : cpus) {
    if (!s.empty()) s += ',';
    s += std::to_string(c);
  }
  return s;
}

void plan_cpus(Plan& plan) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> allowed;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) allowed.push_back(c);
    }
  }
  int n = static_cast<int>(allowed.size());
  if (plan.options.pin && n >= 2) {
    int load_count = n / 2;
    plan.load_cpus.assign(allowed.begin(), allowed.begin() + load_count);
    plan.server_cpus.assign(allowed.begin() + load_count, allowed.end());
    plan.pinning = "server pinned to CPU " + cpu_list(plan.server_cpus) +
                   ", load generator to CPU " + cpu_list(plan.load_cpus);
  } else {
    plan.pinning = n < 2 ? "not pinned (fewer than 2 CPUs)" : "not pinned (--no-pin)";
  }
  int load_cpu_count =
      plan.load_cpus.empty() ? std::max(1, n / 2) : static_cast<int>(plan.load_cpus.size());
  int server_cpu_count =
      plan.server_cpus.empty() ? std::max(1, n) : static_cast<int>(plan.server_cpus.size());
  plan.load_threads =
      plan.options.load_threads ? plan.options.load_threads : std::min(load_cpu_count, 8);
  plan.workers = plan.options.workers ? plan.options.workers : server_cpu_count;
}

std::vector<std::string> server_argv(const Plan& plan, const std::string& model) {
  if (model == "textbook") return {plan.baseline, "--listen", "tcp://127.0.0.1:0"};
  std::vector<std::string> argv = {plan.server, "--protocol",       "echo", "--model", model,
                                   "--listen",  "tcp://127.0.0.1:0"};
  if (model == "reuseport") {
    argv.push_back("--workers");
    argv.push_back(std::to_string(plan.workers));
  }
  return argv;
}

std::vector<std::string> load_argv(const Plan& plan, const PhaseSpec& phase,
                                   const std::string& target) {
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%g", plan.options.phase_s);
  char timeout[32];
  std::snprintf(timeout, sizeof(timeout), "%g", kLoadTimeoutS);
  std::vector<std::string> argv = {plan.load,    "--json",
                                   "--target",   target,
                                   "--duration", seconds,
                                   "--timeout",  timeout,
                                   "--threads",  std::to_string(plan.load_threads),
                                   "--size",     std::to_string(kMessageSize)};
  if (phase.echo) {
    argv.insert(argv.end(), {"--mode", "echo", "--connections", std::to_string(kEchoConnections),
                             "--pipeline", std::to_string(kEchoPipeline)});
  } else {
    argv.insert(argv.end(), {"--mode", "connrate", "--concurrency",
                             std::to_string(phase.concurrency), "--close", "rst"});
  }
  return argv;
}

std::optional<ServerSummary> parse_summary(const std::string& output) {
  auto pos = output.find("summary:");
  if (pos == std::string::npos) return std::nullopt;
  auto end = output.find('\n', pos);
  std::string line = output.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  ServerSummary s;
  int found = 0;
  auto take = [&](const char* key, std::uint64_t& out) {
    auto k = line.find(std::string(" ") + key + "=");
    if (k == std::string::npos) return;
    out = std::strtoull(line.c_str() + k + std::strlen(key) + 2, nullptr, 10);
    ++found;
  };
  take("connections", s.connections);
  take("bytes_in", s.bytes_in);
  take("bytes_out", s.bytes_out);
  if (found != 3) return std::nullopt;
  return s;
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

PhaseResult run_phase(const Plan& plan, const std::string& model, const PhaseSpec& phase) {
  PhaseResult r;
  std::string log_base = plan.logs_dir + "/" + model + "-" + phase.key;
  std::string error;
  auto server = bench::Child::spawn(
      {server_argv(plan, model), plan.server_cpus, log_base + ".server.log"}, error);
  if (!server) {
    r.note = "did not start: " + error;
    return r;
  }
  std::string target;
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (target.empty()) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto line = server->read_line(std::max(left, Millis(0)));
    if (!line) break;
    if (line->starts_with("listening on ")) target = line->substr(13);
  }
  if (target.empty()) {
    server->stop(SIGTERM, Millis(2000));
    std::string why = bench::last_line_of(log_base + ".server.log");
    if (why.empty())
      why = server->running() ? "no 'listening on' line"
                              : bench::describe_wait_status(server->exit_status());
    r.note = "did not start: " + why;
    return r;
  }
  r.started = true;

  // The server's CPU over the load phase: its lifetime total from wait4 once it has exited
  // (threads and reaped children included, no sampling race while children exit), minus what
  // it had spent before the load started (start-up; a fresh server has no children yet).
  // Shutdown after the load is included; it is small next to a phase.
  double cpu_before = load::tree_cpu_seconds(server->pid());
  auto loader = bench::Child::spawn(
      {load_argv(plan, phase, target), plan.load_cpus, log_base + ".load.log"}, error);
  if (!loader) {
    server->stop(SIGTERM, kStopTimeout);
    r.note = "reactor-load did not start: " + error;
    return r;
  }
  auto load_budget =
      Millis(static_cast<long long>((plan.options.phase_s + 2 * kLoadTimeoutS + 30) * 1000));
  std::string output = loader->read_all(load_budget);
  if (!loader->wait(Millis(5000))) loader->kill_now();

  std::string server_out = server->stop(SIGTERM, kStopTimeout);
  r.summary = parse_summary(server_out);
  r.server_cpu_s = std::max(0.0, server->cpu_seconds() - cpu_before);

  std::string parse_error;
  auto json = JsonValue::parse(first_line(output), &parse_error);
  if (!json || !json->is_object()) {
    std::string why = bench::last_line_of(log_base + ".load.log");
    r.note = "no load report (" + bench::describe_wait_status(loader->exit_status()) +
             (why.empty() ? "" : ": " + why) + ")";
    return r;
  }
  r.ran = true;
  r.load = std::move(*json);
  r.load_json = first_line(output);
  if (!r.summary) {
    r.note = "no server summary (" + bench::describe_wait_status(server->exit_status()) + ")";
  } else if (r.summary->bytes_in != r.load.u64_or("bytes_sent", 0)) {
    r.note = "server read " + std::to_string(r.summary->bytes_in) + " bytes, load sent " +
             std::to_string(r.load.u64_or("bytes_sent", 0));
  }
  return r;
}

void write_results_json(const Plan& plan, const std::vector<Row>& rows,
                        const std::string& reference, const std::string& path) {
  load::JsonWriter j;
  j.begin_object();
  j.field("timestamp", utc_stamp("%Y-%m-%dT%H:%M:%SZ"));
  j.field("pinning", plan.pinning);
  j.field("server_cpus", cpu_list(plan.server_cpus));
  j.field("load_cpus", cpu_list(plan.load_cpus));
  j.field("phase_s", plan.options.phase_s);
  j.field("load_threads", plan.load_threads);
  j.field("reuseport_workers", plan.workers);
  j.field("message_size", static_cast<std::uint64_t>(kMessageSize));
  j.field("echo_connections", kEchoConnections);
  j.field("echo_pipeline", kEchoPipeline);
  j.field("reference", reference);
  j.field("cpu_cost",
          "server utime+stime (all threads and reaped children) from wait4 at exit, minus "
          "/proc/PID/stat right before the load phase; a fresh server per phase");
  const Row* ref = nullptr;
  for (const auto& r : rows) {
    if (r.model == reference) ref = &r;
  }
  j.begin_array("rows");
  for (const auto& row : rows) {
    j.begin_object();
    j.field("model", row.model);
    j.field("status", row.skipped ? "skipped" : "ok");
    j.field("note", row.note);
    if (!row.skipped) {
      j.field("us_per_conn", row.cost_us({"connrate_c1", "connrate_c16", "connrate_c64"}));
      j.field("us_per_msg", row.cost_us({"echo"}));
      j.field("errors", row.errors());
      for (const auto& spec : kPhases) {
        const PhaseResult* p = row.phase(spec.key);
        if (!p) continue;
        j.begin_object(spec.key);
        j.field("rate", p->rate());
        j.field("ratio", ref && ref->rate(spec.key) > 0 && p->rate() >= 0
                             ? p->rate() / ref->rate(spec.key)
                             : std::nan(""));
        j.field("p99_us", p->p99_us());
        j.field("server_cpu_s", p->server_cpu_s);
        j.field("note", p->note);
        if (p->summary) {
          j.begin_object("server_summary");
          j.field("connections", p->summary->connections);
          j.field("bytes_in", p->summary->bytes_in);
          j.field("bytes_out", p->summary->bytes_out);
          j.end_object();
        } else {
          j.null_field("server_summary");
        }
        if (p->ran)
          j.raw_field("load", p->load_json);
        else
          j.null_field("load");
        j.end_object();
      }
    }
    j.end_object();
  }
  j.end_array();
  j.end_object();
  std::ofstream(path) << j.str() << '\n';
}

void write_results_csv(const std::vector<Row>& rows, const Row* ref, const std::string& path) {
  std::ofstream out(path);
  out << "model,status,conn_per_sec_c1,ratio_c1,conn_per_sec_c16,ratio_c16,conn_per_sec_c64,"
         "ratio_c64,echo_msgs_per_sec,echo_ratio,echo_p99_us,echo_p99_ratio,us_per_conn,us_per_msg,"
         "errors,note\n";
  for (const auto& row : rows) {
    out << bench::csv_field(row.model) << ',' << (row.skipped ? "skipped" : "ok");
    for (const auto& spec : kPhases) {
      double v = row.rate(spec.key);
      out << ',' << bench::fixed(v, 1) << ',' << (ref ? bench::ratio(v, ref->rate(spec.key)) : "-");
    }
    const PhaseResult* echo = row.phase("echo");
    double p99 = echo ? echo->p99_us() : -1;
    const PhaseResult* ref_echo = ref ? ref->phase("echo") : nullptr;
    out << ',' << bench::fixed(p99, 1) << ','
        << (ref_echo ? bench::ratio(p99, ref_echo->p99_us()) : "-");
    out << ',' << bench::fixed(row.cost_us({"connrate_c1", "connrate_c16", "connrate_c64"}), 2)
        << ',' << bench::fixed(row.cost_us({"echo"}), 3) << ',' << row.errors() << ','
        << bench::csv_field(row.note) << '\n';
  }
}

// chart.dat for the gnuplot script: one line per model that ran.
void write_chart_data(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream out(path);
  out << "# model conn_per_sec_c1 conn_per_sec_c16 conn_per_sec_c64 echo_msgs_per_sec\n";
  for (const auto& row : rows) {
    if (row.skipped) continue;
    out << row.model;
    for (const auto& spec : kPhases) out << ' ' << std::max(0.0, row.rate(spec.key));
    out << '\n';
  }
}

std::string make_chart(const Plan& plan, const std::string& dir) {
  std::string gnuplot = bench::find_on_path("gnuplot");
  if (gnuplot.empty()) return "chart skipped: gnuplot is not on PATH";
  if (!bench::is_executable(gnuplot) || plan.chart_script.empty() ||
      ::access(plan.chart_script.c_str(), R_OK) != 0) {
    return "chart skipped: no gnuplot script at " + plan.chart_script;
  }
  std::string error;
  auto child = bench::Child::spawn(
      {{gnuplot, "-e", "datafile='" + dir + "/chart.dat'; outfile='" + dir + "/chart.svg'",
        plan.chart_script},
       {},
       dir + "/logs/gnuplot.log"},
      error);
  if (!child) return "chart skipped: " + error;
  child->read_all(Millis(30'000));
  if (!child->wait(Millis(30'000))) child->kill_now();
  if (child->exit_status() != 0) {
    return "chart failed (" + bench::describe_wait_status(child->exit_status()) +
           ", see logs/gnuplot.log)";
  }
  return "chart: " + dir + "/chart.svg";
}

void print_table(const std::vector<Row>& rows, const Row* ref) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"model", "conn/s c=1", "ratio", "conn/s c=16", "ratio", "conn/s c=64", "ratio",
                   "echo msg/s", "ratio", "p99 us", "ratio", "us/conn", "us/msg", "errors"});
  for (const auto& row : rows) {
    if (row.skipped) {
      cells.push_back({row.model, "skipped"});
      continue;
    }
    std::vector<std::string> line = {row.model};
    for (const auto& spec : kPhases) {
      double v = row.rate(spec.key);
      line.push_back(bench::fixed(v, 0));
      line.push_back(ref ? bench::ratio(v, ref->rate(spec.key)) : "-");
    }
    const PhaseResult* echo = row.phase("echo");
    const PhaseResult* ref_echo = ref ? ref->phase("echo") : nullptr;
    double p99 = echo ? echo->p99_us() : -1;
    line.push_back(bench::fixed(p99, 0));
    line.push_back(ref_echo ? bench::ratio(p99, ref_echo->p99_us()) : "-");
    line.push_back(bench::fixed(row.cost_us({"connrate_c1", "connrate_c16", "connrate_c64"}), 1));
    line.push_back(bench::fixed(row.cost_us({"echo"}), 2));
    line.push_back(std::to_string(row.errors()));
    cells.push_back(std::move(line));
  }
  std::fputs(bench::format_table(cells).c_str(), stdout);
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "reactor-bench: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (reactor::tools::wants_version(args)) {
    std::printf("%s %.*s\n", "reactor-bench", static_cast<int>(reactor::tools::kVersion.size()),
                reactor::tools::kVersion.data());
    return 0;
  }
  auto parsed = bench::parse_bench_options(args);
  if (std::holds_alternative<bench::BenchHelp>(parsed)) {
    std::fputs(bench::bench_usage().c_str(), stdout);
    return 0;
  }
  if (auto* err = std::get_if<bench::BenchParseError>(&parsed)) return usage_error(err->message);

  Plan plan;
  plan.options = std::get<bench::BenchOptions>(parsed);
  std::string here = bench::self_dir();
  plan.server = plan.options.server.empty() ? here + "/reactor-server" : plan.options.server;
  plan.load = plan.options.load.empty() ? here + "/reactor-load" : plan.options.load;
  plan.baseline =
      plan.options.baseline.empty() ? here + "/../bench/textbook-echo" : plan.options.baseline;
  plan.chart_script = plan.options.chart_script.empty() ? here + "/../bench/compare-chart.gnuplot"
                                                        : plan.options.chart_script;
  if (!bench::is_executable(plan.load)) {
    return usage_error("reactor-load not found at " + plan.load + " (use --load PATH)");
  }
  std::string dir = plan.options.out_dir.empty() ? "results/" + utc_stamp("%Y%m%dT%H%M%SZ")
                                                 : plan.options.out_dir;
  plan.logs_dir = dir + "/logs";
  if (!make_dirs(plan.logs_dir))
    return usage_error("cannot create " + plan.logs_dir + ": " + std::strerror(errno));
  plan_cpus(plan);
  ::signal(SIGPIPE, SIG_IGN);

  std::fprintf(stderr, "reactor-bench: %zu model(s) x %zu phases x %g s; %s; load threads %d\n",
               plan.options.models.size(), std::size(kPhases), plan.options.phase_s,
               plan.pinning.c_str(), plan.load_threads);
  auto started = std::chrono::steady_clock::now();
  std::vector<Row> rows;
  for (const auto& model : plan.options.models) {
    Row row;
    row.model = model;
    const std::string& binary = model == "textbook" ? plan.baseline : plan.server;
    if (!bench::is_executable(binary)) {
      row.skipped = true;
      row.note = (model == "textbook" ? "textbook-echo" : "reactor-server") +
                 std::string(" not found at ") + binary;
    }
    rows.push_back(std::move(row));
  }
  // Phase-major, and each phase starts from a different model: on a shared machine the load
  // drifts over minutes, and running one model's phases back to back would hand that drift to
  // whole rows instead of spreading it across them.
  std::size_t first = 0;
  for (const auto& spec : kPhases) {
    for (std::size_t k = 0; k < rows.size(); ++k) {
      Row& row = rows[(first + k) % rows.size()];
      if (row.skipped) continue;
      const std::string& model = row.model;
      std::fprintf(stderr, "  %-9s %-12s ", model.c_str(), spec.label);
      std::fflush(stderr);
      PhaseResult r = run_phase(plan, model, spec);
      if (!r.started) {
        std::fprintf(stderr, "skipped: %s\n", r.note.c_str());
        row.skipped = true;
        row.note = r.note;
        continue;
      }
      if (r.ran) {
        std::fprintf(stderr, "%10.0f/s  p99 %.0f us  cpu %.2f s  errors %llu%s%s\n", r.rate(),
                     r.p99_us(), r.server_cpu_s, static_cast<unsigned long long>(r.errors()),
                     r.note.empty() ? "" : "  note: ", r.note.c_str());
      } else {
        std::fprintf(stderr, "failed: %s\n", r.note.c_str());
      }
      if (!r.note.empty())
        row.note += (row.note.empty() ? "" : "; ") + std::string(spec.key) + ": " + r.note;
      row.phases[spec.key] = std::move(r);
    }
    ++first;
  }
  double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const Row* ref = nullptr;
  for (const auto& r : rows) {
    if (!r.skipped && r.model == "epoll") ref = &r;
  }
  for (const auto& r : rows) {
    if (!ref && !r.skipped) ref = &r;
  }
  std::string reference = ref ? ref->model : "";

  std::printf(
      "\nEcho server models: connections/s (connect, %zu B echoed, close) and pipelined echo\n"
      "(%d connections x %d in flight x %zu B); ratios relative to %s; server CPU per unit of "
      "work.\n",
      kMessageSize, kEchoConnections, kEchoPipeline, kMessageSize,
      reference.empty() ? "-" : reference.c_str());
  std::printf(
      "%s; %g s per phase, a fresh server per phase; reuseport workers %d; load threads %d.\n\n",
      plan.pinning.c_str(), plan.options.phase_s, plan.workers, plan.load_threads);
  print_table(rows, ref);
  for (const auto& r : rows) {
    if (!r.note.empty()) std::printf("note: %s: %s\n", r.model.c_str(), r.note.c_str());
  }

  write_results_json(plan, rows, reference, dir + "/results.json");
  write_results_csv(rows, ref, dir + "/results.csv");
  write_chart_data(rows, dir + "/chart.dat");
  std::string chart = make_chart(plan, dir);
  std::printf("%s\n", chart.c_str());
  std::printf("results: %s (%.0f s)\n", dir.c_str(), total_s);
  return ref ? 0 : 1;
}
