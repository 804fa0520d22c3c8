// Faults against a real EpollServer on loopback: resets, slow readers, half-close, a close of
// another connection inside the same epoll batch, descriptor exhaustion, idle clients.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "support/forked_child.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

TEST_CASE("a peer that resets mid-write is closed and counted; SIGPIPE does not kill us") {
  test::EchoProtocol echo;
  test::ServerThread server(echo);
  auto address = server.listen("tcp://127.0.0.1:0");
  struct sigaction dfl {
  }, old{};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, &old);  // only MSG_NOSIGNAL stands between us and death now
  server.start();
  {
    auto fd = test::connect_to(address);
    REQUIRE_FALSE(reactor::set_buffer_sizes(fd.get(), 4096, 0));
    REQUIRE_FALSE(reactor::set_nonblocking(fd.get(), true));
    auto chunk = test::random_bytes(64 * 1024, 9);
    // Send without reading until the server holds output it cannot write (bounded).
    auto deadline = std::chrono::steady_clock::now() + 10s;
    reactor::ServerStats stats;
    while (std::chrono::steady_clock::now() < deadline) {
      ssize_t n = ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n >= 0) continue;
      stats = server.stats();
      if (stats.bytes_in > stats.bytes_out) break;
      pollfd p{fd.get(), POLLOUT, 0};
      ::poll(&p, 1, 100);
    }
    REQUIRE(stats.bytes_in > stats.bytes_out);  // the server holds unsent output
    REQUIRE_FALSE(reactor::set_linger_abort(fd.get()));
  }  // close with RST
  auto stats = server.wait_for_stats([](auto& s) { return s.closed == 1; });
  CHECK(stats.closed == 1);
  CHECK(stats.failed == 1);
  CHECK(stats.live == 0);
  // Still serving.
  auto fd = test::connect_to(address);
  test::send_all(fd.get(), "still here");
  CHECK(reactor::as_text(test::read_exact(fd.get(), 10)) == "still here");
  server.stop();
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("a slow reader pauses reading at the high-water mark and resumes after drain") {
  test::EchoProtocol echo;
  reactor::ServerOptions options;
  options.high_water = 256 * 1024;
  options.low_water = 64 * 1024;
  test::ServerThread server(echo, options);
  auto address = server.listen("tcp://127.0.0.1:0");
  server.start();
  auto fd = test::connect_to(address);
  REQUIRE_FALSE(reactor::set_buffer_sizes(fd.get(), 16 * 1024, 0));
  constexpr std::size_t kTotal = 32u << 20;
  auto payload = test::random_bytes(kTotal, 11);
  std::atomic<bool> sent_ok{false};
  std::thread writer(
      [&] { sent_ok = !reactor::send_all(fd.get(), payload.data(), payload.size()); });
  // Nobody reads yet: the server must stop reading instead of buffering 32 MiB.
  auto paused = server.wait_for_stats([](auto& s) { return s.read_pauses >= 1; });
  CHECK(paused.read_pauses >= 1);
  CHECK(paused.bytes_in - paused.bytes_out < kTotal);
  auto back = test::read_exact(fd.get(), kTotal);  // drains, so reading must resume
  writer.join();
  CHECK(sent_ok);
  CHECK(back == payload);
}

namespace {

// Counts what it receives; at EOF it answers with the count and closes (we can still send
// after the peer's FIN).
class CountThenReply final : public reactor::Session {
 public:
  std::size_t on_data(reactor::Peer&, std::span<const std::byte> bytes) override {
    count_ += bytes.size();
    return bytes.size();
  }
  void on_eof(reactor::Peer& peer) override {
    peer.send("count=" + std::to_string(count_));
    peer.close();
  }

 private:
  std::size_t count_ = 0;
};

// Greets, then shuts its write side; keeps reading and reports the total at EOF.
class GreetThenListen final : public reactor::Session {
 public:
  explicit GreetThenListen(std::atomic<std::size_t>& total) : total_(total) {}
  void on_open(reactor::Peer& peer) override {
    peer.send("hello");
    peer.shutdown_write();
  }
  std::size_t on_data(reactor::Peer&, std::span<const std::byte> bytes) override {
    count_ += bytes.size();
    return bytes.size();
  }
  void on_eof(reactor::Peer& peer) override {
    total_ = count_;
    peer.close();
  }

