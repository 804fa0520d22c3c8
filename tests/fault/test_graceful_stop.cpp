// Scenario 7, graceful stop. SIGTERM lands while 20 clients stream into the echo server. Every
// byte the server took in before the signal must be echoed before it closes: each client gets
// back a byte-exact prefix of what it sent, the clients' total equals the summary's bytes_out,
// bytes_out equals bytes_in, and the exit status is 0.
#include <cerrno>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kStreamers = 20;

TEST_CASE("graceful stop: SIGTERM under load echoes every byte taken in before closing") {
  ServerProcess server;
  start_server(server, "echo");
  const sockaddr_in address = server.address();
  ClientLoop loop(64);

  std::vector<StreamEchoClient*> streamers;
  for (std::size_t i = 0; i < kStreamers; ++i) {
    streamers.push_back(&loop.add<StreamEchoClient>(address, 500 + i));
  }
  // Busy: everyone connected and streaming for three seconds.
  REQUIRE(loop.run_until([&] { return loop.open_count() == kStreamers; }, 30s));
  loop.run_for(3s);
  for (const StreamEchoClient* s : streamers) {
    REQUIRE_MESSAGE(!s->failed(), s->failure());
    REQUIRE(s->is_open());
    REQUIRE(s->verified() > 0);
  }

  const auto signalled = Clock::now();
  REQUIRE(server.process.signal(SIGTERM));
  // The clients keep streaming and reading until the server closes them.
  const bool all_closed = loop.run_until([&] { return loop.open_count() == 0; }, 60s);
  const double close_seconds = seconds_between(signalled, Clock::now());
  CHECK_MESSAGE(all_closed, loop.open_count() << " clients still open 60 s after SIGTERM");
  REQUIRE(server.process.wait_exit(30s).has_value());
  const double exit_seconds = seconds_between(signalled, Clock::now());
  CHECK_MESSAGE(server.process.exit_code() == 0,
                "exit " << server.process.exit_code() << "; " << server.process.err());

  std::uint64_t received = 0, sent = 0;
  std::size_t reset = 0;
  for (const StreamEchoClient* s : streamers) {
    CHECK_MESSAGE(!s->failed(), "client " << s->index() << ": " << s->failure());
    CHECK(s->ended_by_peer());
    received += s->bytes_received();
    sent += s->bytes_sent();
    reset += s->end_error() == ECONNRESET || s->write_error() == ECONNRESET ? 1 : 0;
  }
  const Summary summary = server.summary();
  REQUIRE_MESSAGE(!summary.empty(), "no summary in: " << server.process.out());
  CHECK(summary.at("connections") == kStreamers);
  CHECK(summary.at("bytes_out") == summary.at("bytes_in"));
  CHECK_MESSAGE(received == summary.at("bytes_out"),
                "clients received " << received << " bytes, the server sent "
                                    << summary.at("bytes_out") << " ("
                                    << static_cast<long long>(summary.at("bytes_out") - received)
                                    << " lost in flight)");
  MESSAGE("graceful stop: " << kStreamers << " streamers sent " << fixed(sent / 1048576.0)
                            << " MiB, the server took in "
                            << fixed(summary.at("bytes_in") / 1048576.0, 3) << " MiB and echoed "
                            << fixed(summary.at("bytes_out") / 1048576.0, 3) << " MiB; clients got "
                            << fixed(received / 1048576.0, 3) << " MiB back, byte-exact; " << reset
                            << " of " << kStreamers << " saw a reset rather than EOF; all closed "
                            << fixed(close_seconds, 2) << " s and the server exited "
                            << fixed(exit_seconds, 2) << " s after SIGTERM");
}

}  // namespace
}  // namespace fault
