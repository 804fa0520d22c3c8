// ThreadModel: the classic thread-per-connection server, driving the same Sessions as epoll.
//
// The thread in run() polls the listeners, a signalfd (SIGINT, SIGTERM) and a wake-up eventfd;
// every accepted connection gets its own thread, which drives its Session through a
// BlockingConnection (reads, and polls its socket when there is nothing to read) and, when done,
// joins the thread that finished before it. The Hub is a LocalHub behind a mutex; a delivery
// from another thread goes straight to the receiver's socket, or queues into its bounded outbox
// and wakes its thread (WakeSignal: SIGURG, no descriptor per connection), so a slow reader is
// dropped (Errc::too_slow), never waited for.
//
// run() blocks SIGINT, SIGTERM and SIGURG in its thread (connection threads inherit that), takes
// the first two through a signalfd and installs a do-nothing SIGURG handler if there is none:
// call it before starting other threads, or block SIGINT and SIGTERM in them.
// On stop it closes the listeners, lets connections flush (orderly close) within
// shutdown_grace, then drops the rest (Errc::shutting_down) and waits for every thread.
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
