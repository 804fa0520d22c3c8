// Scenario 9, out of threads (issue #12, item 6). The thread model runs as an unprivileged user
// with RLIMIT_NPROC kTasks (root ignores that limit, so the test needs root to switch users):
// connections beyond its threads are accepted and closed unserved and counted as rejected; each
// burst of them is said once on stderr; clients that reconnect at once do not make the server
// spin (it stops accepting briefly after a failure); the connections it holds keep being
// served; and once threads are free again it serves new connections.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr rlim_t kTasks = 6;    // the server's main thread and at most 5 connection threads
constexpr uid_t kUser = 54321;  // an id nothing else runs as: its task count is the server's
constexpr std::size_t kStormClients = 4;
constexpr std::size_t kStormAttempts = 400;
constexpr auto kStormTime = 2s;
constexpr const char* kWarning = "cannot start a thread for";

std::size_t count_of(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// utime + stime of the whole process, in clock ticks.
std::uint64_t cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(close_paren + 2));
  std::string field;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15 (1-based)
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return utime + stime;
}

std::size_t thread_count(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::stoul(line.substr(8));
  }
  return 0;
}

std::string line_for(const char* what, std::size_t i) {
  return std::string(what) + " " + std::to_string(i) + "\n";
}

// The server and the libraries it loads from the build tree, copied into a fresh directory any
// user may read: the unprivileged user cannot be trusted to reach the build tree (a clone under
// /root or in a mktemp -d directory is closed to it). Removed again on destruction.
class PublicCopy {
 public:
  explicit PublicCopy(const std::string& server) {
    namespace fs = std::filesystem;
    char dir[] = "/tmp/reactor-public-XXXXXX";
    if (::mkdtemp(dir) == nullptr || ::chmod(dir, 0755) != 0) return;
    dir_ = dir;
    std::error_code ec;
    const fs::path build = fs::path(server).parent_path().parent_path();
    fs::copy_file(server, dir_ / "reactor-server", ec);
    if (ec) return;
    for (const auto& entry : fs::recursive_directory_iterator(build / "reactor", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with("lib") && name.find(".so") != std::string::npos &&
          entry.is_regular_file() && entry.path().extension() != ".p") {
        fs::copy_file(entry.path(), dir_ / name, fs::copy_options::overwrite_existing, ec);
        if (ec) return;
      }
    }
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      ::chmod(entry.path().c_str(), 0755);
    }
    ok_ = !ec;
  }
  ~PublicCopy() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const noexcept { return ok_; }
  std::string server() const { return (dir_ / "reactor-server").string(); }
  std::string library_path() const { return "LD_LIBRARY_PATH=" + dir_.string(); }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// An echo client that ended without its echo, closed by the server: refused.
bool refused(const EchoClient& c) {
  return c.closed() && !c.done() && c.connected() && c.ended_by_peer();
}

// Opens echo clients one at a time, holding each one served, until the server refuses one.
// Returns whether it did within `most` attempts.
bool fill(ClientLoop& loop, const sockaddr_in& address, std::vector<EchoClient*>& held,
          std::size_t most) {
  for (std::size_t i = 0; i < most; ++i) {
    EchoClient& c = loop.add<EchoClient>(address, line_for("held", held.size()), nullptr, true);
    REQUIRE(loop.run_until([&] { return c.done() || c.closed(); }, 30s));
    if (!c.done()) {
      REQUIRE_MESSAGE(refused(c), c.failure());
      return true;
    }
    held.push_back(&c);
  }
  return false;
}

