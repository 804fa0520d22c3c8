#include "reactor/models/thread.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "reactor/acceptor.hpp"
#include "reactor/error.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/log.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/models/stream_listeners.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

// A LocalHub behind one mutex. Deliveries it makes are Peer::send calls on other connections,
// which only queue and wake (never run a session), so the lock is never held across a session
// callback and never taken the other way round.
class LockedHub final : public Hub {
 public:
  void join(std::string_view room, Peer& peer) override {
    std::lock_guard lock(mutex_);
    hub_.join(room, peer);
  }
  void leave(std::string_view room, Peer& peer) override {
    std::lock_guard lock(mutex_);
    hub_.leave(room, peer);
  }
  void publish(std::string_view room, std::span<const std::byte> bytes,
               const Peer* except) override {
    std::lock_guard lock(mutex_);
    hub_.publish(room, bytes, except);
  }
  bool claim_name(std::string_view name, Peer& peer) override {
    std::lock_guard lock(mutex_);
    return hub_.claim_name(name, peer);
  }
  void release_name(Peer& peer) override {
    std::lock_guard lock(mutex_);
    hub_.release_name(peer);
  }
  bool send_to(std::string_view name, std::span<const std::byte> bytes) override {
    std::lock_guard lock(mutex_);
    return hub_.send_to(name, bytes);
  }
  std::vector<RoomInfo> rooms() override {
    std::lock_guard lock(mutex_);
    return hub_.rooms();
  }
  std::vector<std::string> members(std::string_view room) override {
    std::lock_guard lock(mutex_);
    return hub_.members(room);
  }
  void forget(Peer& peer) override {
    std::lock_guard lock(mutex_);
    hub_.forget(peer);
  }

 private:
  std::mutex mutex_;
  LocalHub hub_;
};

}  // namespace

struct ThreadModel::State {
  // One connection and its thread. Made by run()'s thread, linked into `workers` before its
  // thread starts; the thread unlinks and deletes it when the connection is done.
  struct Worker {
    Worker(State& s, Fd socket, std::unique_ptr<Session> session)
        : state(s),
          connection(std::move(socket), {}, s.limits, s.counters, true),
          session(std::move(session)) {}
    State& state;
    BlockingConnection connection;
    std::unique_ptr<Session> session;
    Worker* prev = nullptr;  // in `workers`, guarded by workers_mutex
    Worker* next = nullptr;
  };

  // One listening socket on the loop: its accepted connections get a thread each. The peer's
  // address is looked up by the connection's thread if its session asks (off the accept path).
  struct Listener final : AcceptHandler {
    Listener(State& s, Fd fd, Transport t)
        : state(s), transport(t), acceptor(*s.loop, std::move(fd), t, *this) {
      acceptor.set_adaptive_budget(true);  // one connection per wake-up is the common case
      acceptor.set_blocking_sockets(s.limits.blocking_sockets);
    }
    void on_accept(Fd fd) override { state.start_worker(std::move(fd), transport); }
    State& state;
    Transport transport;
    Acceptor acceptor;
  };

  State(Protocol& p, const ModelOptions& o) : protocol(p), options(o) {
    limits.max_outbox = protocol.max_outbox();
    limits.max_input = protocol.max_input();
    limits.idle_timeout = options.idle_timeout;
    limits.protocol = &protocol;
    // Sessions that nobody else sends to (no Hub): each thread waits in its read, as a textbook
    // thread-per-connection server does (recv + send per request, not ppoll + recv + send);
    // a stop or drop ends that read. With the Hub, deliveries must wake it: ppoll.
    limits.blocking_sockets = !options.uses_hub;
    if (auto created = Loop::create()) {
      loop = std::move(*created);
    } else {
      loop_error = created.error();
    }
  }

  void start_worker(Fd socket, Transport transport);
  static void* thread_main(void* worker);
  void serve(Worker& worker);  // the connection thread, start to end
  void on_stop_signal(int signo);
  void begin_stop();
  void drop_all();
  void join_last();
  void wait_for_workers();

  Protocol& protocol;
  const ModelOptions options;
  BlockingLimits limits;
  BlockingCounters counters;
  std::unique_ptr<Loop> loop;  // run()'s: the listeners, the stop signals, request_stop()
  std::error_code loop_error;
  std::vector<std::unique_ptr<Listener>> listeners;
  LockedHub hub;
  bool ran = false;
  int stop_signals = 0;         // a second one cuts the grace period short
  bool out_of_threads = false;  // the last thread creation failed (logged once per burst)
  TimerId grace_timer = kNoTimer;

