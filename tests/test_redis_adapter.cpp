// reactor-redis's hiredis adapter against a real redis-server: commands, pub/sub, a refused
// connect and a command timeout, all driven by our Loop; and the hub URL parser.
#include <doctest/doctest.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "reactor/loop.hpp"
#include "reactor/redis/loop_adapter.hpp"
#include "reactor/redis/redis_hub.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kNone = 99;  // no callback yet (REDIS_ERR is -1)

// What the callbacks saw, for one test.
struct Seen {
  reactor::Loop* loop = nullptr;
  int connected = kNone;     // status given to the connect callback
  int disconnected = kNone;  // status given to the disconnect callback
  std::vector<std::string> replies;
  int null_replies = 0;
};

void on_connect(const redisAsyncContext* ac, int status) {
  static_cast<Seen*>(ac->data)->connected = status;
}
void on_disconnect(const redisAsyncContext* ac, int status) {
  static_cast<Seen*>(ac->data)->disconnected = status;
}
void on_reply(redisAsyncContext* ac, void* reply, void*) {
  auto* seen = static_cast<Seen*>(ac->data);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr) {
    ++seen->null_replies;
  } else if (r->type == REDIS_REPLY_ARRAY) {
    std::string joined;
    for (std::size_t i = 0; i < r->elements; ++i) {
      if (i) joined += ' ';
      if (r->element[i]->type == REDIS_REPLY_INTEGER) {
        joined += std::to_string(r->element[i]->integer);
      } else {
        joined.append(r->element[i]->str, r->element[i]->len);
      }
    }
    seen->replies.push_back(joined);
  } else if (r->type == REDIS_REPLY_INTEGER) {
    seen->replies.push_back(std::to_string(r->integer));
  } else if (r->type == REDIS_REPLY_NIL) {
    seen->replies.push_back("(nil)");
  } else {
    seen->replies.emplace_back(r->str, r->len);
  }
}

redisAsyncContext* connect(reactor::Loop& loop, int port, Seen& seen) {
  redisAsyncContext* ac = redisAsyncConnect("127.0.0.1", port);
  REQUIRE(ac != nullptr);
  REQUIRE(ac->err == 0);
  ac->data = &seen;
  REQUIRE(reactor::redis::attach(loop, ac) == REDIS_OK);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  return ac;
}

// Runs the loop until `done` or 10 s pass.
template <class Done>
bool run_until(reactor::Loop& loop, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop.run_once(50ms);
  }
  return true;
}

}  // namespace

TEST_CASE("commands sent through the adapter get their replies in order on our loop") {
  test::RedisServer redis;
  auto loop = test::make_loop();
  Seen seen;
  redisAsyncContext* ac = connect(*loop, redis.port(), seen);
  CHECK(reactor::redis::attach(*loop, ac) == REDIS_ERR);  // attached once only
  redisAsyncCommand(ac, on_reply, nullptr, "SET %s %b", "k", "v\0w", std::size_t{3});
  redisAsyncCommand(ac, on_reply, nullptr, "GET k");
  redisAsyncCommand(ac, on_reply, nullptr, "INCR n");
  REQUIRE(run_until(*loop, [&] { return seen.replies.size() == 3; }));
  CHECK(seen.connected == REDIS_OK);
  CHECK(seen.replies == std::vector<std::string>{"OK", std::string("v\0w", 3), "1"});

  redisAsyncDisconnect(ac);  // frees the context once idle; the adapter goes with it
  REQUIRE(run_until(*loop, [&] { return seen.disconnected != kNone; }));
  CHECK(seen.disconnected == REDIS_OK);
}

TEST_CASE("a subscriber on the adapter receives what another context publishes") {
  test::RedisServer redis;
  auto loop = test::make_loop();
  Seen sub_seen, pub_seen;
  redisAsyncContext* sub = connect(*loop, redis.port(), sub_seen);
  redisAsyncContext* pub = connect(*loop, redis.port(), pub_seen);
  redisAsyncCommand(sub, on_reply, nullptr, "SUBSCRIBE news");
  REQUIRE(run_until(*loop, [&] { return sub_seen.replies.size() == 1; }));
  CHECK(sub_seen.replies[0] == "subscribe news 1");
  for (int i = 0; i < 100; ++i) redisAsyncCommand(pub, on_reply, nullptr, "PUBLISH news m%d", i);
  REQUIRE(run_until(*loop, [&] { return sub_seen.replies.size() == 101; }));
  CHECK(sub_seen.replies[1] == "message news m0");
  CHECK(sub_seen.replies[100] == "message news m99");
  CHECK(pub_seen.replies.size() == 100);
  redisAsyncFree(sub);
  redisAsyncFree(pub);
  CHECK(sub_seen.null_replies >= 1);  // the subscription's callback hears the end
}

