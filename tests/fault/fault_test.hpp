// What every fault scenario shares: the server under test, its model (FAULT_MODEL, default
// epoll), starting it with a bounded wait, polling a condition with a deadline, and formatting
// figures for MESSAGE.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "reactor/models/registry.hpp"
#include "support/client_loop.hpp"
#include "support/clients.hpp"
#include "support/proc_stats.hpp"
#include "support/process.hpp"

namespace fault {

using namespace std::chrono_literals;
// The shared support library (tests/support/), by the names the scenarios use.
using test::Client;
using test::ClientLoop;
using test::Clock;
using test::EchoClient;
using test::fill_pattern;
using test::LineClient;
using test::open_fd_count;
using test::pattern;
using test::pattern_byte;
using test::pattern_mismatch;
using test::raise_fd_limit;
using test::rss_kib;
using test::ServerProcess;
using test::SpawnOptions;
using test::StreamEchoClient;
using test::Summary;
using test::Tally;

// FAULT_SERVER runs the suite against another reactor-server build.
inline const std::string kServerPath =
    std::getenv("FAULT_SERVER") != nullptr ? std::getenv("FAULT_SERVER") : REACTOR_SERVER_PATH;

// Under AddressSanitizer the server's RSS holds shadow memory and a quarantine of freed blocks:
// memory bounds are then reported, not asserted.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

inline std::string server_model() {
  const char* model = std::getenv("FAULT_MODEL");
  return model != nullptr && *model != '\0' ? model : "epoll";
}

inline long env_number(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end != text && *end == '\0' && value > 0 ? value : fallback;
}

// reactor-server's arguments for `protocol` on tcp://127.0.0.1:0 under `model`, then `extra`.
inline std::vector<std::string> server_args(const std::string& protocol, const std::string& model,
                                            const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"--protocol",        protocol,  "--listen",
                                   "tcp://127.0.0.1:0", "--model", model};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Our environment, less MALLOC_PERTURB_ (meson test sets it): it makes malloc write every byte
// it hands out, and the server's RSS would then show buffer capacity, not use.
inline SpawnOptions server_options() {
  SpawnOptions options;
  options.unset_env = {"MALLOC_PERTURB_"};
  return options;
}

// Raises our descriptor limit, then starts the server (failing the test if it does not come up).
inline void start_server(ServerProcess& server, const std::string& protocol,
                         const std::vector<std::string>& extra_args = {}, rlim_t max_files = 0) {
  raise_fd_limit();
  SpawnOptions options = server_options();
  options.max_files = max_files;
  const std::string error =
      server.start(kServerPath, server_args(protocol, server_model(), extra_args), options);
  REQUIRE_MESSAGE(error.empty(), error);
}

// Checks `done` every 50 ms until it holds or `limit` passes; returns done(). For conditions
// that no descriptor signals (a /proc count settling).
inline bool poll_until(const std::function<bool()>& done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 50);
  }
  return true;
}

// The server's descriptors; under a model whose connections live in child processes (fork:
// one child per connection, prefork: the workers) the children's are added.
inline std::size_t fd_count(const ServerProcess& server) {
  std::size_t count = open_fd_count(server.pid()).value_or(0);
  const auto* model = reactor::find_model(server_model());
  if (model != nullptr && !model->shares_memory) {
    const std::string pid = std::to_string(server.pid());
    std::ifstream children("/proc/" + pid + "/task/" + pid + "/children");
    for (long child; children >> child;) {
      count += open_fd_count(static_cast<pid_t>(child)).value_or(0);
    }
  }
  return count;
}
inline std::size_t rss_of(const ServerProcess& server) {
  return rss_kib(server.pid()).value_or(0);
}

// Waits (bounded) for the server's descriptor count to come back to `baseline`; returns the
// last count seen.
inline std::size_t wait_fd_count(const ServerProcess& server, std::size_t baseline,
                                 Clock::duration limit) {
  std::size_t now = 0;
  poll_until([&] { return (now = fd_count(server)) == baseline; }, limit);
  return now;
}

// Sends a line and waits for any answer (an echo, a chat greeting): proof that the server's loop
// runs, so everything it opens at start exists.
class WarmUpClient final : public Client {
 public:
  void on_connected() override { send("warm-up\n"); }
  void on_data(std::string_view) override { answered = true; }
  bool answered = false;
};

// The server's descriptor count with no client, measured when it is surely serving (after
// "listening on" it still opens its signalfd): two warm-up clients are answered, the counts with
// one and with two give the descriptors per connection (1 under epoll, more under other models),
// then they are let go and the count must come back to the baseline. Adds kWarmUpConnections to
// the summary.
inline constexpr std::size_t kWarmUpConnections = 2;
inline std::size_t idle_fd_baseline(ClientLoop& loop, const ServerProcess& server) {
  std::size_t counts[kWarmUpConnections] = {};
  WarmUpClient* warm[kWarmUpConnections] = {};
  for (std::size_t i = 0; i < kWarmUpConnections; ++i) {
    warm[i] = &loop.add<WarmUpClient>(server.address());
    REQUIRE(loop.run_until([&] { return warm[i]->answered || warm[i]->closed(); }, 30s));
    REQUIRE(warm[i]->answered);
    counts[i] = fd_count(server);
  }
  REQUIRE(counts[1] > counts[0]);
  const std::size_t per_connection = counts[1] - counts[0];
  REQUIRE(counts[0] > per_connection);
  const std::size_t baseline = counts[0] - per_connection;
  // An orderly goodbye: the chat server owes them an ERR after its greeting, and a client that
  // closed before reading it would reset the connection (a "failed" one in the summary).
  for (WarmUpClient* w : warm) w->finish();
  REQUIRE(loop.run_until([&] { return warm[0]->closed() && warm[1]->closed(); }, 30s));
  REQUIRE(wait_fd_count(server, baseline, 30s) == baseline);
  return baseline;
}

inline double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

inline std::string fixed(double value, int decimals = 1) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

inline std::string mib_from_kib(double kib) {
  return fixed(kib / 1024.0, 1) + " MiB";
}

}  // namespace fault
