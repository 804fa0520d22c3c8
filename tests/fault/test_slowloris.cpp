// Scenario 1, slowloris. 1,000 attackers trickle one byte per second and reconnect whenever they
// are dropped (as the slowloris tool does), so 1,000 are trickling throughout; the server runs
// with --idle-timeout 0.5, shorter than the trickle interval, so the idle timeout is what closes
// each of them. Meanwhile 50 normal clients echo 256 KiB payloads (40 in a row each) and must
// get full, byte-exact service. Their throughput is compared with an unloaded run (a figure, not
// asserted).
#include <cstring>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kAttackers = 1000;
constexpr std::size_t kEchoClients = 50;
constexpr std::size_t kPayload = 256 * 1024;
constexpr std::size_t kRounds = 40;  // 10 MiB per client: long enough to measure throughput
constexpr auto kTrickleInterval = 1s;

struct AttackStats {
  std::size_t connections = 0;
  std::size_t closed = 0;
  std::size_t closed_by_server = 0;
  std::size_t closed_with_error = 0;  // reset rather than FIN
  std::size_t bytes = 0;
  double shortest_silence = 1e9;  // seconds from the last byte sent to the server's close
  double longest_silence = 0;
};

// Sends one byte at once and one per trickle interval until the server closes it.
class Trickler final : public Client {
 public:
  explicit Trickler(AttackStats& stats) : stats_(stats) {}

  void on_connected() override {
    ++stats_.connections;
    trickle();
  }
  void on_timer() override { trickle(); }
  void on_closed(int error) override {
    ++stats_.closed;
    if (!connected()) return;
    ++stats_.closed_by_server;
    if (error != 0) ++stats_.closed_with_error;
    const double silence = seconds_between(last_byte_at_, closed_at());
    stats_.shortest_silence = std::min(stats_.shortest_silence, silence);
    stats_.longest_silence = std::max(stats_.longest_silence, silence);
  }

 private:
  void trickle() {
    send("x");
    ++stats_.bytes;
    last_byte_at_ = Clock::now();
    wake_after(kTrickleInterval);
  }

  AttackStats& stats_;
  Clock::time_point last_byte_at_{};
};

// Echoes `rounds` payloads of kPayload bytes one after another, each checked byte-exact.
class RoundTripper final : public Client {
 public:
  RoundTripper(std::uint64_t seed, std::size_t rounds, Tally& tally)
      : seed_(seed), rounds_(rounds), tally_(tally) {}

  bool done() const noexcept { return round_ == rounds_; }
  const std::string& failure() const noexcept { return failure_; }

  void on_connected() override { send(pattern(seed_, kPayload)); }
  void on_data(std::string_view bytes) override {
    if (checked_ + bytes.size() > kPayload) return fail("more bytes back than sent");
    const std::size_t bad = pattern_mismatch(seed_ + round_, checked_, bytes);
    if (bad != std::string_view::npos) {
      return fail("round " + std::to_string(round_) + ": echo differs at byte " +
                  std::to_string(checked_ + bad));
    }
    checked_ += bytes.size();
    if (checked_ < kPayload) return;
    checked_ = 0;
    if (++round_ < rounds_) return send(pattern(seed_ + round_, kPayload));
    ++tally_.done;
    close();
  }
  void on_closed(int error) override {
    fail("closed by the server in round " + std::to_string(round_) +
         (error != 0 ? std::string(": ") + std::strerror(error) : std::string(" (EOF)")));
  }

 private:
  void fail(std::string why) {
    if (!failure_.empty()) return;
    failure_ = std::move(why);
    ++tally_.failed;
    close();
  }

  std::uint64_t seed_;
  std::size_t rounds_;
  Tally& tally_;
  std::size_t round_ = 0;
  std::size_t checked_ = 0;
  std::string failure_;
};

