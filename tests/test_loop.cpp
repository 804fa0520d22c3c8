#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "reactor/loop.hpp"
#include "support/support.hpp"

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

// The loop tests run on every backend.
template <reactor::Backend B>
struct On {
  static constexpr reactor::Backend backend = B;
};
using Epoll = On<reactor::Backend::epoll>;
using Poll = On<reactor::Backend::poll>;
using Select = On<reactor::Backend::select>;
#define LOOP_BACKENDS Epoll, Poll, Select

std::unique_ptr<reactor::Loop> make_loop_on(reactor::Backend backend) {
  auto loop = reactor::Loop::create(backend);
  REQUIRE_MESSAGE(loop.ok(), reactor::backend_name(backend) << ": " << loop.error().message());
  REQUIRE(loop.value()->backend() == backend);
  return std::move(*loop);
}

}  // namespace

TEST_CASE_TEMPLATE("post from another thread wakes a loop blocked in its wait", B, LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE(
    "tasks posted from several threads run on the loop thread, each thread's in order", B,
    LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE("stop() before run() makes run() return at once", B, LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
  loop->stop();
  loop->run();
  CHECK(loop->stopping());
}

TEST_CASE_TEMPLATE("signals arrive through signalfd as loop events", B, LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE("an event for a watcher removed earlier in the same batch is dropped", B,
                   LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE("a reused fd number under a new watch never receives the old watch's event", B,
                   LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE("modify switches interest and unwatch stops delivery", B, LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
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

TEST_CASE_TEMPLATE("many watchers added and removed in any order get exactly their own events", B,
                   LOOP_BACKENDS) {
  auto loop = make_loop_on(B::backend);
  constexpr int kPipes = 40;
  std::vector<PipeEnds> pipes;
  std::vector<CountingWatcher> watchers(kPipes);
  std::vector<reactor::WatchId> ids;
  for (int i = 0; i < kPipes; ++i) {
    pipes.push_back(make_pipe());
    auto id = loop->watch(pipes.back().read.get(), EPOLLIN, watchers[static_cast<std::size_t>(i)]);
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  // Remove every third, from the middle out (poll: swap-remove moves the last entries around).
  for (int i = kPipes / 2; i < kPipes; i += 3) loop->unwatch(ids[static_cast<std::size_t>(i)]);
  for (int i = kPipes / 2 - 3; i >= 0; i -= 3) loop->unwatch(ids[static_cast<std::size_t>(i)]);
  for (auto& p : pipes) REQUIRE(::write(p.write.get(), "x", 1) == 1);
  loop->run_once(1000ms);
  int removed_count = 0;
  for (int i = 0; i < kPipes; ++i) {
    const bool removed = (i >= kPipes / 2 && (i - kPipes / 2) % 3 == 0) ||
                         (i <= kPipes / 2 - 3 && (kPipes / 2 - 3 - i) % 3 == 0);
    CAPTURE(i);
    removed_count += removed ? 1 : 0;
    CHECK(watchers[static_cast<std::size_t>(i)].calls == (removed ? 0 : 1));
  }
  CHECK(removed_count == 13);
  // Level-triggered: the unread bytes are reported again.
  loop->run_once(1000ms);
  int total = 0;
  for (const auto& w : watchers) total += w.calls;
  CHECK(total == 2 * (kPipes - removed_count));
}

TEST_CASE_TEMPLATE("a hang-up is reported as EPOLLHUP even with no events requested", B, Epoll,
                   Poll) {
  auto loop = make_loop_on(B::backend);
  auto p = make_pipe();
  struct Seen : reactor::Watcher {
    std::uint32_t events = 0;
    void on_events(std::uint32_t e) override { events |= e; }
  } seen;
  REQUIRE(loop->watch(p.read.get(), 0, seen).ok());
  p.write.reset();
  loop->run_once(1000ms);
  CHECK((seen.events & EPOLLHUP) != 0);
  CHECK((seen.events & EPOLLIN) == 0);
}

TEST_CASE("the select backend refuses a descriptor >= FD_SETSIZE with a clear error") {
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur < FD_SETSIZE + 16) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, FD_SETSIZE + 64);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  auto loop = make_loop_on(reactor::Backend::select);
  auto p = make_pipe();
  const int high = ::fcntl(p.read.get(), F_DUPFD_CLOEXEC, FD_SETSIZE);
  if (high < 0) {
    MESSAGE("skipped: cannot open a descriptor >= " << FD_SETSIZE << " (RLIMIT_NOFILE)");
    return;
  }
  reactor::Fd high_fd(high);
  CountingWatcher w;
  auto id = loop->watch(high_fd.get(), EPOLLIN, w);
  REQUIRE_FALSE(id.ok());
  CHECK(id.error() == reactor::Errc::fd_too_large);
  CHECK(id.error().message().find("FD_SETSIZE (1024)") != std::string::npos);
  // The loop is unharmed: a low descriptor still works, and the high one never fires.
  CountingWatcher low;
  REQUIRE(loop->watch(p.read.get(), EPOLLIN, low).ok());
  REQUIRE(::write(p.write.get(), "x", 1) == 1);
  loop->run_once(1000ms);
  CHECK(low.calls == 1);
  CHECK(w.calls == 0);
  // poll and epoll have no such limit.
  for (auto backend : {reactor::Backend::poll, reactor::Backend::epoll}) {
    auto other = make_loop_on(backend);
    CountingWatcher hw;
    REQUIRE(other->watch(high_fd.get(), EPOLLIN, hw).ok());
    other->run_once(1000ms);
    CHECK(hw.calls == 1);
  }
}

TEST_CASE_TEMPLATE("a loop made before fork() runs in the child (a daemon that forks after set-up)",
                   B, LOOP_BACKENDS) {
  // The epoll backend's wait buffer is wiped in a child (MADV_WIPEONFORK): scratch, refilled by
  // each wait. The child must still see its events; the parent's loop is untouched.
  auto loop = make_loop_on(B::backend);
  auto pipe = make_pipe();
  CountingWatcher watcher;
  REQUIRE(loop->watch(pipe.read.get(), EPOLLIN, watcher).ok());
  // One wait in the parent first, so that the buffer holds this process's last events.
  REQUIRE(::write(pipe.write.get(), "p", 1) == 1);
  REQUIRE_FALSE(loop->run_once(5000ms));
  CHECK(watcher.calls == 1);
  char c;
  REQUIRE(::read(pipe.read.get(), &c, 1) == 1);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::write(pipe.write.get(), "c", 1) != 1) ::_exit(2);
    if (loop->run_once(5000ms)) ::_exit(3);
    ::_exit(watcher.calls == 2 ? 0 : 4);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The child drained the byte it wrote (the pipe is shared): the parent's loop still works.
  REQUIRE(::write(pipe.write.get(), "q", 1) == 1);
  REQUIRE_FALSE(loop->run_once(5000ms));
  CHECK(watcher.calls == 2);
}
