#include "reactor/models/fork.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <memory_resource>
#include <new>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "reactor/acceptor.hpp"
#include "reactor/error.hpp"
#include "reactor/hot.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/log.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/blocking_connection.hpp"
#include "reactor/models/relay_hub.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/models/stream_listeners.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

using Clock = std::chrono::steady_clock;

// A child's stop requests: SIGTERM/SIGINT/SIGHUP (forwarded by the parent, or the parent's
// death) stop its connection gracefully. The handler is installed by the parent's run() (where
// the stop signals stay blocked, read by its loop's signalfd) and inherited; a child unblocks
// them and its connection hears of them through SignalStop (State::child_stop: no signalfd, no
// descriptor to poll and no mask change per wait, and the wait for input stays one read).
void on_child_stop(int signo) {
  SignalStop::request(signo);
}

// Installs on_child_stop for the stop signals; restore() puts back what was there.
class ChildStopHandlers {
 public:
  ChildStopHandlers() = default;
  ChildStopHandlers(const ChildStopHandlers&) = delete;
  ChildStopHandlers& operator=(const ChildStopHandlers&) = delete;
  ~ChildStopHandlers() { restore(); }

  std::error_code install() {
    struct sigaction action {};
    action.sa_handler = on_child_stop;
    sigfillset(&action.sa_mask);
    // No SA_RESTART: a read it interrupts returns EINTR (or 0: the handler shut the socket for
    // reading), whatever runs the handler; a sanitizer that defers handlers to the end of the
    // call would otherwise leave a restarted read waiting for the peer.
    action.sa_flags = 0;
    for (const int signo : kSignals) {
      if (::sigaction(signo, &action, &previous_[count_]) != 0) {
        auto ec = last_errno();
        restore();
        return ec;
      }
      ++count_;
    }
    return {};
  }
  void restore() noexcept {
    for (; count_ > 0; --count_) ::sigaction(kSignals[count_ - 1], &previous_[count_ - 1], nullptr);
  }

 private:
  static constexpr int kSignals[] = {REACTOR_STOP_SIGNALS};
  struct sigaction previous_[std::size(kSignals)]{};
  std::size_t count_ = 0;
};

// The forked child's signal mask, set with the system call itself where that is allowed: glibc's
// pthread_sigmask lies in 64 KiB of its code that nothing else the child runs touches, and a
// child faults in each such window of code it runs (one page fault, some 3% of a connection's
// cost). The mask comes from pthread_sigmask, so it never holds glibc's internal signals: the
// kernel call does what pthread_sigmask would. Sanitizers keep the library call, which they
// intercept.
REACTOR_HOT void set_child_mask(const sigset_t& mask) noexcept {
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  constexpr long kKernelSigsetBytes = 8;  // the kernel's sigset_t: 64 signals
  long ret;
  register long sigset_bytes asm("r10") = kKernelSigsetBytes;
  asm volatile("syscall"
               : "=a"(ret)
               : "0"(long{SYS_rt_sigprocmask}), "D"(long{SIG_SETMASK}), "S"(&mask), "d"(nullptr),
                 "r"(sigset_bytes)
               : "rcx", "r11", "memory");
  (void)ret;  // cannot fail: a valid how, readable mask, the kernel's size
#else
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
#endif
}

// Closes descriptors a forked child got from its parent and does not use: sorted, then one
// close_range per run of consecutive numbers. The parent's own descriptors are mostly made one
// after the other at start-up (loop, listeners, reserves, signalfd), so a child usually closes
// them all in one call. Gathered by the parent on its stack just before the fork (the child
// copies nothing and runs no code of the loop's to find them); closed by the child.
class ParentDescriptors {
 public:
  ParentDescriptors() = default;
  ParentDescriptors(const ParentDescriptors&) = delete;
  ParentDescriptors& operator=(const ParentDescriptors&) = delete;

