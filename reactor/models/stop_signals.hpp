// The signals that stop a server (SIGINT, SIGTERM, SIGHUP: a closed terminal is a request to
// stop, not a kill) and the lines a model prints about them when ModelOptions::announce_stop is
// set: one when the first starts the graceful stop, one when a second cuts the grace short.
#pragma once

#include <signal.h>
#include <string.h>

#include <chrono>
#include <cstdio>

namespace reactor {

#define REACTOR_STOP_SIGNALS SIGINT, SIGTERM, SIGHUP

inline const char* stop_signal_name(int signo) noexcept {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev != nullptr ? abbrev : "signal";
}

// `connections` < 0: not known here (the reuseport model's loops own theirs).
inline void announce_graceful_stop(int signo, std::chrono::milliseconds grace,
                                   long long connections) {
  const double seconds = static_cast<double>(grace.count()) / 1000.0;
  if (connections >= 0) {
    std::fprintf(stderr,
                 "reactor: SIG%s: stopping; %lld connection%s may take up to %.1f s to finish "
                 "(signal again to stop now)\n",
                 stop_signal_name(signo), connections, connections == 1 ? "" : "s", seconds);
  } else {
    std::fprintf(stderr,
                 "reactor: SIG%s: stopping; connections may take up to %.1f s to finish (signal "
                 "again to stop now)\n",
                 stop_signal_name(signo), seconds);
  }
  std::fflush(stderr);
}

inline void announce_forced_stop(int signo) {
  std::fprintf(stderr, "reactor: SIG%s again: stopping now, closing every connection\n",
               stop_signal_name(signo));
  std::fflush(stderr);
}

}  // namespace reactor
