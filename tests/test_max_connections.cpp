// --max-connections N is one limit for the whole server under every model: N connections are
// served however the model spreads them over loops, threads or processes, the N+1st is closed
// unserved (and counted as rejected), and a connection that closes frees its place for the next.
// reactor-server runs as a real process (tests/process.hpp); two EpollServers sharing one
// ConnectionLimit run in this process (tests/support.hpp).
#include <dirent.h>
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "support/process.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;
constexpr int kLimit = 5;
constexpr int kWorkers = 4;  // more loops, threads or processes than a ceil(5/4) share fits

enum class Outcome { served, refused };

// Sends a probe and reads its echo: `served` if it comes back whole, `refused` if the server
// closes the connection (EOF or reset) without echoing anything. Anything else fails the test.
Outcome probe(int fd, std::string_view text) {
  REQUIRE_FALSE(reactor::set_receive_timeout(fd, 10s));
  // A refused connection may be closed before the probe arrives: a failed send means closed.
  const ssize_t sent = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  if (sent < 0) {
    REQUIRE_MESSAGE((errno == EPIPE || errno == ECONNRESET), std::strerror(errno));
    return Outcome::refused;
  }
  REQUIRE(static_cast<std::size_t>(sent) == text.size());
  std::string echoed;
  while (echoed.size() < text.size()) {
    char chunk[64];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      REQUIRE_MESSAGE(echoed.empty(), "closed after a partial echo: '" << echoed << "'");
      return Outcome::refused;
    }
    REQUIRE_MESSAGE(n > 0, "no echo and no close within 10 s: " << std::strerror(errno));
    echoed.append(chunk, static_cast<std::size_t>(n));
  }
  REQUIRE(echoed == text);
  return Outcome::served;
}

// A served connection: connected, and one echo round trip proves the server serves it.
reactor::Fd served_connection(const reactor::Address& address, int n) {
  auto fd = test::connect_to(address);
  REQUIRE_MESSAGE(probe(fd.get(), "hello " + std::to_string(n)) == Outcome::served,
                  "connection " << n << " was refused");
  return fd;
}

// Connects until one is served, within `limit`: the place a closed connection frees comes back
// once the server has seen the close. Returns the served connection; `refused` counts the others.
reactor::Fd connect_until_served(const reactor::Address& address, int& refused,
                                 std::chrono::seconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto fd = test::connect_to(address);
    if (probe(fd.get(), "again") == Outcome::served) return fd;
    ++refused;
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                    "no connection served " << limit.count() << " s after one closed (" << refused
                                            << " refused)");
  }
}

std::vector<std::string> server_args(std::string_view model) {
  std::vector<std::string> args = {"--protocol",        "echo",
                                   "--model",           std::string(model),
                                   "--max-connections", std::to_string(kLimit),
                                   "--listen",          "tcp://127.0.0.1:0"};
  const auto workers = test::workers_args(model, kWorkers);
  args.insert(args.end(), workers.begin(), workers.end());
  return args;
}

template <class Body>
void for_each_model(Body body) {
  for (const std::string_view model : test::kServerModels) {
    SUBCASE(std::string(model).c_str()) {
      body(model);
    }
  }
}

