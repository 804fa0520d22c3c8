// Scenario 6, many connections. 19,000 echo clients (FAULT_CONNECTIONS overrides) are open at the
// same time, each verified with its own small message; the test process and the server each stay
// under the 20,000-descriptor limit. Reports the server's RSS per connection.
#include "fault_test.hpp"

namespace fault {
namespace {

TEST_CASE("many connections: 19000 concurrent echo clients are all served at once") {
  const std::size_t connections = static_cast<std::size_t>(env_number("FAULT_CONNECTIONS", 19000));
  const std::size_t limit = raise_fd_limit();
  REQUIRE_MESSAGE(limit >= connections + 100,
                  "RLIMIT_NOFILE is " << limit << ", too low for " << connections << " clients");
  ServerProcess server;
  start_server(server, "echo");
  const sockaddr_in address = server.address();
  ClientLoop loop(512);

  const std::size_t baseline_fds = idle_fd_baseline(loop, server);
  const std::size_t baseline_rss = rss_of(server);

  Tally tally;
  std::vector<EchoClient*> clients;
  clients.reserve(connections);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < connections; ++i) {
    clients.push_back(&loop.add<EchoClient>(
        address, "hello from client " + std::to_string(i) + "\n", &tally, true));
  }
  const bool finished =
      loop.run_until([&] { return tally.done + tally.failed == connections; }, 300s);
  const double elapsed = seconds_between(start, Clock::now());
  REQUIRE_MESSAGE(finished, tally.done << " of " << connections << " echoed after 300 s; "
                                       << loop.connect_failures() << " connects failed");
  CHECK_MESSAGE(loop.connect_failures() == 0,
                "first connect error: " << std::strerror(loop.first_connect_error()));
  CHECK(tally.done == connections);
  for (const EchoClient* c : clients) {
    if (c->failed()) {
      CHECK_MESSAGE(false, "client " << c->index() << ": " << c->failure());
      break;
    }
  }

  // All open at the same time, on both ends.
  CHECK(loop.open_count() == connections);
  const std::size_t open_fds = fd_count(server);
  CHECK(open_fds == baseline_fds + connections);
  const std::size_t loaded_rss = rss_of(server);

  const auto closing = Clock::now();
  for (EchoClient* c : clients) c->close();
  const std::size_t fds_after = wait_fd_count(server, baseline_fds, 60s);
  const double close_seconds = seconds_between(closing, Clock::now());
  CHECK(fds_after == baseline_fds);
  const std::size_t rss_after = rss_of(server);

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  CHECK(server.summary().at("connections") == kWarmUpConnections + connections);
  CHECK(server.summary().at("failed") == 0);
  MESSAGE("many connections: "
          << connections << " clients connected and echoed in " << fixed(elapsed, 2)
          << " s, all open at once (server descriptors " << open_fds << "); server RSS "
          << mib_from_kib(baseline_rss) << " -> " << mib_from_kib(loaded_rss) << " = "
          << fixed((double(loaded_rss) - double(baseline_rss)) * 1024 / connections, 0)
          << " bytes per connection; " << mib_from_kib(rss_after) << " after they left ("
          << fixed(close_seconds, 2) << " s to close them all)");
}

}  // namespace
}  // namespace fault
