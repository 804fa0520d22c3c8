// Scenario 8, nothing lost. A mixed soak, 60 s by default (FAULT_SOAK_SECONDS overrides): echo
// streams verifying every byte, chat clients publishing numbered lines that every other member
// must see in order, and connection churn (connect, echo, close). At the end every echo byte is
// verified, every chat line delivered in order, and both servers are flat: descriptors back to
// their baseline, RSS within 8 MiB of what it was after warm-up.
#include <charconv>
#include <cstring>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kEchoStreams = 16;
constexpr std::size_t kEchoWindow = 256 * 1024;
constexpr std::size_t kChatters = 10;
constexpr auto kChatInterval = 40ms;
constexpr std::size_t kChatLinesPerTick = 4;  // up to 100 lines a second each
constexpr auto kChurnTick = 50ms;
constexpr std::size_t kChurnPerTick = 10;  // 200 connections a second
constexpr std::size_t kChurnMaxActive = 64;
constexpr double kRssGrowthBoundKib = 8 * 1024;

struct ChatStats {
  std::size_t delivered = 0;
  std::size_t out_of_order = 0;
  std::size_t unexpected = 0;
  std::string first_problem;
};

// Joins the lobby as p<id>, publishes "<n> ..." lines on a timer once started, and checks that
// the lines of every other publisher arrive numbered 1, 2, 3, ... without a gap.
class Chatter final : public LineClient {
 public:
  Chatter(std::size_t id, std::size_t count, ChatStats& stats)
      : id_(id), last_seen_(count, 0), stats_(stats) {}

  void on_connected() override { send("/nick p" + std::to_string(id_) + "\n"); }
  void on_timer() override {
    if (!publishing_) return;
    std::string lines;
    for (std::size_t i = 0; i < kChatLinesPerTick; ++i) {
      ++published_;
      lines += std::to_string(published_) + " from p" + std::to_string(id_) +
               " padding the line to a realistic length\n";
    }
    send(lines);
    wake_after(kChatInterval);
  }
  void on_line(std::string_view line) override {
    if (line == "OK nick p" + std::to_string(id_) + ", joined lobby") {
      joined_ = true;
    } else if (line == "OK bye") {
      said_bye_ = true;
    } else if (line.starts_with("p")) {
      check(line);
    } else if (!line.starts_with("* ")) {
      problem("unexpected line: " + std::string(line));
    }
  }

  void start_publishing() {
    publishing_ = true;
    wake_after(kChatInterval);
  }
  void stop_publishing() { publishing_ = false; }
  // Leaves with /quit; the server answers "OK bye" and closes.
  void quit() { send("/quit\n"); }
  bool said_bye() const noexcept { return said_bye_; }
  bool joined() const noexcept { return joined_; }
  std::uint64_t published() const noexcept { return published_; }
  std::uint64_t seen_from(std::size_t publisher) const noexcept { return last_seen_[publisher]; }

 private:
  void check(std::string_view line) {
    std::size_t publisher = 0;
    std::uint64_t number = 0;
    const char* p = line.data() + 1;
    const char* end = line.data() + line.size();
    auto [after_id, e1] = std::from_chars(p, end, publisher);
    if (e1 != std::errc() || end - after_id < 3 || after_id[0] != ':' ||
        publisher >= last_seen_.size() || publisher == id_) {
      return problem("unexpected line: " + std::string(line));
    }
    auto [after_number, e2] = std::from_chars(after_id + 2, end, number);
    if (e2 != std::errc()) return problem("unnumbered line: " + std::string(line));
    if (number != last_seen_[publisher] + 1) {
      ++stats_.out_of_order;
      if (stats_.first_problem.empty()) {
        stats_.first_problem = "p" + std::to_string(id_) + " got line " + std::to_string(number) +
                               " of p" + std::to_string(publisher) + " after line " +
                               std::to_string(last_seen_[publisher]);
      }
    }
    last_seen_[publisher] = number;
    ++stats_.delivered;
  }
  void problem(std::string what) {
    ++stats_.unexpected;
    if (stats_.first_problem.empty()) stats_.first_problem = std::move(what);
  }

  std::size_t id_;
  std::vector<std::uint64_t> last_seen_;
  ChatStats& stats_;
  std::uint64_t published_ = 0;
  bool joined_ = false;
  bool said_bye_ = false;
  bool publishing_ = false;
};

