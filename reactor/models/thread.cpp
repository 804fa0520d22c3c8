#include "reactor/models/thread.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/models/blocking_listeners.hpp"
#include "reactor/models/blocking_signals.hpp"
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
  // One connection and its thread. Created and destroyed by run()'s thread; the connection
  // thread only marks itself finished.
  struct Worker {
    std::unique_ptr<BlockingConnection> connection;
    std::unique_ptr<Session> session;
    std::thread thread;
    std::list<Worker>::iterator self;
  };

  State(Protocol& p, const ModelOptions& o) : protocol(p), options(o) {
    limits.max_outbox = protocol.max_outbox();
    limits.max_input = protocol.max_input();
    limits.idle_timeout = options.idle_timeout;
    limits.protocol = &protocol;
    wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }

  void start_worker(AcceptedSocket socket);
  void serve(Worker& worker);
  void join_finished();
  void begin_stop();

  Protocol& protocol;
  const ModelOptions options;
  BlockingLimits limits;
  BlockingCounters counters;
  BlockingListeners listeners;
  LockedHub hub;
  Fd wake;  // eventfd: request_stop() and finished workers
  std::atomic<bool> stop_requested{false};
  bool ran = false;
  bool stopping = false;
  bool out_of_threads = false;  // the last thread creation failed (logged once per burst)
  std::chrono::steady_clock::time_point deadline;

  std::list<Worker> workers;  // run()'s thread only

  std::mutex finished_mutex;
  std::vector<Worker*> finished;  // guarded by finished_mutex

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
  auto peer = peer_address(socket.fd.get(), socket.transport);
  std::string remote = peer ? peer->to_string() : std::string(scheme_of(socket.transport)) + ":";

  Worker& worker = workers.emplace_back();
  worker.self = std::prev(workers.end());
  worker.session = std::move(session);
  worker.connection = std::make_unique<BlockingConnection>(std::move(socket.fd), std::move(remote),
                                                           limits, counters, true);
  live.fetch_add(1, std::memory_order_relaxed);
  accepted.fetch_add(1, std::memory_order_relaxed);
  try {
    worker.thread = std::thread([this, &worker] { serve(worker); });
    out_of_threads = false;
  } catch (const std::system_error& e) {
    // No thread for it (EAGAIN: RLIMIT_NPROC, memory): the session never opened, so it hears
    // nothing. Say so once per burst and stop accepting briefly instead of churning.
    if (!out_of_threads) {
      log(LogLevel::warn, "cannot start a thread for %s (%s); refusing connections briefly",
          worker.connection->remote().c_str(), e.code().message().c_str());
    }
    out_of_threads = true;
    listeners.pause_all(std::chrono::milliseconds(100));
    live.fetch_sub(1, std::memory_order_relaxed);
    accepted.fetch_sub(1, std::memory_order_relaxed);
    rejected.fetch_add(1, std::memory_order_relaxed);
    workers.erase(worker.self);
  }
}

void ThreadModel::State::serve(Worker& worker) {
  std::error_code reason = worker.connection->serve(*worker.session);
  // The session left its rooms in on_close if it is well behaved; make sure no delivery can
  // reach this peer once it is gone.
  hub.forget(*worker.connection);
  worker.session.reset();
  closed.fetch_add(1, std::memory_order_relaxed);
  if (reason) failed.fetch_add(1, std::memory_order_relaxed);
  live.fetch_sub(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(finished_mutex);
    finished.push_back(&worker);
  }
  signal_eventfd(wake.get());
}

void ThreadModel::State::join_finished() {
  std::vector<Worker*> done;
  {
    std::lock_guard lock(finished_mutex);
    done.swap(finished);
  }
  for (Worker* worker : done) {
    worker->thread.join();
    workers.erase(worker->self);
  }
}

void ThreadModel::State::begin_stop() {
  stopping = true;
  listeners.close_all();
  deadline = std::chrono::steady_clock::now() + options.shutdown_grace;
  for (Worker& worker : workers) worker.connection->stop(deadline);
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
  BlockedSignals signals({SIGINT, SIGTERM});
  if (auto ec = signals.error()) return ec;
  ignore_sigpipe();

  std::vector<pollfd> fds;
  std::vector<AcceptedSocket> accepted;
  bool aborted = false;
  for (;;) {
    if (s.stop_requested.load(std::memory_order_acquire) && !s.stopping) s.begin_stop();
    if (s.stopping) {
      s.join_finished();
      if (s.workers.empty()) break;
      if (!aborted && std::chrono::steady_clock::now() >= s.deadline) {
        // Past the grace period: drop whatever is left (each thread wakes, closes, exits).
        for (auto& worker : s.workers) worker.connection->drop(Errc::shutting_down);
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
      // Cannot wait any more (ENOMEM): drop every connection, join the threads, report.
      auto ec = last_errno();
      if (!s.stopping) s.begin_stop();
      for (auto& worker : s.workers) worker.connection->drop(Errc::shutting_down);
      for (auto& worker : s.workers) worker.thread.join();
      s.workers.clear();
      return ec;
    }
    if (fds[listener_count].revents != 0) {
      while (signals.take() != 0) s.stop_requested.store(true, std::memory_order_release);
    }
    if (fds[listener_count + 1].revents != 0) {
      drain_eventfd(s.wake.get());
      s.join_finished();
    }
    if (!s.stopping && listener_count > 0) {
      s.listeners.accept_ready(fds.data(), accepted);
      for (auto& socket : accepted) s.start_worker(std::move(socket));
      accepted.clear();
    }
  }
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
