#include "reactor/models/fork.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <new>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/log.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/models/blocking_listeners.hpp"
#include "reactor/models/blocking_signals.hpp"
#include "reactor/models/relay_hub.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

using Clock = std::chrono::steady_clock;

void signal_eventfd(int fd) noexcept {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

void drain_eventfd(int fd) noexcept {
  std::uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof(count));
}

int ms_until(Clock::time_point now, Clock::time_point deadline) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return ms <= 0 ? 0 : static_cast<int>(std::min<long long>(ms, 1 << 30));
}

// In a child: SIGTERM/SIGINT (forwarded by the parent, or the parent's death) stop the
// connection gracefully.
class StopOnSignal final : public SideChannel {
 public:
  StopOnSignal(BlockedSignals& signals, std::chrono::milliseconds grace)
      : signals_(signals), grace_(grace) {}
  int fd() const override { return signals_.fd(); }
  void on_readable(BlockingConnection& connection) override {
    while (signals_.take() != 0) connection.stop(Clock::now() + grace_);
  }

 private:
  BlockedSignals& signals_;
  std::chrono::milliseconds grace_;
};

// Without a relay (a protocol that does not use the Hub) a child reports through its exit status
// and these counters, in one page shared by the parent and every child: what textbook
// fork-per-connection servers do.
struct SharedCounters {
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> writes{0};
};

class SharedPage {
 public:
  explicit SharedPage(bool wanted) {
    if (!wanted) return;
    void* page = ::mmap(nullptr, sizeof(SharedCounters), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) counters_ = new (page) SharedCounters;
  }
  ~SharedPage() {
    if (counters_ != nullptr) ::munmap(counters_, sizeof(SharedCounters));
  }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  SharedCounters* get() const noexcept { return counters_; }

 private:
  SharedCounters* counters_ = nullptr;
};

}  // namespace

struct ForkModel::State {
  struct Child {
    pid_t pid = 0;
    std::unique_ptr<RelayMember> member;  // null once the relay is done (the hub forgot it)
    std::optional<ChildReport> report;
    std::pair<std::string, std::vector<std::byte>> farewell;  // taken from the member
    bool reaped = false;
  };

  State(Protocol& p, const ModelOptions& o) : protocol(p), options(o) {
    limits.max_outbox = protocol.max_outbox();
    limits.max_input = protocol.max_input();
    limits.idle_timeout = options.idle_timeout;
    limits.protocol = &protocol;
    wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (options.uses_hub) scratch.resize(kRelayFrameMax + 1);
  }
  bool relayed() const noexcept { return options.uses_hub; }

  std::size_t relay_limit() const {
    return limits.max_outbox != 0 ? limits.max_outbox : limits.delivery_limit;
  }

  void spawn(AcceptedSocket socket, BlockedSignals& signals);
  [[noreturn]] void run_child(Fd client, Fd relay, std::string remote, pid_t parent,
                              BlockedSignals& parent_signals);
  [[noreturn]] void finish_child(const BlockingCounters& counters, ChildReport::Outcome outcome,
                                 RelayClient* relay);
  void relay_done(Child& child);
  void reap();
  void reap_one(Child& child, int status);
  void retire_finished();
  void begin_stop();

  Protocol& protocol;
  const ModelOptions options;
  BlockingLimits limits;
  BlockingListeners listeners;
  LocalHub hub;
  Fd wake;  // eventfd: request_stop()
  std::atomic<bool> stop_requested{false};
  bool ran = false;
  bool stopping = false;
  bool out_of_processes = false;  // the last fork failed (logged once per burst)
  bool killed = false;
  Clock::time_point deadline;

