// Scenario 2, slow readers. 100 clients send without pause and never read. The echo server must
// stop reading from each once its output passes the 1 MiB high-water mark (backpressure), so its
// memory stays bounded: per connection at most the high-water mark plus one 64 KiB read of
// output, i.e. 1.0625 MiB, asserted as RSS < baseline + 100 x 1.25 MiB + 16 MiB slack. Another
// client is served byte-exact meanwhile.
#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kSlowReaders = 100;
constexpr double kBoundPerConnectionKib = 1.25 * 1024;
constexpr double kSlackKib = 16 * 1024;
constexpr std::size_t kEchoPayload = 1 << 20;

// Sends the pattern without end, 64 KiB every 10 ms (6.4 MB/s) whenever the socket has taken the
// previous chunk, and never reads. The pacing keeps the server's receive buffer from autotuning
// to tens of MiB per connection: those bytes sit in the kernel, where RSS does not show them,
// and on a shared machine they would put all of TCP under memory pressure.
class SlowReader final : public Client {
 public:
  explicit SlowReader(std::uint64_t seed) : seed_(seed) { set_socket_buffers(64 * 1024); }

  void on_connected() override {
    set_reading(false);
    on_timer();
  }
  void on_timer() override {
    if (queued() == 0) {
      chunk_.resize(64 * 1024);
      fill_pattern(seed_, bytes_sent(), chunk_.data(), chunk_.size());
      send(chunk_);
    }
    wake_after(10ms);
  }

 private:
  std::uint64_t seed_;
  std::string chunk_;
};

TEST_CASE("slow readers: output is bounded by backpressure and other clients are still served") {
  ServerProcess server;
  start_server(server, "echo");
  const sockaddr_in address = server.address();
  ClientLoop loop(256);

  const std::size_t baseline_fds = idle_fd_baseline(loop, server);
  const std::size_t baseline_rss = rss_of(server);

  std::vector<SlowReader*> readers;
  for (std::size_t i = 0; i < kSlowReaders; ++i)
    readers.push_back(&loop.add<SlowReader>(address, 100 + i));

  // Until every reader is stuck: no byte sent by any of them for two seconds running.
  std::size_t peak_rss = baseline_rss;
  std::uint64_t last_total = 0;
  auto last_change = Clock::now();
  auto sample = [&] { peak_rss = std::max(peak_rss, rss_of(server)); };
  const bool stalled = loop.run_until(
      [&] {
        sample();
        std::uint64_t total = 0;
        for (const SlowReader* r : readers) total += r->bytes_sent();
        if (total != last_total) {
          last_total = total;
          last_change = Clock::now();
        }
        return loop.open_count() == kSlowReaders && Clock::now() - last_change > 2s;
      },
      120s);
  REQUIRE_MESSAGE(stalled,
                  "slow readers still sending after 120 s (" << loop.open_count() << " open)");

  // Meanwhile another client is served byte-exact.
  Tally tally;
  auto& echo = loop.add<EchoClient>(address, pattern(8, kEchoPayload), &tally);
  const auto echo_start = Clock::now();
  REQUIRE(loop.run_until(
      [&] {
        sample();
        return tally.done + tally.failed == 1;
      },
      60s));
  const double echo_seconds = seconds_between(echo_start, Clock::now());
  CHECK_MESSAGE(!echo.failed(), echo.failure());
  loop.run_for(1s);
  sample();

  // Still connected (backpressure, not a drop), and the memory bound held.
  std::size_t still_open = 0;
  std::uint64_t min_sent = ~0ull, max_sent = 0;
  for (const SlowReader* r : readers) {
    still_open += r->is_open() ? 1 : 0;
    min_sent = std::min(min_sent, r->bytes_sent());
    max_sent = std::max(max_sent, r->bytes_sent());
  }
  CHECK(still_open == kSlowReaders);
  // The slow readers, and no longer the echo client that finished.
  CHECK(wait_fd_count(server, baseline_fds + kSlowReaders, 30s) == baseline_fds + kSlowReaders);
  const double bound_kib = baseline_rss + kSlowReaders * kBoundPerConnectionKib + kSlackKib;
  if (!kSanitized) {
    CHECK_MESSAGE(peak_rss < bound_kib, "peak RSS " << mib_from_kib(peak_rss) << " over the bound "
                                                    << mib_from_kib(bound_kib));
  }

  for (SlowReader* r : readers) r->close();
  const std::size_t fds_after = wait_fd_count(server, baseline_fds, 30s);
  CHECK(fds_after == baseline_fds);
  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  CHECK(server.summary().at("connections") == kWarmUpConnections + kSlowReaders + 1);

  MESSAGE("slow readers: " << kSlowReaders << " stuck after sending "
                           << fixed(min_sent / 1048576.0, 2) << " to "
                           << fixed(max_sent / 1048576.0, 2) << " MiB each; server RSS "
                           << mib_from_kib(baseline_rss) << " -> peak " << mib_from_kib(peak_rss)
                           << " (" << fixed((peak_rss - baseline_rss) / 1024.0 / kSlowReaders, 3)
                           << " MiB per slow reader; bound " << mib_from_kib(bound_kib)
                           << std::string(kSanitized ? ", not asserted under ASan" : "")
                           << "); a 1 MiB echo took " << fixed(echo_seconds, 3) << " s meanwhile");
}

}  // namespace
}  // namespace fault
