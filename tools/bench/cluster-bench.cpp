// reactor-cluster-bench: what a chat line costs when it crosses instances through Redis, next to
// the same line inside one instance, measured in one run on this machine. Starts redis-server,
// two reactor-server --hub instances and one plain instance (all on 127.0.0.1, free ports);
// S senders and R receivers share a room, senders keep at most W lines in flight (counted at
// the first receiver), each line carries its send time; the receivers give the latency.
//
// usage: reactor-cluster-bench [--messages N] [--senders S] [--receivers R] [--window W]
//                              [--server PATH] [--redis-server PATH]
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bench_process.hpp"
#include "reactor/address.hpp"
#include "reactor/socket.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  std::size_t messages = 20000;
  std::size_t senders = 4;
  std::size_t receivers = 4;
  std::size_t window = 64;
  std::string server;
  std::string redis_server = "redis-server";
};

int free_port() {
  reactor::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length) != 0) {
    return -1;
  }
  return ntohs(a.sin_port);
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// A chat client on a non-blocking socket: whole lines in, queued bytes out.
struct Client {
  reactor::Fd fd;
  std::string in;
  std::string out;
  std::size_t in_start = 0;

  bool flush() {
    while (!out.empty()) {
      const ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EINTR;
      out.erase(0, static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads what is there; false at EOF or on error.
  bool pull() {
    char chunk[65536];
    for (;;) {
      const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
      if (n > 0) {
        in.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) return false;
      return errno == EAGAIN || errno == EINTR;
    }
  }
  // The next complete line, if any.
  bool next(std::string_view& line) {
    const std::size_t end = in.find('\n', in_start);
    if (end == std::string::npos) {
      in.erase(0, in_start);
      in_start = 0;
      return false;
    }
    line = std::string_view(in).substr(in_start, end - in_start);
    in_start = end + 1;
    return true;
  }
};

bool wait_line(Client& c, std::string_view prefix, Clock::time_point deadline) {
  for (;;) {
    std::string_view line;
    while (c.next(line)) {
      if (line.starts_with(prefix)) return true;
    }
    pollfd p{c.fd.get(), POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0 || !c.pull()) {
      return false;
    }
  }
}

bool connect_as(const reactor::Address& address, const std::string& nick, Client& c) {
  auto fd = reactor::connect_blocking(address, 5s);
  if (!fd) return false;
  c.fd = std::move(*fd);
  if (reactor::set_nonblocking(c.fd.get(), true)) return false;
  c.out = "/nick " + nick + "\n/join bench\n";
  return c.flush() && wait_line(c, "OK joined bench", Clock::now() + 10s);
}

struct Result {
  std::size_t sent = 0;
  std::size_t delivered = 0;
  double seconds = 0;
  std::vector<std::int64_t> latencies_ns;
};

// Senders on `from`, receivers on `to`; all in room "bench".
bool run_scenario(const Options& o, const reactor::Address& from, const reactor::Address& to,
                  const std::string& tag, Result& result, std::string& error) {
  std::vector<Client> senders(o.senders), receivers(o.receivers);
  for (std::size_t i = 0; i < o.receivers; ++i) {
    if (!connect_as(to, tag + "r" + std::to_string(i), receivers[i])) {
      error = "receiver cannot join";
      return false;
    }
  }
  for (std::size_t i = 0; i < o.senders; ++i) {
    if (!connect_as(from, tag + "s" + std::to_string(i), senders[i])) {
      error = "sender cannot join";
      return false;
    }
  }
  // Cross-instance: the last sender's join reaches the receivers through Redis; wait for it so
  // that the room is wired everywhere before timing starts.
  for (auto& r : receivers) {
    if (!wait_line(r, "* " + tag + "s" + std::to_string(o.senders - 1) + " joined",
                   Clock::now() + 10s)) {
      error = "joins did not propagate";
      return false;
    }
  }
  result.latencies_ns.reserve(o.messages * o.receivers);
  std::size_t at_first = 0;  // lines the first receiver has seen: the window's measure
  const auto start = Clock::now();
  const auto deadline = start + 120s;
  std::vector<pollfd> fds;
  std::size_t next_sender = 0;
  while (result.delivered < o.messages * o.receivers) {
    if (Clock::now() > deadline) {
      error = "timed out after " + std::to_string(result.delivered) + " deliveries";
      return false;
    }
    while (result.sent < o.messages && result.sent - at_first < o.window) {
      Client& s = senders[next_sender++ % senders.size()];
      s.out += "T" + std::to_string(now_ns()) + "\n";
      ++result.sent;
      if (!s.flush()) {
        error = "send failed";
        return false;
      }
    }
    fds.clear();
    for (auto& c : receivers) fds.push_back({c.fd.get(), POLLIN, 0});
    for (auto& c : senders) {
      fds.push_back({c.fd.get(), static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    }
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) {
      error = std::strerror(errno);
      return false;
    }
    const std::int64_t now = now_ns();
    for (std::size_t i = 0; i < receivers.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!receivers[i].pull()) {
        error = "a receiver was disconnected";
        return false;
      }
      std::string_view line;
      while (receivers[i].next(line)) {
        const auto t = line.find(": T");
        if (t == std::string_view::npos) continue;
        std::int64_t sent_at = 0;
        std::from_chars(line.data() + t + 3, line.data() + line.size(), sent_at);
        result.latencies_ns.push_back(now - sent_at);
        ++result.delivered;
        if (i == 0) ++at_first;
      }
    }
    for (std::size_t i = 0; i < senders.size(); ++i) {
      senders[i].pull();  // other senders' lines: drained and dropped
      std::string_view line;
      while (senders[i].next(line)) {
      }
      senders[i].flush();
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return true;
}

double percentile_us(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

std::optional<bench::Child> spawn(std::vector<std::string> argv, std::string& error) {
  bench::SpawnOptions s;
  s.argv = std::move(argv);
  s.stderr_path = "/dev/null";
  return bench::Child::spawn(s, error);
}

// Reads lines until one starts with `prefix`; returns it (or "").
std::string await(bench::Child& child, std::string_view prefix) {
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    auto line = child.read_line(std::chrono::duration_cast<bench::Millis>(deadline - Clock::now()));
    if (!line) return {};
    if (line->find(prefix) != std::string::npos) return *line;
  }
  return {};
}

int usage(const char* why) {
  std::fprintf(stderr, "reactor-cluster-bench: %s\n", why);
  std::fprintf(stderr,
               "usage: reactor-cluster-bench [--messages N] [--senders S] [--receivers R] "
               "[--window W] [--server PATH] [--redis-server PATH]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.server = bench::self_dir() + "/reactor-server";
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) return usage("every option takes a value");
    const std::string value = argv[++i];
    std::size_t n = 0;
    const bool numeric =
        std::from_chars(value.data(), value.data() + value.size(), n).ec == std::errc{} && n > 0 &&
        n <= 10'000'000;
    if (flag == "--server") {
      o.server = value;
    } else if (flag == "--redis-server") {
      o.redis_server = value;
    } else if (!numeric) {
      return usage("expected a whole number from 1");
    } else if (flag == "--messages") {
      o.messages = n;
    } else if (flag == "--senders") {
      o.senders = std::min<std::size_t>(n, 200);
    } else if (flag == "--receivers") {
      o.receivers = std::min<std::size_t>(n, 200);
    } else if (flag == "--window") {
      o.window = n;
    } else {
      return usage("unknown option");
    }
  }
  if (o.redis_server.find('/') == std::string::npos)
    o.redis_server = bench::find_on_path(o.redis_server);
  if (o.redis_server.empty() || !bench::is_executable(o.server)) {
    return usage("needs redis-server on PATH and reactor-server (--server PATH)");
  }

  std::string error;
  char dir[] = "/tmp/reactor-cluster-bench-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return 1;
  const int redis_port = free_port();
  auto redis = spawn({o.redis_server, "--port", std::to_string(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--dir", dir},
                     error);
  if (!redis || await(*redis, "Ready to accept connections").empty()) {
    std::fprintf(stderr, "reactor-cluster-bench: redis-server did not start %s\n", error.c_str());
    return 1;
  }
  const std::string hub = "redis://127.0.0.1:" + std::to_string(redis_port);
  std::vector<bench::Child> servers;
  std::vector<reactor::Address> addresses;
  for (const bool with_hub : {false, true, true}) {
    std::vector<std::string> args{o.server, "--protocol", "chat", "--listen", "tcp://127.0.0.1:0"};
    if (with_hub) args.insert(args.end(), {"--hub", hub});
    auto child = spawn(args, error);
    const std::string line = child ? await(*child, "listening on ") : std::string();
    auto address = reactor::Address::parse(line.substr(line.find(' ', 10) + 1));
    if (line.empty() || !address) {
      std::fprintf(stderr, "reactor-cluster-bench: reactor-server did not start\n");
      return 1;
    }
    addresses.push_back(*address);
    servers.push_back(std::move(*child));
  }

  std::printf("reactor-cluster-bench: %zu lines, %zu senders, %zu receivers, window %zu\n",
              o.messages, o.senders, o.receivers, o.window);
  std::printf("%-38s %10s %12s %12s %9s %9s\n", "scenario", "lines/s", "deliveries/s", "deliveries",
              "p50 us", "p99 us");
  struct Row {
    const char* name;
    reactor::Address from, to;
    const char* tag;
  };
  const Row rows[] = {
      {"one instance, LocalHub", addresses[0], addresses[0], "l"},
      {"two instances, RedisHub, same", addresses[1], addresses[1], "h"},
      {"two instances, RedisHub, across", addresses[1], addresses[2], "x"},
  };
  int status = 0;
  // Window 1: one line in flight, the latency of a line on an idle path. Window W: throughput,
  // with latency that is mostly queueing (W lines ahead of each).
  Options one = o;
  one.window = 1;
  one.messages = std::max<std::size_t>(200, o.messages / 10);
  int pass = 0;
  for (const Options* options : {&one, &o}) {
    ++pass;
    for (const auto& row : rows) {
      Result r;
      const std::string tag = row.tag + std::to_string(pass);
      const std::string name = std::string(row.name) + ", w" + std::to_string(options->window);
      if (!run_scenario(*options, row.from, row.to, tag, r, error)) {
        std::printf("%-38s failed: %s\n", name.c_str(), error.c_str());
        status = 1;
        continue;
      }
      const double p50 = percentile_us(r.latencies_ns, 0.50);
      const double p99 = percentile_us(r.latencies_ns, 0.99);
      std::printf("%-38s %10.0f %12.0f %12zu %9.0f %9.0f\n", name.c_str(), r.sent / r.seconds,
                  r.delivered / r.seconds, r.delivered, p50, p99);
      std::fflush(stdout);
    }
  }
  for (auto& s : servers) s.stop(SIGTERM, 10s);
  redis->stop(SIGTERM, 10s);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return status;
}
