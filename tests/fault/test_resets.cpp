// Scenario 3, resets. A few thousand clients connect, send, and reset the connection
// (SO_LINGER {1, 0} + close) at a random point: before sending, with their request still in
// flight, mid-echo while the server has output pending for them (they stopped reading), or
// after a random delay. The server must not crash (it still echoes afterwards), must not leak a
// descriptor (its /proc fd count returns to the baseline), and must count every connection.
#include <random>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kResetClients = 3000;
constexpr std::size_t kConcurrent = 200;

enum class ResetPoint { at_connect, after_send, mid_echo, after_delay };

struct ResetStats {
  std::size_t reset = 0;
  std::size_t ended_by_server = 0;  // must stay 0: the server has no reason to close first
  std::uint64_t echoed = 0;
};

class Resetter final : public Client {
 public:
  Resetter(std::uint32_t seed, ResetStats& stats) : stats_(stats) {
    std::mt19937 rng(seed);
    point_ = static_cast<ResetPoint>(rng() % 4);
    const std::size_t sizes[] = {100, 16 * 1024, 256 * 1024, 2 * 1024 * 1024};
    size_ = sizes[rng() % 4];
    reset_after_ = rng() % size_;
    delay_ = std::chrono::milliseconds(rng() % 300);
    seed_ = seed;
  }

  void on_connected() override {
    if (point_ == ResetPoint::at_connect) return hang_up();
    // Mid-echo: stop reading so the server's output for us piles up, then reset.
    if (point_ == ResetPoint::mid_echo && size_ >= 256 * 1024) set_reading(false);
    send(pattern(seed_, size_));
    if (point_ == ResetPoint::after_send) return hang_up();
    if (point_ == ResetPoint::after_delay || point_ == ResetPoint::mid_echo) wake_after(delay_);
  }
  void on_data(std::string_view bytes) override {
    stats_.echoed += bytes.size();
    if (point_ == ResetPoint::mid_echo && bytes_received() >= reset_after_) hang_up();
  }
  void on_timer() override { hang_up(); }
  void on_closed(int) override { ++stats_.ended_by_server; }

 private:
  void hang_up() {
    ++stats_.reset;
    reset();
  }

  ResetStats& stats_;
  ResetPoint point_;
  std::size_t size_;
  std::size_t reset_after_;
  std::chrono::milliseconds delay_;
  std::uint32_t seed_;
};

TEST_CASE("resets: clients resetting at random points leave no leak and no crash") {
  ServerProcess server;
  start_server(server, "echo");
  const sockaddr_in address = server.address();
  ClientLoop loop(256);
  const std::size_t baseline_fds = idle_fd_baseline(loop, server);

  ResetStats stats;
  std::size_t launched = 0;
  const auto start = Clock::now();
  const bool finished = loop.run_until(
      [&] {
        while (launched < kResetClients &&
               launched + kWarmUpConnections - loop.closed_count() < kConcurrent) {
          loop.add<Resetter>(address, static_cast<std::uint32_t>(launched), stats);
          ++launched;
        }
        return loop.closed_count() == kResetClients + kWarmUpConnections;
      },
      180s);
  const double elapsed = seconds_between(start, Clock::now());
  REQUIRE_MESSAGE(finished, (loop.closed_count() - kWarmUpConnections)
                                << " of " << kResetClients << " done after 180 s");
  CHECK(loop.connect_failures() == 0);
  CHECK(stats.reset == kResetClients);
  CHECK(stats.ended_by_server == 0);

  const std::size_t fds_after = wait_fd_count(server, baseline_fds, 30s);
  CHECK_MESSAGE(fds_after == baseline_fds,
                "server holds " << fds_after << " descriptors, " << baseline_fds << " before");

  // Still serving.
  Tally tally;
  auto& echo = loop.add<EchoClient>(address, pattern(99, 64 * 1024), &tally);
  REQUIRE(loop.run_until([&] { return tally.done + tally.failed == 1; }, 30s));
  CHECK_MESSAGE(!echo.failed(), echo.failure());

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  const Summary summary = server.summary();
  CHECK(summary.at("connections") == kWarmUpConnections + kResetClients + 1);
  MESSAGE("resets: " << kResetClients << " connections reset at random points in "
                     << fixed(elapsed, 2) << " s (" << kConcurrent << " at a time), "
                     << fixed(stats.echoed / 1048576.0) << " MiB echoed before the resets; server "
                     << "counted " << summary.at("connections") << " connections, "
                     << summary.at("failed") << " failed; descriptors " << baseline_fds << " -> "
                     << fds_after);
}

}  // namespace
}  // namespace fault
