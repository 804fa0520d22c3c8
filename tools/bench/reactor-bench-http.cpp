// reactor-bench-http: reactor-server --protocol http against nginx on the same document root.
// Phase 1: wrk -t1 -c50 on a 1 KiB file with keep-alive (req/s). Phase 2: one 256 MiB file
// fetched by curl (GB/s). Rounds alternate A B A B (reactor, nginx, reactor, nginx...); each
// server's median is reported with the reactor/nginx ratio. With 2+ CPUs the servers run pinned
// to one CPU and the clients to another. Writes http.json, http.csv and http.svg into the
// results folder, then (re)writes its index.html: every suite's table (each *.csv there) and
// chart (the .svg beside it) on one page, which `reactor-server --protocol http --args
// root=FOLDER` serves to a browser.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bench_process.hpp"
#include "bench_table.hpp"
#include "cli.hpp"

namespace {

using bench::Millis;

struct Options {
  std::string out;     // results folder; default results/http-STAMP
  std::string server;  // reactor-server; default beside this program
  std::string nginx = "/usr/sbin/nginx";
  int rounds = 2;      // A B per round
  double seconds = 5;  // wrk duration
  int connections = 50;
  std::size_t big_mib = 256;
};

void usage(FILE* to) {
  std::fprintf(
      to,
      "usage: reactor-bench-http [--out DIR] [--server PATH] [--nginx PATH] "
      "[--rounds N] [--seconds S] [--connections N] [--big-mib N] [--quick] [--version]\n");
}

[[noreturn]] void bad_args(const std::string& why) {
  std::fprintf(stderr, "reactor-bench-http: %s\n", why.c_str());
  usage(stderr);
  std::exit(2);
}

std::string utc_stamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

bool make_dirs(const std::string& path) {
  for (std::size_t slash = 0; slash != std::string::npos;) {
    slash = path.find('/', slash + 1);
    const std::string partial = path.substr(0, slash);
    if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

// A port free right now on 127.0.0.1 (nginx needs one in its config).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

struct Server {
  std::string name;
  std::optional<bench::Child> child;
  int port = -1;
};

std::optional<Server> start_reactor(const Options& o, const std::string& root,
                                    const std::vector<int>& cpus, const std::string& log,
                                    std::string& error) {
  bench::SpawnOptions spawn{
      {o.server, "--protocol", "http", "--listen", "tcp://127.0.0.1:0", "--args", "root=" + root},
      cpus,
      log};
  auto child = bench::Child::spawn(spawn, error);
  if (!child) return std::nullopt;
  const auto line = child->read_line(Millis(10'000));
  const std::string prefix = "listening on tcp://127.0.0.1:";
  if (!line || line->rfind(prefix, 0) != 0) {
    error = "reactor-server did not start: " + bench::last_line_of(log);
    return std::nullopt;
  }
  Server s{"reactor", std::move(child), std::atoi(line->c_str() + prefix.size())};
  return s;
}

std::optional<Server> start_nginx(const Options& o, const std::string& root, const std::string& dir,
                                  const std::vector<int>& cpus, std::string& error) {
  const int port = free_port();
  std::string conf =
      "daemon off;\nmaster_process off;\nworker_processes 1;\n"
      "pid " +
      dir + "/nginx.pid;\nerror_log " + dir +
      "/nginx-error.log;\n"
      "events { worker_connections 1024; }\n"
      "http {\n  access_log off;\n  sendfile on;\n  keepalive_requests 100000000;\n"
      "  keepalive_timeout 65;\n  default_type application/octet-stream;\n"
      "  types { text/html html; }\n"
      "  client_body_temp_path " +
      dir + "/body;\n  proxy_temp_path " + dir +
      "/proxy;\n"
      "  fastcgi_temp_path " +
      dir + "/fastcgi;\n  uwsgi_temp_path " + dir +
      "/uwsgi;\n"
      "  scgi_temp_path " +
      dir +
      "/scgi;\n"
      "  server {\n    listen 127.0.0.1:" +
      std::to_string(port) + ";\n    root " + root + ";\n  }\n}\n";
  const std::string conf_path = dir + "/nginx.conf";
  if (!write_file(conf_path, conf)) {
    error = "cannot write " + conf_path;
    return std::nullopt;
  }
  bench::SpawnOptions spawn{{o.nginx, "-p", dir, "-c", conf_path, "-e", dir + "/nginx-error.log"},
                            cpus,
                            dir + "/nginx-stderr.log"};
  auto child = bench::Child::spawn(spawn, error);
  if (!child) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!accepts(port)) {
    if (!child->running() || child->wait(Millis(20)) ||
        std::chrono::steady_clock::now() > deadline) {
      error = "nginx did not start: " + bench::last_line_of(dir + "/nginx-error.log");
      return std::nullopt;
    }
  }
  Server s{"nginx", std::move(child), port};
  return s;
}

// Runs a client to completion (bounded) and returns its stdout, or nullopt.
std::optional<std::string> run_client(const std::vector<std::string>& argv,
                                      const std::vector<int>& cpus, const std::string& log,
                                      Millis limit) {
  std::string error;
  auto child = bench::Child::spawn({argv, cpus, log}, error);
  if (!child) {
    std::fprintf(stderr, "reactor-bench-http: %s\n", error.c_str());
    return std::nullopt;
  }
  std::string out = child->read_all(limit);
  if (!child->wait(Millis(2'000))) {
    child->kill_now();
    return std::nullopt;
  }
  return out;
}

struct WrkResult {
  double rps = -1;
  std::uint64_t errors = 0;
};

WrkResult parse_wrk(const std::string& out) {
  WrkResult r;
  if (const auto at = out.find("Requests/sec:"); at != std::string::npos) {
    r.rps = std::strtod(out.c_str() + at + 13, nullptr);
  }
  if (const auto at = out.find("Non-2xx or 3xx responses:"); at != std::string::npos) {
    r.errors += std::strtoull(out.c_str() + at + 25, nullptr, 10);
  }
  if (const auto at = out.find("Socket errors:"); at != std::string::npos) {
    std::istringstream in(out.substr(at + 14, out.find('\n', at) - at - 14));
    for (std::string word; in >> word;) {
      if (std::isdigit(static_cast<unsigned char>(word[0]))) r.errors += std::stoull(word);
    }
  }
  return r;
}

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return x < 0; }), v.end());
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::vector<std::string> csv_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.push_back(cell);
      cell.clear();
    } else {
      cell += c;
    }
  }
  cells.push_back(cell);
  return cells;
}

