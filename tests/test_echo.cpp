#include <doctest/doctest.h>

#include <string>

#include "support/fake_peer.hpp"
#include "protocols/echo.hpp"
#include "reactor/local_hub.hpp"

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
