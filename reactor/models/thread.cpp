#include "reactor/models/thread.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/log.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/models/blocking_listeners.hpp"
#include "reactor/models/blocking_signals.hpp"
#include "reactor/models/stop_signals.hpp"
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

void signal_eventfd(int fd) noexcept {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

void drain_eventfd(int fd) noexcept {
  std::uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof(count));
}

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

  State(Protocol& p, const ModelOptions& o) : protocol(p), options(o) {
    limits.max_outbox = protocol.max_outbox();
    limits.max_input = protocol.max_input();
    limits.idle_timeout = options.idle_timeout;
    limits.protocol = &protocol;
    wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }

  void start_worker(AcceptedSocket socket);
  static void* thread_main(void* worker);
  void serve(Worker& worker);  // the connection thread, start to end
  void begin_stop();
  void drop_all();
  bool no_workers();
  void join_last();

  Protocol& protocol;
  const ModelOptions options;
  BlockingLimits limits;
  BlockingCounters counters;
  BlockingListeners listeners;
  LockedHub hub;
  Fd wake;  // eventfd: request_stop(), and the last worker to finish once stopping
  std::atomic<bool> stop_requested{false};
  bool ran = false;
  bool out_of_threads = false;  // the last thread creation failed (logged once per burst)
  std::chrono::steady_clock::time_point deadline;

  // Connection threads are not joined by run()'s thread, which would cost it a wake-up per
  // connection and keep finished threads' stacks out of the C library's cache until it gets
  // round to them: each finishing thread joins the one that finished before it, and run() joins
  // the last when it returns.
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

void ThreadModel::State::start_worker(AcceptedSocket socket) {
  if (stopping || (options.max_connections != 0 &&
                   live.load(std::memory_order_relaxed) >= options.max_connections)) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    if (!stopping) refuse_connection(socket.fd.get(), socket.transport, protocol);
    return;  // the descriptor closes here: the client sees the connection closed at once
  }
  if (socket.transport == Transport::tcp) set_no_delay(socket.fd.get(), true);
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
  auto worker = std::make_unique<Worker>(*this, std::move(socket.fd), std::move(session));
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
  listeners.pause_all(std::chrono::milliseconds(100));
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
      signal_eventfd(wake.get());
      drained.notify_all();
    }
  }
  // From here on run() may return and the model go: touch nothing of it.
  delete &worker;
  if (join_previous) ::pthread_join(previous, nullptr);
}

void ThreadModel::State::begin_stop() {
  listeners.close_all();
  deadline = std::chrono::steady_clock::now() + options.shutdown_grace;
  std::lock_guard lock(workers_mutex);
  stopping = true;
  for (Worker* w = workers; w != nullptr; w = w->next) w->connection.stop(deadline);
}

void ThreadModel::State::drop_all() {
  std::lock_guard lock(workers_mutex);
  for (Worker* w = workers; w != nullptr; w = w->next) {
    w->connection.drop(make_error_code(Errc::shutting_down));
  }
}

bool ThreadModel::State::no_workers() {
  std::lock_guard lock(workers_mutex);
  return workers == nullptr;
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
  return state_->listeners.add(address);
}

std::error_code ThreadModel::run() {
  State& s = *state_;
  if (s.ran) return make_error_code(Errc::shutting_down);
  s.ran = true;
  if (!s.wake) return errno_code(EMFILE);
  // Both masks are inherited by the connection threads: the stop signals go to our signalfd,
  // the wake signal ends their waits only.
  BlockedSignals signals({REACTOR_STOP_SIGNALS});
  if (auto ec = signals.error()) return ec;
  WakeSignal wake_signal;
  if (auto ec = wake_signal.error()) return ec;
  s.limits.wait_mask = wake_signal.wait_mask();
  ignore_sigpipe();
  int stop_signals = 0;  // a second one cuts the grace period short

  std::vector<pollfd> fds;
  std::vector<AcceptedSocket> accepted;
  bool aborted = false;
  for (;;) {
    if (s.stop_requested.load(std::memory_order_acquire) && !s.stopping) s.begin_stop();
    if (stop_signals > 1 && s.stopping) s.deadline = std::chrono::steady_clock::now();
    if (s.stopping) {
      if (s.no_workers()) break;
      if (!aborted && std::chrono::steady_clock::now() >= s.deadline) {
        // Past the grace period: drop whatever is left (each thread wakes, closes, exits).
        s.drop_all();
        aborted = true;
      }
    }

    fds.clear();
    s.listeners.watch(fds);
    std::size_t listener_count = fds.size();
    fds.push_back({signals.fd(), POLLIN, 0});
    fds.push_back({s.wake.get(), POLLIN, 0});
    auto now = std::chrono::steady_clock::now();
    int timeout = s.listeners.timeout_ms(now);
    if (s.stopping && !aborted) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(s.deadline - now).count();
      int wait = left < 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
      timeout = timeout < 0 ? wait : std::min(timeout, wait);
    }
    int rc = ::poll(fds.data(), fds.size(), timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      // Cannot wait any more (ENOMEM): drop every connection, wait for the threads, report.
      auto ec = last_errno();
      if (!s.stopping) s.begin_stop();
      s.drop_all();
      {
        std::unique_lock lock(s.workers_mutex);
        s.drained.wait(lock, [&] { return s.workers == nullptr; });
      }
      s.join_last();
      return ec;
    }
    if (fds[listener_count].revents != 0) {
      while (const int signo = signals.take()) {
        ++stop_signals;
        if (stop_signals == 1 && s.options.announce_stop) {
          announce_graceful_stop(signo, s.options.shutdown_grace,
                                 static_cast<long long>(s.live.load(std::memory_order_relaxed)));
        } else if (stop_signals == 2 && s.options.announce_stop) {
          announce_forced_stop(signo);
        }
        s.stop_requested.store(true, std::memory_order_release);
      }
    }
    if (fds[listener_count + 1].revents != 0) drain_eventfd(s.wake.get());
    if (!s.stopping && listener_count > 0) {
      s.listeners.accept_ready(fds.data(), accepted);
      for (auto& socket : accepted) s.start_worker(std::move(socket));
      accepted.clear();
    }
  }
  s.join_last();
  s.listeners.close_all();
  return {};
}

void ThreadModel::request_stop() {
  state_->stop_requested.store(true, std::memory_order_release);
  signal_eventfd(state_->wake.get());
}

ServerStats ThreadModel::stats() const {
  const State& s = *state_;
  ServerStats out;
  out.accepted = s.accepted.load(std::memory_order_relaxed);
  out.closed = s.closed.load(std::memory_order_relaxed);
  out.failed = s.failed.load(std::memory_order_relaxed);
  out.rejected = s.rejected.load(std::memory_order_relaxed);
  out.shed = s.listeners.shed();
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