// index.html: for every *.csv in `dir` (sorted), its table, and the chart beside it (NAME.svg,
// or chart.svg for the model suite's results.csv).
bool write_index(const std::string& dir) {
  std::vector<std::string> csvs;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 4 && name.substr(name.size() - 4) == ".csv") csvs.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(csvs.begin(), csvs.end());
  std::string html =
      "<!doctype html>\n<html><head><meta charset=utf-8><title>reactor benchmarks</title>\n"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head>\n"
      "<body><h1>reactor benchmarks</h1>\n";
  for (const std::string& csv : csvs) {
    const std::string stem = csv.substr(0, csv.size() - 4);
    html += "<h2>" + html_escape(stem) + "</h2>\n<table>\n";
    std::ifstream in(dir + "/" + csv);
    bool header = true;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      html += "<tr>";
      for (const std::string& cell : csv_cells(line)) {
        html += header ? "<th>" : "<td>";
        html += html_escape(cell);
        html += header ? "</th>" : "</td>";
      }
      html += "</tr>\n";
      header = false;
    }
    html += "</table>\n";
    for (const std::string& svg : {stem + ".svg", std::string("chart.svg")}) {
      if (svg == "chart.svg" && stem != "results") continue;
      if (::access((dir + "/" + svg).c_str(), R_OK) == 0) {
        html += "<p><img src=\"" + html_escape(svg) + "\" alt=\"" + html_escape(stem) +
                " chart\"></p>\n";
        break;
      }
    }
  }
  html += "</body></html>\n";
  return write_file(dir + "/index.html", html);
}

