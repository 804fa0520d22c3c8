// reactor-server --hub redis://...: several real server processes on one real redis-server share
// rooms, nicks, /who, /rooms and private messages; and the faults: Redis unreachable at start,
// Redis restarted mid-run, lines sent while it is down, an instance killed, a stalled instance.
#include <doctest/doctest.h>

#include <algorithm>

#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;
const std::string kLost = "* chat backend unavailable; reconnecting";
const std::string kBack = "* chat backend back";
const std::string kUndelivered = "ERR not delivered: chat backend unavailable";

test::ServerProcess start_instance(const test::RedisServer& redis, std::string ttl = "2") {
  auto server = test::start_server(kServer, {"--protocol", "chat", "--listen", "tcp://127.0.0.1:0",
                                             "--hub", redis.url() + "?ttl=" + ttl});
  REQUIRE(server.has_value());
  return std::move(*server);
}

std::unique_ptr<test::ChatClient> join_as(const test::ServerProcess& server,
                                          const std::string& nick) {
  auto client = std::make_unique<test::ChatClient>(server.addresses.at(0));
  CHECK(client->ask_past("/nick " + nick) == "OK nick " + nick + ", joined lobby");
  return client;
}

// Asks `command` until the reply is `want` (state spreads through Redis asynchronously).
bool eventually(test::ChatClient& client, const std::string& command, const std::string& want) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    last = client.ask_past(command);
    if (last == want) return true;
  }
  MESSAGE(command << " answered '" << last << "', expected '" << want << "'");
  return false;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "\n  " + line;
  return out;
}

}  // namespace

TEST_CASE("two instances on one Redis share rooms, nicks, /who, /rooms and private messages") {
  test::RedisServer redis;
  auto a = start_instance(redis);
  auto b = start_instance(redis);
  auto alice = join_as(a, "alice");
  auto bob = join_as(b, "bob");

  auto other = std::make_unique<test::ChatClient>(b.addresses.at(0));
  CHECK(other->ask_past("/nick alice") == "ERR nick taken: alice");  // held on the other instance

  CHECK(eventually(*alice, "/who", "OK 2 in lobby: alice bob"));
  CHECK(bob->ask_past("/who") == "OK 2 in lobby: alice bob");
  CHECK(bob->ask_past("/rooms") == "OK 1 room: lobby(2)");

  bob->send_line("hello from b");
  std::vector<std::string> seen;
  CHECK_MESSAGE(alice->wait_for("bob: hello from b", seen), joined(seen));

  CHECK(alice->ask_past("/msg bob psst") == "OK sent to bob");
  CHECK(bob->wait_for("[private] alice: psst"));
  CHECK(alice->ask_past("/msg nobody x") == "ERR no such nick");

  CHECK(alice->ask_past("/join dev") == "OK joined dev");
  CHECK(bob->wait_for("* alice left"));
  CHECK(eventually(*bob, "/rooms", "OK 2 rooms: dev(1) lobby(1)"));

  alice->send_line("/quit");
  CHECK(eventually(*other, "/nick alice", "OK nick alice, joined lobby"));  // released
  test::stop_server(a);
  test::stop_server(b);
}

TEST_CASE("across instances nicks and rooms ignore case and show as their owner spelled them") {
  test::RedisServer redis;
  auto a = start_instance(redis);
  auto b = start_instance(redis);
  auto alice = join_as(a, "Alice");
  auto bob = join_as(b, "bob");
  auto other = std::make_unique<test::ChatClient>(b.addresses.at(0));
  CHECK(other->ask_past("/nick alice") == "ERR nick taken: alice");  // held on the other instance
  CHECK(eventually(*bob, "/who", "OK 2 in lobby: Alice bob"));
  CHECK(alice->ask_past("/who") == "OK 2 in lobby: Alice bob");
  CHECK(bob->ask_past("/msg ALICE hi") == "OK sent to ALICE");
  CHECK(alice->wait_for("[private] bob: hi"));
  CHECK(alice->ask_past("/msg BOB hello") == "OK sent to BOB");
  CHECK(bob->wait_for("[private] Alice: hello"));

  // A room created on one instance keeps its spelling when joined from another.
  CHECK(alice->ask_past("/join Dev") == "OK joined Dev");
  CHECK(bob->wait_for("* Alice left"));
  CHECK(bob->ask_past("/join DEV") == "OK joined Dev");
  CHECK(alice->wait_for("* bob joined"));
  CHECK(eventually(*other, "/rooms", "OK 1 room: Dev(2)"));
  CHECK(eventually(*alice, "/who", "OK 2 in Dev: Alice bob"));
  bob->send_line("in Dev");
  CHECK(alice->wait_for("bob: in Dev"));

  // A new spelling of one's own nick keeps the nick (the lease is not released) and shows.
  CHECK(alice->ask_past("/nick ALICE") == "OK nick ALICE");
  CHECK(bob->wait_for("* Alice is now ALICE"));
  CHECK(eventually(*bob, "/who", "OK 2 in Dev: ALICE bob"));
  CHECK(other->ask_past("/nick alice") == "ERR nick taken: alice");
  CHECK(test::redis_ask(redis.port(), "EXISTS chat:nick:alice") == ":1");  // the folded key
  CHECK(test::redis_ask(redis.port(), "EXISTS chat:nick:ALICE") == ":0");
  test::stop_server(a);
  test::stop_server(b);
}