TEST_CASE(
    "thread exhaustion: connections beyond the threads are refused, said once per burst, "
    "and served again once threads are free") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root, to run the server as a user whose RLIMIT_NPROC applies");
    return;
  }
  raise_fd_limit();
  ServerProcess server;
  SpawnOptions options = server_options();
  options.max_tasks = kTasks;
  options.user = kUser;
  const PublicCopy copy(kServerPath);
  REQUIRE_MESSAGE(copy.ok(), "cannot copy " << kServerPath << " and its libraries to /tmp");
  options.env.push_back(copy.library_path());
  const std::string error = server.start(copy.server(), server_args("echo", "thread"), options);
  REQUIRE_MESSAGE(error.empty(), error);
  const sockaddr_in address = server.address();
  ClientLoop loop;
  std::size_t refusals = 0;

  // Burst 1: the server's threads fill up, then one connection is refused.
  std::vector<EchoClient*> held;
  REQUIRE(fill(loop, address, held, kTasks + 4));
  ++refusals;
  const std::size_t capacity = held.size();
  REQUIRE(capacity >= 1);
  CHECK(capacity < kTasks);
  CHECK(thread_count(server.pid()) == capacity + 1);

  // Still out of threads: clients that reconnect as soon as they are refused. The server pauses
  // accepting after each failure, so it refuses a few per pause, not as fast as they come.
  const std::uint64_t cpu_before = cpu_ticks(server.pid());
  const auto storm_start = Clock::now();
  std::vector<EchoClient*> storm;  // the live ones
  std::size_t storm_attempts = 0;
  std::size_t storm_refused = 0;
  std::size_t storm_served = 0;
  for (std::size_t i = 0; i < kStormClients; ++i) {
    storm.push_back(&loop.add<EchoClient>(address, line_for("storm", storm_attempts++)));
  }
  auto any_closed = [&] {
    return std::any_of(storm.begin(), storm.end(), [](const EchoClient* c) { return c->closed(); });
  };
  while (Clock::now() - storm_start < kStormTime && storm_attempts < kStormAttempts) {
    loop.run_until(any_closed, 1s);
    for (EchoClient*& c : storm) {
      if (!c->closed()) continue;
      if (c->done()) ++storm_served;
      if (refused(*c)) ++storm_refused;
      c = &loop.add<EchoClient>(address, line_for("storm", storm_attempts++));
    }
  }
  // The last ones are refused too (the pressure is still on): every attempt is accounted for.
  REQUIRE(loop.run_until(
      [&] {
        return std::all_of(storm.begin(), storm.end(),
                           [](const EchoClient* c) { return c->closed(); });
      },
      30s));
  for (const EchoClient* c : storm) {
    if (c->done()) ++storm_served;
    if (refused(*c)) ++storm_refused;
  }
  const double storm_seconds = seconds_between(storm_start, Clock::now());
  const std::uint64_t storm_cpu = cpu_ticks(server.pid()) - cpu_before;
  const double storm_ticks = storm_seconds * static_cast<double>(::sysconf(_SC_CLK_TCK));
  refusals += storm_refused;
  CHECK(storm_served == 0);
  CHECK(storm_refused == storm_attempts);
  // At most every client once per 100 ms pause (twice that, and two pauses, for slack); without
  // the pause a reconnecting client is refused as fast as it can connect.
  CHECK(static_cast<double>(storm_refused) <= (storm_seconds * 20 + 2) * kStormClients);
  CHECK(static_cast<double>(storm_cpu) <= storm_ticks / 2 + 5);
  // The warning goes to stderr as the client is refused: it may reach us just after the refusal.
  const auto warnings = [&](std::size_t n) {
    server.process.pump_until([&] { return count_of(server.process.err(), kWarning) >= n; }, 10s);
    return count_of(server.process.err(), kWarning);
  };
  CHECK(warnings(1) == 1);

  // The connections it holds are still served meanwhile.
  Tally again;
  for (std::size_t i = 0; i < held.size(); ++i) held[i]->again(line_for("again", i), &again);
  REQUIRE(loop.run_until([&] { return again.done + again.failed == held.size(); }, 30s));
  CHECK(again.done == held.size());

  // The pressure goes: the held clients leave, their threads end, a new client is served.
  for (EchoClient* c : held) c->close();
  held.clear();
  CHECK(poll_until([&] { return thread_count(server.pid()) == 1; }, 30s));
  EchoClient& after = loop.add<EchoClient>(address, line_for("after", 0));
  REQUIRE(loop.run_until([&] { return after.done() || after.closed(); }, 30s));
  CHECK_MESSAGE(after.done(), after.failure());
  const std::size_t served = capacity + (after.done() ? 1 : 0);
  // Its thread ends once it has read the client's close: until then it still counts against
  // RLIMIT_NPROC, and burst 2 would find one thread fewer (the flake seen under ASan: 4 == 5).
  CHECK(poll_until([&] { return thread_count(server.pid()) == 1; }, 30s));

  // Burst 2: the same again, said once more.
  REQUIRE(fill(loop, address, held, kTasks + 4));
  ++refusals;
  CHECK(held.size() == capacity);
  CHECK(warnings(2) == 2);

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  const Summary summary = server.summary();
  CHECK(summary.at("rejected") == refusals);
  CHECK(summary.at("connections") == served + held.size());
  MESSAGE("thread exhaustion: RLIMIT_NPROC "
          << kTasks << " held " << capacity << " connections; a storm of " << kStormClients
          << " reconnecting clients was refused " << storm_refused << " times in "
          << fixed(storm_seconds, 2) << " s using " << storm_cpu
          << " CPU ticks; summary rejected=" << summary.at("rejected") << "; stderr said it "
          << count_of(server.process.err(), kWarning) << " times");
}

}  // namespace
}  // namespace fault
