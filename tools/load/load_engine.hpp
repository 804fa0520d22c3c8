// The load generator's engine: T threads, each with its own epoll and its share of the
// connections, driving one of three workloads (connrate, echo, idle) with nonblocking sockets.
// Every wait is bounded: stalled connects and reads time out, and each run ends by itself.
// run_load is in load_engine.cpp, the core it shares with the workloads in load_worker.*, each
// workload in its own file (load_connrate.cpp, load_echo.cpp, load_idle.cpp, and echo --idle's
// held connections in load_echo_idle.*).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "load_histogram.hpp"
#include "load_options.hpp"
#include "reactor/address.hpp"

namespace load {

// Everything a run measured, summed over threads.
struct LoadTotals {
  double elapsed_s = 0;
  std::uint64_t connections = 0;  // connrate: completed exchanges; echo/idle: established
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t msgs = 0;  // echo: messages echoed back and verified
  std::uint64_t errors_connect = 0;
  std::map<int, std::uint64_t> connect_errnos;  // errors_connect by cause (errno; ETIMEDOUT)
  std::uint64_t errors_timeout = 0;
  std::uint64_t errors_io = 0;      // reset, early EOF, failed send
  std::uint64_t errors_verify = 0;  // an echoed byte differed from what was sent
  std::uint64_t alive = 0;          // idle: held connections that still echoed
  std::uint64_t failed = 0;         // idle: connections that failed to open, broke or stalled
  LatencyHistogram latency;         // ns; connrate: per connection, echo: per message
  std::optional<std::uint64_t> rss_before;  // idle with --server-pid
  std::optional<std::uint64_t> rss_holding;
  std::uint64_t idle_ready = 0;        // echo --idle: idle connections held through the run
  std::optional<double> server_cpu_s;  // echo --server-pid: server tree CPU over the run
  std::string fatal;  // set when the run could not start (e.g. epoll_create failed)

  std::uint64_t errors() const noexcept {
    return errors_connect + errors_timeout + errors_io + errors_verify;
  }
  void add(const LoadTotals& other);
  void connect_error(int errno_value) {
    ++errors_connect;
    ++connect_errnos[errno_value];
  }
};

// Counters the threads publish now and then, for a progress line.
struct LoadProgress {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> msgs{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<int> phase{0};  // idle: 0 ramp, 1 hold, 2 check
};

// Called about once a second from the calling thread while the run goes on.
using ProgressFn = std::function<void(const LoadProgress&, double elapsed_s)>;

LoadTotals run_load(const LoadOptions& options, const reactor::Address& target,
                    const ProgressFn& on_progress = {});

}  // namespace load
