// Loop: the single-threaded event loop, the only place that waits for readiness.
//
// Backends: epoll (the default and the product), or poll(2) / select(2) for the classic
// reactors, chosen at creation (Redis's ae_epoll.c / ae_select.c). All three are
// level-triggered with epoll's event bits: poll's POLLIN/POLLOUT/POLLHUP/POLLERR map to
// EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR. poll keeps a pollfd array (O(1) add and swap-remove);
// select refuses descriptors >= FD_SETSIZE (Errc::fd_too_large) and reports a hang-up or error
// only as readability/writability of what is watched (no HUP bit of its own).
//
// Watchers are registered under generation-tagged ids: an event for a watcher removed earlier
// in the same epoll batch, or for a reused fd number, is dropped, never dispatched. The watch
// table is indexed by descriptor, like libuv's loop->watchers[fd]: 12 bytes per descriptor
// number, no free list. Objects retired during a batch (closed connections) are finalized and
// destroyed after it, never under their own feet. Everything but post() and stop() must be called
// on the loop's thread.
#pragma once

#include <poll.h>
#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "reactor/chunked_array.hpp"
#include "reactor/fd.hpp"
#include "reactor/result.hpp"
#include "reactor/task.hpp"
#include "reactor/timers.hpp"

namespace reactor {

// Receives readiness events for one descriptor.
class Watcher {
 public:
  virtual void on_events(std::uint32_t events) = 0;

 protected:
  ~Watcher() = default;
};

// Something with output to write before the loop waits again (a connection whose sessions sent
// during this iteration): Loop::defer_flush queues it once, and its flush() runs after the
// iteration's events and timers, before epoll_wait (Redis's beforeSleep). No virtual function:
// the queue keeps the typed call beside each entry, so a Flushable costs one 32-bit word. A
// Flushable must cancel_flush() before it is destroyed.
class Flushable {
 protected:
  ~Flushable() = default;
  bool flush_queued() const noexcept { return flush_slot_ != 0; }

 private:
  friend class Loop;
  std::uint32_t flush_slot_ = 0;  // 1 + index in the loop's queue; 0: not queued
};

// The descriptor (low 32 bits) and a generation (high 32 bits, never 0): a watcher that keeps
// its descriptor anyway may keep just the generation and rebuild the id.
using WatchId = std::uint64_t;
constexpr WatchId kNoWatch = 0;
constexpr std::uint32_t watch_generation(WatchId id) noexcept {
  return static_cast<std::uint32_t>(id >> 32);
}
constexpr WatchId make_watch_id(int fd, std::uint32_t generation) noexcept {
  return generation == 0 ? kNoWatch : (WatchId{generation} << 32) | static_cast<std::uint32_t>(fd);
}

struct LoopStats {
  std::uint64_t iterations = 0;
  std::uint64_t events = 0;
  std::uint64_t stale_events = 0;  // dropped: watcher gone or slot reused
};

enum class Backend : std::uint8_t { epoll, poll, select };
const char* backend_name(Backend backend) noexcept;

class Loop {
 public:
  using Clock = std::chrono::steady_clock;

  static Result<std::unique_ptr<Loop>> create(Backend backend = Backend::epoll);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Registers `fd` for `events` (EPOLLIN, EPOLLOUT, ...; level-triggered). The watcher is
  // borrowed and must outlive the registration. One watch per descriptor: EEXIST while `fd` is
  // watched (epoll: unless the kernel dropped that watch, the descriptor having been closed
  // without unwatch; the new watch then replaces it). select backend: Errc::fd_too_large for
  // fd >= FD_SETSIZE.
  Result<WatchId> watch(int fd, std::uint32_t events, Watcher& watcher);
  std::error_code modify(WatchId id, std::uint32_t events);
  // Stops delivery at once, also for events already fetched in this batch. Does not close fd.
  void unwatch(WatchId id);
  // The same for a descriptor the caller closes right after and never shared (no dup, no fork):
  // closing it removes it from epoll, so the EPOLL_CTL_DEL syscall is skipped.
  void unwatch_before_close(WatchId id);

  // Runs until stop(), or until epoll_wait fails for a reason other than EINTR (then returns that
  // error, logged). stop() is sticky: once called, run() returns at once, every time.
  std::error_code run();
  // One wait (at most `max_wait`, shortened by due timers), its dispatch, due timers and deferred
  // flushes. Returns epoll_wait's error, if any. For tests/drivers.
  std::error_code run_once(std::chrono::milliseconds max_wait);
  // Thread-safe; run() returns after the current iteration.
  void stop() noexcept;
  bool stopping() const noexcept { return stop_.load(std::memory_order_relaxed); }

  // Thread-safe: runs `task` on the loop's thread, in posting order, waking a blocked loop.
  void post(Task task);

  // Timers, millisecond resolution. `period` 0 = one-shot. Due timers run in deadline order.
  TimerId add_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period, Task task);
  TimerId after(std::chrono::milliseconds delay, Task task) {
    return add_timer(delay, {}, std::move(task));
  }
  bool cancel_timer(TimerId id) { return timers_.cancel(id); }
  // The id of the timer whose task is running now (kNoTimer outside a timer task).
  TimerId current_timer() const noexcept { return timers_.running(); }
  // True while `id` is armed: not yet fired (one-shot), or repeating and not cancelled.
  bool timer_armed(TimerId id) const noexcept { return timers_.armed(id); }

