// The classic concurrency models (thread per connection, process per connection) drive the same
// Sessions as epoll: echo, a Hub-based broadcast room, names and directories, limits, stopping.
//
// Thread-model servers run in a std::thread of this process and stop through request_stop().
// Fork-model servers run single-threaded in a forked server process (fork() from a threaded
// process is unsafe) that reports its bound address and, after SIGTERM, its stats through a pipe.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/models/fork.hpp"
#include "reactor/models/prefork.hpp"
#include "reactor/models/thread.hpp"
#include "reactor/models/threadpool.hpp"
#include "reactor/session.hpp"
#include "reactor/socket.hpp"
#include "support/forked_child.hpp"
#include "support/support.hpp"

namespace {

using namespace std::chrono_literals;
using reactor::Address;
using reactor::Errc;
using reactor::Fd;
using reactor::Hub;
using reactor::ModelOptions;
using reactor::Peer;
using reactor::Protocol;
using reactor::ServerStats;
using reactor::Session;
using test::parse;

constexpr auto kWait = 5s;  // bound on every blocking wait in these tests

// ---- protocols ----

// Reasons given to on_close, for tests that look at why connections ended (thread model only:
// under fork the sessions live in other processes).
class CloseLog {
 public:
  void record(std::error_code ec) {
    std::lock_guard lock(mutex_);
    reasons_.push_back(ec);
    changed_.notify_all();
  }
  // True once `n` sessions have closed with an error (bounded by kWait).
  bool wait_for_failures(std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] {
      std::size_t failures = 0;
      for (auto r : reasons_) failures += r ? 1 : 0;
      return failures >= n;
    });
  }
  std::string describe() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (auto r : reasons_) out += "[" + r.message() + "] ";
    return out;
  }
  std::size_t count(std::error_code ec) const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (auto r : reasons_) n += r == ec ? 1 : 0;
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::error_code> reasons_;
};

class EchoProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> open(Hub&) override {
    return std::make_unique<test::EchoSession>([this](std::error_code ec) { log.record(ec); });
  }
  CloseLog log;
};

// Joins "lobby" on open (and says "joined"), publishes every complete line to the others.
class RoomSession final : public Session {
 public:
  RoomSession(Hub& hub, CloseLog& log) : hub_(hub), log_(log) {}
  void on_open(Peer& peer) override {
    peer_ = &peer;
    hub_.join("lobby", peer);
    peer.send("joined\n");
  }
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override {
    auto end = reactor::as_text(bytes).rfind('\n');
    if (end == std::string_view::npos) return 0;
    if (reactor::as_text(bytes.first(end + 1)) == "nap and leave\n") {
      // Misbehaves on purpose (blocks), so that deliveries pile up unread, then leaves.
      ::poll(nullptr, 0, 300);
      peer.close();
      return end + 1;
    }
    hub_.publish("lobby", bytes.first(end + 1), &peer);
    return end + 1;
  }
  // Departures are announced to the room, the way chat does it.
  void on_close(std::error_code ec) override {
    hub_.forget(*peer_);
    std::string notice = ec ? "dropped: " + ec.message() + "\n" : std::string("left\n");
    hub_.publish("lobby", reactor::as_bytes(notice), nullptr);
    log_.record(ec);
  }

 private:
  Hub& hub_;
  CloseLog& log_;
  Peer* peer_ = nullptr;
};

class RoomProtocol final : public Protocol {
 public:
  explicit RoomProtocol(std::size_t max_outbox = 0) : max_outbox_(max_outbox) {}
  std::unique_ptr<Session> open(Hub& hub) override {
    return std::make_unique<RoomSession>(hub, log);
  }
  std::size_t max_outbox() const override { return max_outbox_; }
  CloseLog log;

 private:
  std::size_t max_outbox_;
};

// Line commands over the Hub's directory: name, join, to, rooms, members.
class DirectorySession final : public Session {
 public:
  explicit DirectorySession(Hub& hub) : hub_(hub) {}
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override {
    std::string_view text = reactor::as_text(bytes);
    std::size_t used = 0;
    for (auto end = text.find('\n'); end != std::string_view::npos; end = text.find('\n', used)) {
      command(peer, text.substr(used, end - used));
      used = end + 1;
    }
    return used;
  }
  void on_close(std::error_code) override {
    if (peer_ != nullptr) hub_.forget(*peer_);
  }

