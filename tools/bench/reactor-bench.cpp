// reactor-bench: the model comparison. For each model (reactor-server's epoll, fork, thread,
// reuseport, and the libc-only textbook-echo baseline) and each phase (connection rate at 1, 16
// and 64 concurrent clients; pipelined echo throughput) it starts a fresh server, drives it with
// reactor-load, and charges the server's CPU time over the load phase to the work done. Prints an
// aligned table and writes results.json, results.csv and chart.svg into a results folder.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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

enum class Kind { connrate, echo, idle };
struct PhaseSpec {
  const char* key;    // results.json / csv name
  const char* label;  // progress and table header
  Kind kind;
  int concurrency;     // connrate only
  bool burst = false;  // connrate: 2,500 connections first, against the same server
  bool quick = true;   // part of --quick
};
constexpr int kBurstConnections = 2500;
constexpr int kIdleConnections = 1000;  // idle memory phase (--quick: 100)
constexpr PhaseSpec kPhases[] = {
    {"connrate_c1", "conn/s c=1", Kind::connrate, 1, false, false},
    {"connrate_c16", "conn/s c=16", Kind::connrate, 16},
    {"connrate_c64", "conn/s c=64", Kind::connrate, 64},
    {"echo", "echo msg/s", Kind::echo, 0},
    {"connrate_c16_after_burst", "c=16 after burst", Kind::connrate, 16, true, false},
    {"idle_memory", "idle B/conn", Kind::idle, 0},
};
// Rows the after-a-burst phase runs for: a process per connection, where a burst leaves
// thousands of exiting children behind.
bool takes_burst_phase(const std::string& model) {
  return model == "fork" || model == "textbook fork" || model == "prefork";
}

struct ServerSummary {
  std::uint64_t connections = 0, bytes_in = 0, bytes_out = 0;
};

struct PhaseResult {
  bool started = false;  // the server came up (false: the model is skipped)
  bool ran = false;      // the load generator produced a report
  bool refused = false;  // the server exited 2 / said "unknown model": not this server's model
  int round = 0;
  std::string note;
  std::string load_json;  // reactor-load's report, verbatim
  JsonValue load;
  double server_cpu_s = -1;
  std::optional<ServerSummary> summary;

  double rate() const {
    if (!ran) return -1;
    if (load.find("rss_per_conn_bytes"))  // noise can make a small figure negative
      return std::max(0.0, load.number_or("rss_per_conn_bytes", 0));
    return load.number_or(load.find("msgs_per_sec") ? "msgs_per_sec" : "conn_per_sec", -1);
  }
  double p99_us() const { return ran ? load.number_or("p99_us", -1) : -1; }
  std::uint64_t errors() const {
    return ran ? load.u64_or("errors", 0) + load.u64_or("failed", 0) : 0;
  }
  std::uint64_t work() const {  // connections (connrate) or messages (echo)
    if (!ran) return 0;
    return load.find("msgs") ? load.u64_or("msgs", 0) : load.u64_or("connections", 0);
  }
};

struct Row {
  std::string model;
  bool skipped = false;
  std::string note;
  std::map<std::string, std::vector<PhaseResult>> phases;  // every round's sample

  const std::vector<PhaseResult>* samples(const std::string& key) const {
    auto it = phases.find(key);
    return it == phases.end() ? nullptr : &it->second;
  }
  std::vector<double> rates(const std::string& key) const {
    std::vector<double> v;
    if (auto* s = samples(key)) {
      for (const auto& p : *s) v.push_back(p.rate());
    }
    return v;
  }
  double rate(const std::string& key) const { return bench::median(rates(key)); }
  std::vector<double> p99s(const std::string& key) const {
    std::vector<double> v;
    if (auto* s = samples(key)) {
      for (const auto& p : *s) v.push_back(p.p99_us());
    }
    return v;
  }
  // Server CPU microseconds per unit of work over the given phases, one value per round.
  std::vector<double> costs_us(std::initializer_list<const char*> keys, int rounds) const {
    std::vector<double> out;
    for (int r = 0; r < rounds; ++r) {
      double cpu = 0;
      std::uint64_t work = 0;
      bool complete = true;
      for (const char* k : keys) {
        const PhaseResult* found = nullptr;
        if (auto* s = samples(k)) {
          for (const auto& p : *s) {
            if (p.round == r) found = &p;
          }
        }
        if (!found || !found->ran || found->server_cpu_s < 0) {
          complete = false;
          break;
        }
        cpu += found->server_cpu_s;
        work += found->work();
      }
      if (complete && work) out.push_back(cpu * 1e6 / static_cast<double>(work));
    }
    return out;
  }
  std::uint64_t errors() const {
    std::uint64_t n = 0;
    for (const auto& [k, list] : phases) {
      for (const auto& p : list) n += p.errors();
    }
    return n;
  }
};