  // Connection threads are not joined by run()'s thread, which would cost it a wake-up per
  // connection and keep finished threads' stacks out of the C library's cache until it gets
  // round to them: each finishing thread joins the one that finished before it, and run() joins
  // the last when it returns. The last thread to finish once stopping stops the loop.
  std::mutex workers_mutex;
  Worker* workers = nullptr;        // guarded by workers_mutex
  bool stopping = false;            // guarded by workers_mutex; run()'s thread also reads it bare
  bool have_last = false;           // guarded by workers_mutex
  pthread_t last_finished{};        // guarded by workers_mutex: not yet joined
  std::condition_variable drained;  // `workers` became empty while stopping

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> closed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> live{0};
};

void ThreadModel::State::start_worker(Fd socket, Transport transport) {
  if (stopping || (options.max_connections != 0 &&
                   live.load(std::memory_order_relaxed) >= options.max_connections)) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    if (!stopping) refuse_connection(socket.get(), transport, protocol);
    return;  // the descriptor closes here: the client sees the connection closed at once
  }
  std::unique_ptr<Session> session;
  try {
    session = protocol.open(hub);
  } catch (const std::exception& e) {
    log(LogLevel::warn, "the protocol failed to open a session: %s", e.what());
  } catch (...) {
    log(LogLevel::warn, "the protocol failed to open a session");
  }
  if (!session) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto worker = std::make_unique<Worker>(*this, std::move(socket), std::move(session));
  live.fetch_add(1, std::memory_order_relaxed);
  accepted.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(workers_mutex);
    worker->next = workers;
    if (workers != nullptr) workers->prev = worker.get();
    workers = worker.get();
  }
  pthread_t thread;
  const int rc = ::pthread_create(&thread, nullptr, &State::thread_main, worker.get());
  if (rc == 0) {
    worker.release();  // the thread's now
    out_of_threads = false;
    return;
  }
  // No thread for it (EAGAIN: RLIMIT_NPROC, memory): the session never opened, so it hears
  // nothing. Say so once per burst and stop accepting briefly instead of churning.
  {
    std::lock_guard lock(workers_mutex);
    if (worker->prev != nullptr) worker->prev->next = worker->next;
    if (worker->next != nullptr) worker->next->prev = worker->prev;
    if (workers == worker.get()) workers = worker->next;
  }
  if (!out_of_threads) {
    log(LogLevel::warn, "cannot start a thread for %s (%s); refusing connections briefly",
        worker->connection.remote().c_str(), std::strerror(rc));
  }
  out_of_threads = true;
  for (auto& listener : listeners) listener->acceptor.pause(std::chrono::milliseconds(100));
  live.fetch_sub(1, std::memory_order_relaxed);
  accepted.fetch_sub(1, std::memory_order_relaxed);
  rejected.fetch_add(1, std::memory_order_relaxed);
}

void* ThreadModel::State::thread_main(void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  worker->state.serve(*worker);
  return nullptr;
}

void ThreadModel::State::serve(Worker& worker) {
  std::error_code reason = worker.connection.serve(*worker.session);
  // The session left its rooms in on_close if it is well behaved; make sure no delivery can
  // reach this peer once it is gone.
  hub.forget(worker.connection);
  worker.session.reset();
  closed.fetch_add(1, std::memory_order_relaxed);
  if (reason) failed.fetch_add(1, std::memory_order_relaxed);
  live.fetch_sub(1, std::memory_order_relaxed);

  pthread_t previous{};
  bool join_previous = false;
  {
    std::lock_guard lock(workers_mutex);
    if (worker.prev != nullptr) worker.prev->next = worker.next;
    if (worker.next != nullptr) worker.next->prev = worker.prev;
    if (workers == &worker) workers = worker.next;
    join_previous = have_last;
    previous = last_finished;
    have_last = true;
    last_finished = ::pthread_self();
    if (stopping && workers == nullptr) {
      loop->stop();
      drained.notify_all();
    }
  }
  // From here on run() may return and the model go: touch nothing of it.
  delete &worker;
  if (join_previous) ::pthread_join(previous, nullptr);
}

void ThreadModel::State::on_stop_signal(int signo) {
  ++stop_signals;
  if (stop_signals == 1) {
    if (options.announce_stop) {
      announce_graceful_stop(signo, options.shutdown_grace,
                             static_cast<long long>(live.load(std::memory_order_relaxed)));
    }
    begin_stop();
  } else if (stop_signals == 2) {
    if (options.announce_stop) announce_forced_stop(signo);
    // No more grace: drop whatever is left (each thread wakes, closes, exits).
    if (grace_timer != kNoTimer) loop->cancel_timer(grace_timer);
    grace_timer = kNoTimer;
    drop_all();
  }
}