 private:
  void command(Peer& peer, std::string_view line) {
    peer_ = &peer;
    auto space = line.find(' ');
    std::string_view verb = line.substr(0, space);
    std::string_view arg = space == std::string_view::npos ? "" : line.substr(space + 1);
    if (verb == "name") {
      peer.send(hub_.claim_name(arg, peer) ? "ok\n" : "taken\n");
    } else if (verb == "join") {
      hub_.join(arg, peer);
      peer.send("joined " + std::string(arg) + "\n");
    } else if (verb == "to") {
      auto gap = arg.find(' ');
      std::string text = std::string(arg.substr(gap + 1)) + "\n";
      peer.send(hub_.send_to(arg.substr(0, gap), reactor::as_bytes(text)) ? "sent\n" : "nobody\n");
    } else if (verb == "rooms") {
      std::string out = "rooms";
      for (const auto& room : hub_.rooms()) {
        out += " " + room.name + ":" + std::to_string(room.members);
      }
      peer.send(out + "\n");
    } else if (verb == "members") {
      std::string out = "members";
      for (const auto& name : hub_.members(arg)) out += " " + name;
      peer.send(out + "\n");
    }
  }

  Hub& hub_;
  Peer* peer_ = nullptr;
};

class DirectoryProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> open(Hub& hub) override {
    return std::make_unique<DirectorySession>(hub);
  }
};

// Echo that keeps every byte unconsumed (tests max_input), throws on "boom", or blocks forever
// on "block" (a broken session; only the fork model can get rid of it, with SIGKILL).
class MisbehavingSession final : public Session {
 public:
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override {
    std::string_view text = reactor::as_text(bytes);
    if (text.find("boom\n") != std::string_view::npos) throw std::runtime_error("boom");
    if (text.find("block\n") != std::string_view::npos) {
      // Output is written when the callback returns, or at once from 64 KiB on: this one never
      // returns, so it says "blocking" with enough padding to go out now.
      peer.send("blocking\n" + std::string(64 * 1024, '.') + "\n");
      for (;;) ::poll(nullptr, 0, -1);  // a stop signal's handler ends one wait, not this loop
    }
    if (text.find("hoard") != std::string_view::npos) return 0;
    peer.send(bytes);
    return bytes.size();
  }
};

class MisbehavingProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> open(Hub&) override { return std::make_unique<MisbehavingSession>(); }
  std::size_t max_input() const override { return 1024; }
};

// Sends 8 MiB as soon as it opens: output that a client that never reads keeps pending.
class FloodSession final : public Session {
 public:
  explicit FloodSession(CloseLog& log) : log_(log) {}
  void on_open(Peer& peer) override {
    std::string flood(8u << 20, '~');
    peer.send(flood);
  }
  std::size_t on_data(Peer&, std::span<const std::byte> bytes) override { return bytes.size(); }
  void on_close(std::error_code ec) override { log_.record(ec); }

 private:
  CloseLog& log_;
};

class FloodProtocol final : public Protocol {
 public:
  std::unique_ptr<Session> open(Hub&) override { return std::make_unique<FloodSession>(log); }
  CloseLog log;
};

// ---- clients ----

std::string unix_path() {
  static int counter = 0;
  return "/tmp/reactor-models-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) +
         ".sock";
}

// A blocking client: every receive and send gives up after kWait.
class Client {
 public:
  // `receive_buffer` > 0 shrinks SO_RCVBUF before connecting (a reader that falls behind fast).
  explicit Client(const Address& address, int receive_buffer = 0) {
    if (receive_buffer > 0) {
      fd_ = Fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
      REQUIRE(fd_);
      REQUIRE(!reactor::set_buffer_sizes(fd_.get(), receive_buffer, 0));
      REQUIRE(::connect(fd_.get(), address.sockaddr_ptr(), address.length()) == 0);
    } else {
      auto fd = reactor::connect_blocking(address, kWait);
      REQUIRE_MESSAGE(fd.ok(), reactor::describe("connect", fd.error()));
      fd_ = std::move(*fd);
    }
    REQUIRE(!reactor::set_receive_timeout(fd_.get(), kWait));
    REQUIRE(!reactor::set_send_timeout(fd_.get(), kWait));
  }