 private:
  std::atomic<std::size_t>& total_;
  std::size_t count_ = 0;
};

}  // namespace

TEST_CASE("half-close: after the client's FIN the server still sends") {
  test::LambdaProtocol protocol([] { return std::make_unique<CountThenReply>(); });
  test::ServerThread server(protocol);
  auto address = server.listen("tcp://127.0.0.1:0");
  server.start();
  auto fd = test::connect_to(address);
  test::send_all(fd.get(), test::random_bytes(100000, 5));
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  CHECK(test::read_to_eof(fd.get()) == "count=100000");
}

TEST_CASE("half-close: after the server shuts its write side it still receives") {
  std::atomic<std::size_t> total{0};
  test::LambdaProtocol protocol([&] { return std::make_unique<GreetThenListen>(total); });
  test::ServerThread server(protocol);
  auto address = server.listen("tcp://127.0.0.1:0");
  server.start();
  auto fd = test::connect_to(address);
  CHECK(test::read_to_eof(fd.get()) == "hello");  // FIN from the server after the greeting
  test::send_all(fd.get(), "abc");
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  char c;
  CHECK(::recv(fd.get(), &c, 1, 0) == 0);
  auto stats = server.wait_for_stats([](auto& s) { return s.closed == 1; });
  CHECK(stats.closed == 1);
  CHECK(stats.failed == 0);
  CHECK(total == 3);
}

namespace {

// Every session knows every other; the first to get data closes all the others.
struct Crowd {
  std::vector<reactor::Peer*> peers;
  int data_calls = 0;
  int closes = 0;
};

class CloseOthers final : public reactor::Session {
 public:
  explicit CloseOthers(Crowd& crowd) : crowd_(crowd) {}
  void on_open(reactor::Peer& peer) override {
    self_ = &peer;
    crowd_.peers.push_back(&peer);
  }
  std::size_t on_data(reactor::Peer&, std::span<const std::byte> bytes) override {
    ++crowd_.data_calls;
    for (auto* other : crowd_.peers) {
      if (other != self_) other->close();
    }
    return bytes.size();
  }
  void on_close(std::error_code) override {
    ++crowd_.closes;
    std::erase(crowd_.peers, self_);
  }

 private:
  Crowd& crowd_;
  reactor::Peer* self_ = nullptr;
};

}  // namespace

TEST_CASE("closing ANOTHER connection whose event is pending in the same batch drops that event") {
  Crowd crowd;
  test::LambdaProtocol protocol([&] { return std::make_unique<CloseOthers>(crowd); });
  auto loop = test::make_loop();
  reactor::EpollServer server(*loop, protocol, {});
  auto address = server.listen(test::parse("tcp://127.0.0.1:0"));
  REQUIRE(address.ok());
  auto a = test::connect_to(*address);
  auto b = test::connect_to(*address);
  auto c = test::connect_to(*address);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server.live_connections() < 3 && std::chrono::steady_clock::now() < deadline) {
    loop->run_once(100ms);
  }
  REQUIRE(server.live_connections() == 3);
  // All three become readable before the loop waits: one epoll batch holds all three events.
  test::send_all(a.get(), "x");
  test::send_all(b.get(), "y");
  test::send_all(c.get(), "z");
  auto stale_before = loop->stats().stale_events;
  loop->run_once(1000ms);
  CHECK(crowd.data_calls == 1);  // the two closed ones never got their pending event
  CHECK(loop->stats().stale_events - stale_before == 2);
  CHECK(crowd.closes == 2);  // on_close ran after the batch
  CHECK(server.live_connections() == 1);
}