TEST_CASE("under --model reuseport every loop is an instance of its own on the hub") {
  test::RedisServer redis;
  auto a =
      test::start_server(kServer, {"--protocol", "chat", "--listen", "tcp://127.0.0.1:0", "--model",
                                   "reuseport", "--workers", "3", "--hub", redis.url() + "?ttl=2"});
  REQUIRE(a.has_value());
  auto b = start_instance(redis);
  // The kernel spreads these over a's three loops; whichever loop, they all share the room.
  std::vector<std::unique_ptr<test::ChatClient>> clients;
  std::string everyone = "OK 7 in lobby:";
  for (int i = 0; i < 6; ++i) clients.push_back(join_as(*a, "u" + std::to_string(i)));
  clients.push_back(join_as(b, "u6"));
  for (int i = 0; i < 7; ++i) everyone += " u" + std::to_string(i);
  CHECK(eventually(*clients[6], "/who", everyone));
  CHECK(clients[0]->ask_past("/nick u6") == "ERR nick taken: u6");
  clients[6]->send_line("hi from b");
  for (int i = 0; i < 6; ++i) CHECK(clients[i]->wait_for("u6: hi from b"));
  clients[1]->send_line("hi from a");
  CHECK(clients[0]->wait_for("u1: hi from a"));
  CHECK(clients[6]->wait_for("u1: hi from a"));
  test::stop_server(*a);
  test::stop_server(b);
}

TEST_CASE("reactor-server --hub exits 1 when Redis is not reachable, 2 for other models") {
  const int port = test::free_port();
  auto p = test::run_to_exit(kServer, {"--protocol", "chat", "--listen", "tcp://127.0.0.1:0",
                                       "--hub", "redis://127.0.0.1:" + std::to_string(port)});
  CHECK(p.exit_code() == 1);
  CHECK_MESSAGE(p.err().find("Connection refused") != std::string::npos, p.err());
  CHECK(p.out().find("listening on") == std::string::npos);  // no silent local fallback

  auto q = test::run_to_exit(kServer, {"--protocol", "chat", "--listen", "tcp://127.0.0.1:0",
                                       "--model", "thread", "--hub", "redis://127.0.0.1:1"});
  CHECK(q.exit_code() == 2);
  CHECK(q.err().find("--hub runs on --model epoll or reuseport only") != std::string::npos);
  for (const char* bad : {"http://127.0.0.1:1", "redis://127.0.0.1", "redis://h:1?ttl=0"}) {
    CAPTURE(bad);
    auto r = test::run_to_exit(
        kServer, {"--protocol", "chat", "--listen", "tcp://127.0.0.1:0", "--hub", bad});
    CHECK(r.exit_code() == 2);
    CHECK(r.err().find("expected redis://HOST:PORT") != std::string::npos);
  }
}

TEST_CASE("Redis restarted mid-run: one notice each way, lines refused meanwhile, chat resumes") {
  test::RedisServer redis;
  auto a = start_instance(redis);
  auto b = start_instance(redis);
  auto alice = join_as(a, "alice");
  auto bob = join_as(b, "bob");
  CHECK(eventually(*alice, "/who", "OK 2 in lobby: alice bob"));

  redis.kill();
  std::vector<std::string> a_seen, b_seen;
  CHECK_MESSAGE(alice->wait_for(kLost, a_seen), joined(a_seen));
  CHECK_MESSAGE(bob->wait_for(kLost, b_seen), joined(b_seen));

  alice->send_line("anyone there?");  // never silently lost: its sender hears
  CHECK(alice->read_line() == kUndelivered);

  redis.restart();
  CHECK(alice->wait_for(kBack, a_seen));
  CHECK(bob->wait_for(kBack, b_seen));
  // Exactly one notice each way, however many reconnect attempts it took.
  CHECK(std::count(a_seen.begin(), a_seen.end(), kLost) == 1);
  CHECK(std::count(b_seen.begin(), b_seen.end(), kLost) == 1);

  CHECK(eventually(*bob, "/who", "OK 2 in lobby: alice bob"));  // leases rewritten
  alice->send_line("back again");
  CHECK(bob->wait_for("alice: back again"));
  auto other = std::make_unique<test::ChatClient>(a.addresses.at(0));
  CHECK(other->ask_past("/nick bob") == "ERR nick taken: bob");  // the nick was claimed again
  test::stop_server(a);
  test::stop_server(b);
}