  int fd() const { return fd_.get(); }
  bool send(std::string_view text) {
    return !reactor::send_all(fd_.get(), text.data(), text.size());
  }
  // One line without its '\n'; "<eof>" or "<error>" when none comes.
  std::string read_line() {
    for (;;) {
      auto end = buffer_.find('\n');
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        return line;
      }
      char chunk[4096];
      auto n = reactor::recv_some(fd_.get(), chunk, sizeof(chunk));
      if (!n) return "<error>";
      if (*n == 0) return "<eof>";
      buffer_.append(chunk, *n);
    }
  }
  // Reads until EOF or a reset; false if the peer is still silent after kWait.
  bool reads_to_end(std::size_t* total = nullptr) {
    std::size_t got = buffer_.size();
    buffer_.clear();
    std::vector<char> chunk(64 * 1024);
    for (;;) {
      auto n = reactor::recv_some(fd_.get(), chunk.data(), chunk.size());
      if (!n && (n.error() == std::errc::resource_unavailable_try_again)) return false;
      if (!n || *n == 0) break;
      got += *n;
    }
    if (total != nullptr) *total = got;
    return true;
  }
  // Closes with RST (SO_LINGER 0), mid-stream.
  void reset() {
    reactor::set_linger_abort(fd_.get());
    fd_.reset();
  }
  void close() { fd_.reset(); }

 private:
  Fd fd_;
  std::string buffer_;
};

// Deterministic bytes for client `seed`.
std::string payload(unsigned seed, std::size_t size) {
  std::mt19937 random(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(random());
  return out;
}

// Sends `chunks` pieces of varied size and reads each one back; "" when everything matched.
std::string echo_round_trips(const Address& address, unsigned seed, int chunks,
                             std::size_t* bytes) {
  Client client(address);
  std::mt19937 sizes(seed * 7 + 1);
  std::size_t total = 0;
  for (int i = 0; i < chunks; ++i) {
    std::string data = payload(seed * 1000 + static_cast<unsigned>(i), 1 + sizes() % 8192);
    if (!client.send(data)) return "send failed";
    std::string back(data.size(), '\0');
    auto got = reactor::recv_exact(client.fd(), back.data(), back.size());
    if (!got || *got != data.size()) return "short echo";
    if (back != data) return "echo differs";
    total += data.size();
  }
  if (bytes != nullptr) *bytes = total;
  return "";
}

// ---- servers ----

enum class Kind { thread, fork, threadpool, prefork };

std::unique_ptr<reactor::Model> make_model(Kind kind, Protocol& protocol,
                                           const ModelOptions& options) {
  switch (kind) {
    case Kind::thread:
      return reactor::make_thread_model(protocol, options);
    case Kind::fork:
      return reactor::make_fork_model(protocol, options);
    case Kind::threadpool:
      return reactor::make_threadpool_model(protocol, options);
    case Kind::prefork:
      return reactor::make_prefork_model(protocol, options);
  }
  return nullptr;
}

ModelOptions test_options() {
  ModelOptions options;
  options.shutdown_grace = 2000ms;
  options.workers = 3;  // threadpool, prefork: several threads or processes
  return options;
}

// run() on a thread of this process; stop() is request_stop() from the test thread.
class InProcessServer {
 public:
  InProcessServer(Kind kind, Protocol& protocol, const ModelOptions& options = test_options(),
                  const std::vector<std::string>& urls = {"tcp://127.0.0.1:0"})
      : model_(make_model(kind, protocol, options)) {
    for (const auto& url : urls) {
      auto bound = model_->listen(parse(url));
      REQUIRE_MESSAGE(bound.ok(), reactor::describe(url, bound.error()));
      addresses_.push_back(*bound);
    }
    thread_ = std::thread([this] { result_ = model_->run(); });
  }
  ~InProcessServer() {
    if (thread_.joinable()) {
      model_->request_stop();
      thread_.join();
    }
  }
  const Address& address() const { return addresses_.front(); }
  const std::vector<Address>& addresses() const { return addresses_; }
  ServerStats stop() {
    model_->request_stop();
    thread_.join();
    CHECK_MESSAGE(!result_, result_.message());
    return model_->stats();
  }

 private:
  std::unique_ptr<reactor::Model> model_;
  std::vector<Address> addresses_;
  std::error_code result_;
  std::thread thread_;
};

// What a forked server process writes to its pipe after run() returns.
struct ServerReport {
  int run_error = 0;
  int no_children = 0;  // waitpid(-1, WNOHANG) said ECHILD: every child was reaped
  ServerStats stats;
};

// A server process running run() on its only thread; stop() is SIGTERM.
class ForkedServer {
 public:
  ForkedServer(Kind kind, Protocol& protocol, const ModelOptions& options = test_options(),
               const std::vector<std::string>& urls = {"tcp://127.0.0.1:0"})
      : child_([&](int report_fd) { return serve(kind, protocol, options, urls, report_fd); }) {
    for (std::size_t i = 0; i < urls.size(); ++i) {
      const auto text = child_.read_text(kWait);
      REQUIRE(text.has_value());
      REQUIRE(!text->empty());
      addresses_.push_back(parse(*text));
    }
  }
  const Address& address() const { return addresses_.front(); }
  const std::vector<Address>& addresses() const { return addresses_; }

  ServerStats stop() {
    REQUIRE(child_.signal(SIGTERM));
    ServerReport report;
    bool got = child_.read(&report, sizeof(report), 3 * kWait);
    const auto status = child_.wait_exit(kWait);
    REQUIRE(got);
    REQUIRE(status.has_value());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(report.run_error == 0);
    CHECK_MESSAGE(report.no_children == 1, "the server left children behind");
    return report.stats;
  }

 private:
  // The child's side: exit codes say what failed.
  static int serve(Kind kind, Protocol& protocol, const ModelOptions& options,
                   const std::vector<std::string>& urls, int report_fd) {
    // Blocked before anything else, so that a SIGTERM sent early waits for run()'s signalfd.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto model = make_model(kind, protocol, options);
    for (const auto& url : urls) {
      auto address = Address::parse(url);
      if (!address) return 3;
      auto bound = model->listen(*address);
      if (!bound) return 4;
      if (!test::ForkedChild::send_text(report_fd, bound->to_string())) return 5;
    }
    ServerReport report;
    report.run_error = model->run().value();
    report.stats = model->stats();
    report.no_children = ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD ? 1 : 0;
    return test::ForkedChild::write_all(report_fd, &report, sizeof(report)) ? 0 : 6;
  }

  test::ForkedChild child_;
  std::vector<Address> addresses_;
};

struct ThreadModel {
  static constexpr Kind kind = Kind::thread;
  using Server = InProcessServer;
};
struct ForkModel {
  static constexpr Kind kind = Kind::fork;
  using Server = ForkedServer;
};
struct ThreadpoolModel {
  static constexpr Kind kind = Kind::threadpool;
  using Server = InProcessServer;
};
struct PreforkModel {
  static constexpr Kind kind = Kind::prefork;
  using Server = ForkedServer;
};

}  // namespace