struct Plan {
  bench::BenchOptions options;
  std::string server, load, baseline, baseline_thread, baseline_fork, chart_script,
      scale_chart_script;
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

const std::string& binary_of(const Plan& plan, const std::string& model) {
  if (model == "textbook epoll") return plan.baseline;
  if (model == "textbook thread") return plan.baseline_thread;
  if (model == "textbook fork") return plan.baseline_fork;
  return plan.server;
}

std::vector<std::string> server_argv(const Plan& plan, const std::string& model) {
  if (bench::is_textbook(model)) return {binary_of(plan, model), "--listen", "tcp://127.0.0.1:0"};
  std::vector<std::string> argv = {plan.server, "--protocol",       "echo", "--model", model,
                                   "--listen",  "tcp://127.0.0.1:0"};
  if (model == "reuseport") {
    argv.push_back("--workers");
    argv.push_back(std::to_string(plan.workers));
  }
  return argv;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", s);
  return buf;
}

std::vector<std::string> base_load_argv(const Plan& plan, const std::string& target) {
  return {plan.load,   "--json",
          "--target",  target,
          "--timeout", seconds_text(kLoadTimeoutS),
          "--threads", std::to_string(plan.load_threads),
          "--size",    std::to_string(kMessageSize)};
}

std::vector<std::string> load_argv(const Plan& plan, const PhaseSpec& phase,
                                   const std::string& target, pid_t server_pid) {
  std::vector<std::string> argv = base_load_argv(plan, target);
  switch (phase.kind) {
    case Kind::echo:
      argv.insert(argv.end(), {"--duration", seconds_text(plan.options.phase_s), "--mode", "echo",
                               "--connections", std::to_string(kEchoConnections), "--pipeline",
                               std::to_string(kEchoPipeline)});
      break;
    case Kind::connrate:
      argv.insert(argv.end(),
                  {"--duration", seconds_text(plan.options.phase_s), "--mode", "connrate",
                   "--concurrency", std::to_string(phase.concurrency), "--close", "rst"});
      break;
    case Kind::idle:
      argv.insert(argv.end(), {"--mode", "idle", "--connections",
                               std::to_string(plan.options.quick ? 100 : kIdleConnections),
                               "--hold", "0.5", "--server-pid", std::to_string(server_pid)});
      break;
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

std::string file_name(std::string model) {
  for (char& c : model) {
    if (c == ' ') c = '-';
  }
  return model;
}

// A server under test: started, its address read from its "listening on" line.
struct Server {
  std::optional<bench::Child> child;
  std::string target;
  std::string note;
  bool refused = false;
};

Server start_server(const Plan& plan, const std::string& model, const std::string& log_path) {
  Server s;
  std::string error;
  s.child = bench::Child::spawn({server_argv(plan, model), plan.server_cpus, log_path}, error);
  if (!s.child) {
    s.note = "did not start: " + error;
    return s;
  }
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (s.target.empty()) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto line = s.child->read_line(std::max(left, Millis(0)));
    if (!line) break;
    if (line->starts_with("listening on ")) s.target = line->substr(13);
  }
  if (s.target.empty()) {
    s.child->stop(SIGTERM, Millis(2000));
    std::string why = bench::last_line_of(log_path);
    int status = s.child->exit_status();
    // reactor-server exits 2 on a model it does not have: that row is not this server's.
    s.refused = (WIFEXITED(status) && WEXITSTATUS(status) == 2) ||
                why.find("unknown model") != std::string::npos;
    if (why.empty())
      why = s.child->running() ? "no 'listening on' line" : bench::describe_wait_status(status);
    s.note = (s.refused ? "refused by the server: " : "did not start: ") + why;
    s.child.reset();
  }
  return s;
}

// Runs reactor-load to its end; its JSON report or nullopt (with `why`).
// `extra_s`: more time on top of the phase's (the scale suite's idle sets take time to open).
std::optional<std::string> run_load(const Plan& plan, const std::vector<std::string>& argv,
                                    const std::string& log_path, std::string& why,
                                    double extra_s = 0) {
  std::string error;
  auto loader = bench::Child::spawn({argv, plan.load_cpus, log_path}, error);
  if (!loader) {
    why = "reactor-load did not start: " + error;
    return std::nullopt;
  }
  auto budget = Millis(
      static_cast<long long>((plan.options.phase_s + 2 * kLoadTimeoutS + 60 + extra_s) * 1000));
  std::string output = loader->read_all(budget);
  if (!loader->wait(Millis(5000))) loader->kill_now();
  std::string line = first_line(output);
  if (line.empty() || line[0] != '{') {
    std::string last = bench::last_line_of(log_path);
    why = "no load report (" + bench::describe_wait_status(loader->exit_status()) +
          (last.empty() ? "" : ": " + last) + ")";
    return std::nullopt;
  }
  return line;
}

PhaseResult run_phase(const Plan& plan, const std::string& model, const PhaseSpec& phase,
                      int round) {
  PhaseResult r;
  r.round = round;
  std::string log_base =
      plan.logs_dir + "/" + file_name(model) + "-" + phase.key + "-r" + std::to_string(round + 1);
  Server server = start_server(plan, model, log_base + ".server.log");
  if (!server.child) {
    r.note = server.note;
    r.refused = server.refused;
    return r;
  }
  r.started = true;
  std::string why;
  std::uint64_t burst_sent = 0;
  if (phase.burst) {
    // The same server takes a burst of short connections first; the measured phase follows at
    // once, while the burst's children are still exiting.
    auto argv = base_load_argv(plan, server.target);
    argv.insert(argv.end(), {"--duration", "60", "--mode", "connrate", "--concurrency", "64",
                             "--close", "rst", "--count", std::to_string(kBurstConnections)});
    auto report = run_load(plan, argv, log_base + ".burst.log", why);
    if (!report) {
      server.child->stop(SIGTERM, kStopTimeout);
      r.note = "burst: " + why;
      return r;
    }
    if (auto json = JsonValue::parse(*report)) burst_sent = json->u64_or("bytes_sent", 0);
  }

  // The server's CPU over the load phase: its lifetime total from wait4 once it has exited
  // (threads and reaped children included, no sampling race while children exit), minus what
  // it had spent before the load started (start-up, and the burst).
  double cpu_before = load::tree_cpu_seconds(server.child->pid());
  auto report = run_load(plan, load_argv(plan, phase, server.target, server.child->pid()),
                         log_base + ".load.log", why);
  std::string server_out = server.child->stop(SIGTERM, kStopTimeout);
  r.summary = parse_summary(server_out);
  r.server_cpu_s = std::max(0.0, server.child->cpu_seconds() - cpu_before);
  if (!report) {
    r.note = why;
    return r;
  }
  std::string parse_error;
  auto json = JsonValue::parse(*report, &parse_error);
  if (!json || !json->is_object()) {
    r.note = "unreadable load report: " + parse_error;
    return r;
  }
  r.ran = true;
  r.load = std::move(*json);
  r.load_json = *report;
  std::uint64_t sent = r.load.u64_or("bytes_sent", 0) + burst_sent;
  if (!r.summary) {
    r.note = "no server summary (" + bench::describe_wait_status(server.child->exit_status()) + ")";
  } else if (r.summary->bytes_in != sent) {
    r.note = "server read " + std::to_string(r.summary->bytes_in) + " bytes, load sent " +
             std::to_string(sent);
  }
  return r;
}

struct Ratio {
  const char* ours;
  const char* textbook;
};
constexpr Ratio kPairs[] = {
    {"epoll", "textbook epoll"}, {"thread", "textbook thread"}, {"fork", "textbook fork"}};
constexpr const char* kPairPhases[] = {"connrate_c16", "connrate_c64", "echo"};

const Row* find_row(const std::vector<Row>& rows, const std::string& model) {
  for (const auto& r : rows) {
    if (r.model == model && !r.skipped) return &r;
  }
  return nullptr;
}

// a's `key_a` over b's `key_b`, one ratio per round that has both: the two ran in the same round,
// seconds apart, so a drift of the machine's speed over the run (its other tenants) cancels,
// which a ratio of the two medians, taken from different rounds, does not.
std::vector<double> paired_ratios(const Row& a, const std::string& key_a, const Row& b,
                                  const std::string& key_b) {
  std::vector<double> out;
  const auto* sa = a.samples(key_a);
  const auto* sb = b.samples(key_b);
  if (!sa || !sb) return out;
  for (const auto& p : *sa) {
    if (p.rate() < 0) continue;
    for (const auto& q : *sb) {
      if (q.round == p.round && q.rate() > 0) out.push_back(p.rate() / q.rate());
    }
  }
  return out;
}

// "0.93x (0.88-0.95)": the median of the per-round ratios, their min-max.
std::string ratio_spread(const std::vector<double>& ratios) {
  const double med = bench::median(ratios);
  if (med < 0) return "-";
  std::string cell = bench::ratio(med, 1);
  if (ratios.size() < 2) return cell;
  auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
  char buf[48];
  std::snprintf(buf, sizeof(buf), " (%.2f\u2013%.2f)", *lo, *hi);
  return cell + buf;
}

void write_samples_json(load::JsonWriter& j, const Row& row, const PhaseSpec& spec,
                        const Row* ref) {
  const auto* list = row.samples(spec.key);
  if (!list) return;
  j.begin_object(spec.key);
  auto rates = row.rates(spec.key);
  j.field("median", row.rate(spec.key));
  double lo = -1, hi = -1;
  for (double v : rates) {
    if (v < 0) continue;
    lo = lo < 0 ? v : std::min(lo, v);
    hi = std::max(hi, v);
  }
  j.field("min", lo);
  j.field("max", hi);
  j.field("ratio_to_reference", ref && ref->rate(spec.key) > 0 && row.rate(spec.key) >= 0
                                    ? row.rate(spec.key) / ref->rate(spec.key)
                                    : std::nan(""));
  j.field("p99_us_median", bench::median(row.p99s(spec.key)));
  j.begin_array("samples");
  for (const auto& p : *list) {
    j.begin_object();
    j.field("round", p.round + 1);
    j.field("value", p.rate());
    j.field("p99_us", p.p99_us());
    j.field("server_cpu_s", p.server_cpu_s);
    j.field("note", p.note);
    if (p.summary) {
      j.begin_object("server_summary");
      j.field("connections", p.summary->connections);
      j.field("bytes_in", p.summary->bytes_in);
      j.field("bytes_out", p.summary->bytes_out);
      j.end_object();
    } else {
      j.null_field("server_summary");
    }
    if (p.ran)
      j.raw_field("load", p.load_json);
    else
      j.null_field("load");
    j.end_object();
  }
  j.end_array();
  j.end_object();
}

void write_results_json(const Plan& plan, const std::vector<Row>& rows, const Row* ref,
                        const std::string& path) {
  load::JsonWriter j;
  j.begin_object();
  j.field("suite", "compare");
  j.field("timestamp", utc_stamp("%Y-%m-%dT%H:%M:%SZ"));
  j.field("pinning", plan.pinning);
  j.field("server_cpus", cpu_list(plan.server_cpus));
  j.field("load_cpus", cpu_list(plan.load_cpus));
  j.field("phase_s", plan.options.phase_s);
  j.field("rounds", plan.options.rounds);
  j.field("load_threads", plan.load_threads);
  j.field("reuseport_workers", plan.workers);
  j.field("message_size", static_cast<std::uint64_t>(kMessageSize));
  j.field("echo_connections", kEchoConnections);
  j.field("echo_pipeline", kEchoPipeline);
  j.field("burst_connections", kBurstConnections);
  j.field("reference", ref ? ref->model : "");
  j.field("cpu_cost",
          "server utime+stime (all threads and reaped children) from wait4 at exit, minus "
          "/proc/PID/stat right before the load phase; a fresh server per phase; median of rounds");
  j.field("idle_memory", "private PSS (anonymous + shared memory, no code pages) summed over the server's process tree, per idle connection");
  j.begin_array("rows");
  for (const auto& row : rows) {
    j.begin_object();
    j.field("model", row.model);
    j.field("status", row.skipped ? "skipped" : "ok");
    j.field("note", row.note);
    if (!row.skipped) {
      j.field("us_per_conn",
              bench::median(row.costs_us({"connrate_c16", "connrate_c64"}, plan.options.rounds)));
      j.field("us_per_msg", bench::median(row.costs_us({"echo"}, plan.options.rounds)));
      j.field("errors", row.errors());
      for (const auto& spec : kPhases) write_samples_json(j, row, spec, ref);
    }
    j.end_object();
  }
  j.end_array();
  j.field("ours_vs_textbook_is", "median over rounds of ours / textbook in the same round");
  j.begin_array("ours_vs_textbook");
  for (const auto& pair : kPairs) {
    const Row* a = find_row(rows, pair.ours);
    const Row* b = find_row(rows, pair.textbook);
    if (!a || !b) continue;
    j.begin_object();
    j.field("ours", pair.ours);
    j.field("textbook", pair.textbook);
    for (const char* k : kPairPhases) {
      const double med = bench::median(paired_ratios(*a, k, *b, k));
      j.field(k, med >= 0 ? med : std::nan(""));
    }
    j.end_object();
  }
  j.end_array();
  j.end_object();
  std::ofstream(path) << j.str() << '\n';
}

// Every sample, one line each.
void write_results_csv(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream out(path);
  out << "model,status,phase,round,value,p99_us,server_cpu_s,work,errors,note\n";
  for (const auto& row : rows) {
    if (row.skipped) {
      out << bench::csv_field(row.model) << ",skipped,,,,,,,," << bench::csv_field(row.note)
          << '\n';
      continue;
    }
    for (const auto& spec : kPhases) {
      const auto* list = row.samples(spec.key);
      if (!list) continue;
      for (const auto& p : *list) {
        out << bench::csv_field(row.model) << ",ok," << spec.key << ',' << p.round + 1 << ','
            << bench::fixed(p.rate(), 1) << ',' << bench::fixed(p.p99_us(), 1) << ','
            << bench::fixed(p.server_cpu_s, 4) << ',' << p.work() << ',' << p.errors() << ','
            << bench::csv_field(p.note) << '\n';
      }
    }
  }
}

// chart.dat for the gnuplot script: one line per model that ran; per phase median, min, max.
void write_chart_data(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream out(path);
  out << "# model, then median min max of: conn/s c=1, c=16, c=64, echo msgs/s\n";
  for (const auto& row : rows) {
    if (row.skipped) continue;
    out << '"' << row.model << '"';
    for (const char* k : {"connrate_c1", "connrate_c16", "connrate_c64", "echo"}) {
      auto rates = row.rates(k);
      double med = std::max(0.0, bench::median(rates)), lo = med, hi = med;
      for (double v : rates) {
        if (v < 0) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      out << ' ' << med << ' ' << lo << ' ' << hi;
    }
    out << '\n';
  }
}

std::string run_gnuplot(const std::string& script, const std::string& vars, const std::string& dir,
                        const std::string& svg) {
  std::string gnuplot = bench::find_on_path("gnuplot");
  if (gnuplot.empty()) return "chart skipped: gnuplot is not on PATH";
  if (script.empty() || ::access(script.c_str(), R_OK) != 0) {
    return "chart skipped: no gnuplot script at " + script;
  }
  std::string error;
  auto child =
      bench::Child::spawn({{gnuplot, "-e", vars + "; outfile='" + dir + "/" + svg + "'", script},
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
  return "chart: " + dir + "/" + svg;
}

void print_table(const std::vector<Row>& rows, int rounds) {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> header = {"model"};
  for (const auto& spec : kPhases) {
    header.push_back(spec.label);
    if (std::string(spec.key) == "echo") header.push_back("echo p99 us");
  }
  for (const char* h : {"us/conn", "us/msg", "errors"}) header.push_back(h);
  cells.push_back(header);
  for (const auto& row : rows) {
    if (row.skipped) {
      cells.push_back({row.model, "skipped"});
      continue;
    }
    std::vector<std::string> line = {row.model};
    for (const auto& spec : kPhases) {
      line.push_back(bench::median_spread(row.rates(spec.key)));
      if (std::string(spec.key) == "echo")
        line.push_back(bench::fixed(bench::median(row.p99s(spec.key)), 0));
    }
    line.push_back(
        bench::fixed(bench::median(row.costs_us({"connrate_c16", "connrate_c64"}, rounds)), 1));
    line.push_back(bench::fixed(bench::median(row.costs_us({"echo"}, rounds)), 2));
    line.push_back(std::to_string(row.errors()));
    cells.push_back(std::move(line));
  }
  std::fputs(bench::format_table(cells).c_str(), stdout);
}

void print_ratios(const std::vector<Row>& rows) {
  std::vector<std::vector<std::string>> cells = {
      {"ours / textbook", "conn/s c=16", "conn/s c=64", "echo msg/s", "goal >= 0.90x"}};
  // Each cell: the median over rounds of ours / textbook in the same round, min-max in brackets.
  for (const auto& pair : kPairs) {
    const Row* a = find_row(rows, pair.ours);
    const Row* b = find_row(rows, pair.textbook);
    if (!a || !b) continue;
    std::vector<std::string> line = {std::string(pair.ours) + " / " + pair.textbook};
    bool met = true;
    for (const char* k : kPairPhases) {
      const auto ratios = paired_ratios(*a, k, *b, k);
      line.push_back(ratio_spread(ratios));
      met = met && bench::median(ratios) >= 0.9;
    }
    line.push_back(met ? "met" : "NOT met");
    cells.push_back(std::move(line));
  }
  if (cells.size() > 1) {
    std::printf("\n%s", bench::format_table(cells).c_str());
    std::printf("(each cell: the median over rounds of ours / textbook measured in the same round; "
                "with 2 or more rounds, their min-max in brackets)\n");
  }
  for (const char* model : {"fork", "textbook fork", "prefork"}) {
    const Row* r = find_row(rows, model);
    if (!r || r->rate("connrate_c16_after_burst") < 0) continue;
    const auto ratios = paired_ratios(*r, "connrate_c16_after_burst", *r, "connrate_c16");
    std::printf(
        "%s after a burst of %d connections: %s of a fresh server's c=16 rate (goal: within "
        "10%%) %s\n",
        model, kBurstConnections, ratio_spread(ratios).c_str(),
        bench::median(ratios) >= 0.9 ? "met" : "NOT met");
  }
}

std::string duration_text(double s) {
  char buf[32];
  if (s >= 60)
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  return buf;
}

// "[ 12/105] ... 5m12s left": the estimate is the mean time of the phases done so far.
struct Progress {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  int done = 0, total = 0;
  std::string left() const {
    if (done == 0) return "?";
    double spent =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return duration_text(spent / done * (total - done));
  }
};

int usage_error(const std::string& message) {
  std::fprintf(stderr, "reactor-bench: %s\n", message.c_str());
  return 2;
}

std::vector<std::string> default_models(const Plan& plan, std::string& note) {
  std::vector<std::string> models = bench::kDefaultModels;
  std::string error;
  auto help = bench::Child::spawn({{plan.server, "--help"}, {}, "/dev/null"}, error);
  std::string text;
  if (help) {
    text = help->read_all(Millis(5000));
    if (!help->wait(Millis(5000))) help->kill_now();
  }
  std::string missing;
  for (const auto& m : bench::kOptionalModels) {
    if (bench::help_lists_model(text, m)) {
      models.push_back(m);
    } else {
      missing += (missing.empty() ? "" : ", ") + m;
    }
  }
  if (!missing.empty()) note = "reactor-server --help lists no " + missing + ": not run";
  return models;
}

// ---- the scale suite --------------------------------------------------------------------------

constexpr int kScaleIdle[] = {0, 1000, 5000, 10000, 18000};
constexpr int kSelectLimit = 1024;  // FD_SETSIZE: select() cannot watch a descriptor >= 1024
// Idle connections per second every model opens at least (epoll: thousands; fork on a loaded
// 2-core machine: a few hundred): sets the time reactor-load is given to open a set.
constexpr double kScaleOpenRate = 100;

struct ScalePoint {
  int idle = 0;
  std::vector<double> msgs_per_sec, us_per_msg;
  std::string note;
};

// What this machine lets a server hold, read when the suite starts. Each idle connection costs
// the load generator a descriptor, a single-process server one too; a thread-per-connection
// server a thread (two mappings: its stack and the stack's guard page; a pid; an 8 MiB stack
// under strict overcommit); a process-per-connection server a process.
struct MachineLimits {
  long long server_files = 0;   // RLIMIT_NOFILE soft: reactor-server inherits ours
  long long load_files = 0;     // RLIMIT_NOFILE hard: reactor-load raises its soft limit to it
  long long nproc = -1;         // RLIMIT_NPROC soft, minus our user's tasks; -1: not enforced
  long long tasks_free = 0;     // min(kernel.threads-max, kernel.pid_max) minus the tasks running
  long long map_count = 0;      // vm.max_map_count
  long long mem_available = 0;  // bytes, MemAvailable
  long long commit_free = -1;   // bytes under CommitLimit; -1: overcommit not strict
  long long stack_bytes = 8ll << 20;       // RLIMIT_STACK soft: a thread's default stack
  std::string pid_or_threads = "pid_max";  // which of the two bounds tasks_free
};

long long read_proc_number(const char* path, long long fallback) {
  std::ifstream in(path);
  long long v = fallback;
  in >> v;
  return in ? v : fallback;
}

long long meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  long long kb = 0;
  std::string unit;
  while (in >> name >> kb) {
    std::getline(in, unit);
    if (name == key + ":") return kb * 1024;
  }
  return -1;
}

// Tasks (threads included) on the machine: the second half of /proc/loadavg's "1/1063".
long long running_tasks() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c, tasks;
  in >> a >> b >> c >> tasks;
  const auto slash = tasks.find('/');
  return slash == std::string::npos ? 0 : std::atoll(tasks.c_str() + slash + 1);
}

// Tasks of our real user, which RLIMIT_NPROC counts.
long long user_tasks() {
  long long n = 0;
  const uid_t uid = ::getuid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (const dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || st.st_uid != uid) continue;
    if (DIR* tasks = ::opendir((dir + "/task").c_str())) {
      while (const dirent* t = ::readdir(tasks)) n += t->d_name[0] != '.' ? 1 : 0;
      ::closedir(tasks);
    }
  }
  ::closedir(proc);
  return n;
}

MachineLimits read_machine_limits() {
  MachineLimits m;
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0) {
    m.server_files = r.rlim_cur == RLIM_INFINITY ? 1ll << 40 : static_cast<long long>(r.rlim_cur);
    m.load_files = r.rlim_max == RLIM_INFINITY ? 1ll << 40 : static_cast<long long>(r.rlim_max);
  }
  // Root (and CAP_SYS_RESOURCE) are not held to RLIMIT_NPROC.
  if (::getuid() != 0 && ::getrlimit(RLIMIT_NPROC, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    m.nproc = static_cast<long long>(r.rlim_cur) - user_tasks();
  }
  if (::getrlimit(RLIMIT_STACK, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    m.stack_bytes = static_cast<long long>(r.rlim_cur);
  }
  const long long threads_max = read_proc_number("/proc/sys/kernel/threads-max", 1ll << 22);
  const long long pid_max = read_proc_number("/proc/sys/kernel/pid_max", 32768);
  m.pid_or_threads = threads_max < pid_max ? "kernel.threads-max" : "kernel.pid_max";
  m.tasks_free = std::min(threads_max, pid_max) - running_tasks();
  m.map_count = read_proc_number("/proc/sys/vm/max_map_count", 65530);
  m.mem_available = meminfo_bytes("MemAvailable");
  if (read_proc_number("/proc/sys/vm/overcommit_memory", 0) == 2) {
    m.commit_free = meminfo_bytes("CommitLimit") - meminfo_bytes("Committed_AS");
  }
  return m;
}

// Memory each idle connection took on this kind of machine (2 cores, 24 GB, kernel 5.x), as
// MemAvailable fell while reactor-load held 8,000 of them (both socket ends, the kernel's task,
// stack and page tables, the server's private pages): thread 56 KB, fork 135 KB (PSS 54 KB per
// child), epoll a few KB. Rounded up: the suite keeps a quarter of MemAvailable free.
constexpr long long kThreadConnectionBytes = 64 << 10;
constexpr long long kForkConnectionBytes = 160 << 10;
constexpr long long kLoopConnectionBytes = 8 << 10;
constexpr int kSpareFiles = 32;  // listeners, epoll, signalfd, eventfds, logs, the echo set's slack
constexpr int kSpareTasks = 64;  // the server's own threads, and what else starts meanwhile
constexpr int kSpareMaps = 512;  // the program's, its libraries' and malloc's own mappings

// The most connections (idle + echo) `model` can hold here, and the limit that says so first.
struct Capacity {
  long long connections = 0;
  std::string why;
};

Capacity scale_capacity(const std::string& model, const MachineLimits& m) {
  Capacity best{1ll << 40, ""};
  auto bound = [&](long long n, std::string why) {
    if (n < best.connections) best = {std::max(0ll, n), std::move(why)};
  };
  auto g = [](long long n) { return bench::grouped(n); };
  bound(m.load_files - kSpareFiles,
        "reactor-load's open-file limit is " + g(m.load_files) + " (RLIMIT_NOFILE, hard)");
  const bool threads = model == "thread";
  const bool processes = model == "fork";
  if (!processes && model != "prefork") {  // one process holds every connection
    bound(m.server_files - kSpareFiles,
          "reactor-server's open-file limit is " + g(m.server_files) + " (RLIMIT_NOFILE)");
  }
  if (threads || processes) {
    const std::string unit = threads ? "thread" : "process";
    bound(m.tasks_free - kSpareTasks, m.pid_or_threads + " leaves " + g(m.tasks_free) +
                                          " tasks free, one " + unit + " per connection");
    if (m.nproc >= 0) {
      bound(m.nproc - kSpareTasks, "RLIMIT_NPROC leaves " + g(m.nproc) + " tasks for our user");
    }
    const long long per = threads ? kThreadConnectionBytes : kForkConnectionBytes;
    if (m.mem_available > 0) {
      bound(m.mem_available * 3 / 4 / per, "memory: " + g(m.mem_available >> 20) +
                                               " MiB available, about " + g(per >> 10) +
                                               " KiB per " + unit + " and its sockets");
    }
  } else if (m.mem_available > 0) {
    bound(m.mem_available * 3 / 4 / kLoopConnectionBytes,
          "memory: " + g(m.mem_available >> 20) + " MiB available");
  }
  if (threads) {
    bound((m.map_count - kSpareMaps) / 2,
          "vm.max_map_count is " + g(m.map_count) + ": each thread's stack is 2 mappings");
    if (m.commit_free >= 0) {
      bound(m.commit_free / m.stack_bytes, "strict overcommit: " + g(m.commit_free >> 20) +
                                               " MiB left to commit, " + g(m.stack_bytes >> 20) +
                                               " MiB per thread stack");
    }
  }
  return best;
}

// The idle counts a model is run at; `note` says where it stops and why (a point it cannot
// reach is not run), or how far it would go and what would stop it.
std::vector<int> scale_points(const std::string& model, bool quick, const MachineLimits& limits,
                              std::string& note) {
  std::vector<int> points;
  const Capacity capacity = scale_capacity(model, limits);
  const long long reachable = capacity.connections - kEchoConnections;
  for (int n : kScaleIdle) {
    if (quick && n > 1000) break;
    if (model == "select" && n + kEchoConnections + 16 > kSelectLimit) {
      note = "select stops below " + std::to_string(n) + " idle: FD_SETSIZE is " +
             std::to_string(kSelectLimit) + ", measured up to 900 instead";
      points.push_back(900);
      break;
    }
    if (n > reachable) {
      note = "stops below " + bench::grouped(n) + " idle here (at most " +
             bench::grouped(std::max(0ll, reachable)) + "): " + capacity.why;
      break;
    }
    points.push_back(n);
  }
  if (note.empty() && (model == "thread" || model == "fork")) {
    note = "would stop near " + bench::grouped(std::max(0ll, reachable)) +
           " idle here: " + capacity.why;
  }
  return points;
}

int run_scale(Plan& plan, const std::string& dir) {
  std::vector<std::string> models =
      plan.options.models.empty() ? bench::kScaleModels : plan.options.models;
  struct Line {
    std::string model;
    std::vector<ScalePoint> points;
    std::string note;
    bool skipped = false;
    double open_rate = 0;  // idle connections opened per second at the last point measured
  };
  std::vector<Line> lines;
  Progress progress;
  const MachineLimits limits = read_machine_limits();
  for (const auto& m : models) {
    Line l;
    l.model = m;
    for (int n : scale_points(m, plan.options.quick, limits, l.note)) {
      l.points.push_back({n, {}, {}, {}});
    }
    progress.total += static_cast<int>(l.points.size()) * plan.options.rounds;
    lines.push_back(std::move(l));
  }
  std::fprintf(stderr,
               "reactor-bench scale: %zu model(s), echo of %d connections x %d in flight while "
               "idle connections are held; %g s x %d round(s); %s\n",
               models.size(), kEchoConnections, kEchoPipeline, plan.options.phase_s,
               plan.options.rounds, plan.pinning.c_str());
  for (int round = 0; round < plan.options.rounds; ++round) {
    for (std::size_t k = 0; k < lines.size(); ++k) {
      Line& line = lines[(round + k) % lines.size()];
      if (line.skipped) continue;
      for (auto& point : line.points) {
        ++progress.done;
        if (!point.note.empty() && point.note.starts_with("stopped")) continue;
        std::fprintf(stderr, "  [%3d/%d] round %d/%d  %-8s idle %-6d ", progress.done,
                     progress.total, round + 1, plan.options.rounds, line.model.c_str(),
                     point.idle);
        std::fflush(stderr);
        // Opening the idle set is given time in proportion to it; a model that opened the last
        // set too slowly to open this one in that time stops here instead of being killed.
        const double open_budget_s = 60 + point.idle / kScaleOpenRate;
        if (line.open_rate > 0 && point.idle / line.open_rate > open_budget_s) {
          point.note = "stopped: it opened idle connections at " + bench::grouped(line.open_rate) +
                       "/s at the last point, " + bench::grouped(point.idle) + " would take " +
                       bench::grouped(point.idle / line.open_rate) + " s, over the " +
                       bench::grouped(open_budget_s) + " s allowed";
          std::fprintf(stderr, "skipped: %s\n", point.note.c_str() + 9);
          continue;
        }
        std::string log_base = plan.logs_dir + "/scale-" + file_name(line.model) + "-" +
                               std::to_string(point.idle) + "-r" + std::to_string(round + 1);
        Server server = start_server(plan, line.model, log_base + ".server.log");
        if (!server.child) {
          std::fprintf(stderr, "skipped: %s\n", server.note.c_str());
          line.skipped = true;
          line.note = server.note;
          break;
        }
        auto argv = base_load_argv(plan, server.target);
        argv.insert(argv.end(),
                    {"--duration", seconds_text(plan.options.phase_s), "--mode", "echo",
                     "--connections", std::to_string(kEchoConnections), "--pipeline",
                     std::to_string(kEchoPipeline), "--idle", std::to_string(point.idle),
                     "--server-pid", std::to_string(server.child->pid())});
        std::string why;
        const auto load_started = std::chrono::steady_clock::now();
        auto report = run_load(plan, argv, log_base + ".load.log", why, open_budget_s - 60);
        const double load_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - load_started).count();
        if (report && point.idle >= 1000) {
          line.open_rate = point.idle / std::max(0.1, load_s - plan.options.phase_s);
        }
        server.child->stop(SIGTERM, Millis(30'000));
        std::optional<JsonValue> json;
        if (report) json = JsonValue::parse(*report);
        std::uint64_t ready = json ? json->u64_or("idle_ready", 0) : 0;
        if (!json || ready < static_cast<std::uint64_t>(point.idle)) {
          std::string cause = why;
          if (json) {
            cause = std::to_string(ready) + " of " + std::to_string(point.idle) +
                    " idle connections held (connect errors " +
                    std::to_string(json->u64_or("errors_connect", 0));
            if (const auto* by = json->find("errors_connect_by_cause"); by && by->is_object()) {
              for (const auto& [name, n] : by->members())
                cause += " " + name + "=" + std::to_string(static_cast<long long>(n.as_double()));
            }
            cause += ", timeouts " + std::to_string(json->u64_or("errors_timeout", 0)) + ", io " +
                     std::to_string(json->u64_or("errors_io", 0)) + ")";
            std::string last = bench::last_line_of(log_base + ".server.log");
            if (!last.empty()) cause += "; server: " + last;
          }
          std::fprintf(stderr, "failed: %s\n", cause.c_str());
          point.note = "stopped: " + cause;
          // Larger sets fail the same way: skip them in the rounds to come.
          bool after = false;
          for (auto& p : line.points) {
            if (&p == &point)
              after = true;
            else if (after && p.note.empty())
              p.note = "stopped: a smaller set failed";
          }
          continue;
        }
        double rate = json->number_or("msgs_per_sec", -1);
        double cpu = json->number_or("server_cpu_s", -1);
        double msgs = static_cast<double>(json->u64_or("msgs", 0));
        double per_msg = cpu >= 0 && msgs > 0 ? cpu * 1e6 / msgs : -1;
        point.msgs_per_sec.push_back(rate);
        point.us_per_msg.push_back(per_msg);
        std::fprintf(stderr, "%10.0f msg/s  %.2f us cpu/msg  errors %llu  %s left\n", rate, per_msg,
                     static_cast<unsigned long long>(json->u64_or("errors", 0)),
                     progress.left().c_str());
      }
    }
  }
  // Table, JSON, data files, chart.
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> header = {"model"};
  for (int n : kScaleIdle) header.push_back("idle " + bench::grouped(n) + " msg/s");
  header.push_back("us/msg at 0 / at most idle");
  cells.push_back(header);
  load::JsonWriter j;
  j.begin_object();
  j.field("suite", "scale");
  j.field("timestamp", utc_stamp("%Y-%m-%dT%H:%M:%SZ"));
  j.field("pinning", plan.pinning);
  j.field("phase_s", plan.options.phase_s);
  j.field("rounds", plan.options.rounds);
  j.field("echo_connections", kEchoConnections);
  j.field("echo_pipeline", kEchoPipeline);
  j.begin_array("models");
  std::string plotted;
  for (const auto& line : lines) {
    j.begin_object();
    j.field("model", line.model);
    j.field("status", line.skipped ? "skipped" : "ok");
    j.field("note", line.note);
    j.begin_array("points");
    std::vector<std::string> row = {line.model};
    std::ofstream dat(dir + "/scale-" + file_name(line.model) + ".dat");
    dat << "# idle total_connections msgs_median msgs_min msgs_max us_per_msg_median\n";
    std::string first_cost, last_cost;
    bool any = false;
    for (int n : kScaleIdle) {
      const ScalePoint* p = nullptr;
      for (const auto& q : line.points) {
        if (q.idle == n || (n == 1000 && q.idle == 900)) p = &q;
      }
      if (line.skipped || !p) {
        row.push_back(line.skipped ? "skipped" : "-");
        continue;
      }
      row.push_back(p->msgs_per_sec.empty()
                        ? "failed"
                        : bench::median_spread(p->msgs_per_sec) + (p->idle == 900 ? " @900" : ""));
    }
    for (const auto& p : line.points) {
      j.begin_object();
      j.field("idle", p.idle);
      j.field("msgs_per_sec_median", bench::median(p.msgs_per_sec));
      j.field("us_per_msg_median", bench::median(p.us_per_msg));
      j.begin_array("msgs_per_sec");
      for (double v : p.msgs_per_sec) j.field("", v);
      j.end_array();
      j.begin_array("us_per_msg");
      for (double v : p.us_per_msg) j.field("", v);
      j.end_array();
      j.field("note", p.note);
      j.end_object();
      if (p.msgs_per_sec.empty()) continue;
      any = true;
      double med = bench::median(p.msgs_per_sec);
      auto [lo, hi] = std::minmax_element(p.msgs_per_sec.begin(), p.msgs_per_sec.end());
      double cost = bench::median(p.us_per_msg);
      dat << p.idle << ' ' << p.idle + kEchoConnections << ' ' << med << ' ' << *lo << ' ' << *hi
          << ' ' << std::max(0.0, cost) << '\n';
      if (first_cost.empty()) first_cost = bench::fixed(cost, 2);
      last_cost = bench::fixed(cost, 2);
    }
    j.end_array();
    j.end_object();
    row.push_back(first_cost.empty() ? "-" : first_cost + " / " + last_cost);
    cells.push_back(std::move(row));
    if (any) plotted += (plotted.empty() ? "" : " ") + file_name(line.model);
  }
  j.end_array();
  j.end_object();
  std::ofstream(dir + "/scale.json") << j.str() << '\n';
  std::printf(
      "\nEcho throughput of %d active connections x %d in flight x %zu B while idle connections "
      "are held (median of %d round(s), min-max in brackets); server CPU per message.\n%s; %g s "
      "per point, a fresh server per point.\n\n",
      kEchoConnections, kEchoPipeline, kMessageSize, plan.options.rounds, plan.pinning.c_str(),
      plan.options.phase_s);
  std::fputs(bench::format_table(cells).c_str(), stdout);
  for (const auto& line : lines) {
    if (!line.note.empty()) std::printf("note: %s: %s\n", line.model.c_str(), line.note.c_str());
    for (const auto& p : line.points) {
      if (!p.note.empty() && p.note != "stopped: a smaller set failed")
        std::printf("note: %s at %d idle: %s\n", line.model.c_str(), p.idle, p.note.c_str());
    }
  }
  std::string chart = plotted.empty() ? "chart skipped: nothing measured"
                                      : run_gnuplot(plan.scale_chart_script,
                                                    "dir='" + dir + "'; models='" + plotted + "'",
                                                    dir, "scale.svg");
  std::printf(
      "%s\nresults: %s (%.0f s)\n", chart.c_str(), dir.c_str(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - progress.started).count());
  return plotted.empty() ? 1 : 0;
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
  std::string baseline_dir = plan.baseline.substr(0, plan.baseline.rfind('/') + 1);
  plan.baseline_thread = baseline_dir + "textbook-thread-echo";
  plan.baseline_fork = baseline_dir + "textbook-fork-echo";
  plan.chart_script = plan.options.chart_script.empty() ? here + "/../bench/compare-chart.gnuplot"
                                                        : plan.options.chart_script;
  std::string script_dir = plan.chart_script.substr(0, plan.chart_script.rfind('/') + 1);
  plan.scale_chart_script = script_dir + "scale-chart.gnuplot";
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
  load::raise_fd_limit();
  if (plan.options.suite == "scale") return run_scale(plan, dir);

  std::string list_note;
  std::vector<std::string> models =
      plan.options.models.empty() ? default_models(plan, list_note) : plan.options.models;
  std::vector<const PhaseSpec*> phases;
  for (const auto& spec : kPhases) {
    if (!plan.options.quick || spec.quick) phases.push_back(&spec);
  }
  std::vector<Row> rows;
  Progress progress;
  for (const auto& model : models) {
    Row row;
    row.model = model;
    const std::string& binary = binary_of(plan, model);
    if (!bench::is_executable(binary)) {
      row.skipped = true;
      row.note = (bench::is_textbook(model) ? file_name(model) + "-echo" : "reactor-server") +
                 std::string(" not found at ") + binary;
    }
    for (const auto* spec : phases) {
      if (!row.skipped && (!spec->burst || takes_burst_phase(model)))
        progress.total += plan.options.rounds;
    }
    rows.push_back(std::move(row));
  }
  std::fprintf(stderr,
               "reactor-bench: %zu model(s) x %zu phases x %d round(s) x %g s; %s; load "
               "threads %d\n",
               rows.size(), phases.size(), plan.options.rounds, plan.options.phase_s,
               plan.pinning.c_str(), plan.load_threads);
  if (!list_note.empty()) std::fprintf(stderr, "  note: %s\n", list_note.c_str());
  // Round-major, then phase-major, and each phase starts from a different model: on a shared
  // machine the load drifts over minutes, and running one model's phases back to back would
  // hand that drift to whole rows instead of spreading it across them.
  std::size_t first = 0;
  for (int round = 0; round < plan.options.rounds; ++round) {
    for (const auto* spec : phases) {
      for (std::size_t k = 0; k < rows.size(); ++k) {
        Row& row = rows[(first + k) % rows.size()];
        if (row.skipped || (spec->burst && !takes_burst_phase(row.model))) continue;
        ++progress.done;
        std::fprintf(stderr, "  [%3d/%d] round %d/%d  %-15s %-17s ", progress.done, progress.total,
                     round + 1, plan.options.rounds, row.model.c_str(), spec->label);
        std::fflush(stderr);
        PhaseResult r = run_phase(plan, row.model, *spec, round);
        if (!r.started) {
          std::fprintf(stderr, "skipped: %s\n", r.note.c_str());
          row.skipped = true;
          row.note = r.note;
          continue;
        }
        if (r.ran) {
          std::string p99 =
              spec->kind == Kind::idle ? "" : "  p99 " + bench::fixed(r.p99_us(), 0) + " us";
          std::fprintf(stderr, "%10.0f%s%s  cpu %.2f s  errors %llu  %s left%s%s\n", r.rate(),
                       spec->kind == Kind::idle ? " B/conn" : "/s", p99.c_str(), r.server_cpu_s,
                       static_cast<unsigned long long>(r.errors()), progress.left().c_str(),
                       r.note.empty() ? "" : "  note: ", r.note.c_str());
        } else {
          std::fprintf(stderr, "failed: %s  %s left\n", r.note.c_str(), progress.left().c_str());
        }
        if (!r.note.empty())
          row.note += (row.note.empty() ? "" : "; ") + std::string(spec->key) + " round " +
                      std::to_string(round + 1) + ": " + r.note;
        row.phases[spec->key].push_back(std::move(r));
      }
      ++first;
    }
  }
  double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - progress.started).count();

  const Row* ref = find_row(rows, "epoll");
  for (const auto& r : rows) {
    if (!ref && !r.skipped) ref = &r;
  }

  std::printf(
      "\nEcho server models: connections/s (connect, %zu B echoed, close) and pipelined echo\n"
      "(%d connections x %d in flight x %zu B); median of %d round(s), min-max in brackets;\n"
      "server CPU per unit of work; idle memory = private PSS over the server's process tree.\n",
      kMessageSize, kEchoConnections, kEchoPipeline, kMessageSize, plan.options.rounds);
  std::printf(
      "%s; %g s per phase, a fresh server per phase; reuseport workers %d; load threads %d.\n\n",
      plan.pinning.c_str(), plan.options.phase_s, plan.workers, plan.load_threads);
  print_table(rows, plan.options.rounds);
  print_ratios(rows);
  for (const auto& r : rows) {
    if (!r.note.empty()) std::printf("note: %s: %s\n", r.model.c_str(), r.note.c_str());
  }
  if (!list_note.empty()) std::printf("note: %s\n", list_note.c_str());

  write_results_json(plan, rows, ref, dir + "/results.json");
  write_results_csv(rows, dir + "/results.csv");
  write_chart_data(rows, dir + "/chart.dat");
  std::string chart =
      run_gnuplot(plan.chart_script, "datafile='" + dir + "/chart.dat'", dir, "chart.svg");
  std::printf("%s\n", chart.c_str());
  std::printf("results: %s (%.0f s)\n", dir.c_str(), total_s);
  return ref ? 0 : 1;
}
