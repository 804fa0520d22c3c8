#include "reactor/models/prefork.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <new>
#include <optional>
#include <thread>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/models/blocking_signals.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

using Clock = std::chrono::steady_clock;

struct Listening {
  Fd fd;
  Transport transport;
  std::string unix_path;  // unlinked by the parent at the end
};

struct Worker {
  pid_t pid = -1;
  Fd report;          // read end of the pipe the worker writes its ServerStats to
  unsigned slot = 0;  // its count in the SharedLimit
};

// --max-connections across the worker processes, in memory they all share (MAP_SHARED, mapped by
// the parent before it forks). Each worker counts its connections in its own slot; `total` is
// the sum of the slots; both change under a robust process-shared mutex. A worker's connections
// die with it (the kernel closes its descriptors), so the parent, reaping a worker, takes that
// worker's slot out of the total and zeroes it for the next worker. A worker killed while holding
// the mutex may have updated its slot and not the total: whoever locks next hears EOWNERDEAD and
// sums the slots again.
class SharedLimit {
 public:
  // Null, after logging why, if the memory or the mutex cannot be had.
  static std::unique_ptr<SharedLimit> create(std::size_t max, unsigned slots) {
    const std::size_t bytes = sizeof(Page) + slots * sizeof(std::uint64_t);
    void* memory =
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      log(LogLevel::error, "prefork: cannot map the connection count: %s", std::strerror(errno));
      return nullptr;
    }
    auto* page = new (memory) Page{};
    page->max = max;
    page->slots = slots;
    pthread_mutexattr_t attr;
    int rc = pthread_mutexattr_init(&attr);
    if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0) rc = pthread_mutex_init(&page->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
      log(LogLevel::error, "prefork: cannot make the connection count's mutex: %s",
          std::strerror(rc));
      ::munmap(memory, bytes);
      return nullptr;
    }
    return std::unique_ptr<SharedLimit>(new SharedLimit(page, bytes));
  }
  ~SharedLimit() { ::munmap(page_, bytes_); }  // the mutex is in no one's hands by then
  SharedLimit(const SharedLimit&) = delete;
  SharedLimit& operator=(const SharedLimit&) = delete;

  bool try_acquire(unsigned slot) noexcept {
    if (!lock()) return false;
    const bool fits = page_->total < page_->max;
    if (fits) {
      ++slot_count(slot);  // the slot first: see EOWNERDEAD in lock()
      ++page_->total;
    }
    pthread_mutex_unlock(&page_->mutex);
    return fits;
  }
  void release(unsigned slot) noexcept {
    if (!lock()) return;
    if (slot_count(slot) > 0) {
      --slot_count(slot);
      --page_->total;
    }
    pthread_mutex_unlock(&page_->mutex);
  }
  // In the parent, once the worker that used `slot` is reaped: its connections are gone.
  void clear(unsigned slot) noexcept {
    if (!lock()) return;
    page_->total -= slot_count(slot);
    slot_count(slot) = 0;
    pthread_mutex_unlock(&page_->mutex);
  }

 private:
  struct Page {
    pthread_mutex_t mutex;
    std::uint64_t max = 0;
    std::uint64_t total = 0;
    std::uint64_t slots = 0;
    // followed by `slots` counts
  };
  SharedLimit(Page* page, std::size_t bytes) : page_(page), bytes_(bytes) {}
  std::uint64_t& slot_count(unsigned slot) noexcept {
    return reinterpret_cast<std::uint64_t*>(page_ + 1)[slot];
  }
  bool lock() noexcept {
    const int rc = pthread_mutex_lock(&page_->mutex);
    if (rc ==
        EOWNERDEAD) {  // its owner died in the middle: the slots are right, the total may not be
      std::uint64_t total = 0;
      for (unsigned i = 0; i < page_->slots; ++i) total += slot_count(i);
      page_->total = total;
      pthread_mutex_consistent(&page_->mutex);
      return true;
    }
    return rc == 0;
  }

  Page* page_;
  std::size_t bytes_;
};

// One worker's view of the SharedLimit: its own slot.
class WorkerLimit final : public ConnectionLimit {
 public:
  WorkerLimit(SharedLimit& shared, unsigned slot) : shared_(shared), slot_(slot) {}
  bool try_acquire() noexcept override { return shared_.try_acquire(slot_); }
  void release() noexcept override { shared_.release(slot_); }

 private:
  SharedLimit& shared_;
  unsigned slot_;
};