TEST_CASE_TEMPLATE("echo is byte-exact for several concurrent clients, and stats add up", M,
                   ThreadModel, ForkModel, ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  typename M::Server server(M::kind, protocol);
  constexpr int kClients = 4;
  std::string errors[kClients];
  std::size_t bytes[kClients] = {};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      errors[i] = echo_round_trips(server.address(), static_cast<unsigned>(i + 1), 48, &bytes[i]);
    });
  }
  for (auto& t : clients) t.join();
  std::size_t total = 0;
  for (int i = 0; i < kClients; ++i) {
    CHECK_MESSAGE(errors[i].empty(), "client ", i, ": ", errors[i]);
    total += bytes[i];
  }
  ServerStats stats = server.stop();
  CHECK(stats.accepted == kClients);
  CHECK(stats.closed == kClients);
  CHECK(stats.failed == 0);
  CHECK(stats.live == 0);
  CHECK(stats.bytes_in == total);
  CHECK(stats.bytes_out == total);
}

TEST_CASE_TEMPLATE("one server listens on TCP and UNIX stream at once", M, ThreadModel, ForkModel,
                   ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  std::string path = unix_path();
  typename M::Server server(M::kind, protocol, test_options(),
                            {"tcp://127.0.0.1:0", "unix:" + path});
  REQUIRE(server.addresses().size() == 2);
  CHECK(server.addresses()[1].unix_path() == path);
  std::size_t tcp_bytes = 0;
  std::size_t unix_bytes = 0;
  CHECK(echo_round_trips(server.addresses()[0], 8, 16, &tcp_bytes) == "");
  CHECK(echo_round_trips(server.addresses()[1], 9, 16, &unix_bytes) == "");
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 2);
  CHECK(stats.bytes_out == tcp_bytes + unix_bytes);
  CHECK(::access(path.c_str(), F_OK) != 0);  // the socket file is gone
}

