// ThreadModel: the classic thread-per-connection server, driving the same Sessions as epoll.
//
// The thread in run() runs a Loop: an Acceptor per listener (the epoll model's accept path, its
// EMFILE shedding included), the stop signals through the loop's signalfd, request_stop() as a
// posted task, the grace period as a timer. Every accepted connection gets its own thread,
// which drives its Session through a BlockingConnection (reads, and polls its socket when there
// is nothing to read) and, when done, joins the thread that finished before it. The Hub is a
// LocalHub behind a mutex; a delivery from another thread goes straight to the receiver's
// socket, or queues into its bounded outbox and wakes its thread (WakeSignal: SIGURG, no
// descriptor per connection), so a slow reader is dropped (Errc::too_slow), never waited for.
// When no thread can be started (RLIMIT_NPROC, memory) the connection is closed unserved, that
// is logged once per burst, and the Acceptors pause for 100 ms instead of churning.
//
// run() blocks SIGINT, SIGTERM, SIGHUP and SIGURG in its thread (connection threads inherit
// that; the caller's mask comes back when run() returns), takes the first three through a
// signalfd and installs a do-nothing SIGURG handler if there is none: call it before starting
// other threads, or block the stop signals in them.
// On stop it closes the listeners, lets connections flush (orderly close) within
// shutdown_grace, then drops the rest (Errc::shutting_down) and waits for every thread; a
// second stop signal drops them at once.
#pragma once

#include <memory>

#include "reactor/models/model.hpp"

namespace reactor {

class ThreadModel final : public Model {
 public:
  // `protocol` is borrowed and must outlive the model; its open() runs on run()'s thread.
  ThreadModel(Protocol& protocol, const ModelOptions& options);
  ~ThreadModel() override;
  ThreadModel(const ThreadModel&) = delete;
  ThreadModel& operator=(const ThreadModel&) = delete;

  // TCP and UNIX stream; UDP and SEQPACKET give Errc::wrong_transport. Call before run().
  Result<Address> listen(const Address& address) override;
  // Serves until SIGINT/SIGTERM or request_stop(). Once per model.
  std::error_code run() override;
  void request_stop() override;
  ServerStats stats() const override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::unique_ptr<Model> make_thread_model(Protocol& protocol, const ModelOptions& options);

}  // namespace reactor
