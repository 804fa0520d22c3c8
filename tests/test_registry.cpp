#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "support/fake_peer.hpp"
#include "protocols/registry.hpp"
#include "reactor/local_hub.hpp"

using reactor::protocols::ProtocolEntry;
using reactor::protocols::Registry;

TEST_CASE("the built-ins are echo, chat, http and resp, listed with what they need") {
  Registry registry;
  std::vector<std::string> names;
  for (const ProtocolEntry& entry : registry.list()) names.emplace_back(entry.info.name);
  CHECK(names == std::vector<std::string>{"echo", "chat", "http", "resp"});
  CHECK(registry.list().size() == reactor::protocols::builtin_protocols().size());

  const ProtocolEntry* chat = registry.find("chat");
  REQUIRE(chat != nullptr);
  CHECK(chat->info.uses_hub);
  CHECK(chat->info.transports == (reactor::kTcp | reactor::kUnixStream));
  CHECK_FALSE(chat->info.summary.empty());

  const ProtocolEntry* echo = registry.find("echo");
  REQUIRE(echo != nullptr);
  CHECK_FALSE(echo->info.uses_hub);
  CHECK(echo->info.transports == reactor::kAllTransports);

  // resp's store is shared by its sessions: the fork model cannot run it.
  const ProtocolEntry* resp = registry.find("resp");
  REQUIRE(resp != nullptr);
  CHECK(resp->info.shares_memory);
  CHECK(resp->info.uses_hub);
  CHECK_FALSE(chat->info.shares_memory);
  CHECK_FALSE(echo->info.shares_memory);
}

TEST_CASE("lookup is by exact name") {
  Registry registry;
  CHECK(registry.find("nope") == nullptr);
  CHECK(registry.find("Echo") == nullptr);
  CHECK(registry.find("") == nullptr);
}

TEST_CASE("a protocol made by name works") {
  Registry registry;
  std::string error;
  auto echo = registry.create("echo", "", error);
  REQUIRE(echo != nullptr);
  CHECK(error.empty());
  reactor::LocalHub hub;
  test::FakeConnection connection(*echo, hub);
  connection.feed("ping");
  CHECK(connection.peer.take() == "ping");

  auto chat = registry.create("chat", "lobby=main", error);
  REQUIRE(chat != nullptr);
  CHECK(chat->max_outbox() == 1u << 20);
}

TEST_CASE("an unknown name or bad args give a clear error and no protocol") {
  Registry registry;
  std::string error;
  CHECK(registry.create("gopher", "", error) == nullptr);
  CHECK(error.find("unknown protocol 'gopher'") != std::string::npos);

  error.clear();
  CHECK(registry.create("echo", "loud", error) == nullptr);
  CHECK(error == "echo takes no arguments");

  error.clear();
  CHECK(registry.create("chat", "volume=11", error) == nullptr);
  CHECK(error.find("unknown option 'volume'") != std::string::npos);
}

TEST_CASE("added protocols need a free, valid name") {
  Registry registry;
  const ProtocolEntry& echo = *registry.find("echo");
  ProtocolEntry copy = echo;
  CHECK_FALSE(registry.add(copy));
  copy.info.name = "bad name";
  CHECK_FALSE(registry.add(copy));
  copy.info.name = "echo2";
  CHECK(registry.add(copy));
  CHECK(registry.list().back().info.name == "echo2");
  CHECK(registry.find("echo2") != nullptr);
}

TEST_CASE("protocol names and transport lists") {
  using reactor::protocols::is_valid_protocol_name;
  using reactor::protocols::transports_to_string;
  CHECK(is_valid_protocol_name("kv-2_x"));
  CHECK_FALSE(is_valid_protocol_name(""));
  CHECK_FALSE(is_valid_protocol_name(std::string(33, 'a')));
  CHECK_FALSE(is_valid_protocol_name("a/b"));
  CHECK(transports_to_string(reactor::kAllTransports) == "tcp,udp,unix,seqpacket");
  CHECK(transports_to_string(reactor::kTcp | reactor::kUnixStream) == "tcp,unix");
  CHECK(transports_to_string(0).empty());
}
