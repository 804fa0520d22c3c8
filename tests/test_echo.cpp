#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <thread>

#include "protocols/echo.hpp"
#include "reactor/local_hub.hpp"
#include "support/fake_peer.hpp"

using reactor::protocols::EchoProtocol;
using test::FakeConnection;

namespace {

std::string every_byte_value() {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  return bytes;
}

}  // namespace

TEST_CASE("echo sends a binary payload back byte-exact, zero bytes included") {
  reactor::LocalHub hub;
  EchoProtocol protocol;
  FakeConnection connection(protocol, hub);
  std::string payload = every_byte_value() + std::string(3, '\0') + every_byte_value();
  payload += std::string("\r\n\0\xff", 4);

  CHECK(connection.feed(payload) == payload.size());
  CHECK(connection.peer.take() == payload);
  CHECK(connection.unconsumed() == 0);
}

TEST_CASE("echo answers each message with one message, in order") {
  reactor::LocalHub hub;
  EchoProtocol protocol;
  FakeConnection connection(protocol, hub);

  connection.feed("first");
  connection.feed(std::string_view("\0second", 7));
  CHECK(connection.peer.sends == 2);
  CHECK(connection.peer.take() == std::string("first\0second", 12));
}

TEST_CASE("echo sends nothing on open and closes after the peer's EOF") {
  reactor::LocalHub hub;
  EchoProtocol protocol;
  FakeConnection connection(protocol, hub);
  CHECK(connection.peer.sent.empty());

  connection.feed("last words");
  connection.eof();
  CHECK(connection.peer.take() == "last words");
  CHECK(connection.peer.close_calls == 1);
}

TEST_CASE("echo relies on backpressure, not on dropping slow peers") {
  EchoProtocol protocol;
  CHECK(protocol.max_outbox() == 0);
}

TEST_CASE("echo's info says every transport and no hub") {
  CHECK(reactor::protocols::kEchoInfo.name == "echo");
  CHECK(reactor::protocols::kEchoInfo.transports == reactor::kAllTransports);
  CHECK_FALSE(reactor::protocols::kEchoInfo.uses_hub);
}

TEST_CASE("a session takes the storage its driver lends, once, and gives it back") {
  alignas(std::max_align_t) std::byte bytes[64];
  reactor::LocalHub hub;
  EchoProtocol protocol;
  CHECK(reactor::SessionStorage::take(8, 8) == nullptr);  // nothing lent
  {
    reactor::SessionStorage lent(bytes);
    auto first = protocol.open(hub);
    CHECK(static_cast<void*>(first.get()) == static_cast<void*>(bytes));
    auto second = protocol.open(hub);  // taken already: from the pool
    CHECK(static_cast<void*>(second.get()) != static_cast<void*>(bytes));
    first.reset();
    auto third = protocol.open(hub);  // given back: lent again
    CHECK(static_cast<void*>(third.get()) == static_cast<void*>(bytes));
    CHECK(reactor::SessionStorage::take(128, 8) == nullptr);  // too large, and taken
    third.reset();
    CHECK(reactor::SessionStorage::take(128, 8) == nullptr);  // too large
    CHECK(reactor::SessionStorage::take(8, 8) == static_cast<void*>(bytes));
    CHECK(reactor::SessionStorage::give_back(bytes));
    CHECK_FALSE(reactor::SessionStorage::give_back(second.get()));  // not lent
  }
  CHECK(reactor::SessionStorage::take(8, 8) == nullptr);  // the lender is gone
  CHECK_FALSE(reactor::SessionStorage::give_back(bytes));
}

TEST_CASE("lent storage belongs to the thread it was lent on") {
  alignas(std::max_align_t) std::byte bytes[64];
  reactor::SessionStorage lent(bytes);
  void* elsewhere = &bytes;
  std::thread([&] { elsewhere = reactor::SessionStorage::take(8, 8); }).join();
  CHECK(elsewhere == nullptr);
  alignas(std::max_align_t) std::byte inner_bytes[16];
  {
    reactor::SessionStorage inner(inner_bytes);  // the innermost lender is asked first
    CHECK(reactor::SessionStorage::take(8, 8) == static_cast<void*>(inner_bytes));
    CHECK(reactor::SessionStorage::take(8, 8) == nullptr);  // the outer one is not asked
    CHECK(reactor::SessionStorage::give_back(inner_bytes));
  }
  CHECK(reactor::SessionStorage::take(8, 8) == static_cast<void*>(bytes));
  CHECK(reactor::SessionStorage::give_back(bytes));
}