// The worker processes of `parent` (prefork), from /proc.
std::vector<pid_t> children_of(pid_t parent) {
  std::ifstream in("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                   "/children");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

std::size_t open_files(pid_t pid) {
  std::size_t n = 0;
  DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) return 0;
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

}  // namespace

TEST_CASE(
    "--max-connections 5 serves 5 connections under every model, refuses the 6th, and "
    "serves again once one closes") {
  for_each_model([](std::string_view model) {
    auto server = test::start_server(kServer, server_args(model));
    if (!server) return;
    const auto address = server->addresses.at(0);
    std::vector<reactor::Fd> held;
    for (int i = 0; i < kLimit; ++i) held.push_back(served_connection(address, i));

    int refused = 0;
    auto sixth = test::connect_to(address);
    CHECK_MESSAGE(probe(sixth.get(), "sixth") == Outcome::refused,
                  "the 6th connection was served under " << std::string(model));
    ++refused;
    for (auto& fd : held) CHECK(probe(fd.get(), "still") == Outcome::served);

    held.erase(held.begin());  // closes one: its place comes back
    held.push_back(connect_until_served(address, refused));
    // Full again: the next one is refused, the five are served.
    auto seventh = test::connect_to(address);
    CHECK(probe(seventh.get(), "seventh") == Outcome::refused);
    ++refused;
    for (auto& fd : held) CHECK(probe(fd.get(), "still") == Outcome::served);

    auto summary = test::stop_server(*server);
    CHECK(summary["rejected"] == static_cast<std::uint64_t>(refused));
    CHECK(summary["connections"] == kLimit + 1);
  });
}

TEST_CASE("prefork: a worker killed while holding connections gives its places back") {
  auto server = test::start_server(kServer, server_args("prefork"));
  if (!server) return;
  const auto address = server->addresses.at(0);
  std::vector<reactor::Fd> held;
  for (int i = 0; i < kLimit; ++i) held.push_back(served_connection(address, i));
  CHECK(probe(test::connect_to(address).get(), "sixth") == Outcome::refused);

  // The worker holding the most connections (the most descriptors) dies.
  // The parent forks its workers after it reports listening: wait (bounded) for all of them.
  std::vector<pid_t> workers;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((workers = children_of(server->process.pid())).size() < kWorkers &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);  // polling a condition, bounded by the deadline
  }
  REQUIRE(workers.size() == static_cast<std::size_t>(kWorkers));
  const pid_t victim = *std::max_element(workers.begin(), workers.end(), [](pid_t a, pid_t b) {
    return open_files(a) < open_files(b);
  });
  REQUIRE(::kill(victim, SIGKILL) == 0);

  // Its connections are gone with it; the others are still served.
  std::vector<reactor::Fd> alive;
  for (int i = 0; i < kLimit; ++i) {
    if (probe(held[i].get(), "after") == Outcome::served) alive.push_back(std::move(held[i]));
  }
  MESSAGE("the killed worker held " << kLimit - alive.size() << " of " << kLimit << " connections");
  CHECK(alive.size() < static_cast<std::size_t>(kLimit));

  // Once the parent has reaped it, exactly the places it held come back: the server fills up
  // to 5 again, then refuses.
  int refused = 0;
  while (alive.size() < static_cast<std::size_t>(kLimit)) {
    alive.push_back(connect_until_served(address, refused));
  }
  CHECK(probe(test::connect_to(address).get(), "full") == Outcome::refused);
  for (auto& fd : alive) CHECK(probe(fd.get(), "still") == Outcome::served);
  test::stop_server(*server);  // the dead worker's counters died with it: no totals to check
}

TEST_CASE("two EpollServers sharing one ConnectionLimit hold its total between them") {
  test::EchoProtocol protocol;
  reactor::AtomicConnectionLimit limit(3);
  reactor::ServerOptions options;
  options.shared_limit = &limit;
  test::ServerThread a(protocol, options), b(protocol, options);
  const auto address_a = a.listen("tcp://127.0.0.1:0");
  const auto address_b = b.listen("tcp://127.0.0.1:0");
  a.start();
  b.start();

  std::vector<reactor::Fd> on_a;
  on_a.push_back(served_connection(address_a, 0));
  on_a.push_back(served_connection(address_a, 1));
  auto on_b = served_connection(address_b, 2);
  CHECK(limit.live() == 3);
  // b holds one connection of its own, but the total is full.
  CHECK(probe(test::connect_to(address_b).get(), "fourth") == Outcome::refused);
  CHECK(b.stats().rejected == 1);

  on_a.pop_back();  // a's close frees a place for b
  int refused = 0;
  auto again = connect_until_served(address_b, refused);
  CHECK(limit.live() == 3);
  CHECK(b.stats().rejected == static_cast<std::uint64_t>(1 + refused));
  CHECK(a.stats().rejected == 0);

  a.stop();  // a's last connection closes with its server
  b.stop();
  CHECK(limit.live() == 0);
}
