// redis-loop-example: hiredis's async API on our Loop. Sets a key, reads it back, prints it and
// stops. Usage: redis-loop-example [HOST [PORT]] (default 127.0.0.1 6379).
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <cstdio>
#include <cstdlib>

#include "reactor/loop.hpp"
#include "reactor/redis/loop_adapter.hpp"

namespace {

int status = 1;

void on_get(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* loop = static_cast<reactor::Loop*>(privdata);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r != nullptr && r->type == REDIS_REPLY_STRING) {
    std::printf("greeting = %.*s\n", static_cast<int>(r->len), r->str);
    status = 0;
  } else {
    std::fprintf(stderr, "redis-loop-example: GET failed: %s\n",
                 r != nullptr ? r->str : ac->errstr);
  }
  redisAsyncDisconnect(ac);  // hiredis frees the context once the replies are in
  loop->stop();
}

void on_connect(const redisAsyncContext* ac, int result) {
  if (result != REDIS_OK) {
    std::fprintf(stderr, "redis-loop-example: connect: %s\n", ac->errstr);
    static_cast<reactor::Loop*>(ac->data)->stop();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* host = argc > 1 ? argv[1] : "127.0.0.1";
  const int port = argc > 2 ? std::atoi(argv[2]) : 6379;
  auto loop = reactor::Loop::create();
  if (!loop) return 1;

  redisAsyncContext* ac = redisAsyncConnect(host, port);
  if (ac == nullptr || ac->err != 0) {
    std::fprintf(stderr, "redis-loop-example: %s\n", ac != nullptr ? ac->errstr : "no memory");
    return 1;
  }
  ac->data = loop->get();
  reactor::redis::attach(**loop, ac);
  reactor::redis::set_timeouts(ac, std::chrono::seconds(2), std::chrono::seconds(2));
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncCommand(ac, nullptr, nullptr, "SET greeting %s", "hello from reactor");
  redisAsyncCommand(ac, on_get, loop->get(), "GET greeting");
  (*loop)->run();
  return status;
}