  // In the parent: notes `fd`; false when full (the child then gathers again, see run_child).
  bool note(int fd) noexcept {
    if (fd < 0) return true;
    if (count_ == kCapacity) return false;
    fds_[count_++] = fd;
    return true;
  }
  // In the child: notes `fd`, closing what it holds first when full.
  void add(int fd) noexcept {
    if (!note(fd)) {
      close_all();
      note(fd);
    }
  }
  REACTOR_HOT void close_all() noexcept {
    // Insertion sort: at most kCapacity, nearly sorted already, and no out-of-line sort code for
    // the child to fault in.
    for (std::size_t i = 1; i < count_; ++i) {
      const int fd = fds_[i];
      std::size_t j = i;
      for (; j > 0 && fds_[j - 1] > fd; --j) fds_[j] = fds_[j - 1];
      fds_[j] = fd;
    }
    for (std::size_t i = 0; i < count_;) {
      std::size_t j = i + 1;
      while (j < count_ && fds_[j] == fds_[j - 1] + 1) ++j;
      if (j - i == 1 || ::close_range(static_cast<unsigned>(fds_[i]),
                                      static_cast<unsigned>(fds_[j - 1]), 0) != 0) {
        for (std::size_t k = i; k < j; ++k) ::close(fds_[k]);
      }
      i = j;
    }
    count_ = 0;
  }

