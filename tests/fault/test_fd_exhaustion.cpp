// Scenario 5, descriptor exhaustion. The server runs with RLIMIT_NOFILE 128. 300 clients connect
// at once: those beyond its descriptors are shed (accepted and closed at once, counted as
// "shed"), the accepted ones keep being served, and once they leave the server serves a fresh
// batch in full.
#include "fault_test.hpp"

namespace fault {
namespace {

constexpr rlim_t kServerFiles = 128;
constexpr std::size_t kFirstWave = 300;
constexpr std::size_t kSecondWave = 100;

std::string probe(const char* wave, std::size_t i, int round) {
  return std::string(wave) + " client " + std::to_string(i) + " round " + std::to_string(round) +
         "\n";
}

TEST_CASE("fd exhaustion: the surplus is shed and the server recovers fully") {
  ServerProcess server;
  start_server(server, "echo", {}, kServerFiles);
  const sockaddr_in address = server.address();
  ClientLoop loop(kFirstWave);
  const std::size_t baseline_fds = idle_fd_baseline(loop, server);
  REQUIRE(baseline_fds < kServerFiles);
  const std::size_t capacity = kServerFiles - baseline_fds;

  Tally first;
  std::vector<EchoClient*> wave;
  for (std::size_t i = 0; i < kFirstWave; ++i) {
    wave.push_back(&loop.add<EchoClient>(address, probe("first", i, 1), &first, true));
  }
  REQUIRE_MESSAGE(loop.run_until([&] { return first.done + first.failed == kFirstWave; }, 60s),
                  first.done << " echoed and " << first.failed << " refused after 60 s");
  CHECK(loop.connect_failures() == 0);
  std::vector<EchoClient*> served;
  std::size_t refused = 0;
  for (EchoClient* c : wave) {
    if (c->done()) {
      served.push_back(c);
    } else if (c->connected() && c->ended_by_peer()) {
      ++refused;  // closed by the server before any echo: shed
    }
  }
  CHECK(served.size() + refused == kFirstWave);
  CHECK(refused > 0);
  // Every descriptor the server had left went to a client.
  CHECK(served.size() == capacity);
  // The server sheds by releasing its reserve descriptor, accepting and closing the surplus
  // connection, then reopening the reserve: a client sees that close before the reserve is back,
  // so the count is read once it settles (bounded), not at once.
  const std::size_t exhausted_fds = wait_fd_count(server, kServerFiles, 10s);
  CHECK(exhausted_fds == kServerFiles);

  // The accepted ones keep being served, while the server is still out of descriptors.
  Tally again;
  for (std::size_t i = 0; i < served.size(); ++i) served[i]->again(probe("first", i, 2), &again);
  REQUIRE(loop.run_until([&] { return again.done + again.failed == served.size(); }, 60s));
  CHECK(again.done == served.size());

  // They leave; the server gives every descriptor back and serves a fresh batch in full.
  for (EchoClient* c : served) c->close();
  const std::size_t fds_after = wait_fd_count(server, baseline_fds, 30s);
  CHECK(fds_after == baseline_fds);
  Tally second;
  std::vector<EchoClient*> fresh;
  for (std::size_t i = 0; i < kSecondWave; ++i) {
    fresh.push_back(&loop.add<EchoClient>(address, probe("second", i, 1), &second));
  }
  REQUIRE(loop.run_until([&] { return second.done + second.failed == kSecondWave; }, 60s));
  CHECK(second.done == kSecondWave);
  for (const EchoClient* c : fresh) CHECK_MESSAGE(!c->failed(), c->failure());

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  const Summary summary = server.summary();
  CHECK(summary.at("shed") == refused);
  CHECK(summary.at("connections") == kWarmUpConnections + served.size() + kSecondWave);
  CHECK(server.process.err().find("out of file descriptors") != std::string::npos);
  MESSAGE("fd exhaustion: RLIMIT_NOFILE "
          << kServerFiles << ", " << baseline_fds << " descriptors in use idle: of " << kFirstWave
          << " clients " << served.size() << " served and " << refused << " shed (summary shed="
          << summary.at("shed") << "); served ones echoed again; descriptors back to " << fds_after
          << "; a fresh batch of " << kSecondWave << ": " << second.done << " echoed");
}

}  // namespace
}  // namespace fault
