// Echo over every transport through a real EpollServer on loopback, compared byte for byte.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "reactor/datagram.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

// Several clients at once, each sending `size` random bytes in uneven chunks while reading.
void check_stream_echo(std::string_view url, int clients, std::size_t size) {
  test::EchoProtocol echo;
  test::ServerThread server(echo);
  auto address = server.listen(url);
  server.start();
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto fd = test::connect_to(address);
      auto payload = test::random_bytes(size, static_cast<unsigned>(c + 1));
      std::thread writer([&] {
        std::size_t sent = 0, chunk = 1;
        while (sent < payload.size()) {
          std::size_t n = std::min(chunk, payload.size() - sent);
          if (reactor::send_all(fd.get(), payload.data() + sent, n)) return;
          sent += n;
          chunk = chunk * 3 + 1;  // 1, 4, 13, ... bytes: splits land everywhere
          if (chunk > 100000) chunk = 7;
        }
      });
      std::vector<std::byte> back(size);
      auto got = reactor::recv_exact(fd.get(), back.data(), size);
      writer.join();
      if (got.ok() && *got == size && back == payload) ++good;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(good == clients);
  auto stats = server.stats();
  CHECK(stats.bytes_in == size * static_cast<std::size_t>(clients));
  CHECK(stats.bytes_out == size * static_cast<std::size_t>(clients));
}

}  // namespace

TEST_CASE("TCP over 127.0.0.1 echoes every byte to several clients") {
  check_stream_echo("tcp://127.0.0.1:0", 8, 1 << 20);
}

TEST_CASE("TCP over ::1 echoes every byte to several clients") {
  check_stream_echo("tcp://[::1]:0", 8, 1 << 20);
}

TEST_CASE("UNIX stream sockets echo every byte to several clients") {
  auto path = test::temp_socket_path("stream");
  check_stream_echo("unix:" + path, 8, 1 << 20);
  CHECK(::access(path.c_str(), F_OK) != 0);  // the server removed its socket file
}

TEST_CASE("the bound address reports the real port for port 0") {
  test::EchoProtocol echo;
  test::ServerThread server(echo);
  auto address = server.listen("tcp://127.0.0.1:0");
  CHECK(address.port() != 0);
  CHECK(address.to_string() == "tcp://127.0.0.1:" + std::to_string(address.port()));
}

TEST_CASE("UDP echoes each datagram to its sender with its boundaries") {
  for (std::string_view url : {"udp://127.0.0.1:0", "udp://[::1]:0"}) {
    CAPTURE(url);
    test::EchoProtocol echo;
    test::ServerThread server(echo);
    auto address = server.listen(url);
    server.start();
    auto fd = test::connect_to(address);  // a connected UDP socket
    std::vector<std::size_t> sizes = {1, 2, 100, 1400, 9000, 60000};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto payload = test::random_bytes(sizes[i], static_cast<unsigned>(i));
      REQUIRE(::send(fd.get(), payload.data(), payload.size(), 0) ==
              static_cast<ssize_t>(payload.size()));
      std::vector<std::byte> back(65536);
      ssize_t n = ::recv(fd.get(), back.data(), back.size(), 0);
      REQUIRE(n == static_cast<ssize_t>(payload.size()));  // one datagram back, whole
      back.resize(static_cast<std::size_t>(n));
      CHECK(back == payload);
    }
    auto stats = server.stats();
    CHECK(stats.datagrams_in == sizes.size());
    CHECK(stats.datagrams_out == sizes.size());
  }
}

TEST_CASE("SEQPACKET echoes each message whole, boundaries kept") {
  test::EchoProtocol echo;
  test::ServerThread server(echo);
  auto address = server.listen("seqpacket:" + test::temp_socket_path("seq"));
  server.start();
  auto fd = test::connect_to(address);
  std::vector<std::size_t> sizes = {1, 5, 1000, 30000, 65000, 3};
  // Send all first, then read: each recv must return exactly one message.
  std::vector<std::vector<std::byte>> sent;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    sent.push_back(test::random_bytes(sizes[i], static_cast<unsigned>(100 + i)));
    REQUIRE(::send(fd.get(), sent.back().data(), sent.back().size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(sizes[i]));
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::vector<std::byte> back(70000);
    ssize_t n = ::recv(fd.get(), back.data(), back.size(), 0);
    REQUIRE(n == static_cast<ssize_t>(sizes[i]));
    back.resize(static_cast<std::size_t>(n));
    CHECK(back == sent[i]);
  }
}

