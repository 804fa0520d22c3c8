// echo --idle: opens `count` connections, proves each is served (one byte echoed back), and
// keeps them open and silent; one epoll on the calling thread, at most 256 connects in flight.
// Every wait is bounded: a connection making no progress for timeout_s fails.
#pragma once

#include <cstdint>
#include <vector>

#include "load_worker.hpp"

namespace load::engine {

class IdleSet {
 public:
  IdleSet(const Dialer& dialer, int count, double timeout_s)
      : dialer_(dialer), want_(count), stall_(to_ns(timeout_s)) {}
  ~IdleSet();
  IdleSet(const IdleSet&) = delete;
  IdleSet& operator=(const IdleSet&) = delete;

  // Returns how many are held; failures are counted into `t`.
  std::uint64_t open(LoadTotals& t);

 private:
  struct Conn {
    enum State { connecting, probing, ready };
    int fd = -1;
    int state = connecting;
    Nanos last = 0;
  };

  void drop(Conn& c, LoadTotals& t);
  void step(Conn& c, std::uint32_t events, LoadTotals& t);

  const Dialer& dialer_;
  int want_;
  Nanos stall_;
  int ep_ = -1;
  std::vector<Conn> conns_;
};

}  // namespace load::engine