void ThreadModel::State::begin_stop() {
  if (stopping) return;  // only this thread writes it
  for (auto& listener : listeners) listener->acceptor.stop();
  const auto deadline = std::chrono::steady_clock::now() + options.shutdown_grace;
  {
    std::lock_guard lock(workers_mutex);
    stopping = true;
    for (Worker* w = workers; w != nullptr; w = w->next) w->connection.stop(deadline);
    if (workers == nullptr) {
      loop->stop();
      return;
    }
  }
  // Past the grace period: drop whatever is left.
  grace_timer = loop->after(options.shutdown_grace, [this] {
    grace_timer = kNoTimer;
    drop_all();
  });
}

void ThreadModel::State::drop_all() {
  std::lock_guard lock(workers_mutex);
  for (Worker* w = workers; w != nullptr; w = w->next) {
    w->connection.drop(make_error_code(Errc::shutting_down));
  }
}

void ThreadModel::State::wait_for_workers() {
  std::unique_lock lock(workers_mutex);
  drained.wait(lock, [&] { return workers == nullptr; });
}

// Every worker is gone: wait for the last thread to end (it joined the one before it, and so on).
void ThreadModel::State::join_last() {
  pthread_t last{};
  {
    std::lock_guard lock(workers_mutex);
    if (!have_last) return;
    have_last = false;
    last = last_finished;
  }
  ::pthread_join(last, nullptr);
}

ThreadModel::ThreadModel(Protocol& protocol, const ModelOptions& options)
    : state_(std::make_unique<State>(protocol, options)) {}

ThreadModel::~ThreadModel() = default;

Result<Address> ThreadModel::listen(const Address& address) {
  State& s = *state_;
  if (!s.loop) return s.loop_error;
  return add_stream_listener(s, s.listeners, address);
}

std::error_code ThreadModel::run() {
  State& s = *state_;
  if (s.ran) return make_error_code(Errc::shutting_down);
  s.ran = true;
  if (!s.loop) return s.loop_error;
  // Both masks are inherited by the connection threads: the stop signals go to the loop's
  // signalfd, the wake signal ends their waits only. The caller's mask comes back at the end.
  sigset_t stop_set, previous_mask;
  sigemptyset(&stop_set);
  for (const int signo : {REACTOR_STOP_SIGNALS}) sigaddset(&stop_set, signo);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &stop_set, &previous_mask); rc != 0) {
    return errno_code(rc);
  }
  struct RestoreMask {
    const sigset_t& mask;
    ~RestoreMask() { ::pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous_mask};
  auto on_signal = [](int signo, void* state) {
    static_cast<State*>(state)->on_stop_signal(signo);
  };
  if (auto ec = s.loop->handle_signals({REACTOR_STOP_SIGNALS}, on_signal, &s)) return ec;
  WakeSignal wake_signal;
  if (auto ec = wake_signal.error()) return ec;
  s.limits.wait_mask = wake_signal.wait_mask();
  ignore_sigpipe();

  if (auto ec = s.loop->run()) {
    // Cannot wait any more (ENOMEM): drop every connection, wait for the threads, report.
    s.begin_stop();
    s.drop_all();
    s.wait_for_workers();
    s.join_last();
    return ec;
  }
  if (s.grace_timer != kNoTimer) s.loop->cancel_timer(s.grace_timer);
  s.grace_timer = kNoTimer;
  s.join_last();
  return {};
}

void ThreadModel::request_stop() {
  State& s = *state_;
  if (s.loop) s.loop->post([&s] { s.begin_stop(); });
}

ServerStats ThreadModel::stats() const {
  const State& s = *state_;
  ServerStats out;
  out.accepted = s.accepted.load(std::memory_order_relaxed);
  out.closed = s.closed.load(std::memory_order_relaxed);
  out.failed = s.failed.load(std::memory_order_relaxed);
  out.rejected = s.rejected.load(std::memory_order_relaxed);
  for (const auto& listener : s.listeners) out.shed += listener->acceptor.stats().shed;
  out.live = s.live.load(std::memory_order_relaxed);
  out.bytes_in = s.counters.bytes_in.load(std::memory_order_relaxed);
  out.bytes_out = s.counters.bytes_out.load(std::memory_order_relaxed);
  out.writes = s.counters.writes.load(std::memory_order_relaxed);
  return out;
}

std::unique_ptr<Model> make_thread_model(Protocol& protocol, const ModelOptions& options) {
  return std::make_unique<ThreadModel>(protocol, options);
}

}  // namespace reactor