TEST_CASE_TEMPLATE("a published line reaches the other members of the room, not its sender", M,
                   ThreadModel, ForkModel, ThreadpoolModel) {
  RoomProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client a(server.address()), b(server.address()), c(server.address());
  for (Client* client : {&a, &b, &c}) REQUIRE(client->read_line() == "joined");

  REQUIRE(a.send("hello from A\n"));
  CHECK(b.read_line() == "hello from A");
  CHECK(c.read_line() == "hello from A");
  REQUIRE(b.send("from B\n"));
  CHECK(a.read_line() == "from B");  // had A got its own line, it would come first
  CHECK(c.read_line() == "from B");
  REQUIRE(c.send("one\ntwo\n"));
  CHECK(a.read_line() == "one");
  CHECK(a.read_line() == "two");
  CHECK(b.read_line() == "one");
  CHECK(b.read_line() == "two");

  ServerStats stats = server.stop();
  CHECK(stats.accepted == 3);
  CHECK(stats.failed == 0);
}

TEST_CASE_TEMPLATE("a departure announced from on_close reaches the room", M, ThreadModel,
                   ForkModel, ThreadpoolModel) {
  RoomProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client leaver(server.address()), talker(server.address()), listener(server.address());
  for (Client* client : {&leaver, &talker, &listener}) REQUIRE(client->read_line() == "joined");
  // The leaver's session naps while the talker's line is delivered to it, so that under fork
  // its child exits with that delivery unread (the parent's relay then reports ECONNRESET once,
  // ahead of the notice and the child's report, which must still be read).
  REQUIRE(leaver.send("nap and leave\n"));
  REQUIRE(talker.send("hi all\n"));
  CHECK(listener.read_line() == "hi all");
  CHECK(listener.read_line() == "left");
  CHECK(talker.read_line() == "left");
  // Stopped while the others are connected: they close in order (clients that close first may
  // race a notice being sent to them and reset).
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 3);
  CHECK(stats.closed == 3);
  CHECK(stats.failed == 0);  // the leaver's report arrived: it closed in order
}

TEST_CASE_TEMPLATE("names, private messages and directories go through the Hub", M, ThreadModel,
                   ForkModel, ThreadpoolModel) {
  DirectoryProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client a(server.address()), b(server.address());
  REQUIRE(a.send("name alice\n"));
  CHECK(a.read_line() == "ok");
  REQUIRE(b.send("name alice\nname bob\n"));
  CHECK(b.read_line() == "taken");
  CHECK(b.read_line() == "ok");
  REQUIRE(a.send("join r1\n"));
  CHECK(a.read_line() == "joined r1");
  REQUIRE(b.send("join r1\njoin r2\n"));
  CHECK(b.read_line() == "joined r1");
  CHECK(b.read_line() == "joined r2");
  REQUIRE(a.send("rooms\nmembers r1\nmembers r2\n"));
  CHECK(a.read_line() == "rooms r1:2 r2:1");
  CHECK(a.read_line() == "members alice bob");
  CHECK(a.read_line() == "members bob");
  REQUIRE(a.send("to bob hi bob\nto carol hi\nto alice note to self\n"));
  CHECK(b.read_line() == "hi bob");
  CHECK(a.read_line() == "sent");
  CHECK(a.read_line() == "nobody");
  CHECK(a.read_line() == "note to self");  // delivered before the answer to the same call
  CHECK(a.read_line() == "sent");
  a.close();
  b.close();
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 2);
  CHECK(stats.failed == 0);
}

TEST_CASE_TEMPLATE("a client that disappears mid-stream does not hurt the others", M, ThreadModel,
                   ForkModel, ThreadpoolModel) {
  EchoProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client good(server.address());
  CHECK(echo_round_trips(server.address(), 21, 4, nullptr) == "");

  // Pushes without reading until the server stops taking bytes (it is paused on its full output
  // toward us), then vanishes with a reset.
  Client vanishing(server.address(), 4096);
  std::string junk(64 * 1024, 'x');
  std::size_t pushed = 0;
  while (pushed < (32u << 20)) {
    ssize_t n = ::send(vanishing.fd(), junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) break;
    pushed += static_cast<std::size_t>(n);
  }
  CHECK(pushed > 0);
  Client half(server.address());
  REQUIRE(half.send("half a messa"));
  half.reset();
  vanishing.reset();

  REQUIRE(good.send("still here\n"));
  CHECK(good.read_line() == "still here");
  CHECK(echo_round_trips(server.address(), 22, 4, nullptr) == "");
  // Under threads, see the two resets taken as failures; under fork the sessions live in other
  // processes, and a stop that comes first closes them in order (it stops reading).
  if (M::kind == Kind::thread)
    CHECK_MESSAGE(protocol.log.wait_for_failures(2), protocol.log.describe());
  good.close();

  ServerStats stats = server.stop();
  CHECK(stats.accepted == 5);
  CHECK(stats.closed == 5);
  if (M::kind == Kind::thread) CHECK(stats.failed == 2);
  CHECK(stats.live == 0);
}