  std::list<Child> children;
  std::unordered_map<pid_t, std::list<Child>::iterator> by_pid;
  std::vector<std::byte> scratch;        // one relay frame
  SharedPage shared{!options.uses_hub};  // the children's counters when there is no relay

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> closed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> shed{0};
  std::atomic<std::uint64_t> live{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> writes{0};
};

void ForkModel::State::spawn(AcceptedSocket socket, BlockedSignals& signals) {
  if (stopping || (options.max_connections != 0 &&
                   live.load(std::memory_order_relaxed) >= options.max_connections)) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    if (!stopping) refuse_connection(socket.fd.get(), socket.transport, protocol);
    return;  // the descriptor closes here: the client sees the connection closed at once
  }
  if (socket.transport == Transport::tcp) set_no_delay(socket.fd.get(), true);
  Fd parent_end, child_end;
  if (relayed()) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      shed.fetch_add(1, std::memory_order_relaxed);
      log(LogLevel::warn, "socketpair for a child: %s; connection shed", std::strerror(errno));
      return;
    }
    parent_end = Fd(pair[0]);
    child_end = Fd(pair[1]);
    if (set_nonblocking(parent_end.get(), true)) {
      shed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  std::string remote = socket.remote();

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    shed.fetch_add(1, std::memory_order_relaxed);  // EAGAIN/ENOMEM: out of processes
    if (!out_of_processes) {
      log(LogLevel::warn, "cannot fork for %s (%s); refusing connections briefly", remote.c_str(),
          std::strerror(errno));
    }
    out_of_processes = true;
    listeners.pause_all(std::chrono::milliseconds(100));
    return;
  }
  out_of_processes = false;
  if (pid == 0) {
    parent_end.reset();
    run_child(std::move(socket.fd), std::move(child_end), std::move(remote), parent, signals);
  }
  child_end.reset();
  socket.fd.reset();
  auto& child = children.emplace_back();
  child.pid = pid;
  if (relayed()) {
    child.member =
        std::make_unique<RelayMember>(std::move(parent_end), std::move(remote), relay_limit());
  }
  by_pid.emplace(pid, std::prev(children.end()));
  accepted.fetch_add(1, std::memory_order_relaxed);
  live.fetch_add(1, std::memory_order_relaxed);
}

void ForkModel::State::run_child(Fd client, Fd relay, std::string remote, pid_t parent,
                                 BlockedSignals& parent_signals) {
  // Die with the parent (SIGTERM: a graceful stop) rather than serve on unsupervised.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::kill(::getpid(), SIGTERM);

  // Close what belongs to the parent: listeners, its wake-up and signal descriptors, the other
  // children's relays. The memory is our copy; nothing here runs the parent's destructors.
  listeners.close_in_child();
  wake.reset();
  parent_signals.abandon();
  for (auto& other : children) {
    if (other.member) other.member.reset();
  }

  // Keep the stop signals blocked for our own signalfd; give SIGCHLD back if it was unblocked.
  sigset_t mask = parent_signals.previous_mask();
  for (const int signo : {REACTOR_STOP_SIGNALS}) sigaddset(&mask, signo);
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  BlockedSignals signals({REACTOR_STOP_SIGNALS});

  BlockingCounters counters;
  BlockingConnection connection(std::move(client), std::move(remote), limits, counters, false);
  // With a relay the session's Hub is the parent's; without one (the protocol does not use the
  // Hub) it is this process's empty LocalHub.
  std::optional<RelayClient> relay_client;
  if (relay) {
    relay_client.emplace(std::move(relay), parent);
    relay_client->attach(connection);
  }
  Hub& session_hub = relay_client ? static_cast<Hub&>(*relay_client) : static_cast<Hub&>(hub);

  std::unique_ptr<Session> session;
  try {
    session = protocol.open(session_hub);
  } catch (...) {
  }
  if (!session)
    finish_child(counters, ChildReport::rejected, relay_client ? &*relay_client : nullptr);
  // Finish a little before the parent's SIGKILL, so that the report still gets out.
  StopOnSignal stop(signals, options.shutdown_grace * 3 / 4);
  SideChannel* both[] = {relay_client ? &*relay_client : nullptr, &stop};
  std::span<SideChannel* const> side_channels(both);
  if (!relay_client) side_channels = side_channels.subspan(1);
  std::error_code reason = connection.serve(*session, side_channels);
  session.reset();
  finish_child(counters, reason ? ChildReport::failed : ChildReport::clean,
               relay_client ? &*relay_client : nullptr);
}

// The child's last act: its report through the relay, or (no relay) its counters into the shared
// page and its outcome as the exit status.
void ForkModel::State::finish_child(const BlockingCounters& counters, ChildReport::Outcome outcome,
                                    RelayClient* relay) {
  ChildReport report;
  report.outcome = outcome;
  report.bytes_in = counters.bytes_in.load(std::memory_order_relaxed);
  report.bytes_out = counters.bytes_out.load(std::memory_order_relaxed);
  report.writes = counters.writes.load(std::memory_order_relaxed);
  if (relay != nullptr) {
    relay->report(report);
    ::_exit(0);
  }
  if (SharedCounters* shared_counters = shared.get()) {
    shared_counters->bytes_in.fetch_add(report.bytes_in, std::memory_order_relaxed);
    shared_counters->bytes_out.fetch_add(report.bytes_out, std::memory_order_relaxed);
    shared_counters->writes.fetch_add(report.writes, std::memory_order_relaxed);
  }
  ::_exit(static_cast<int>(outcome));
}