TEST_CASE("an instance killed with SIGKILL: its users leave the others' rooms within the TTL") {
  test::RedisServer redis;
  auto a = start_instance(redis, "1");
  auto b = start_instance(redis, "1");
  auto alice = join_as(a, "alice");
  auto bob = join_as(b, "bob");
  CHECK(eventually(*alice, "/who", "OK 2 in lobby: alice bob"));

  REQUIRE(b.process.signal(SIGKILL));
  REQUIRE(b.process.wait_exit(10s).has_value());
  std::vector<std::string> seen;
  CHECK_MESSAGE(alice->wait_for("* bob left", seen), joined(seen));
  CHECK(alice->ask_past("/who") == "OK 1 in lobby: alice");
  CHECK(alice->ask_past("/msg bob still there?") == "ERR no such nick");
  auto bob_again = join_as(a, "bob");  // the lease ran out
  CHECK(alice->wait_for("* bob joined"));
  test::stop_server(a);
}

TEST_CASE("an instance stopped cleanly: its users leave once, not again when its lease ends") {
  test::RedisServer redis;
  auto a = start_instance(redis, "1");
  auto b = start_instance(redis, "1");
  auto alice = join_as(a, "alice");
  auto bob = join_as(b, "bob");
  CHECK(eventually(*alice, "/who", "OK 2 in lobby: alice bob"));
  test::stop_server(b);
  CHECK(alice->wait_for("* bob left"));
  // Three TTLs later: no second "* bob left" (the next line is the reply to /who).
  std::vector<std::string> seen;
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    if (auto line = alice->read_line(200ms)) seen.push_back(*line);
  }
  CHECK_MESSAGE(seen.empty(), joined(seen));
  CHECK(alice->ask_past("/who") == "OK 1 in lobby: alice");
  test::stop_server(a);
}

TEST_CASE("a stalled instance does not stall the others; Redis cuts it off, it comes back") {
  // A small pub/sub output limit, so the stalled subscriber is cut off after little traffic.
  test::RedisServer redis({"--client-output-buffer-limit", "pubsub 256kb 64kb 1"});
  auto a = start_instance(redis);
  auto b = start_instance(redis);
  auto c = start_instance(redis);
  auto alice = join_as(a, "alice");
  auto bob = join_as(b, "bob");
  auto carol = join_as(c, "carol");
  CHECK(eventually(*alice, "/who", "OK 3 in lobby: alice bob carol"));

  REQUIRE(c.process.signal(SIGSTOP));
  // alice talks, bob keeps hearing every line while carol's instance sleeps.
  const std::string text(900, 'x');
  int delivered = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (int i = 0; i < 20000 && std::chrono::steady_clock::now() < deadline; ++i) {
    alice->send_line(std::to_string(i) + " " + text);
    if (i % 100 == 99) {  // bob reads the batch: nothing waits on the stalled instance
      std::vector<std::string> seen;
      const std::string want = "alice: " + std::to_string(i) + " " + text;
      REQUIRE_MESSAGE(bob->wait_for(want, seen, 10s), "line " << i << " did not reach bob");
      delivered = i + 1;
    }
    // Redis drops the stalled subscriber once its output passes the limit: two instances left.
    if (i % 1000 == 999 && test::redis_ask(redis.port(), "PUBSUB CHANNELS chat:to:*") == "*2") {
      break;
    }
  }
  CHECK(test::redis_ask(redis.port(), "PUBSUB CHANNELS chat:to:*") == "*2");
  CHECK(delivered > 0);
  REQUIRE(c.process.signal(SIGCONT));
  std::vector<std::string> seen;
  // carol's instance notices, tells her once, reconnects and tells her again.
  CHECK_MESSAGE(carol->wait_for(kBack, seen, 30s), "carol saw:" << seen.size() << " lines");
  CHECK(std::count(seen.begin(), seen.end(), kLost) == 1);
  carol->send_line("I was asleep");
  CHECK(bob->wait_for("carol: I was asleep", seen, 20s));
  test::stop_server(a);
  test::stop_server(b);
  test::stop_server(c);
}
