// ForkModel: the classic process-per-connection server, driving the same Sessions as epoll.
//
// The parent (the thread in run(), which must be the process's only thread: fork() copies just
// the calling thread) runs a Loop: an Acceptor per listener (the epoll model's accept path, its
// EMFILE shedding included), SIGINT/SIGTERM/SIGHUP and SIGCHLD through the loop's signalfd,
// request_stop() as a posted task, the grace period as a timer, and one relay socket per child
// as a watcher. Each accepted connection is served by a forked child with blocking I/O (a
// BlockingConnection polling the client and its relay socket). The child never runs the loop:
// it closes the parent's descriptors (one close_range per run of consecutive numbers, no
// epoll_ctl: the interest list is shared) and _exits when done. When fork fails (EAGAIN,
// ENOMEM) the connection is closed unserved (shed), that is logged once per burst, and the
// Acceptors pause for 100 ms instead of churning.
//
// Chat works through a relay: every child has a SOCK_SEQPACKET socketpair to the parent; its
// Hub calls become frames, the parent keeps the rooms and names (a LocalHub whose members stand
// for the children) and forwards deliveries to the other children. The children report their
// byte counts and outcome in a final frame before _exit; the parent reaps them on SIGCHLD (no
// zombies). Protocols that do not use the Hub get no relay: a child reports through its exit
// status and a shared page of counters, as textbook fork servers do.
//
// On SIGINT/SIGTERM or request_stop(): the listeners close and every child gets SIGTERM; a child
// stops reading, flushes and closes in order, or drops its client (Errc::shutting_down) after
// 3/4 of shutdown_grace, and reports. Children still alive after shutdown_grace, or at a second
// stop signal, get SIGKILL (counted as failed). A child also gets SIGTERM if the parent dies
// (PR_SET_PDEATHSIG).
#pragma once

#include <memory>

#include "reactor/models/model.hpp"

namespace reactor {

class ForkModel final : public Model {
 public:
  // `protocol` is borrowed; its open() runs in each child.
  ForkModel(Protocol& protocol, const ModelOptions& options);
  ~ForkModel() override;
  ForkModel(const ForkModel&) = delete;
  ForkModel& operator=(const ForkModel&) = delete;

  // TCP and UNIX stream; UDP and SEQPACKET give Errc::wrong_transport. Call before run().
  Result<Address> listen(const Address& address) override;
  // Serves until SIGINT/SIGTERM or request_stop(). Once per model; single-threaded process.
  std::error_code run() override;
  void request_stop() override;
  ServerStats stats() const override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::unique_ptr<Model> make_fork_model(Protocol& protocol, const ModelOptions& options);

}  // namespace reactor