// The child closed its relay (it is exiting) or broke the protocol: take its report and make
// sure no delivery can reach it any more.
void ForkModel::State::relay_done(Child& child) {
  if (!child.member) return;
  child.report = child.member->report();
  child.farewell = child.member->take_farewell();
  hub.forget(*child.member);
  child.member.reset();
}

void ForkModel::State::reap_one(Child& child, int status) {
  child.reaped = true;
  if (child.member) {
    // Everything it sent before exiting is queued in the relay: read it all, report included.
    child.member->on_readable(hub, scratch, static_cast<std::size_t>(-1));
    relay_done(child);
  }
  if (!relayed() && WIFEXITED(status) && WEXITSTATUS(status) <= ChildReport::rejected) {
    child.report.emplace();  // its counters are in the shared page already
    child.report->outcome = static_cast<ChildReport::Outcome>(WEXITSTATUS(status));
  }
  if (child.report && (!WIFEXITED(status) || (relayed() && WEXITSTATUS(status) != 0))) {
    child.report.reset();
  }
  // Killed before its session's on_close could say goodbye: the parent says it for it.
  if (!child.report && !child.farewell.first.empty()) {
    hub.publish(child.farewell.first, child.farewell.second, nullptr);
  }
  child.farewell = {};
}

void ForkModel::State::reap() {
  // Find exited children without a waitpid per child: peek at the next zombie, reap it if it is
  // ours. A zombie that is not ours (the embedding program's) makes us check ours one by one.
  bool foreign = false;
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
    auto it = by_pid.find(info.si_pid);
    if (it == by_pid.end()) {
      foreign = true;
      break;
    }
    int status = 0;
    if (::waitpid(info.si_pid, &status, WNOHANG) != info.si_pid) break;
    reap_one(*it->second, status);
  }
  if (!foreign) return;
  for (auto& child : children) {
    if (child.reaped) continue;
    int status = 0;
    if (::waitpid(child.pid, &status, WNOHANG) == child.pid) reap_one(child, status);
  }
}

void ForkModel::State::retire_finished() {
  for (auto it = children.begin(); it != children.end();) {
    Child& child = *it;
    if (!child.reaped || child.member) {
      ++it;
      continue;
    }
    closed.fetch_add(1, std::memory_order_relaxed);
    live.fetch_sub(1, std::memory_order_relaxed);
    if (!child.report) {
      failed.fetch_add(1, std::memory_order_relaxed);  // crashed or killed: no word from it
    } else {
      bytes_in.fetch_add(child.report->bytes_in, std::memory_order_relaxed);
      bytes_out.fetch_add(child.report->bytes_out, std::memory_order_relaxed);
      writes.fetch_add(child.report->writes, std::memory_order_relaxed);
      if (child.report->outcome == ChildReport::failed) {
        failed.fetch_add(1, std::memory_order_relaxed);
      } else if (child.report->outcome == ChildReport::rejected) {
        // The protocol refused the connection (open() failed): count it as epoll does.
        accepted.fetch_sub(1, std::memory_order_relaxed);
        closed.fetch_sub(1, std::memory_order_relaxed);
        rejected.fetch_add(1, std::memory_order_relaxed);
      }
    }
    by_pid.erase(child.pid);
    it = children.erase(it);
  }
}

void ForkModel::State::begin_stop() {
  stopping = true;
  listeners.close_all();
  deadline = Clock::now() + options.shutdown_grace;
  for (auto& child : children) {
    if (!child.reaped) ::kill(child.pid, SIGTERM);
  }
}

ForkModel::ForkModel(Protocol& protocol, const ModelOptions& options)
    : state_(std::make_unique<State>(protocol, options)) {}

ForkModel::~ForkModel() = default;

Result<Address> ForkModel::listen(const Address& address) {
  return state_->listeners.add(address);
}

