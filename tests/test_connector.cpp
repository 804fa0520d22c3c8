#include <doctest/doctest.h>
#include <sched.h>
#include <sys/wait.h>

#include "support/netns.hpp"
#include "reactor/connector.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

// Runs one Connector to completion on a fresh loop (bounded).
reactor::Result<reactor::Fd> connect_with(const reactor::Address& target,
                                          std::chrono::milliseconds timeout) {
  auto loop = test::make_loop();
  std::optional<reactor::Result<reactor::Fd>> outcome;
  reactor::Connector connector(*loop, target, timeout, [&](reactor::Result<reactor::Fd> r) {
    outcome.emplace(std::move(r));
  });
  connector.start();
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!outcome && std::chrono::steady_clock::now() < deadline) loop->run_once(1000ms);
  REQUIRE(outcome.has_value());
  return std::move(*outcome);
}

}  // namespace

TEST_CASE("connector: a listening server gives a connected socket") {
  auto listener = reactor::listen_on(test::parse("tcp://127.0.0.1:0"));
  REQUIRE(listener.ok());
  auto bound = reactor::local_address(listener->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  auto fd = connect_with(*bound, 5s);
  REQUIRE(fd.ok());
  auto peer = reactor::peer_address(fd->get(), reactor::Transport::tcp);
  REQUIRE(peer.ok());
  CHECK(*peer == *bound);
}

TEST_CASE("connector: a port with no listener is refused") {
  // Bound but not listening: nobody else can take the port while we hold it.
  auto holder = reactor::open_socket(test::parse("tcp://127.0.0.1:0"));
  REQUIRE(holder.ok());
  auto any = test::parse("tcp://127.0.0.1:0");
  REQUIRE(::bind(holder->get(), any.sockaddr_ptr(), any.length()) == 0);
  auto bound = reactor::local_address(holder->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  auto fd = connect_with(*bound, 5s);
  REQUIRE_FALSE(fd.ok());
  CHECK(fd.error() == std::errc::connection_refused);
}

TEST_CASE("connector: a server whose backlog is full makes the connect time out") {
  reactor::ListenOptions options;
  options.backlog = 0;  // one queued connection fills it; later SYNs are dropped
  auto listener = reactor::listen_on(test::parse("tcp://127.0.0.1:0"), options);
  REQUIRE(listener.ok());
  auto bound = reactor::local_address(listener->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  auto first = test::connect_to(*bound);  // fills the queue (never accepted)
  auto start = std::chrono::steady_clock::now();
  auto fd = connect_with(*bound, 300ms);
  REQUIRE_FALSE(fd.ok());
  CHECK(fd.error() == std::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - start >= 250ms);
}

TEST_CASE("connector: no route (a fresh network namespace with lo down) is unreachable") {
  auto code = test::in_new_network_namespace([] {
    auto loop = reactor::Loop::create();
    std::optional<reactor::Result<reactor::Fd>> outcome;
    reactor::Connector connector(
        **loop, *reactor::Address::parse("tcp://127.0.0.1:9"), 2000ms,
        [&](reactor::Result<reactor::Fd> r) { outcome.emplace(std::move(r)); });
    connector.start();
    for (int i = 0; i < 50 && !outcome; ++i) (*loop)->run_once(100ms);
    return std::to_string(outcome && !outcome->ok() ? outcome->error().value() : 0);
  });
  if (!code) {
    MESSAGE("skipped: cannot create a network namespace without CAP_SYS_ADMIN");
    return;
  }
  CHECK(*code == std::to_string(ENETUNREACH));
}

TEST_CASE("connector: refused, timed out and unreachable are distinct errors") {
  CHECK(std::error_code(ECONNREFUSED, std::system_category()) !=
        std::error_code(ETIMEDOUT, std::system_category()));
  CHECK(reactor::errno_code(ENETUNREACH).message() != reactor::errno_code(ECONNREFUSED).message());
}