// Two grouped bars (reactor, nginx) per metric, each metric scaled to its own maximum.
std::string chart_svg(const std::vector<std::string>& metrics, const std::vector<double>& reactor,
                      const std::vector<double>& nginx) {
  const int width = 640, row = 90, top = 40;
  const int height = top + row * static_cast<int>(metrics.size()) + 20;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
                    "\" height=\"" + std::to_string(height) +
                    "\" font-family=\"sans-serif\" font-size=\"13\">\n"
                    "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
                    "<text x=\"10\" y=\"22\" font-size=\"16\">reactor http vs nginx "
                    "(median)</text>\n";
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const double top_value = std::max({reactor[i], nginx[i], 1e-9});
    const int y = top + row * static_cast<int>(i);
    svg += "<text x=\"10\" y=\"" + std::to_string(y + 14) + "\">" + html_escape(metrics[i]) +
           "</text>\n";
    int bar = 0;
    for (const auto& [name, value, colour] :
         {std::tuple{"reactor", reactor[i], "#3b7dd8"}, std::tuple{"nginx", nginx[i], "#999"}}) {
      const int w = value > 0 ? static_cast<int>(400 * value / top_value) : 0;
      const int by = y + 22 + bar * 28;
      svg += "<text x=\"10\" y=\"" + std::to_string(by + 15) + "\">" + name + "</text>\n";
      svg += "<rect x=\"80\" y=\"" + std::to_string(by) + "\" width=\"" + std::to_string(w) +
             "\" height=\"22\" fill=\"" + colour + "\"/>\n";
      svg += "<text x=\"" + std::to_string(86 + w) + "\" y=\"" + std::to_string(by + 15) + "\">" +
             bench::fixed(value, value < 100 ? 2 : 0) + "</text>\n";
      ++bar;
    }
  }
  return svg + "</svg>\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const std::vector<std::string_view> all_args(argv + 1, argv + argc);
  if (reactor::tools::wants_version(all_args)) {
    std::printf("reactor-bench-http %.*s\n", static_cast<int>(reactor::tools::kVersion.size()),
                reactor::tools::kVersion.data());
    return 0;
  }
  reactor::tools::SeenOptions seen;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("--") && arg != "--quick" && arg != "--help" && !seen.first_time(argv[i])) {
      bad_args(reactor::tools::given_twice(arg));
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bad_args(arg + " needs a value");
      return argv[++i];
    };
    auto number = [&](double min, double max) {
      const std::string v = value();
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || d < min || d > max) {
        bad_args(arg + " " + v + ": out of range");
      }
      return d;
    };
    if (arg == "--out")
      o.out = value();
    else if (arg == "--server")
      o.server = value();
    else if (arg == "--nginx")
      o.nginx = value();
    else if (arg == "--rounds")
      o.rounds = static_cast<int>(number(1, 20));
    else if (arg == "--seconds")
      o.seconds = number(0.5, 120);
    else if (arg == "--connections")
      o.connections = static_cast<int>(number(1, 1000));
    else if (arg == "--big-mib")
      o.big_mib = static_cast<std::size_t>(number(1, 4096));
    else if (arg == "--quick") {
      o.rounds = 1;
      o.seconds = 1;
      o.big_mib = 16;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      bad_args(reactor::tools::unknown_option(arg));
    }
  }
  if (o.server.empty()) o.server = bench::self_dir() + "/reactor-server";
  if (o.out.empty()) o.out = "results/http-" + utc_stamp();
  for (const std::string& p : {o.server, o.nginx}) {
    if (!bench::is_executable(p)) bad_args(p + ": not an executable");
  }
  const std::string wrk = bench::find_on_path("wrk"), curl = bench::find_on_path("curl");
  if (wrk.empty() || curl.empty()) bad_args("needs wrk and curl on PATH");
  if (!make_dirs(o.out)) bad_args("cannot create " + o.out);

  char scratch_pattern[] = "/tmp/reactor-bench-http-XXXXXX";
  if (::mkdtemp(scratch_pattern) == nullptr) bad_args("cannot make a temporary directory");
  const std::string scratch = scratch_pattern;
  const std::string root = scratch + "/root";
  ::mkdir(root.c_str(), 0755);
  std::string small(1024, 'x');
  for (std::size_t i = 0; i < small.size(); ++i) small[i] = static_cast<char>('a' + i % 26);
  write_file(root + "/1k.html", small);
  {
    std::ofstream big(root + "/big.bin", std::ios::binary);
    std::string chunk(1 << 20, '\0');
    for (std::size_t i = 0; i < chunk.size(); ++i)
      chunk[i] = static_cast<char>(i * 2654435761u >> 24);
    for (std::size_t i = 0; i < o.big_mib; ++i) big.write(chunk.data(), chunk.size());
  }

  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::vector<int> server_cpus, client_cpus;
  std::string pinning = "not pinned (fewer than 2 CPUs)";
  if (ncpu >= 2) {
    server_cpus = {1};
    client_cpus = {0};
    pinning = "servers pinned to CPU 1, wrk and curl to CPU 0";
  }

  std::string error;
  auto reactor = start_reactor(o, root, server_cpus, scratch + "/reactor-stderr.log", error);
  if (!reactor) bad_args(error);
  auto nginx = start_nginx(o, root, scratch, server_cpus, error);
  if (!nginx) bad_args(error);
  std::printf("reactor-bench-http: %s; %d rounds, wrk -t1 -c%d -d%gs, %zu MiB file; out %s\n",
              pinning.c_str(), o.rounds, o.connections, o.seconds, o.big_mib, o.out.c_str());

  std::vector<double> rps[2], gbps[2];
  std::uint64_t errors[2] = {0, 0};
  Server* servers[2] = {&*reactor, &*nginx};
  char duration[32];
  std::snprintf(duration, sizeof duration, "%gs", o.seconds);
  const Millis wrk_limit(static_cast<long>(o.seconds * 1000) + 30'000);
  for (int round = 0; round < o.rounds; ++round) {
    for (int s = 0; s < 2; ++s) {
      const std::string url = "http://127.0.0.1:" + std::to_string(servers[s]->port) + "/1k.html";
      const auto out = run_client(
          {wrk, "-t1", "-c" + std::to_string(o.connections), "-d" + std::string(duration), url},
          client_cpus, scratch + "/wrk.log", wrk_limit);
      const WrkResult r = out ? parse_wrk(*out) : WrkResult{};
      rps[s].push_back(r.rps);
      errors[s] += r.errors;
      std::printf("  round %d %-8s wrk 1 KiB: %10.0f req/s (%llu errors)\n", round + 1,
                  servers[s]->name.c_str(), r.rps, static_cast<unsigned long long>(r.errors));
      std::fflush(stdout);
    }
  }
  for (int round = 0; round < o.rounds; ++round) {
    for (int s = 0; s < 2; ++s) {
      const std::string url = "http://127.0.0.1:" + std::to_string(servers[s]->port) + "/big.bin";
      const auto out = run_client(
          {curl, "-sS", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url},
          client_cpus, scratch + "/curl.log", Millis(120'000));
      double bytes_per_s = -1;
      if (out) {
        std::istringstream in(*out);
        double speed = 0, size = 0;
        if (in >> speed >> size && size == static_cast<double>(o.big_mib << 20)) {
          bytes_per_s = speed;
        } else {
          ++errors[s];
        }
      }
      gbps[s].push_back(bytes_per_s > 0 ? bytes_per_s / 1e9 : -1);
      std::printf("  round %d %-8s curl %zu MiB: %6.2f GB/s\n", round + 1, servers[s]->name.c_str(),
                  o.big_mib, bytes_per_s / 1e9);
      std::fflush(stdout);
    }
  }
  for (Server* s : servers) s->child->stop(SIGTERM, Millis(10'000));

  const double med_rps[2] = {median(rps[0]), median(rps[1])};
  const double med_gbps[2] = {median(gbps[0]), median(gbps[1])};
  std::vector<std::vector<std::string>> table = {
      {"server", "wrk 1 KiB req/s", "curl " + std::to_string(o.big_mib) + " MiB GB/s", "errors"},
      {"reactor", bench::fixed(med_rps[0], 0), bench::fixed(med_gbps[0], 2),
       std::to_string(errors[0])},
      {"nginx", bench::fixed(med_rps[1], 0), bench::fixed(med_gbps[1], 2),
       std::to_string(errors[1])},
      {"reactor/nginx", bench::ratio(med_rps[0], med_rps[1]),
       bench::ratio(med_gbps[0], med_gbps[1]), ""},
  };
  std::printf("\n%s", bench::format_table(table).c_str());

  std::string csv;
  for (const auto& row : table) {
    for (std::size_t i = 0; i < row.size(); ++i) csv += (i ? "," : "") + bench::csv_field(row[i]);
    csv += "\n";
  }
  auto list = [](const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      char b[32];
      std::snprintf(b, sizeof b, "%s%.4f", i ? ", " : "", v[i]);
      s += b;
    }
    return s + "]";
  };
  char json[2048];
  std::snprintf(
      json, sizeof json,
      "{\n  \"suite\": \"http\",\n  \"pinning\": \"%s\",\n  \"rounds\": %d,\n"
      "  \"wrk\": {\"connections\": %d, \"seconds\": %g, \"file_bytes\": 1024,\n"
      "          \"reactor_rps\": %s, \"nginx_rps\": %s,\n"
      "          \"reactor_median\": %.1f, \"nginx_median\": %.1f, \"ratio\": %.3f},\n"
      "  \"curl\": {\"file_mib\": %zu, \"reactor_gbps\": %s, \"nginx_gbps\": %s,\n"
      "           \"reactor_median\": %.3f, \"nginx_median\": %.3f, \"ratio\": %.3f},\n"
      "  \"errors\": {\"reactor\": %llu, \"nginx\": %llu}\n}\n",
      pinning.c_str(), o.rounds, o.connections, o.seconds, list(rps[0]).c_str(),
      list(rps[1]).c_str(), med_rps[0], med_rps[1], med_rps[1] > 0 ? med_rps[0] / med_rps[1] : -1,
      o.big_mib, list(gbps[0]).c_str(), list(gbps[1]).c_str(), med_gbps[0], med_gbps[1],
      med_gbps[1] > 0 ? med_gbps[0] / med_gbps[1] : -1, static_cast<unsigned long long>(errors[0]),
      static_cast<unsigned long long>(errors[1]));
  const bool written =
      write_file(o.out + "/http.json", json) && write_file(o.out + "/http.csv", csv) &&
      write_file(o.out + "/http.svg",
                 chart_svg({"wrk 1 KiB, req/s", "curl " + std::to_string(o.big_mib) + " MiB, GB/s"},
                           {med_rps[0], med_gbps[0]}, {med_rps[1], med_gbps[1]})) &&
      write_index(o.out);
  std::error_code ignored;
  std::filesystem::remove_all(scratch, ignored);
  if (!written) {
    std::fprintf(stderr, "reactor-bench-http: cannot write results into %s\n", o.out.c_str());
    return 1;
  }
  std::printf("wrote %s/{http.json,http.csv,http.svg,index.html}\n", o.out.c_str());
  return errors[0] + errors[1] == 0 && med_rps[0] > 0 && med_rps[1] > 0 ? 0 : 1;
}
