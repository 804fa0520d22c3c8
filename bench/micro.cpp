// Micro-benchmarks of the core's hot paths: baselines for later work, no pass/fail.
#include <benchmark/benchmark.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "reactor/buffer.hpp"
#include "reactor/loop.hpp"
#include "reactor/session.hpp"
#include "reactor/timers.hpp"

namespace {

void BM_BufferAppendConsume(benchmark::State& state) {
  std::vector<std::byte> chunk(static_cast<std::size_t>(state.range(0)), std::byte{7});
  reactor::Buffer buffer;
  for (auto _ : state) {
    bool ok = buffer.append(chunk);
    benchmark::DoNotOptimize(ok);
    buffer.consume(chunk.size() / 2);
    ok = buffer.append(chunk);
    benchmark::DoNotOptimize(ok);
    buffer.consume(buffer.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * state.range(0));
}
BENCHMARK(BM_BufferAppendConsume)->Arg(64)->Arg(4096)->Arg(65536);

// Insert 100k timers then cancel them all: the per-connection idle-timer pattern at scale.
void BM_Timers100kInsertCancel(benchmark::State& state) {
  using Clock = reactor::TimerQueue::Clock;
  std::vector<reactor::TimerId> ids(100000);
  for (auto _ : state) {
    reactor::TimerQueue q;
    auto now = Clock::now();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      ids[i] = q.add(now + std::chrono::milliseconds(1000 + (i * 7919) % 60000), {}, [] {});
    }
    for (auto id : ids) q.cancel(id);
    benchmark::DoNotOptimize(q.size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 100000);
}
BENCHMARK(BM_Timers100kInsertCancel)->Unit(benchmark::kMillisecond);

// Insert 100k timers and run them all in deadline order.
void BM_Timers100kRun(benchmark::State& state) {
  using Clock = reactor::TimerQueue::Clock;
  for (auto _ : state) {
    reactor::TimerQueue q;
    auto now = Clock::now();
    std::size_t fired = 0;
    for (std::size_t i = 0; i < 100000; ++i) {
      q.add(now + std::chrono::milliseconds((i * 7919) % 60000), {}, [&fired] { ++fired; });
    }
    q.run_due(now + std::chrono::hours(1));
    benchmark::DoNotOptimize(fired);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 100000);
}
BENCHMARK(BM_Timers100kRun)->Unit(benchmark::kMillisecond);

// post() from another thread to a loop blocked in epoll_wait, and the answer back.
void BM_PostRoundTrip(benchmark::State& state) {
  auto loop = std::move(*reactor::Loop::create());
  std::thread runner([&] { loop->run(); });
  std::atomic<std::uint64_t> done{0};
  std::uint64_t expected = 0;
  for (auto _ : state) {
    ++expected;
    loop->post([&done] { done.fetch_add(1, std::memory_order_release); });
    while (done.load(std::memory_order_acquire) != expected) {
    }
  }
  loop->stop();
  runner.join();
}
BENCHMARK(BM_PostRoundTrip)->UseRealTime();

// One ready descriptor dispatched per loop iteration: epoll_wait + id check + virtual call.
struct DrainWatcher final : reactor::Watcher {
  int fd = -1;
  std::uint64_t calls = 0;
  void on_events(std::uint32_t) override { ++calls; }
};
void BM_DispatchReadyEvent(benchmark::State& state) {
  auto loop = std::move(*reactor::Loop::create());
  int fd = ::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // stays readable: level-triggered
  DrainWatcher watcher;
  auto id = loop->watch(fd, EPOLLIN, watcher);
  if (!id) state.SkipWithError("watch failed");
  for (auto _ : state) loop->run_once(std::chrono::milliseconds(0));
  state.counters["dispatched"] = static_cast<double>(watcher.calls);
  loop->unwatch(*id);
  ::close(fd);
}
BENCHMARK(BM_DispatchReadyEvent);

}  // namespace

BENCHMARK_MAIN();