TEST_CASE("a SEQPACKET message larger than the receive buffer is reported, not cut") {
  test::EchoProtocol echo;
  test::ServerThread server(echo);
  auto address = server.listen("seqpacket:" + test::temp_socket_path("seqbig"));
  server.start();
  auto fd = test::connect_to(address);
  REQUIRE_FALSE(reactor::set_buffer_sizes(fd.get(), 0, 256 * 1024));
  auto big = test::random_bytes(100000, 1);
  REQUIRE(::send(fd.get(), big.data(), big.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(big.size()));
  char c;
  CHECK(::recv(fd.get(), &c, 1, 0) == 0);  // closed, not echoed in pieces
  auto stats = server.wait_for_stats([](auto& s) { return s.failed == 1; });
  CHECK(stats.failed == 1);
}

TEST_CASE("UDP on a wildcard address replies from the address each datagram was sent to") {
  // Sent to 127.0.0.2, the route would answer from 127.0.0.1, which a connected client drops.
  struct Case {
    std::string_view listen;
    std::string_view target;
  };
  for (const Case& c :
       {Case{"udp://0.0.0.0:0", "udp://127.0.0.2"}, Case{"udp://*:0", "udp://127.0.0.2"},
        Case{"udp://*:0", "udp://[::1]"}, Case{"udp://[::]:0", "udp://[::1]"}}) {
    CAPTURE(c.listen);
    CAPTURE(c.target);
    test::EchoProtocol echo;
    test::ServerThread server(echo);
    auto address = server.listen(c.listen);
    server.start();
    auto target = test::parse(std::string(c.target) + ":" + std::to_string(address.port()));
    auto fd = test::connect_to(target);  // connected: takes datagrams from `target` only
    for (unsigned i = 0; i < 3; ++i) {
      auto payload = test::random_bytes(100 + i, i + 1);
      REQUIRE(::send(fd.get(), payload.data(), payload.size(), 0) ==
              static_cast<ssize_t>(payload.size()));
      pollfd p{fd.get(), POLLIN, 0};
      REQUIRE(::poll(&p, 1, 10'000) == 1);  // bounded: a reply from elsewhere never arrives
      std::vector<std::byte> back(4096);
      ssize_t n = ::recv(fd.get(), back.data(), back.size(), 0);
      REQUIRE(n == static_cast<ssize_t>(payload.size()));
      back.resize(static_cast<std::size_t>(n));
      CHECK(back == payload);
    }
  }
}

TEST_CASE("a UDP datagram larger than the endpoint's buffer is counted and reported") {
  auto loop = test::make_loop();
  auto fd = reactor::listen_on(test::parse("udp://127.0.0.1:0"));
  REQUIRE(fd.ok());
  auto bound = reactor::local_address(fd->get(), reactor::Transport::udp);
  REQUIRE(bound.ok());
  reactor::DatagramEndpoint endpoint(*loop, std::move(*fd), std::make_unique<test::EchoSession>(),
                                     1024);
  int reported = 0;
  endpoint.set_error_handler([&](std::error_code ec, const reactor::Address&) {
    CHECK(ec == reactor::Errc::message_too_large);
    ++reported;
  });
  REQUIRE_FALSE(endpoint.start());
  auto client = test::connect_to(*bound);
  auto big = test::random_bytes(2000, 2);
  REQUIRE(::send(client.get(), big.data(), big.size(), 0) == 2000);
  auto small = test::random_bytes(100, 3);
  REQUIRE(::send(client.get(), small.data(), small.size(), 0) == 100);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (endpoint.stats().received < 2 && std::chrono::steady_clock::now() < deadline) {
    loop->run_once(1000ms);
  }
  CHECK(reported == 1);
  CHECK(endpoint.stats().too_large == 1);
  std::vector<std::byte> back(4096);
  ssize_t n = ::recv(client.get(), back.data(), back.size(), 0);
  REQUIRE(n == 100);  // only the datagram that fit came back
  back.resize(100);
  CHECK(back == small);
}

TEST_CASE("TCP listeners set TCP_NODELAY once and accepted sockets inherit it") {
  auto listener = reactor::listen_on(test::parse("tcp://127.0.0.1:0"));
  REQUIRE(listener.ok());
  auto bound = reactor::local_address(listener->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  auto client = test::connect_to(*bound);
  pollfd p{listener->get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 10000) == 1);
  reactor::Fd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(accepted);
  int on = 0;
  socklen_t len = sizeof(on);
  REQUIRE(::getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0);
  CHECK(on == 1);
}

namespace {
// Greets, shuts its write side at once, and counts messages until the peer's EOF.
class GreetAndShut final : public reactor::Session {
 public:
  void on_open(reactor::Peer& peer) override {
    peer.send("hello");
    peer.shutdown_write();
  }
  std::size_t on_data(reactor::Peer&, std::span<const std::byte> bytes) override {
    return bytes.size();
  }
  void on_eof(reactor::Peer&) override {}  // our side is already shut: nothing left to do
};
}  // namespace

TEST_CASE("SEQPACKET half-close: both sides shut means the connection closes") {
  test::LambdaProtocol protocol([] { return std::make_unique<GreetAndShut>(); });
  test::ServerThread server(protocol);
  auto address = server.listen("seqpacket:" + test::temp_socket_path("seqhalf"));
  server.start();
  auto fd = test::connect_to(address);
  char buffer[16];
  CHECK(::recv(fd.get(), buffer, sizeof(buffer), 0) == 5);
  CHECK(::recv(fd.get(), buffer, sizeof(buffer), 0) == 0);  // the server's write side is shut
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  auto stats = server.wait_for_stats([](auto& s) { return s.closed == 1; });
  CHECK(stats.closed == 1);
  CHECK(stats.live == 0);
}