// Runs kEchoClients round trippers to completion; returns their wall time.
double echo_run(
    ClientLoop& loop, const sockaddr_in& server, std::uint64_t seed,
    const std::function<void()>& between_turns = [] {}) {
  Tally tally;
  std::vector<RoundTripper*> clients;
  const auto start = Clock::now();
  for (std::size_t i = 0; i < kEchoClients; ++i) {
    clients.push_back(&loop.add<RoundTripper>(server, seed + 1000 * i, kRounds, tally));
  }
  const bool finished = loop.run_until(
      [&] {
        between_turns();
        return tally.done + tally.failed == kEchoClients;
      },
      180s);
  const double elapsed = seconds_between(start, Clock::now());
  REQUIRE_MESSAGE(finished, "echo clients still running after 180 s: " << tally.done << " done");
  for (const RoundTripper* c : clients) {
    CHECK_MESSAGE(
        c->done(),
        c->failure() << " (longest client-side turn "
                     << fixed(std::chrono::duration<double>(loop.longest_turn()).count(), 3)
                     << " s; the idle timeout is 0.5 s)");
  }
  CHECK(tally.done == kEchoClients);
  return elapsed;
}

TEST_CASE(
    "slowloris: trickling clients are closed by the idle timeout while echo clients get full "
    "service") {
  ServerProcess server;
  start_server(server, "echo", {"--idle-timeout", "0.5"});
  const sockaddr_in address = server.address();
  ClientLoop loop(256);

  const double unloaded = echo_run(loop, address, 1);

  AttackStats attack;
  std::size_t launched = 0;
  bool replacing = true;
  // Keeps kAttackers trickling: every attacker the server drops is replaced at once.
  auto keep_attacking = [&] {
    while (replacing && launched - attack.closed < kAttackers) {
      loop.add<Trickler>(address, attack);
      ++launched;
    }
  };
  keep_attacking();
  REQUIRE_MESSAGE(loop.run_until(
                      [&] {
                        keep_attacking();
                        return attack.connections >= kAttackers;
                      },
                      60s),
                  "only " << attack.connections << " attackers connected");

  const double loaded = echo_run(loop, address, 1000000, keep_attacking);
  const std::size_t attackers_during_echo = attack.connections;

  // Stop replacing; every attacker still connected must now be closed by the server.
  replacing = false;
  const auto stop_at = Clock::now();
  const bool all_closed = loop.run_until([&] { return attack.closed == launched; }, 30s);
  const double drain = seconds_between(stop_at, Clock::now());
  CHECK_MESSAGE(all_closed, attack.closed << " of " << launched << " attackers closed 30 s after "
                                          << "the attack stopped");
  CHECK(loop.connect_failures() == 0);
  CHECK(attack.closed_by_server == launched);
  // Closed by the idle timeout: never before 0.5 s of silence (it cannot fire earlier), and
  // within a bound of seconds, not milliseconds, of it.
  CHECK(attack.shortest_silence >= 0.45);
  CHECK(attack.longest_silence < 10.0);

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  const Summary summary = server.summary();
  CHECK(summary.at("connections") == 2 * kEchoClients + launched);
  // Every attacker, and only they, closed with an error (the idle timeout).
  CHECK(summary.at("failed") == launched);

  const double megabytes = double(kEchoClients * kRounds * kPayload) / (1024.0 * 1024.0);
  MESSAGE("slowloris: " << launched << " attacker connections (" << attackers_during_echo
                        << " by the end of the echo run), " << attack.bytes << " bytes trickled; "
                        << "closed " << fixed(attack.shortest_silence, 2) << " to "
                        << fixed(attack.longest_silence, 2)
                        << " s after their last byte (idle timeout 0.5 s); last attacker gone "
                        << fixed(drain, 2) << " s after the attack stopped; longest client-side "
                        << "turn "
                        << fixed(std::chrono::duration<double>(loop.longest_turn()).count(), 3)
                        << " s");
  MESSAGE("slowloris: " << kEchoClients << " clients echoing " << kRounds
                        << " x 256 KiB each: unloaded " << fixed(unloaded, 3) << " s ("
                        << fixed(megabytes / unloaded) << " MiB/s), under attack "
                        << fixed(loaded, 3) << " s (" << fixed(megabytes / loaded) << " MiB/s), "
                        << fixed(100.0 * unloaded / loaded, 0) << "% of unloaded throughput");
}

}  // namespace
}  // namespace fault