TEST_CASE_TEMPLATE("a slow reader is dropped while the others keep receiving in order", M,
                   ThreadModel, ForkModel, ThreadpoolModel) {
  constexpr std::size_t kMaxOutbox = 256 * 1024;
  RoomProtocol protocol(kMaxOutbox);
  typename M::Server server(M::kind, protocol);
  Client slow(server.address(), 4096);
  Client publisher(server.address());
  Client reader(server.address());
  for (Client* client : {&slow, &publisher, &reader}) REQUIRE(client->read_line() == "joined");

  // 16 MiB in batches of 64 lines; the reader takes each batch before the next is sent, so it
  // never lags by more than one batch, while the slow client never reads at all.
  constexpr int kBatches = 256;
  constexpr int kLinesPerBatch = 64;
  const std::string notice = "dropped: " + std::error_code(Errc::too_slow).message();
  std::string filler(990, '.');
  int next_expected = 0;
  int notices = 0;
  bool in_order = true;
  for (int batch = 0; batch < kBatches && in_order; ++batch) {
    std::string lines;
    for (int i = 0; i < kLinesPerBatch; ++i) {
      char number[16];
      std::snprintf(number, sizeof(number), "%08d ", batch * kLinesPerBatch + i);
      lines += number + filler + "\n";
    }
    REQUIRE(publisher.send(lines));
    for (int i = 0; i < kLinesPerBatch; ++i) {
      std::string line = reader.read_line();
      if (line == notice) {  // the slow client's departure, announced by its session
        ++notices;
        --i;
        continue;
      }
      char number[16];
      std::snprintf(number, sizeof(number), "%08d ", next_expected++);
      if (line.compare(0, 9, number) != 0) {
        in_order = false;
        FAIL_CHECK("reader got '", line.substr(0, 20), "' expecting ", number);
        break;
      }
    }
  }
  CHECK(in_order);
  // Under fork the notice comes from the dropped child's on_close through the relay, just before
  // that child exits with deliveries unread: it must not be lost on the way.
  if (notices == 0) CHECK(reader.read_line() == notice);
  CHECK(notices <= 1);

  // The publisher is served too: it hears the notice and the reader.
  REQUIRE(reader.send("from the reader\n"));
  CHECK(publisher.read_line() == notice);
  CHECK(publisher.read_line() == "from the reader");

  // The slow client was cut off: what it gets ends (EOF or reset) well short of everything.
  std::size_t slow_total = 0;
  CHECK(slow.reads_to_end(&slow_total));
  CHECK(slow_total < std::size_t{kBatches} * kLinesPerBatch * 1000);

  ServerStats stats = server.stop();
  CHECK(stats.accepted == 3);
  CHECK(stats.failed == 1);
  if (M::kind == Kind::thread) CHECK(protocol.log.count(Errc::too_slow) == 1);
}

TEST_CASE_TEMPLATE("stopping closes open connections and run() returns", M, ThreadModel, ForkModel,
                   ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client idle(server.address());
  REQUIRE(idle.send("ping\n"));
  REQUIRE(idle.read_line() == "ping");
  ServerStats stats = server.stop();
  CHECK(idle.read_line() == "<eof>");
  CHECK(stats.accepted == 1);
  CHECK(stats.closed == 1);
  CHECK(stats.failed == 0);  // flushed and closed in order within the grace period
  CHECK(stats.bytes_in == 5);
  CHECK(stats.bytes_out == 5);
}

TEST_CASE_TEMPLATE("max_connections: the surplus is accepted, closed and counted", M, ThreadModel,
                   ForkModel, ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  ModelOptions options = test_options();
  options.max_connections = 1;
  options.workers = 1;  // the limit is split over the workers
  typename M::Server server(M::kind, protocol, options);
  Client first(server.address());
  REQUIRE(first.send("a\n"));
  REQUIRE(first.read_line() == "a");
  Client surplus(server.address());
  CHECK(surplus.reads_to_end());
  REQUIRE(first.send("b\n"));
  CHECK(first.read_line() == "b");
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 1);
  CHECK(stats.rejected == 1);
}