 private:
  // A few per listener and the loop's own: on the parent's stack, where each byte more takes
  // the fork deeper into pages that it and the child then copy.
  static constexpr std::size_t kCapacity = 32;
  int fds_[kCapacity];
  std::size_t count_ = 0;
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

// Memory a forked child does not get (MADV_DONTFORK), for what only the parent uses: its writes
// there are never copy-on-write faults, whatever children are alive. A child must not touch it
// (it is not mapped there). One mapping per allocation: the pool on top asks for few, large ones.
class ParentOnlyMemory final : public std::pmr::memory_resource {
  static std::size_t length(std::size_t bytes) noexcept {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
  }
  void* do_allocate(std::size_t bytes, std::size_t /*align: a page*/) override {
    void* p =
        ::mmap(nullptr, length(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ::madvise(p, length(bytes), MADV_DONTFORK);  // fails only on a bad range
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t) override {
    ::munmap(p, length(bytes));
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

// Allocates from a memory_resource without constructing elements with it (as
// polymorphic_allocator would): for a vector of node handles, which carry their own allocator.
template <class T>
struct ResourceAllocator {
  using value_type = T;
  explicit ResourceAllocator(std::pmr::memory_resource* r) noexcept : resource(r) {}
  template <class U>
  ResourceAllocator(const ResourceAllocator<U>& other) noexcept : resource(other.resource) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(resource->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    resource->deallocate(p, n * sizeof(T), alignof(T));
  }
  friend bool operator==(const ResourceAllocator& a, const ResourceAllocator& b) noexcept {
    return a.resource == b.resource;
  }
  std::pmr::memory_resource* resource;
};

}  // namespace

struct ForkModel::State {
  // One child; with a relay, the loop watches the parent's end of its socketpair (the Child is
  // the watcher: std::list keeps it in place).
  struct Child final : Watcher {
    explicit Child(State& s) : state(s) {}
    void on_events(std::uint32_t events) override { state.on_relay(*this, events); }
    State& state;
    pid_t pid = 0;
    std::unique_ptr<RelayMember> member;  // null once the relay is done (the hub forgot it)
    WatchId watch = kNoWatch;             // member's socket on the loop
    std::optional<ChildReport> report;
    std::pair<std::string, std::vector<std::byte>> farewell;  // taken from the member
    bool reaped = false;
    // Ready for another child (a spare record): as made, with its buffers kept.
    void reset() {
      pid = 0;
      member.reset();
      watch = kNoWatch;
      report.reset();
      farewell.first.clear();
      farewell.second.clear();
      reaped = false;
    }
  };

  using ChildList = std::pmr::list<Child>;
  using ByPid = std::pmr::unordered_map<pid_t, ChildList::iterator>;

  // What the parent writes on every connection: its counters, the child's record and index node.
  // Without a relay no child reads any of it, so it lives in ParentOnlyMemory: at c=16 the
  // copy-on-write faults on these heap pages were 6% of the server's CPU. With a relay a child
  // reads the records (the other children's relays, to close): on the heap.
  struct Book {
    explicit Book(std::pmr::memory_resource* upstream) : records(upstream) {}
    std::pmr::unsynchronized_pool_resource records;
    ChildList children{&records};
    ByPid by_pid{&records};
    // Reaped children, retired after the reaping round: no scan over every live child per
    // SIGCHLD.
    std::pmr::vector<ChildList::iterator> finished{&records};
    // Retired records and index nodes, reused by the next children (a bounded number): a
    // connection costs the parent no malloc and no free.
    ChildList spare_children{&records};
    std::vector<ByPid::node_type, ResourceAllocator<ByPid::node_type>> spare_pids{
        ResourceAllocator<ByPid::node_type>(&records)};
    bool out_of_processes = false;  // the last fork failed (logged once per burst)
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
  template <class T>
  struct ArenaDelete {
    std::pmr::memory_resource* resource;
    void operator()(T* object) const {
      std::pmr::polymorphic_allocator<T>(resource).delete_object(object);
    }
  };
  static std::unique_ptr<Book, ArenaDelete<Book>> make_book(std::pmr::memory_resource* resource) {
    return {std::pmr::polymorphic_allocator<Book>(resource).new_object<Book>(resource),
            ArenaDelete<Book>{resource}};
  }

  // One listening socket on the loop; each connection it accepts gets a child.
  struct Listener final : PeerAcceptHandler {
    Listener(State& s, Fd fd, Transport transport)
        : state(s), acceptor(*s.loop, std::move(fd), transport, *this) {
      acceptor.set_adaptive_budget(true);   // a fork per connection: rarely more than one queued
      acceptor.set_blocking_sockets(true);  // the child waits in its reads (blocking_sockets)
    }
    void on_accept(Fd fd, const Address& peer) override { state.spawn(std::move(fd), peer); }
    State& state;
    Acceptor acceptor;
  };

  State(Protocol& p, const ModelOptions& o) : protocol(p), options(o) {
    limits.max_outbox = protocol.max_outbox();
    limits.max_input = protocol.max_input();
    limits.idle_timeout = options.idle_timeout;
    limits.protocol = &protocol;
    limits.blocking_sockets = true;
    limits.signal_stop = &child_stop;
    if (auto created = Loop::create()) {
      loop = std::move(*created);
    } else {
      loop_error = created.error();
    }
    if (options.uses_hub) scratch.resize(kRelayFrameMax + 1);
  }
  // The listeners first: they are made in the book's memory, which goes before them.
  ~State() { listeners.clear(); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  bool relayed() const noexcept { return options.uses_hub; }

  std::size_t relay_limit() const {
    return limits.max_outbox != 0 ? limits.max_outbox : limits.delivery_limit;
  }

  void spawn(Fd client, const Address& peer);
  // Calls `f` with each of the loop's and the listeners' descriptors.
  template <class F>
  void for_each_own_descriptor(F&& f) const {
    for (const int fd : loop->own_descriptors()) f(fd);
    for (const auto& listener : listeners) {
      for (const int fd : listener->acceptor.own_descriptors()) f(fd);
    }
  }
  // Not inlined into spawn: the child's locals (its connection) then live below the parent's
  // frames, which stay small.
  [[noreturn, gnu::noinline]] void run_child(Fd client, Fd relay, std::string&& remote,
                                             ParentDescriptors& parents);
  [[noreturn]] void finish_child(const BlockingCounters& counters, ChildReport::Outcome outcome,
                                 RelayClient* relay);
  void on_relay(Child& child, std::uint32_t events);
  void relay_done(Child& child);
  void on_signal(int signo);
  void reap();
  void reap_one(ChildList::iterator record, int status);
  void retire_finished();
  void begin_stop();
  void kill_all();
  void stop_when_done();

  Protocol& protocol;
  const ModelOptions options;
  BlockingLimits limits;
  std::unique_ptr<Loop> loop;  // the parent's: listeners, signals, relays, request_stop()
  std::error_code loop_error;
  // Made in the book's memory (see Book): the acceptor's state is written on every connection.
  std::vector<std::unique_ptr<Listener, ArenaDelete<Listener>>> listeners;
  std::vector<int> more_descriptors;  // the parent's that did not fit in ParentDescriptors
  LocalHub hub;
  bool ran = false;
  bool stopping = false;
  bool killed = false;
  int stop_signals = 0;  // a second one cuts the grace period short
  TimerId kill_timer = kNoTimer;
  pid_t parent_pid = 0;
  // Made in run(): the child calls no sigset code. The caller's mask without the stop signals.
  sigset_t child_mask{};
  SignalStop child_stop;  // the children's (made in run())

  std::vector<std::byte> scratch;        // one relay frame
  SharedPage shared{!options.uses_hub};  // the children's counters when there is no relay

  ParentOnlyMemory parent_only;
  std::unique_ptr<Book, ArenaDelete<Book>> book{
      make_book(relayed() ? std::pmr::new_delete_resource() : &parent_only)};
  // The book's, by their old names (references: read, never written, on the State's page).
  static constexpr std::size_t kSpareRecords = 256;
  ChildList& children = book->children;
  ByPid& by_pid = book->by_pid;
  std::pmr::vector<ChildList::iterator>& finished = book->finished;
  ChildList& spare_children = book->spare_children;
  decltype(Book::spare_pids)& spare_pids = book->spare_pids;
  bool& out_of_processes = book->out_of_processes;
  std::atomic<std::uint64_t>& accepted = book->accepted;
  std::atomic<std::uint64_t>& closed = book->closed;
  std::atomic<std::uint64_t>& failed = book->failed;
  std::atomic<std::uint64_t>& rejected = book->rejected;
  std::atomic<std::uint64_t>& shed = book->shed;
  std::atomic<std::uint64_t>& live = book->live;
  std::atomic<std::uint64_t>& bytes_in = book->bytes_in;
  std::atomic<std::uint64_t>& bytes_out = book->bytes_out;
  std::atomic<std::uint64_t>& writes = book->writes;
};

REACTOR_HOT void ForkModel::State::spawn(Fd client, const Address& peer) {
  const Transport transport = peer.transport();
  if (stopping || (options.max_connections != 0 &&
                   live.load(std::memory_order_relaxed) >= options.max_connections)) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    if (!stopping) refuse_connection(client.get(), transport, protocol);
    return;  // the descriptor closes here: the client sees the connection closed at once
  }
  Fd parent_end, child_end;
  // The relay member needs the peer's name. A child without a relay looks it up if it is asked
  // (getpeername): formatting it here would cost the parent a heap string per connection, and
  // its copy-on-write page faults.
  std::string remote;
  if (relayed()) {
    remote = peer.to_string();
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

  ParentDescriptors parents;
  // More than fit on the stack (many listeners): the rest on the heap, which the child can read
  // (unlike the listeners themselves, see listen()).
  if (!more_descriptors.empty()) more_descriptors.clear();
  for_each_own_descriptor([&](int fd) {
    if (!parents.note(fd)) more_descriptors.push_back(fd);
  });
  pid_t pid = ::fork();
  if (pid < 0) {
    shed.fetch_add(1, std::memory_order_relaxed);  // EAGAIN/ENOMEM: out of processes
    if (!out_of_processes) {
      const int e = errno;
      log(LogLevel::warn, "cannot fork for %s (%s); refusing connections briefly",
          peer.to_string().c_str(), std::strerror(e));
    }
    out_of_processes = true;
    for (auto& listener : listeners) listener->acceptor.pause(std::chrono::milliseconds(100));
    return;
  }
  if (pid == 0) {
    parent_end.reset();
    for (const int fd : more_descriptors) parents.add(fd);  // closes them in rounds
    run_child(std::move(client), std::move(child_end), std::move(remote), parents);
  }
  out_of_processes = false;  // after the child left: it writes none of our heap pages
  child_end.reset();
  client.reset();
  if (spare_children.empty()) {
    children.emplace_back(*this);
  } else {
    // The record retired last: its page is the likeliest to be written already.
    children.splice(children.end(), spare_children, std::prev(spare_children.end()));
  }
  const auto record = std::prev(children.end());
  Child& child = *record;
  child.pid = pid;
  if (spare_pids.empty()) {
    by_pid.emplace(pid, record);
  } else {
    ByPid::node_type node = std::move(spare_pids.back());
    spare_pids.pop_back();
    node.key() = pid;
    node.mapped() = record;
    by_pid.insert(std::move(node));
  }
  accepted.fetch_add(1, std::memory_order_relaxed);
  live.fetch_add(1, std::memory_order_relaxed);
  if (relayed()) {
    const int fd = parent_end.get();
    child.member =
        std::make_unique<RelayMember>(std::move(parent_end), std::move(remote), relay_limit());
    if (auto id = loop->watch(fd, EPOLLIN, child)) {
      child.watch = *id;
      child.member->watch_on(*loop, *id);
    } else {
      // Cannot watch the relay: the child's hub calls would wait forever. Cut it off; it drops
      // its client (too slow) and reports on exit.
      log(LogLevel::warn, "watch a child's relay: %s", id.error().message().c_str());
      relay_done(child);
    }
  }
}

REACTOR_HOT void ForkModel::State::run_child(Fd client, Fd relay, std::string&& remote,
                                 ParentDescriptors& parents) {
  // Die with the parent (SIGTERM: a graceful stop) rather than serve on unsupervised.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent_pid) ::kill(::getpid(), SIGTERM);

  // Close what belongs to the parent: its loop's descriptors, the listeners and their reserves,
  // the other children's relays. Nothing here runs the parent's destructors, writes to its
  // objects or touches its epoll interest list (shared with us): the descriptors are read and
  // closed; the objects are our copy and go with _exit.
  if (relayed()) {
    for (const auto& other : children) {
      if (other.member) parents.add(other.member->fd());
    }
  }
  parents.close_all();
  // The stop signals are unblocked (see on_child_stop); SIGCHLD goes back to how the caller of
  // run() had it.
  set_child_mask(child_mask);

  BlockingCounters counters;
  BlockingConnection connection(std::move(client), std::move(remote), limits, counters, false);
  // With a relay the session's Hub is the parent's; without one (the protocol does not use the
  // Hub) it is this process's empty LocalHub.
  std::optional<RelayClient> relay_client;
  if (relay) {
    relay_client.emplace(std::move(relay), parent_pid);
    relay_client->attach(connection);
  }
  Hub& session_hub = relay_client ? static_cast<Hub&>(*relay_client) : static_cast<Hub&>(hub);

  // The one session's storage, if its class takes it: a few bytes of this stack, written anyway.
  alignas(std::max_align_t) std::byte session_bytes[64];
  SessionStorage lent(session_bytes);
  std::unique_ptr<Session> session;
  try {
    session = protocol.open(session_hub);
  } catch (...) {
  }
  if (!session)
    finish_child(counters, ChildReport::rejected, relay_client ? &*relay_client : nullptr);
  SideChannel* relay_channel[] = {relay_client ? &*relay_client : nullptr};
  std::span<SideChannel* const> side_channels(relay_channel);
  if (!relay_client) side_channels = {};
  std::error_code reason = connection.serve(*session, side_channels);
  session.reset();
  finish_child(counters, reason ? ChildReport::failed : ChildReport::clean,
               relay_client ? &*relay_client : nullptr);
}

// The child's last act: its report through the relay, or (no relay) its counters into the shared
// page and its outcome as the exit status.
REACTOR_HOT void ForkModel::State::finish_child(const BlockingCounters& counters, ChildReport::Outcome outcome,
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
  // Unwatched explicitly (EPOLL_CTL_DEL), not by the close: a child forked a moment ago may still
  // hold a copy of this descriptor, which would keep it in the interest list.
  if (child.watch != kNoWatch) loop->unwatch(child.watch);
  child.watch = kNoWatch;
  child.member.reset();
}

void ForkModel::State::on_relay(Child& child, std::uint32_t events) {
  if (!child.member) return;
  if (events & EPOLLOUT) child.member->flush();
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    // False: the child is exiting (or broke the protocol). Its SIGCHLD reaps and retires it.
    if (!child.member->on_readable(hub, scratch, 64)) relay_done(child);
  }
}

void ForkModel::State::reap_one(ChildList::iterator record, int status) {
  Child& child = *record;
  child.reaped = true;
  finished.push_back(record);
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
    reap_one(it->second, status);
  }
  if (!foreign) return;
  for (auto it = children.begin(); it != children.end(); ++it) {
    if (it->reaped) continue;
    int status = 0;
    if (::waitpid(it->pid, &status, WNOHANG) == it->pid) reap_one(it, status);
  }
}

void ForkModel::State::retire_finished() {
  for (const auto record : finished) {
    Child& child = *record;
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
    auto node = by_pid.extract(child.pid);
    if (node && spare_pids.size() < kSpareRecords) spare_pids.push_back(std::move(node));
    if (spare_children.size() < kSpareRecords) {
      child.reset();
      spare_children.splice(spare_children.end(), children, record);
    } else {
      children.erase(record);
    }
  }
  finished.clear();
}

void ForkModel::State::on_signal(int signo) {
  if (signo == SIGCHLD) {
    reap();
    retire_finished();
    stop_when_done();
    return;
  }
  ++stop_signals;
  if (stop_signals == 1) {
    if (options.announce_stop) {
      announce_graceful_stop(signo, options.shutdown_grace,
                             static_cast<long long>(children.size()));
    }
    begin_stop();
  } else if (stop_signals == 2) {
    if (options.announce_stop) announce_forced_stop(signo);
    kill_all();  // no more grace
  }
}

void ForkModel::State::begin_stop() {
  if (stopping) return;
  stopping = true;
  for (auto& listener : listeners) listener->acceptor.stop();
  for (auto& child : children) {
    if (!child.reaped) ::kill(child.pid, SIGTERM);
  }
  kill_timer = loop->after(options.shutdown_grace, [this] {
    kill_timer = kNoTimer;
    kill_all();
  });
  stop_when_done();
}

// Past the grace period, or a second stop signal: SIGKILL whatever still runs (counted as
// failed: no report comes from it).
void ForkModel::State::kill_all() {
  if (kill_timer != kNoTimer) loop->cancel_timer(kill_timer);
  kill_timer = kNoTimer;
  if (killed) return;
  killed = true;
  for (auto& child : children) {
    if (!child.reaped) ::kill(child.pid, SIGKILL);
  }
}

void ForkModel::State::stop_when_done() {
  if (stopping && children.empty()) loop->stop();
}

ForkModel::ForkModel(Protocol& protocol, const ModelOptions& options)
    : state_(std::make_unique<State>(protocol, options)) {}

ForkModel::~ForkModel() = default;

Result<Address> ForkModel::listen(const Address& address) {
  State& s = *state_;
  if (!s.loop) return s.loop_error;
  auto listening = listen_stream(address);
  if (!listening) return listening.error();
  std::pmr::memory_resource* memory = &s.book->records;
  std::unique_ptr<State::Listener, State::ArenaDelete<State::Listener>> listener(
      std::pmr::polymorphic_allocator<State::Listener>(memory).new_object<State::Listener>(
          s, std::move(listening->fd), address.transport()),
      State::ArenaDelete<State::Listener>{memory});
  if (auto ec = listener->acceptor.start()) return ec;
  s.listeners.push_back(std::move(listener));
  return std::move(listening->bound);
}

std::error_code ForkModel::run() {
  State& s = *state_;
  if (s.ran) return make_error_code(Errc::shutting_down);
  s.ran = true;
  if (!s.loop) return s.loop_error;
  sigset_t before;
  if (int rc = ::pthread_sigmask(SIG_BLOCK, nullptr, &before); rc != 0) return errno_code(rc);
  s.child_mask = before;
  // The children's: finish a little before the parent's SIGKILL, so that the report gets out.
  s.child_stop.grace = s.options.shutdown_grace * 3 / 4;
  sigemptyset(&s.child_stop.signals);
  for (const int signo : {REACTOR_STOP_SIGNALS}) {
    sigdelset(&s.child_mask, signo);
    sigaddset(&s.child_stop.signals, signo);
  }
  if (auto ec = block_signals({REACTOR_STOP_SIGNALS, SIGCHLD})) return ec;
  // The children's handler (see on_child_stop); blocked here, so it never runs in the parent.
  ChildStopHandlers handlers;
  if (auto ec = handlers.install()) return ec;
  auto on_signal = [](int signo, void* state) { static_cast<State*>(state)->on_signal(signo); };
  if (auto ec = s.loop->handle_signals({REACTOR_STOP_SIGNALS, SIGCHLD}, on_signal, &s)) return ec;
  ignore_sigpipe();
  s.parent_pid = ::getpid();

  auto failure = s.loop->run();
  if (failure) {
    // Cannot wait any more (ENOMEM): kill the children, reap them, report.
    for (auto& child : s.children) {
      if (!child.reaped) ::kill(child.pid, SIGKILL);
    }
    for (auto& child : s.children) {
      if (!child.reaped) ::waitpid(child.pid, nullptr, 0);
    }
    for (auto& child : s.children) {
      if (child.watch != kNoWatch) s.loop->unwatch(child.watch);
    }
    s.finished.clear();
    s.children.clear();
    s.by_pid.clear();
  }
  for (auto& listener : s.listeners) listener->acceptor.stop();
  if (s.kill_timer != kNoTimer) s.loop->cancel_timer(s.kill_timer);
  s.kill_timer = kNoTimer;
  handlers.restore();  // before the mask: a stop signal still pending meets the caller's action
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return failure;
}

void ForkModel::request_stop() {
  State& s = *state_;
  if (s.loop) s.loop->post([&s] { s.begin_stop(); });
}

ServerStats ForkModel::stats() const {
  const State& s = *state_;
  ServerStats out;
  out.accepted = s.accepted.load(std::memory_order_relaxed);
  out.closed = s.closed.load(std::memory_order_relaxed);
  out.failed = s.failed.load(std::memory_order_relaxed);
  out.rejected = s.rejected.load(std::memory_order_relaxed);
  out.shed = s.shed.load(std::memory_order_relaxed);
  for (const auto& listener : s.listeners) out.shed += listener->acceptor.stats().shed;
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
