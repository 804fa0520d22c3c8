#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "reactor/loop.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct PipeEnds {
  reactor::Fd read, write;
};
PipeEnds make_pipe() {
  int p[2];
  REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
  return {reactor::Fd(p[0]), reactor::Fd(p[1])};
}

struct CountingWatcher : reactor::Watcher {
  int calls = 0;
  std::function<void()> action;
  void on_events(std::uint32_t) override {
    ++calls;
    if (action) action();
  }
};

}  // namespace

TEST_CASE("post from another thread wakes a loop blocked in epoll_wait") {
  auto loop = test::make_loop();
  std::atomic<bool> ran{false};
  std::thread runner([&] { loop->run(); });
  std::thread poster([&] {
    loop->post([&] {
      ran = true;
      loop->stop();
    });
  });
  poster.join();
  runner.join();  // returns only if the posted task ran and stopped the loop
  CHECK(ran);
}

TEST_CASE("tasks posted from several threads run on the loop thread, each thread's in order") {
  auto loop = test::make_loop();
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::vector<int>> seen(kThreads);
  std::thread::id loop_thread;
  std::atomic<int> wrong_thread{0};
  std::atomic<int> done{0};
  std::thread runner([&] {
    loop_thread = std::this_thread::get_id();
    loop->run();
  });
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        loop->post([&, t, i] {
          if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
          seen[static_cast<std::size_t>(t)].push_back(i);
          if (++done == kThreads * kEach) loop->stop();
        });
      }
    });
  }
  for (auto& p : posters) p.join();
  runner.join();
  CHECK(wrong_thread == 0);
  for (const auto& s : seen) {
    REQUIRE(s.size() == kEach);
    CHECK(std::is_sorted(s.begin(), s.end()));
  }
}

TEST_CASE("stop() before run() makes run() return at once") {
  auto loop = test::make_loop();
  loop->stop();
  loop->run();
  CHECK(loop->stopping());
}

TEST_CASE("signals arrive through signalfd as loop events") {
  auto loop = test::make_loop();
  struct Seen {
    int signo = 0;
    reactor::Loop* loop = nullptr;
  } seen;
  seen.loop = loop.get();
  REQUIRE_FALSE(loop->handle_signals(
      {SIGUSR1},
      [](int signo, void* context) {
        auto* s = static_cast<Seen*>(context);
        s->signo = signo;
        s->loop->stop();
      },
      &seen));
  REQUIRE(::kill(::getpid(), SIGUSR1) == 0);  // blocked in this thread: waits in the signalfd
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen.signo == 0 && std::chrono::steady_clock::now() < deadline) loop->run_once(1000ms);
  CHECK(seen.signo == SIGUSR1);
}

TEST_CASE("an event for a watcher removed earlier in the same batch is dropped") {
  auto loop = test::make_loop();
  auto a = make_pipe();
  auto b = make_pipe();
  CountingWatcher wa, wb;
  auto ida = loop->watch(a.read.get(), EPOLLIN, wa);
  auto idb = loop->watch(b.read.get(), EPOLLIN, wb);
  REQUIRE(ida.ok());
  REQUIRE(idb.ok());
  // Whichever runs first removes the other, whose event is already in the same batch.
  wa.action = [&] { loop->unwatch(*idb); };
  wb.action = [&] { loop->unwatch(*ida); };
  REQUIRE(::write(a.write.get(), "x", 1) == 1);
  REQUIRE(::write(b.write.get(), "y", 1) == 1);
  loop->run_once(1000ms);
  CHECK(wa.calls + wb.calls == 1);
  CHECK(loop->stats().stale_events == 1);
}

TEST_CASE("a reused fd number under a new watch never receives the old watch's event") {
  auto loop = test::make_loop();
  auto a = make_pipe();
  auto b = make_pipe();
  CountingWatcher wa, wb, fresh;
  PipeEnds replacement;
  auto ida = loop->watch(a.read.get(), EPOLLIN, wa);
  auto idb = loop->watch(b.read.get(), EPOLLIN, wb);
  REQUIRE(ida.ok());
  REQUIRE(idb.ok());
  // The first to run closes the other's pipe and watches a new one, which takes the lowest
  // free fd number (the one just closed) and perhaps the same slot, without data in it.
  auto replace = [&](reactor::WatchId victim, PipeEnds& ends) {
    if (replacement.read) return;  // once: the survivor's unread byte fires again later
    loop->unwatch(victim);
    int old_fd = ends.read.get();
    ends.read.reset();
    replacement = make_pipe();
    CHECK(replacement.read.get() == old_fd);
    REQUIRE(loop->watch(replacement.read.get(), EPOLLIN, fresh).ok());
  };
  wa.action = [&] { replace(*idb, b); };
  wb.action = [&] { replace(*ida, a); };
  REQUIRE(::write(a.write.get(), "x", 1) == 1);
  REQUIRE(::write(b.write.get(), "y", 1) == 1);
  loop->run_once(1000ms);
  CHECK(wa.calls + wb.calls == 1);
  CHECK(fresh.calls == 0);
  loop->run_once(0ms);
  CHECK(fresh.calls == 0);  // the new pipe is empty: nothing may reach its watcher
}

TEST_CASE("modify switches interest and unwatch stops delivery") {
  auto loop = test::make_loop();
  auto p = make_pipe();
  CountingWatcher w;
  auto id = loop->watch(p.write.get(), EPOLLOUT, w);
  REQUIRE(id.ok());
  loop->run_once(1000ms);
  CHECK(w.calls == 1);
  REQUIRE_FALSE(loop->modify(*id, 0));
  loop->run_once(0ms);
  CHECK(w.calls == 1);
  REQUIRE_FALSE(loop->modify(*id, EPOLLOUT));
  loop->run_once(1000ms);
  CHECK(w.calls == 2);
  loop->unwatch(*id);
  CHECK(loop->modify(*id, EPOLLOUT));  // stale id: an error, not a crash
  loop->run_once(0ms);
  CHECK(w.calls == 2);
}

TEST_CASE("Task runs small and large move-only callables") {
  auto big = std::make_unique<std::array<int, 64>>();
  (*big)[5] = 42;
  int seen = 0;
  reactor::Task small([&seen] { seen = 1; });
  reactor::Task large([&seen, b = std::move(big)] { seen = (*b)[5]; });
  small();
  CHECK(seen == 1);
  reactor::Task moved = std::move(large);
  CHECK_FALSE(large);
  moved();
  CHECK(seen == 42);
}