class PreforkModel final : public Model {
 public:
  PreforkModel(Protocol& protocol, const ModelOptions& options, unsigned workers)
      : protocol_(protocol),
        options_(options),
        worker_count_(workers),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  ~PreforkModel() override {
    for (Worker& w : workers_) {
      if (w.pid > 0) {
        ::kill(w.pid, SIGKILL);
        ::waitpid(w.pid, nullptr, 0);
      }
    }
    close_listeners();
  }

  Result<Address> listen(const Address& address) override {
    if (!is_connection_oriented(address.transport()) || is_message_oriented(address.transport())) {
      return make_error_code(Errc::wrong_transport);
    }
    auto fd = listen_on(address, {});
    if (!fd) return fd.error();
    auto bound = local_address(fd->get(), address.transport());
    if (!bound) return bound.error();
    listening_.push_back({std::move(*fd), address.transport(), bound->unix_path()});
    return bound;
  }

  std::error_code run() override {
    if (ran_) return make_error_code(Errc::shutting_down);
    ran_ = true;
    if (!wake_) return errno_code(EMFILE);
    BlockedSignals signals({SIGINT, SIGTERM, SIGHUP, SIGCHLD});
    if (auto ec = signals.error()) return ec;
    ignore_sigpipe();
    if (options_.max_connections != 0) {
      limit_ = SharedLimit::create(options_.max_connections, worker_count_);
      if (!limit_) return errno_code(ENOMEM);
    }
    slot_taken_.assign(worker_count_, 0);
    for (unsigned i = 0; i < worker_count_; ++i) {
      if (!start_worker(signals)) {
        begin_stop();
        break;
      }
    }
    Clock::time_point kill_at = Clock::time_point::max();
    bool killed = false;
    while (!workers_.empty()) {
      if (stop_requested_.load(std::memory_order_acquire) && !stopping_) begin_stop();
      if (stopping_ && kill_at == Clock::time_point::max()) {
        kill_at = Clock::now() + options_.shutdown_grace + std::chrono::seconds(1);
      }
      int timeout = -1;
      if (stopping_ && !killed) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(kill_at - Clock::now()).count();
        timeout = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
      }
      // Restarting after a crash is throttled: a worker that dies at once would otherwise spin.
      if (!stopping_ && restart_pending_ > 0) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
      pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      int rc = ::poll(fds, 2, timeout);
      if (rc < 0 && errno != EINTR) {
        auto ec = last_errno();
        for (Worker& w : workers_) ::kill(w.pid, SIGKILL);
        reap(true);
        return ec;
      }
      if (rc > 0 && fds[0].revents != 0) {
        for (int signo; (signo = signals.take()) != 0;) {
          if (signo == SIGCHLD) continue;
          if (stopping_ || stop_requested_.load(std::memory_order_acquire)) {
            // A second stop signal: no more grace.
            if (options_.announce_stop) announce_forced_stop(signo);
            for (Worker& w : workers_) ::kill(w.pid, SIGKILL);
            killed = true;
            begin_stop();
            continue;
          }
          if (options_.announce_stop) announce_graceful_stop(signo, options_.shutdown_grace, -1);
          stop_requested_.store(true, std::memory_order_release);
        }
      }
      if (rc > 0 && fds[1].revents != 0) {
        std::uint64_t count;
        [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);
      }
      reap(false);
      if (stopping_ && !killed && Clock::now() >= kill_at) {
        for (Worker& w : workers_) ::kill(w.pid, SIGKILL);
        killed = true;
      }
      if (!stopping_ && restart_pending_ > 0 && Clock::now() >= restart_after_) {
        while (restart_pending_ > 0 && start_worker(signals)) --restart_pending_;
        restart_after_ = Clock::now() + std::chrono::milliseconds(100);
      }
      if (stop_requested_.load(std::memory_order_acquire) && !stopping_) begin_stop();
    }
    close_listeners();
    return {};
  }

  void request_stop() override {
    stop_requested_.store(true, std::memory_order_release);
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  ServerStats stats() const override { return totals_; }

 private:
  bool start_worker(const BlockedSignals& signals) {
    const auto free_slot = std::find(slot_taken_.begin(), slot_taken_.end(), 0);
    if (free_slot == slot_taken_.end()) return false;  // never: one slot per worker
    const auto slot = static_cast<unsigned>(free_slot - slot_taken_.begin());
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) {
      log(LogLevel::error, "prefork: cannot create a report pipe: %s", std::strerror(errno));
      return false;
    }
    Fd read_end(report[0]), write_end(report[1]);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      log(LogLevel::error, "prefork: cannot fork a worker: %s", std::strerror(errno));
      return false;
    }
    if (pid == 0) {
      read_end.reset();
      ::_exit(worker_main(signals, std::move(write_end), parent, slot));
    }
    workers_.push_back({pid, std::move(read_end), slot});
    slot_taken_[slot] = 1;
    return true;
  }

  // In the worker: serve the inherited listeners on a fresh loop until SIGTERM, report, exit.
  int worker_main(const BlockedSignals& signals, Fd report, pid_t parent, unsigned slot) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) return 1;  // the parent died before prctl
    ::close(signals.fd());
    wake_.reset();
    for (Worker& w : workers_) w.report.reset();
    workers_.clear();
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);

    auto loop = Loop::create();
    if (!loop) return 1;
    ServerStats stats;
    {
      ServerOptions server_options;
      server_options.idle_timeout = options_.idle_timeout;
      std::optional<WorkerLimit> limit;  // the server-wide limit, counted in this worker's slot
      if (limit_) server_options.shared_limit = &limit.emplace(*limit_, slot);
      EpollServer server(**loop, protocol_, server_options);
      for (Listening& l : listening_) {
        if (auto ec = server.adopt_listener(std::move(l.fd), l.transport)) {
          log(LogLevel::error, "prefork worker: %s", describe("listen", ec).c_str());
          return 1;
        }
      }
      struct Context {
        Loop* loop;
        EpollServer* server;
        std::chrono::milliseconds grace;
        bool stopping = false;
      } context{loop->get(), &server, options_.shutdown_grace};
      auto on_signal = [](int, void* p) {
        auto* c = static_cast<Context*>(p);
        if (c->stopping) return;
        c->stopping = true;
        c->server->shutdown(c->grace, [c] { c->loop->stop(); });
      };
      if ((*loop)->handle_signals({SIGINT, SIGTERM}, on_signal, &context)) return 1;
      (*loop)->run();
      stats = server.stats();
    }
    const auto* bytes = reinterpret_cast<const char*>(&stats);
    std::size_t left = sizeof stats;
    while (left > 0) {
      ssize_t n = ::write(report.get(), bytes + (sizeof stats - left), left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 1;
      left -= static_cast<std::size_t>(n);
    }
    return 0;
  }

  void begin_stop() {
    if (stopping_) return;
    stopping_ = true;
    for (Worker& w : workers_) ::kill(w.pid, SIGTERM);
    close_listeners();
  }

  // Reaps exited workers (all of them, blocking, when `wait_all`), adds their reports and
  // schedules a restart for a worker that died while serving.
  void reap(bool wait_all) {
    for (auto it = workers_.begin(); it != workers_.end();) {
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(it->pid, &status, wait_all ? 0 : WNOHANG);
      } while (r < 0 && errno == EINTR);
      if (r != it->pid) {
        ++it;
        continue;
      }
      ServerStats s;
      std::size_t got = 0;
      while (got < sizeof s) {
        ssize_t n = ::read(it->report.get(), reinterpret_cast<char*>(&s) + got, sizeof s - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      // Whatever it still counted died with it (a worker that exits cleanly counts none).
      if (limit_) limit_->clear(it->slot);
      slot_taken_[it->slot] = 0;
      const bool reported = got == sizeof s && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (reported) totals_ += s;
      if (!stopping_ || !reported) {
        log(LogLevel::warn, "prefork: worker %d %s %d%s", static_cast<int>(it->pid),
            WIFSIGNALED(status) ? "killed by signal" : "exited with status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
            stopping_ ? "" : "; starting another");
      }
      if (!stopping_) ++restart_pending_;
      it = workers_.erase(it);
    }
  }

  void close_listeners() {
    for (Listening& l : listening_) {
      if (!l.unix_path.empty() && l.fd) ::unlink(l.unix_path.c_str());
      l.fd.reset();
    }
  }

  Protocol& protocol_;
  const ModelOptions options_;
  const unsigned worker_count_;
  Fd wake_;
  std::vector<Listening> listening_;
  std::vector<Worker> workers_;
  std::unique_ptr<SharedLimit> limit_;  // with --max-connections
  std::vector<char> slot_taken_;        // [slot]: a live worker counts there
  ServerStats totals_;
  std::atomic<bool> stop_requested_{false};
  bool ran_ = false;
  bool stopping_ = false;
  unsigned restart_pending_ = 0;
  Clock::time_point restart_after_{};
};

}  // namespace

std::unique_ptr<Model> make_prefork_model(Protocol& protocol, const ModelOptions& options) {
  unsigned workers = options.workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  return std::make_unique<PreforkModel>(protocol, options, workers);
}

}  // namespace reactor
