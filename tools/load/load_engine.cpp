#include "load_engine.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "load_echo_idle.hpp"
#include "load_proc.hpp"
#include "load_worker.hpp"
#include "reactor/socket.hpp"

namespace load {

void LoadTotals::add(const LoadTotals& o) {
  connections += o.connections;
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  msgs += o.msgs;
  errors_connect += o.errors_connect;
  for (auto [e, n] : o.connect_errnos) connect_errnos[e] += n;
  errors_timeout += o.errors_timeout;
  errors_io += o.errors_io;
  errors_verify += o.errors_verify;
  alive += o.alive;
  failed += o.failed;
  latency.merge(o.latency);
  if (fatal.empty()) fatal = o.fatal;
}

using engine::Nanos;
using engine::now_ns;

LoadTotals run_load(const LoadOptions& o, const reactor::Address& target,
                    const ProgressFn& on_progress) {
  raise_fd_limit();
  reactor::ignore_sigpipe();
  engine::Dialer dialer(target, o.close, o.sources);
  LoadProgress progress;
  std::atomic<Nanos> hold_deadline{0};
  int threads = o.threads;
  engine::PhaseBarrier phases(threads + 1, engine::StartHold{&hold_deadline, o.hold_s});
  engine::Worker::Shared shared{&o, &dialer, &progress, &phases, &hold_deadline};

  int total = o.mode == Mode::connrate ? o.concurrency : o.connections;
  std::vector<std::unique_ptr<engine::Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    int share = total / threads + (t < total % threads ? 1 : 0);
    switch (o.mode) {
      case Mode::connrate:
        workers.push_back(engine::make_connrate_worker(shared, t, share));
        break;
      case Mode::echo:
        workers.push_back(engine::make_echo_worker(shared, t, share));
        break;
      case Mode::idle:
        workers.push_back(engine::make_idle_worker(shared, t, share));
        break;
    }
  }
  LoadTotals result;
  for (auto& w : workers) {
    if (!w->totals().fatal.empty()) {
      result.fatal = w->totals().fatal;
      return result;
    }
  }

  if (o.mode == Mode::idle && o.server_pid > 0) result.rss_before = tree_memory_bytes(o.server_pid);
  std::optional<engine::IdleSet> idle_set;
  if (o.mode == Mode::echo && o.idle > 0) {
    idle_set.emplace(dialer, o.idle, o.timeout_s);
    result.idle_ready = idle_set->open(result);
  }
  double cpu_before = o.mode == Mode::echo && o.server_pid > 0 ? tree_cpu_seconds(o.server_pid) : 0;

  std::mutex mu;
  std::condition_variable cv;
  int running = threads;
  Nanos started = now_ns();
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    pool.emplace_back([&, worker = w.get()] {
      worker->run();
      std::lock_guard lock(mu);
      --running;
      cv.notify_all();
    });
  }

  auto report = [&] {
    if (on_progress) on_progress(progress, static_cast<double>(now_ns() - started) / 1e9);
  };
  if (o.mode == Mode::idle) {
    // Phase 1 ends when every thread has ramped up; phase 2 when the hold time is over and the
    // server's RSS has been sampled.
    report();
    phases.arrive_and_wait();
    report();
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(hold_deadline.load())));
    if (o.server_pid > 0) result.rss_holding = tree_memory_bytes(o.server_pid);
    phases.arrive_and_wait();
  }
  {
    std::unique_lock lock(mu);
    while (running > 0) {
      cv.wait_for(lock, std::chrono::seconds(1));
      lock.unlock();
      report();
      lock.lock();
    }
  }
  for (auto& th : pool) th.join();
  result.elapsed_s = static_cast<double>(now_ns() - started) / 1e9;
  if (o.mode == Mode::echo && o.server_pid > 0)
    result.server_cpu_s = std::max(0.0, tree_cpu_seconds(o.server_pid) - cpu_before);
  for (auto& w : workers) result.add(w->totals());
  return result;
}

}  // namespace load
