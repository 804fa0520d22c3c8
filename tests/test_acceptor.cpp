// Acceptor: the one accept path of every model (epoll servers, and the fork and thread parents).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "reactor/acceptor.hpp"
#include "reactor/loop.hpp"
#include "reactor/socket.hpp"

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<reactor::Loop> new_loop() {
  auto loop = reactor::Loop::create();
  REQUIRE(loop.ok());
  return std::move(*loop);
}

reactor::Address numeric(const char* url) {
  auto address = reactor::Address::parse_numeric(url);
  REQUIRE(address.ok());
  return *address;
}

// Listens on `url` (port 0: a free port); returns the descriptor and the bound address.
std::pair<reactor::Fd, reactor::Address> listening(const reactor::Address& where) {
  auto fd = reactor::listen_on(where);
  REQUIRE(fd.ok());
  auto bound = reactor::local_address(fd->get(), where.transport());
  REQUIRE(bound.ok());
  return {std::move(*fd), *bound};
}

reactor::Fd connect_to(const reactor::Address& address) {
  auto fd = reactor::connect_blocking(address, 5000ms);
  REQUIRE(fd.ok());
  return std::move(*fd);
}

struct Collect final : reactor::PeerAcceptHandler {
  std::vector<reactor::Fd> accepted;
  std::vector<reactor::Address> peers;
  std::function<void()> after_accept;
  void on_accept(reactor::Fd fd, const reactor::Address& peer) override {
    accepted.push_back(std::move(fd));
    peers.push_back(peer);
    if (after_accept) after_accept();
  }
};

struct CollectPlain final : reactor::AcceptHandler {
  std::vector<reactor::Fd> accepted;
  void on_accept(reactor::Fd fd) override { accepted.push_back(std::move(fd)); }
};

// Runs the loop until `done` or 10 s.
template <class F>
bool run_until(reactor::Loop& loop, F&& done) {
  const auto deadline = Clock::now() + 10s;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    REQUIRE_FALSE(loop.run_once(100ms));
  }
  return true;
}

}  // namespace

TEST_CASE("a PeerAcceptHandler gets the peer's address as accept4 reported it") {
  auto loop = new_loop();
  auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
  Collect handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
  REQUIRE_FALSE(acceptor.start());
  reactor::Fd client = connect_to(bound);
  auto client_side = reactor::local_address(client.get(), reactor::Transport::tcp);
  REQUIRE(client_side.ok());
  REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 1; }));
  CHECK(handler.peers[0] == *client_side);
  CHECK(handler.peers[0].to_string() == client_side->to_string());
  CHECK(handler.peers[0].transport() == reactor::Transport::tcp);
  CHECK(acceptor.stats().accepted == 1);
}

TEST_CASE("an AcceptHandler still gets every connection, without the address") {
  auto loop = new_loop();
  auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
  CollectPlain handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
  REQUIRE_FALSE(acceptor.start());
  std::vector<reactor::Fd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connect_to(bound));
  REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 5; }));
  CHECK(acceptor.stats().accepted == 5);
}

TEST_CASE("connections come nonblocking, or blocking with set_blocking_sockets; close-on-exec") {
  for (const bool blocking : {false, true}) {
    CAPTURE(blocking);
    auto loop = new_loop();
    auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
    Collect handler;
    reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
    if (blocking) acceptor.set_blocking_sockets(true);
    REQUIRE_FALSE(acceptor.start());
    reactor::Fd client = connect_to(bound);
    REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 1; }));
    const int flags = ::fcntl(handler.accepted[0].get(), F_GETFL);
    REQUIRE(flags >= 0);
    CHECK(((flags & O_NONBLOCK) == 0) == blocking);
    CHECK((::fcntl(handler.accepted[0].get(), F_GETFD) & FD_CLOEXEC) != 0);
  }
}

TEST_CASE("pause() from on_accept stops accepting for the pause, then accepting resumes") {
  auto loop = new_loop();
  auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
  Collect handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
  REQUIRE_FALSE(acceptor.start());
  constexpr auto kPause = 300ms;
  Clock::time_point paused_at{};
  handler.after_accept = [&] {
    if (handler.accepted.size() == 1) {
      paused_at = Clock::now();
      acceptor.pause(kPause);
    }
  };
  // Both are queued before the first wake-up: the second waits out the pause all the same.
  reactor::Fd first = connect_to(bound);
  reactor::Fd second = connect_to(bound);
  REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 2; }));
  const auto waited = Clock::now() - paused_at;
  CHECK(waited >= kPause - 10ms);  // timers have millisecond resolution
  CHECK(acceptor.stats().accepted == 2);
}

TEST_CASE("adaptive budget: a wake-up after the loop slept accepts one, the rest follow") {
  auto loop = new_loop();
  auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
  Collect handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
  acceptor.set_adaptive_budget(true);
  REQUIRE_FALSE(acceptor.start());
  std::vector<reactor::Fd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_to(bound));
  // Let the loop sleep first, as a server between connections does.
  REQUIRE_FALSE(loop->run_once(50ms));
  const std::size_t first_wakeup = handler.accepted.size();
  CHECK(first_wakeup == 1);
  REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 3; }));
}

TEST_CASE("without the adaptive budget one wake-up drains the queue") {
  auto loop = new_loop();
  auto [fd, bound] = listening(numeric("tcp://127.0.0.1:0"));
  Collect handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::tcp, handler);
  REQUIRE_FALSE(acceptor.start());
  std::vector<reactor::Fd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_to(bound));
  REQUIRE(run_until(*loop, [&] { return !handler.accepted.empty(); }));
  CHECK(handler.accepted.size() == 3);
}

TEST_CASE("a forked child closing own_descriptors() leaves the parent's listener and socket file") {
  auto loop = new_loop();
  char dir[] = "/tmp/reactor-acceptor-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/s";
  auto [fd, bound] = listening(numeric(("unix:" + path).c_str()));
  Collect handler;
  reactor::Acceptor acceptor(*loop, std::move(fd), reactor::Transport::unix_stream, handler);
  REQUIRE_FALSE(acceptor.start());

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // What a fork-per-connection child does: close the descriptors, never unwatching (the
    // interest list is the parent's too) nor unlinking, then _exit.
    int closed = 0;
    for (int f : loop->own_descriptors()) closed += f >= 0 && ::close(f) == 0;
    for (int f : acceptor.own_descriptors()) closed += f >= 0 && ::close(f) == 0;
    ::_exit(closed == 4 ? 0 : 1);  // epoll, wake-up (no signals here), listener, reserve
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  struct stat st {};
  CHECK(::stat(path.c_str(), &st) == 0);  // the socket file is still there
  reactor::Fd client = connect_to(bound);
  REQUIRE(run_until(*loop, [&] { return handler.accepted.size() == 1; }));  // still watched
  acceptor.stop();
  CHECK(::stat(path.c_str(), &st) != 0);  // the parent's stop() removes it
  ::rmdir(dir);
}