TEST_CASE("a refused connect reaches the connect callback as REDIS_ERR") {
  const int port = test::free_port();  // nobody listens there
  auto loop = test::make_loop();
  Seen seen;
  redisAsyncContext* ac = connect(*loop, port, seen);
  redisAsyncCommand(ac, on_reply, nullptr, "PING");
  REQUIRE(run_until(*loop, [&] { return seen.connected != kNone; }));
  CHECK(seen.connected == REDIS_ERR);
  CHECK(seen.null_replies == 1);  // hiredis freed the context; the pending command failed
}

TEST_CASE("a reply overdue past the command timeout drops the connection with an error") {
  test::RedisServer redis;
  auto loop = test::make_loop();
  Seen seen;
  redisAsyncContext* ac = connect(*loop, redis.port(), seen);
  REQUIRE(reactor::redis::set_timeouts(ac, 2s, 300ms) == REDIS_OK);
  redisAsyncCommand(ac, on_reply, nullptr, "PING");
  REQUIRE(run_until(*loop, [&] { return seen.replies.size() == 1; }));
  CHECK(seen.replies[0] == "PONG");

  const auto start = std::chrono::steady_clock::now();
  redisAsyncCommand(ac, on_reply, nullptr, "BLPOP nothing-ever 30");  // Redis answers in 30 s
  REQUIRE(run_until(*loop, [&] { return seen.disconnected != kNone; }));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(seen.disconnected == REDIS_ERR);
  CHECK(seen.null_replies == 1);
  CHECK(waited >= 300ms);
  CHECK(waited < 10s);
}

TEST_CASE("a connect that does not complete in time fails through the connect callback") {
  // A listener whose accept queue is full: the kernel drops further SYNs, the connect hangs.
  auto listener = reactor::listen_on(test::parse("tcp://127.0.0.1:0"), {});
  REQUIRE(listener.ok());
  REQUIRE(::listen(listener->get(), 0) == 0);
  auto bound = reactor::local_address(listener->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  const int port = bound->port();
  std::vector<reactor::Fd> fillers;
  for (int i = 0; i < 4; ++i) {  // fill the queue (backlog 0 still takes one or two)
    auto fd = reactor::open_socket(*bound, /*blocking=*/false);
    REQUIRE(fd.ok());
    ::connect(fd->get(), bound->sockaddr_ptr(), bound->length());
    fillers.push_back(std::move(*fd));
  }
  auto loop = test::make_loop();
  Seen seen;
  redisAsyncContext* ac = connect(*loop, port, seen);
  REQUIRE(reactor::redis::set_timeouts(ac, 500ms, 0ms) == REDIS_OK);
  redisAsyncCommand(ac, on_reply, nullptr, "PING");
  REQUIRE(run_until(*loop, [&] { return seen.connected != kNone; }));
  if (seen.connected == REDIS_OK) {
    // Some kernels complete the handshake anyway (syncookies); the timeout is untestable here.
    MESSAGE("skipped: the kernel accepted the connection despite the full queue");
    redisAsyncFree(ac);
    return;
  }
  CHECK(seen.connected == REDIS_ERR);
  CHECK(seen.null_replies == 1);
}

TEST_CASE("redis:// hub URLs: host, port and an optional ttl; anything else is refused") {
  reactor::redis::RedisHubOptions o;
  std::string error;
  REQUIRE(reactor::redis::parse_redis_url("redis://127.0.0.1:6390", o, error));
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 6390);
  REQUIRE(reactor::redis::parse_redis_url("redis://[::1]:7?ttl=1.5", o, error));
  CHECK(o.host == "::1");
  CHECK(o.ttl == std::chrono::milliseconds(1500));
  for (const char* bad : {"http://h:1", "redis://h", "redis://:1", "redis://h:0", "redis://h:70000",
                          "redis://h:1?ttl=0", "redis://h:1?ttl=x", "redis://h:1?db=2"}) {
    CAPTURE(bad);
    CHECK_FALSE(reactor::redis::parse_redis_url(bad, o, error));
    CHECK(error.find("expected redis://HOST:PORT") != std::string::npos);
  }
}
