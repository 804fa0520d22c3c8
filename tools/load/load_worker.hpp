// The load engine's shared core, used by run_load and the workloads (load_connrate.cpp,
// load_echo.cpp, load_idle.cpp, load_echo_idle.cpp): the clock, the dialer, pattern-checked
// nonblocking I/O and Worker, one thread's epoll loop that a workload fills in.
#pragma once

#include <time.h>

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "load_engine.hpp"
#include "load_options.hpp"
#include "reactor/address.hpp"

namespace load::engine {

using Nanos = std::int64_t;

inline Nanos now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return Nanos{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline Nanos to_ns(double seconds) noexcept {
  return static_cast<Nanos>(seconds * 1e9);
}

constexpr Nanos kRetryDelay = 10'000'000;     // after a failed connect, so errors never spin
constexpr Nanos kTick = 20'000'000;           // timeout scan and progress publishing
constexpr int kMaxConnectingPerThread = 256;  // idle ramp: keeps the listen backlog unflooded

// Creates nonblocking client sockets toward the target, optionally from 127.0.0.N sources.
class Dialer {
 public:
  Dialer(const reactor::Address& target, CloseMode close, int sources)
      : target_(target), close_(close), sources_(sources) {}

  // An fd (connect started) or -errno. `connected` is true when connect finished at once.
  int dial(std::uint64_t n, bool& connected) const;

 private:
  reactor::Address target_;
  CloseMode close_;
  int sources_;
};

// What one nonblocking read or write pass ended with.
enum class Io { more, blocked, done, eof, error, mismatch };

// One connection's byte streams: `queued` bytes are due to be sent, `sent` went out, `received`
// came back (each checked against the pattern).
struct Stream {
  std::uint64_t seed = 0;
  std::uint64_t queued = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

// Writes until everything queued is sent or the socket is full.
Io write_pending(int fd, Stream& s, LoadTotals& t, bool& progressed);
// Reads and verifies until everything sent came back or the socket is empty.
Io read_echo(int fd, Stream& s, LoadTotals& t, bool& progressed);
// Counts a failed pass: a mismatch as a verify error, anything else as an I/O error.
void count_failure(Io io, LoadTotals& t);

// Completes an idle-mode phase: the first completion (everyone has ramped) starts the hold.
struct StartHold {
  std::atomic<Nanos>* deadline;
  double hold_s;
  void operator()() noexcept { deadline->store(now_ns() + to_ns(hold_s)); }
};
using PhaseBarrier = std::barrier<StartHold>;

// State shared by the workloads: one epoll, a slot table, the clock and the counters. A
// workload implements start, on_event, on_tick and finished; run() drives them until finished.
class Worker {
 public:
  struct Shared {
    const LoadOptions* options;
    const Dialer* dialer;
    LoadProgress* progress;
    PhaseBarrier* phases;               // idle only
    std::atomic<Nanos>* hold_deadline;  // idle only
  };

  Worker(const Shared& shared, int thread_index, int share);
  virtual ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  LoadTotals& totals() { return totals_; }

  void run();

 protected:
  virtual void start(Nanos now) = 0;
  virtual void on_event(std::uint32_t slot, std::uint32_t events, Nanos now) = 0;
  virtual void on_tick(Nanos now) = 0;
  virtual bool finished() const = 0;

  // Starts a connection for `slot`: -errno, or the fd (registered, edge-triggered).
  int open_for(std::uint32_t slot, bool& connected);
  // Closes a slot's fd; later events for it carry a stale generation and are dropped.
  void close_slot(std::uint32_t slot, int& fd);
  // Like close_slot, but the socket stays open until the worker is destroyed: echo --server-pid
  // samples the server's CPU after the run while its connections (and a fork server's children
  // serving them) still exist, so no child's time is lost between its exit and its reaping.
  void retire_slot(std::uint32_t slot, int& fd);
  std::uint64_t next_seed();

  // Adds this thread's progress since the last call to the shared counters.
  void publish();

  Shared sh_;
  const LoadOptions& o_;
  int thread_index_;
  int share_;
  LoadTotals totals_;

 private:
  int epoll_fd_ = -1;
  std::vector<int> kept_open_;
  std::vector<std::uint32_t> generations_;
  std::uint64_t next_dial_ = 0;
  std::uint64_t seed_counter_ = 1;
  struct {
    std::uint64_t connections = 0, msgs = 0;
  } published_;
  std::uint64_t published_errors_ = 0;
};

// The workloads, one file each; `share` is this thread's part of the slots or connections.
std::unique_ptr<Worker> make_connrate_worker(const Worker::Shared& shared, int thread_index,
                                             int share);
std::unique_ptr<Worker> make_echo_worker(const Worker::Shared& shared, int thread_index, int share);
std::unique_ptr<Worker> make_idle_worker(const Worker::Shared& shared, int thread_index, int share);

}  // namespace load::engine