TEST_CASE_TEMPLATE("idle_timeout closes a silent connection", M, ThreadModel, ForkModel,
                   ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  ModelOptions options = test_options();
  options.idle_timeout = 200ms;
  typename M::Server server(M::kind, protocol, options);
  Client silent(server.address());
  CHECK(silent.read_line() == "<eof>");
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 1);
  CHECK(stats.failed == 1);
}

TEST_CASE_TEMPLATE("unconsumed input over max_input closes that connection only", M, ThreadModel,
                   ForkModel, ThreadpoolModel, PreforkModel) {
  MisbehavingProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client hoarder(server.address());
  REQUIRE(hoarder.send("hoard" + std::string(2000, '.')));
  CHECK(hoarder.reads_to_end());
  Client other(server.address());
  REQUIRE(other.send("fine\n"));
  CHECK(other.read_line() == "fine");
  other.close();
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 2);
  CHECK(stats.failed == 1);
}

TEST_CASE_TEMPLATE("a session that throws loses its connection, not the server", M, ThreadModel,
                   ForkModel, ThreadpoolModel, PreforkModel) {
  MisbehavingProtocol protocol;
  typename M::Server server(M::kind, protocol);
  Client thrower(server.address());
  REQUIRE(thrower.send("boom\n"));
  CHECK(thrower.reads_to_end());
  Client other(server.address());
  REQUIRE(other.send("fine\n"));
  CHECK(other.read_line() == "fine");
  other.close();
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 2);
  CHECK(stats.failed == 1);
}

TEST_CASE_TEMPLATE("output that cannot be flushed within shutdown_grace is dropped", M, ThreadModel,
                   ForkModel, ThreadpoolModel) {
  FloodProtocol protocol;
  ModelOptions options = test_options();
  options.shutdown_grace = 300ms;
  typename M::Server server(M::kind, protocol, options);
  Client never_reads(server.address(), 4096);
  char first = 0;
  REQUIRE(reactor::recv_exact(never_reads.fd(), &first, 1).ok());  // the session is open
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 1);
  CHECK(stats.closed == 1);
  CHECK(stats.failed == 1);
  if (M::kind == Kind::thread) CHECK(protocol.log.count(Errc::shutting_down) == 1);
  CHECK(never_reads.reads_to_end());
}

TEST_CASE("fork model: a child stuck in its session is killed after shutdown_grace") {
  MisbehavingProtocol protocol;
  ModelOptions options = test_options();
  options.shutdown_grace = 300ms;
  ForkedServer server(Kind::fork, protocol, options);
  Client client(server.address());
  REQUIRE(client.send("block\n"));
  REQUIRE(client.read_line() == "blocking");
  ServerStats stats = server.stop();  // also checks that the killed child was reaped
  CHECK(stats.accepted == 1);
  CHECK(stats.closed == 1);
  CHECK(stats.failed == 1);
  CHECK(client.reads_to_end());
}

TEST_CASE_TEMPLATE("datagram listeners are refused: they run on the epoll model", M, ThreadModel,
                   ForkModel, ThreadpoolModel, PreforkModel) {
  EchoProtocol protocol;
  auto model = make_model(M::kind, protocol, test_options());
  auto udp = model->listen(parse("udp://127.0.0.1:0"));
  REQUIRE(!udp.ok());
  CHECK(udp.error() == Errc::wrong_transport);
  auto seqpacket = model->listen(parse("seqpacket:" + unix_path()));
  REQUIRE(!seqpacket.ok());
  CHECK(seqpacket.error() == Errc::wrong_transport);
}

TEST_CASE("thread model: SIGTERM makes run() return after an orderly close") {
  EchoProtocol protocol;
  ForkedServer server(Kind::thread, protocol);
  Client client(server.address());
  REQUIRE(client.send("x\n"));
  REQUIRE(client.read_line() == "x");
  ServerStats stats = server.stop();
  CHECK(client.read_line() == "<eof>");
  CHECK(stats.accepted == 1);
  CHECK(stats.closed == 1);
}