std::error_code ForkModel::run() {
  State& s = *state_;
  if (s.ran) return make_error_code(Errc::shutting_down);
  s.ran = true;
  if (!s.wake) return errno_code(EMFILE);
  BlockedSignals signals({REACTOR_STOP_SIGNALS, SIGCHLD});
  if (auto ec = signals.error()) return ec;
  ignore_sigpipe();
  int stop_signals = 0;  // a second one cuts the grace period short

  std::vector<pollfd> fds;
  std::vector<State::Child*> polled;  // the child behind each relay pollfd
  std::vector<AcceptedSocket> accepted;
  for (;;) {
    if (s.stop_requested.load(std::memory_order_acquire) && !s.stopping) s.begin_stop();
    if (stop_signals > 1 && s.stopping) s.deadline = Clock::now();  // SIGKILL the children now
    s.retire_finished();
    if (s.stopping) {
      if (s.children.empty()) break;
      if (!s.killed && Clock::now() >= s.deadline) {
        for (auto& child : s.children) {
          if (!child.reaped) ::kill(child.pid, SIGKILL);
        }
        s.killed = true;
      }
    }

    fds.clear();
    polled.clear();
    s.listeners.watch(fds);
    std::size_t listener_count = fds.size();
    fds.push_back({signals.fd(), POLLIN, 0});
    fds.push_back({s.wake.get(), POLLIN, 0});
    for (auto& child : s.children) {
      if (!child.member) continue;
      short events = POLLIN | (child.member->wants_write() ? POLLOUT : 0);
      fds.push_back({child.member->fd(), events, 0});
      polled.push_back(&child);
    }
    auto now = Clock::now();
    int timeout = s.listeners.timeout_ms(now);
    if (s.stopping && !s.killed) {
      int wait = ms_until(now, s.deadline);
      timeout = timeout < 0 ? wait : std::min(timeout, wait);
    }
    int rc = ::poll(fds.data(), fds.size(), timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      // Cannot wait any more (ENOMEM): kill the children, reap them, report.
      auto ec = last_errno();
      for (auto& child : s.children) {
        if (!child.reaped) ::kill(child.pid, SIGKILL);
      }
      for (auto& child : s.children) {
        if (!child.reaped) ::waitpid(child.pid, nullptr, 0);
      }
      s.children.clear();
      s.by_pid.clear();
      s.listeners.close_all();
      return ec;
    }

    bool check_children = false;
    if (fds[listener_count].revents != 0) {
      while (int signo = signals.take()) {
        if (signo == SIGCHLD) {
          check_children = true;
        } else if (++stop_signals == 1) {
          if (s.options.announce_stop) {
            announce_graceful_stop(signo, s.options.shutdown_grace,
                                   static_cast<long long>(s.children.size()));
          }
          s.stop_requested.store(true, std::memory_order_release);
        } else if (stop_signals == 2) {
          if (s.options.announce_stop) announce_forced_stop(signo);
          s.stop_requested.store(true, std::memory_order_release);
        }
      }
    }
    if (fds[listener_count + 1].revents != 0) drain_eventfd(s.wake.get());
    for (std::size_t i = 0; i < polled.size(); ++i) {
      short revents = fds[listener_count + 2 + i].revents;
      State::Child& child = *polled[i];
      if (revents == 0 || !child.member) continue;
      if (revents & POLLOUT) child.member->flush();
      if (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
        if (!child.member->on_readable(s.hub, s.scratch, 64)) {
          s.relay_done(child);
          check_children = true;  // it is exiting: reap it as soon as it is a zombie
        }
      }
    }
    if (check_children) s.reap();
    if (!s.stopping && listener_count > 0) {
      s.listeners.accept_ready(fds.data(), accepted);
      for (auto& socket : accepted) s.spawn(std::move(socket), signals);
      accepted.clear();
    }
  }
  s.listeners.close_all();
  return {};
}

void ForkModel::request_stop() {
  state_->stop_requested.store(true, std::memory_order_release);
  signal_eventfd(state_->wake.get());
}

ServerStats ForkModel::stats() const {
  const State& s = *state_;
  ServerStats out;
  out.accepted = s.accepted.load(std::memory_order_relaxed);
  out.closed = s.closed.load(std::memory_order_relaxed);
  out.failed = s.failed.load(std::memory_order_relaxed);
  out.rejected = s.rejected.load(std::memory_order_relaxed);
  out.shed = s.shed.load(std::memory_order_relaxed) + s.listeners.shed();
  out.live = s.live.load(std::memory_order_relaxed);
  out.bytes_in = s.bytes_in.load(std::memory_order_relaxed);
  out.bytes_out = s.bytes_out.load(std::memory_order_relaxed);
  out.writes = s.writes.load(std::memory_order_relaxed);
  if (const SharedCounters* shared = s.shared.get()) {
    out.bytes_in += shared->bytes_in.load(std::memory_order_relaxed);
    out.bytes_out += shared->bytes_out.load(std::memory_order_relaxed);
    out.writes += shared->writes.load(std::memory_order_relaxed);
  }
  return out;
}

std::unique_ptr<Model> make_fork_model(Protocol& protocol, const ModelOptions& options) {
  return std::make_unique<ForkModel>(protocol, options);
}

}  // namespace reactor
