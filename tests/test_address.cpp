#include <doctest/doctest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "support/netns.hpp"
#include "reactor/address.hpp"
#include "reactor/error.hpp"

using reactor::Address;
using reactor::Errc;
using reactor::Transport;

namespace {
std::string roundtrip(std::string_view url) {
  auto a = Address::parse(url);
  REQUIRE_MESSAGE(a.ok(), reactor::describe(url, a.error()));
  return a->to_string();
}
std::error_code error_of(std::string_view url) {
  auto a = Address::parse(url);
  REQUIRE_FALSE(a.ok());
  return a.error();
}
}  // namespace

TEST_CASE("IPv4, IPv6 and UNIX URLs parse and print back the same") {
  CHECK(roundtrip("tcp://127.0.0.1:8080") == "tcp://127.0.0.1:8080");
  CHECK(roundtrip("tcp://[::1]:0") == "tcp://[::1]:0");
  CHECK(roundtrip("udp://127.0.0.1:53") == "udp://127.0.0.1:53");
  CHECK(roundtrip("udp://[::1]:7") == "udp://[::1]:7");
  CHECK(roundtrip("unix:/tmp/reactor.sock") == "unix:/tmp/reactor.sock");
  CHECK(roundtrip("seqpacket:/tmp/reactor.seq") == "seqpacket:/tmp/reactor.seq");
  CHECK(roundtrip("unix:@abstract-name") == "unix:@abstract-name");
}

TEST_CASE("parsed addresses carry family, socket type and port") {
  auto v4 = Address::parse("tcp://127.0.0.1:443");
  REQUIRE(v4.ok());
  CHECK(v4->family() == AF_INET);
  CHECK(v4->socket_type() == SOCK_STREAM);
  CHECK(v4->port() == 443);
  auto v6 = Address::parse("udp://[::1]:65535");
  REQUIRE(v6.ok());
  CHECK(v6->family() == AF_INET6);
  CHECK(v6->socket_type() == SOCK_DGRAM);
  CHECK(v6->port() == 65535);
  auto seq = Address::parse("seqpacket:/tmp/x");
  REQUIRE(seq.ok());
  CHECK(seq->family() == AF_UNIX);
  CHECK(seq->socket_type() == SOCK_SEQPACKET);
  CHECK(seq->transport() == Transport::unix_seqpacket);
  CHECK(seq->unix_path() == "/tmp/x");
}

TEST_CASE("an empty host means every IPv4 interface; * means both families, dual-stack") {
  CHECK(roundtrip("tcp://:9000") == "tcp://0.0.0.0:9000");
  CHECK(roundtrip("tcp://*:0") == "tcp://*:0");
  auto any = Address::parse("udp://*:53");
  REQUIRE(any.ok());
  CHECK(any->family() == AF_INET6);
  CHECK(any->dual_stack());
  CHECK(any->port() == 53);
  CHECK(any->with_port(54).port() == 54);
  CHECK(any->with_port(54).dual_stack());
  auto v6_any = Address::parse("tcp://[::]:53");
  REQUIRE(v6_any.ok());
  CHECK_FALSE(v6_any->dual_stack());
  CHECK_FALSE(*v6_any == any->with_port(53));
}

TEST_CASE("localhost resolves through getaddrinfo to a loopback address") {
  auto all = Address::resolve_all("tcp://localhost:80");
  REQUIRE(all.ok());
  REQUIRE_FALSE(all->empty());
  for (const auto& a : *all) {
    auto text = a.to_string();
    CHECK_MESSAGE((text == "tcp://127.0.0.1:80" || text == "tcp://[::1]:80"), text);
  }
}

TEST_CASE("bad input gives an error that names what is wrong") {
  CHECK(error_of("ftp://host:21") == Errc::unknown_scheme);
  CHECK(error_of("127.0.0.1:80") == Errc::unknown_scheme);
  CHECK(error_of("") == Errc::unknown_scheme);
  CHECK(error_of("tcp://127.0.0.1") == Errc::missing_port);
  CHECK(error_of("tcp://127.0.0.1:") == Errc::missing_port);
  CHECK(error_of("tcp://[::1]") == Errc::missing_port);
  CHECK(error_of("tcp://127.0.0.1:70000") == Errc::bad_port);
  CHECK(error_of("tcp://127.0.0.1:-1") == Errc::bad_port);
  CHECK(error_of("tcp://127.0.0.1:80x") == Errc::bad_port);
  CHECK(error_of("tcp://[::1:80") == Errc::bad_host);
  CHECK(error_of("tcp://::1:80") == Errc::bad_host);
  CHECK(error_of("unix:") == Errc::empty_path);
  CHECK(error_of("unix:/" + std::string(200, 'x')) == Errc::path_too_long);
  CHECK(error_of("seqpacket:/" + std::string(107, 'x')) == Errc::path_too_long);
}

TEST_CASE("a UNIX path of 107 bytes is the longest accepted") {
  CHECK(Address::parse("unix:/" + std::string(106, 'p')).ok());
}

TEST_CASE("a host that does not resolve reports the resolver's error, with the input") {
  // In a fresh network namespace, so the lookup never leaves this machine: there the resolver
  // cannot reach any name server and must fail (only /etc/hosts answers).
  auto result = test::in_new_network_namespace([] {
    auto a = Address::parse("tcp://no-such-host.invalid:80");
    if (a.ok()) return std::string("resolved");
    return std::string(a.error().category().name()) + "|" +
           reactor::describe("tcp://no-such-host.invalid:80", a.error());
  });
  if (!result) {
    MESSAGE("skipped: cannot create a network namespace without CAP_SYS_ADMIN");
    return;
  }
  CHECK(result->find("resolver|tcp://no-such-host.invalid:80: ") == 0);
  CHECK(result->size() > std::string("resolver|tcp://no-such-host.invalid:80: ").size());
}

TEST_CASE("parse_numeric never resolves: a host name is refused, literals pass") {
  CHECK(Address::parse_numeric("tcp://example.com:80").error() == Errc::host_not_numeric);
  CHECK(Address::parse_numeric("tcp://localhost:80").error() == Errc::host_not_numeric);
  CHECK(Address::parse_numeric("tcp://[::1]:80").ok());
  CHECK(Address::parse_numeric("udp://10.1.2.3:9").ok());
  CHECK(Address::parse_numeric("unix:/x").ok());
}

TEST_CASE("describe() puts the input in front of the reason") {
  CHECK(reactor::describe("tcp://h:70000", Errc::bad_port) ==
        "tcp://h:70000: bad port (expected a number from 0 to 65535)");
}