TEST_CASE("thread model without the Hub: echo, the idle timeout and the grace's drop still work") {
  ModelOptions options = test_options();
  options.uses_hub = false;  // the blocking read
  SUBCASE("echo is byte-exact for concurrent clients, and stats add up") {
    EchoProtocol protocol;
    InProcessServer server(Kind::thread, protocol, options);
    constexpr int kClients = 4;
    std::string errors[kClients];
    std::size_t bytes[kClients] = {};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        errors[i] =
            echo_round_trips(server.address(), static_cast<unsigned>(i + 1), 48, &bytes[i]);
      });
    }
    for (auto& t : clients) t.join();
    std::size_t total = 0;
    for (int i = 0; i < kClients; ++i) {
      CHECK_MESSAGE(errors[i].empty(), "client ", i, ": ", errors[i]);
      total += bytes[i];
    }
    ServerStats stats = server.stop();
    CHECK(stats.closed == kClients);
    CHECK(stats.failed == 0);
    CHECK(stats.bytes_in == total);
    CHECK(stats.bytes_out == total);
  }
  SUBCASE("a silent connection is closed at its idle deadline (it waits in poll then)") {
    EchoProtocol protocol;
    options.idle_timeout = 200ms;
    InProcessServer server(Kind::thread, protocol, options);
    Client silent(server.address());
    CHECK(silent.read_line() == "<eof>");
    ServerStats stats = server.stop();
    CHECK(stats.accepted == 1);
    CHECK(stats.failed == 1);
  }
  SUBCASE("output that cannot be flushed within shutdown_grace is dropped") {
    FloodProtocol protocol;
    options.shutdown_grace = 300ms;
    InProcessServer server(Kind::thread, protocol, options);
    Client never_reads(server.address(), 4096);
    char first = 0;
    REQUIRE(reactor::recv_exact(never_reads.fd(), &first, 1).ok());  // the session is open
    ServerStats stats = server.stop();
    CHECK(stats.closed == 1);
    CHECK(stats.failed == 1);
    CHECK(protocol.log.count(Errc::shutting_down) == 1);
    CHECK(never_reads.reads_to_end());
  }
}

TEST_CASE("fork model: request_stop() from another thread makes run() return") {
  EchoProtocol protocol;
  InProcessServer server(Kind::fork, protocol);  // no client: nothing is forked
  ServerStats stats = server.stop();
  CHECK(stats.accepted == 0);
}

TEST_CASE_TEMPLATE("a stop ends every connection's wait, idle in its read or answering", M,
                   ThreadModel, ForkModel) {
  // Without the Hub (fork: no relay) each connection waits for input in a blocking recv, which a
  // signal does not end (a read is restarted after a handler): the fork child's stop-signal
  // handler, or the thread model's stop, shuts the socket for reading, whenever it lands. With
  // the Hub it waits in ppoll, which a signal ends. One the stop missed is dropped (thread) or
  // SIGKILLed (fork) at the grace's end and counted as failed.
  for (const bool hub : {false, true}) {
    CAPTURE(hub);
    EchoProtocol protocol;
    ModelOptions options = test_options();
    options.shutdown_grace = 3s;
    options.uses_hub = hub;
    typename M::Server server(M::kind, protocol, options);
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 24; ++i) {
      clients.push_back(std::make_unique<Client>(server.address()));
      const std::string line = "hello " + std::to_string(i) + "\n";
      REQUIRE(clients.back()->send(line));
      REQUIRE(clients.back()->read_line() == line.substr(0, line.size() - 1));
    }
    // A few with a request in flight as the stop comes.
    for (std::size_t i = 0; i < 4; ++i) REQUIRE(clients[i]->send("late\n"));
    ServerStats stats = server.stop();
    CHECK(stats.accepted == 24);
    CHECK(stats.closed == 24);
    CHECK(stats.failed == 0);
    for (auto& client : clients) {
      std::string line = client->read_line();
      if (line == "late") line = client->read_line();  // answered before the stop was seen
      CHECK(line == "<eof>");
    }
  }
}

TEST_CASE("fork model: every child is reaped and accounted for") {
  EchoProtocol protocol;
  ForkedServer server(Kind::fork, protocol);
  for (unsigned i = 0; i < 8; ++i) {
    CHECK(echo_round_trips(server.address(), 40 + i, 2, nullptr) == "");
  }
  Client last(server.address());
  REQUIRE(last.send("last\n"));
  REQUIRE(last.read_line() == "last");
  ServerStats stats = server.stop();  // checks that waitpid(-1) found no child left
  CHECK(stats.accepted == 9);
  CHECK(stats.closed == 9);
  CHECK(stats.live == 0);
}