TEST_CASE("the idle timeout closes a silent client") {
  test::EchoProtocol echo;
  reactor::ServerOptions options;
  options.idle_timeout = 300ms;
  test::ServerThread server(echo, options);
  auto address = server.listen("tcp://127.0.0.1:0");
  server.start();
  auto fd = test::connect_to(address);
  test::send_all(fd.get(), "hi");
  CHECK(reactor::as_text(test::read_exact(fd.get(), 2)) == "hi");
  auto start = std::chrono::steady_clock::now();
  char c;
  CHECK(::recv(fd.get(), &c, 1, 0) == 0);  // EOF from the server, well within the 10 s bound
  CHECK(std::chrono::steady_clock::now() - start >= 250ms);
  auto stats = server.wait_for_stats([](auto& s) { return s.closed == 1; });
  CHECK(stats.failed == 1);
}

namespace {

// The EMFILE scenario's server: a child process with a small descriptor limit. It reports its
// address, and after SIGTERM what it shed and accepted.
struct LimitedServer {
  explicit LimitedServer(rlim_t limit)
      : child([limit](int report) { return serve(limit, report); }) {
    const auto url = child.read_text(10s);
    REQUIRE_MESSAGE(url.has_value(), "the limited server did not report its address");
    address = test::parse(*url);
  }
  static int serve(rlim_t limit, int report) {
    rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 3;
    test::EchoProtocol echo;
    auto loop = reactor::Loop::create();
    if (!loop) return 4;
    reactor::EpollServer server(**loop, echo, {});
    auto bound = server.listen(*reactor::Address::parse("tcp://127.0.0.1:0"));
    if (!bound) return 5;
    auto on_term = [](int, void* l) { static_cast<reactor::Loop*>(l)->stop(); };
    if ((*loop)->handle_signals({SIGTERM}, on_term, loop->get())) return 6;
    if (!test::ForkedChild::send_text(report, bound->to_string())) return 7;
    (*loop)->run();
    auto stats = server.stats();
    std::uint64_t numbers[2] = {stats.shed, stats.accepted};
    return test::ForkedChild::write_all(report, numbers, sizeof(numbers)) ? 0 : 8;
  }
  test::ForkedChild child;
  reactor::Address address;
};

// True if the server echoed on `fd`, false if it closed it.
bool echoes(int fd) {
  if (reactor::send_all(fd, "x", 1)) return false;
  char c = 0;
  auto n = reactor::recv_some(fd, &c, 1);
  return n.ok() && *n == 1 && c == 'x';
}

}  // namespace

TEST_CASE("EMFILE: surplus connections are shed, the server keeps serving and recovers") {
  LimitedServer server(48);
  constexpr int kClients = 100;
  std::vector<reactor::Fd> served;
  int shed = 0;
  for (int i = 0; i < kClients; ++i) {
    auto fd = test::connect_to(server.address);
    if (echoes(fd.get())) {
      served.push_back(std::move(fd));
    } else {
      ++shed;
    }
  }
  CHECK(served.size() > 20);  // 48 minus the server's own descriptors
  CHECK(shed > 0);
  CHECK(served.size() + static_cast<std::size_t>(shed) == kClients);
  // Those already served keep working while the surplus is being refused.
  for (auto& fd : served) CHECK(echoes(fd.get()));
  CHECK(server.child.running());  // alive
  served.clear();                 // the clients leave
  // Once the server has seen them go, new clients are served again (bounded retries: the
  // server may still be closing the old ones when the first new client arrives).
  bool recovered = false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!recovered && std::chrono::steady_clock::now() < deadline) {
    std::vector<reactor::Fd> batch;
    int ok = 0;
    for (int i = 0; i < 20; ++i) {
      batch.push_back(test::connect_to(server.address));
      ok += echoes(batch.back().get()) ? 1 : 0;
    }
    recovered = ok == 20;
  }
  CHECK(recovered);
  REQUIRE(server.child.signal(SIGTERM));
  const auto status = server.child.wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  std::uint64_t numbers[2] = {0, 0};
  REQUIRE(server.child.read(numbers, sizeof(numbers), 10s));
  CHECK(numbers[0] >= static_cast<std::uint64_t>(shed));  // the server counted what it shed
}