struct Flatness {
  std::size_t baseline_fds = 0;
  std::size_t warm_rss = 0;
  std::size_t peak_rss = 0;
  std::size_t loaded_end_rss = 0;
  std::size_t idle_end_rss = 0;
  std::size_t end_fds = 0;
};

std::string describe(const char* name, const Flatness& f) {
  return std::string(name) + " RSS " + mib_from_kib(f.warm_rss) + " after warm-up, peak " +
         mib_from_kib(f.peak_rss) + ", " + mib_from_kib(f.loaded_end_rss) + " at the end, " +
         mib_from_kib(f.idle_end_rss) + " idle; descriptors " + std::to_string(f.baseline_fds) +
         " -> " + std::to_string(f.end_fds);
}

TEST_CASE(
    "nothing lost: a mixed soak of echo and chat and churn verifies every byte and stays flat") {
  const auto duration = std::chrono::seconds(env_number("FAULT_SOAK_SECONDS", 60));
  const auto warm_up = std::max<std::chrono::seconds>(duration / 6, 2s);
  ServerProcess echo_server, chat_server;
  start_server(echo_server, "echo");
  start_server(chat_server, "chat");
  const sockaddr_in echo_address = echo_server.address();
  const sockaddr_in chat_address = chat_server.address();
  ClientLoop loop(256);
  Flatness echo_flat, chat_flat;
  echo_flat.baseline_fds = idle_fd_baseline(loop, echo_server);
  chat_flat.baseline_fds = idle_fd_baseline(loop, chat_server);

  ChatStats chat;
  std::vector<Chatter*> chatters;
  for (std::size_t i = 0; i < kChatters; ++i)
    chatters.push_back(&loop.add<Chatter>(chat_address, i, kChatters, chat));
  REQUIRE(loop.run_until(
      [&] {
        for (const Chatter* c : chatters) {
          if (!c->joined()) return false;
        }
        return true;
      },
      30s));
  for (Chatter* c : chatters) c->start_publishing();

  std::vector<StreamEchoClient*> streams;
  for (std::size_t i = 0; i < kEchoStreams; ++i) {
    streams.push_back(&loop.add<StreamEchoClient>(echo_address, 800 + i, kEchoWindow));
  }

  Tally churn;
  std::size_t churn_launched = 0;
  auto next_churn = Clock::now();
  auto next_sample = Clock::now();
  const auto start = Clock::now();
  const auto warm_at = start + warm_up;
  bool warm = false;
  auto failing = [&] {
    for (const StreamEchoClient* s : streams) {
      if (s->failed() || s->closed()) return true;
    }
    return churn.failed > 0 || chat.out_of_order > 0 || chat.unexpected > 0;
  };
  auto sample = [&](Flatness& f, const ServerProcess& server) {
    const std::size_t rss = rss_of(server);
    f.peak_rss = std::max(f.peak_rss, rss);
    f.loaded_end_rss = rss;
    if (!warm) f.warm_rss = rss;
  };
  const bool broke = loop.run_until(
      [&] {
        const auto now = Clock::now();
        if (now >= next_churn) {
          next_churn += kChurnTick;
          for (std::size_t i = 0;
               i < kChurnPerTick && churn_launched - churn.done - churn.failed < kChurnMaxActive;
               ++i) {
            const std::size_t size = 1 + (churn_launched * 7919) % (16 * 1024);
            loop.add<EchoClient>(echo_address, pattern(100000 + churn_launched, size), &churn);
            ++churn_launched;
          }
        }
        if (now >= next_sample) {
          next_sample += 1s;
          if (!warm && now >= warm_at) {
            sample(echo_flat, echo_server);
            sample(chat_flat, chat_server);
            warm = true;
          } else if (warm) {
            sample(echo_flat, echo_server);
            sample(chat_flat, chat_server);
          }
        }
        return failing();
      },
      duration);
  // What the servers logged, for the message of a failing check (the last 2,000 bytes).
  auto said = [](const ServerProcess& server) {
    const std::string errors = server.process.err();
    return "server stderr: " + errors.substr(errors.size() > 2000 ? errors.size() - 2000 : 0);
  };
  CHECK_FALSE_MESSAGE(broke, "stopped after " << fixed(seconds_between(start, Clock::now()), 1)
                                              << " s; " << chat.first_problem << "; "
                                              << said(echo_server) << "; " << said(chat_server));
  REQUIRE(warm);

  // Wind down: stop producing, then everything produced must arrive.
  for (Chatter* c : chatters) c->stop_publishing();
  for (StreamEchoClient* s : streams) s->stop_sending();
  auto chat_caught_up = [&] {
    for (std::size_t r = 0; r < kChatters; ++r) {
      for (std::size_t p = 0; p < kChatters; ++p) {
        if (p != r && chatters[r]->seen_from(p) != chatters[p]->published()) return false;
      }
    }
    return true;
  };
  const bool drained = loop.run_until(
      [&] {
        for (const StreamEchoClient* s : streams) {
          if (!s->done() && !s->failed() && !s->closed()) return false;
        }
        return churn.done + churn.failed == churn_launched && chat_caught_up();
      },
      60s);
  CHECK_MESSAGE(drained, said(echo_server) << "; " << said(chat_server));
  const double elapsed = seconds_between(start, Clock::now());

  std::uint64_t echo_bytes = 0;
  for (const StreamEchoClient* s : streams) {
    CHECK_MESSAGE(!s->failed(), "stream " << s->index() << ": " << s->failure());
    CHECK(s->done());
    echo_bytes += s->verified();
  }
  CHECK_MESSAGE(churn.failed == 0, said(echo_server));
  CHECK(churn.done == churn_launched);
  CHECK_MESSAGE(loop.connect_failures() == 0,
                "first connect error: " << std::strerror(loop.first_connect_error()));
  CHECK_MESSAGE(chat.out_of_order == 0, chat.first_problem);
  CHECK_MESSAGE(chat.unexpected == 0, chat.first_problem);
  CHECK(chat_caught_up());
  std::uint64_t published = 0;
  for (const Chatter* c : chatters) published += c->published();
  CHECK(chat.delivered == published * (kChatters - 1));

  // Flat: RSS near its post-warm-up value, descriptors back to the baseline once clients leave.
  // One at a time, so that the server never announces a departure to a member already gone.
  for (Chatter* c : chatters) {
    c->quit();
    CHECK(loop.run_until([&] { return c->closed(); }, 30s));
    CHECK(c->said_bye());
    CHECK(c->ended_by_peer());
  }
  echo_flat.end_fds = wait_fd_count(echo_server, echo_flat.baseline_fds, 30s);
  chat_flat.end_fds = wait_fd_count(chat_server, chat_flat.baseline_fds, 30s);
  CHECK(echo_flat.end_fds == echo_flat.baseline_fds);
  CHECK(chat_flat.end_fds == chat_flat.baseline_fds);
  echo_flat.idle_end_rss = rss_of(echo_server);
  chat_flat.idle_end_rss = rss_of(chat_server);
  if (!kSanitized) {
    for (const Flatness* f : {&echo_flat, &chat_flat}) {
      CHECK(double(f->loaded_end_rss) < f->warm_rss + kRssGrowthBoundKib);
      CHECK(double(f->idle_end_rss) < f->warm_rss + kRssGrowthBoundKib);
    }
  }

  const std::string echo_stopped = echo_server.stop(30s);
  const std::string chat_stopped = chat_server.stop(30s);
  REQUIRE_MESSAGE(echo_stopped.empty(), echo_stopped);
  REQUIRE_MESSAGE(chat_stopped.empty(), chat_stopped);
  CHECK(echo_server.summary().at("connections") ==
        kWarmUpConnections + kEchoStreams + churn_launched);
  CHECK_MESSAGE(echo_server.summary().at("failed") == 0, said(echo_server));
  CHECK(chat_server.summary().at("connections") == kWarmUpConnections + kChatters);
  CHECK_MESSAGE(chat_server.summary().at("failed") == 0, said(chat_server));

  MESSAGE("soak: " << duration.count() << " s (" << fixed(elapsed, 1) << " s with wind-down): "
                   << kEchoStreams << " echo streams verified " << fixed(echo_bytes / 1048576.0, 0)
                   << " MiB (" << fixed(echo_bytes / 1048576.0 / elapsed, 1) << " MiB/s); "
                   << kChatters << " chatters "
                   << "published " << published << " lines, " << chat.delivered
                   << " deliveries all in order; " << churn_launched
                   << " churn connections all echoed");
  MESSAGE("soak: " << describe("echo server", echo_flat) << "; "
                   << describe("chat server", chat_flat)
                   << std::string(kSanitized ? " (RSS not asserted under ASan)" : ""));
}

}  // namespace
}  // namespace fault