  // Output coalescing: see Flushable. Queues `f` once per iteration (T::flush() runs then);
  // cancel_flush unqueues it.
  template <class T>
  void defer_flush(T& f) {
    static_assert(std::is_base_of_v<Flushable, T>);
    defer_flush(f, [](Flushable& queued) { static_cast<T&>(queued).flush(); });
  }
  void cancel_flush(Flushable& f) noexcept;
  std::size_t timer_count() const noexcept { return timers_.size(); }

  // Delivers the signals through a signalfd (they are blocked for this thread; block them in
  // every thread before starting others, see block_signals()). Replaces an earlier handler.
  using SignalHandler = void (*)(int signo, void* context);
  std::error_code handle_signals(std::initializer_list<int> signals, SignalHandler handler,
                                 void* context);

  // The descriptors the loop owns (epoll, wake-up, signals; -1 for none), for a process forked
  // from the loop's thread that never runs the loop (a fork-per-connection child) and closes
  // them itself: no epoll_ctl (the interest list is the parent's too), no watcher told, and
  // nothing written to the loop (no copy-on-write fault). The loop must not be used afterwards.
  std::array<int, 3> own_descriptors() const noexcept;

  // Hands `object` to the loop: after the current batch its finalize() runs (a closed connection
  // tells its session there), then it is deleted; every object of a batch is finalized before
  // any of them is deleted. No virtual function needed: the list keeps the typed call.
  template <class T>
  void retire(std::unique_ptr<T> object) {
    retired_.push_back({object.get(), [](void* p, bool destroy) {
                          if (destroy) {
                            delete static_cast<T*>(p);
                          } else {
                            static_cast<T*>(p)->finalize();
                          }
                        }});
    object.release();  // the list owns it now
  }
  // Finalizes and destroys retired objects now. For owners tearing down (a server's
  // destructor); never from inside a Watcher's on_events.
  void destroy_retired() { drain_retired(); }

  // Loop time, refreshed after each epoll_wait: cheap to read on the hot path.
  Clock::time_point now() const noexcept { return now_; }
  const LoopStats& stats() const noexcept { return stats_; }
  Backend backend() const noexcept { return backend_; }

 private:
  using FlushCall = void (*)(Flushable&);
  struct Deferred {
    Flushable* object;
    FlushCall flush;
  };
  // Owns `object` until its second call (destroy = true).
  struct RetiredObject {
    void* object;
    void (*call)(void* object, bool destroy);
  };
  class Wakeup;
  class SignalWatcher;

  Loop(Fd epoll, Backend backend);
  void dispatch(std::uint64_t data, std::uint32_t events);
  void defer_flush(Flushable& f, FlushCall flush);
  void drain_retired();
  bool watching(WatchId id) const noexcept;
  void release(WatchId id, bool delete_from_epoll);
  void run_posted();
  void run_due_timers();
  void flush_deferred();
  int wait_timeout_ms(std::chrono::milliseconds max_wait);
  // poll and select backends: wait, then fill events_ with (id, epoll bits); the count or -1.
  int wait_poll(int timeout_ms);
  int wait_select(int timeout_ms);

  const Backend backend_;
  Fd epoll_;  // epoll backend only
  // The watch table, by descriptor: its watcher (null: not watched) and the generation of its
  // current (or next) watch. Two arrays, not one of structs: 12 bytes a descriptor, not 16;
  // chunked: growing copies nothing and leaves no freed buffer behind.
  ChunkedArray<Watcher*> watchers_;
  ChunkedArray<std::uint32_t> generations_;
  std::vector<epoll_event> events_;  // poll and select backends (and epoll's if no page)
  // The epoll backend's wait buffer: a page of its own, wiped in a forked child
  // (MADV_WIPEONFORK). The kernel writes it on every wait; shared copy-on-write with a child (a
  // fork model's, which never runs this loop) each wait after a fork would cost a page fault and
  // a copy. Its content is scratch: a child that does run the loop needs no more than zeros.
  struct WaitPage {
    WaitPage();
    ~WaitPage();
    WaitPage(const WaitPage&) = delete;
    WaitPage& operator=(const WaitPage&) = delete;
    epoll_event* events = nullptr;  // null: no page (mmap failed): events_ instead
    std::size_t capacity = 0;
  } wait_page_;
  // poll and select backends: the watched descriptors, the id of each, and each descriptor's
  // index in them (swap-remove keeps both arrays dense).
  std::vector<pollfd> pollfds_;
  std::vector<WatchId> poll_ids_;
  std::vector<std::uint32_t> poll_index_;
  std::vector<RetiredObject> retired_;
  std::vector<RetiredObject> retiring_;  // drain_retired's batch, capacity kept
  std::vector<Deferred> deferred_;       // queued flushes; Flushable::flush_slot_ indexes it
  std::vector<Deferred> flushing_;       // flush_deferred's batch, capacity kept
  TimerQueue timers_;
  Clock::time_point now_;
  LoopStats stats_;
  std::atomic<bool> stop_{false};

  std::mutex post_mutex_;
  std::vector<Task> posted_;   // guarded by post_mutex_
  std::vector<Task> running_;  // swapped out under the lock, run without it
  std::unique_ptr<Wakeup> wakeup_;
  std::unique_ptr<SignalWatcher> signals_;
};

// Blocks `signals` in the calling thread (threads started afterwards inherit the mask), so that
// only a signalfd sees them.
std::error_code block_signals(std::initializer_list<int> signals);

}  // namespace reactor
