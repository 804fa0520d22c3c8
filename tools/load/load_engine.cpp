#include "load_engine.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "load_pattern.hpp"
#include "load_proc.hpp"
#include "reactor/socket.hpp"

namespace load {

void LoadTotals::add(const LoadTotals& o) {
  connections += o.connections;
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  msgs += o.msgs;
  errors_connect += o.errors_connect;
  for (auto [e, n] : o.connect_errnos) connect_errnos[e] += n;
  errors_timeout += o.errors_timeout;
  errors_io += o.errors_io;
  errors_verify += o.errors_verify;
  alive += o.alive;
  failed += o.failed;
  latency.merge(o.latency);
  if (fatal.empty()) fatal = o.fatal;
}

namespace {

using Nanos = std::int64_t;

Nanos now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return Nanos{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

Nanos to_ns(double seconds) noexcept {
  return static_cast<Nanos>(seconds * 1e9);
}

constexpr Nanos kRetryDelay = 10'000'000;  // after a failed connect, so errors never spin
constexpr Nanos kTick = 20'000'000;        // timeout scan and progress publishing
constexpr std::size_t kIoChunk = 64 * 1024;
constexpr int kMaxConnectingPerThread = 256;  // idle ramp: keeps the listen backlog unflooded
constexpr std::size_t kCheckMessage = 16;     // idle: bytes echoed to prove a connection alive

// Creates nonblocking client sockets toward the target, optionally from 127.0.0.N sources.
class Dialer {
 public:
  Dialer(const reactor::Address& target, CloseMode close, int sources)
      : target_(target), close_(close), sources_(sources) {}

  // An fd (connect started) or -errno. `connected` is true when connect finished at once.
  int dial(std::uint64_t n, bool& connected) const {
    connected = false;
    int fd = ::socket(target_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (!target_.is_unix()) (void)reactor::set_no_delay(fd, true);
    if (close_ == CloseMode::rst) (void)reactor::set_linger_abort(fd);
    if (sources_ > 1) {
      int one = 1;
      // Port chosen at connect() time from the 4-tuple, not at bind(): more ports per source.
      (void)::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr =
          htonl(0x7F000001u + static_cast<std::uint32_t>(n % static_cast<std::uint64_t>(sources_)));
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof(src)) != 0) {
        int e = errno;
        ::close(fd);
        return -e;
      }
    }
    if (::connect(fd, target_.sockaddr_ptr(), target_.length()) == 0) {
      connected = true;
      return fd;
    }
    if (errno == EINPROGRESS || errno == EINTR) return fd;
    int e = errno;
    ::close(fd);
    return -e;
  }

 private:
  reactor::Address target_;
  CloseMode close_;
  int sources_;
};

// What one nonblocking read or write pass ended with.
enum class Io { more, blocked, done, eof, error, mismatch };

// One connection's byte streams: `queued` bytes are due to be sent, `sent` went out, `received`
// came back (each checked against the pattern).
struct Stream {
  std::uint64_t seed = 0;
  std::uint64_t queued = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

// Writes until everything queued is sent or the socket is full.
Io write_pending(int fd, Stream& s, LoadTotals& t, bool& progressed) {
  unsigned char buf[kIoChunk];
  while (s.sent < s.queued) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(s.queued - s.sent, kIoChunk));
    fill_pattern(s.seed, s.sent, buf, n);
    ssize_t w = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (w > 0) {
      s.sent += static_cast<std::uint64_t>(w);
      t.bytes_sent += static_cast<std::uint64_t>(w);
      progressed = true;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::blocked;
    return Io::error;
  }
  return Io::done;
}

// Reads and verifies until everything sent came back or the socket is empty.
Io read_echo(int fd, Stream& s, LoadTotals& t, bool& progressed) {
  unsigned char buf[kIoChunk];
  while (s.received < s.sent) {
    std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(s.sent - s.received, kIoChunk));
    ssize_t r = ::recv(fd, buf, want, 0);
    if (r > 0) {
      auto n = static_cast<std::size_t>(r);
      t.bytes_received += n;
      progressed = true;
      if (!matches_pattern(s.seed, s.received, buf, n)) return Io::mismatch;
      s.received += n;
      continue;
    }
    if (r == 0) return Io::eof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::blocked;
    return Io::error;
  }
  return Io::done;
}

void count_failure(Io io, LoadTotals& t) {
  if (io == Io::mismatch)
    ++t.errors_verify;
  else
    ++t.errors_io;
}

// Completes an idle-mode phase: the first completion (everyone has ramped) starts the hold.
struct StartHold {
  std::atomic<Nanos>* deadline;
  double hold_s;
  void operator()() noexcept { deadline->store(now_ns() + to_ns(hold_s)); }
};
using PhaseBarrier = std::barrier<StartHold>;

constexpr std::uint64_t pack(std::uint32_t slot, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | slot;
}

// State shared by the three workloads: one epoll, a slot table, the clock and the counters.
class Worker {
 public:
  struct Shared {
    const LoadOptions* options;
    const Dialer* dialer;
    LoadProgress* progress;
    PhaseBarrier* phases;               // idle only
    std::atomic<Nanos>* hold_deadline;  // idle only
  };

  Worker(const Shared& shared, int thread_index, int share)
      : sh_(shared), o_(*shared.options), thread_index_(thread_index), share_(share) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) totals_.fatal = "epoll_create1 failed";
  }
  virtual ~Worker() {
    for (int fd : kept_open_) ::close(fd);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  LoadTotals& totals() { return totals_; }

  void run() {
    if (epoll_fd_ < 0) return;
    Nanos now = now_ns();
    start(now);
    Nanos next_tick = now + kTick;
    epoll_event events[256];
    while (!finished()) {
      now = now_ns();
      int wait_ms = static_cast<int>(std::max<Nanos>(0, (next_tick - now + 999'999) / 1'000'000));
      int n = ::epoll_wait(epoll_fd_, events, 256, wait_ms);
      for (int i = 0; i < n; ++i) {
        auto slot = static_cast<std::uint32_t>(events[i].data.u64);
        auto generation = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
        if (slot < generations_.size() && generations_[slot] == generation) {
          on_event(slot, events[i].events, now_ns());  // fresh: latencies end at this event
        }
      }
      now = now_ns();
      if (now >= next_tick) {
        on_tick(now);
        publish();
        next_tick = now + kTick;
      }
    }
    publish();
  }

 protected:
  virtual void start(Nanos now) = 0;
  virtual void on_event(std::uint32_t slot, std::uint32_t events, Nanos now) = 0;
  virtual void on_tick(Nanos now) = 0;
  virtual bool finished() const = 0;

  // Starts a connection for `slot`: -errno, or the fd (registered, edge-triggered).
  int open_for(std::uint32_t slot, bool& connected) {
    int fd = sh_.dialer->dial(next_dial_++ * static_cast<std::uint64_t>(o_.threads) +
                                  static_cast<std::uint64_t>(thread_index_),
                              connected);
    if (fd < 0) return fd;
    if (slot >= generations_.size()) generations_.resize(slot + 1, 0);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = pack(slot, ++generations_[slot]);
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      int e = errno;
      ::close(fd);
      return -e;
    }
    return fd;
  }
  // Closes a slot's fd; later events for it carry a stale generation and are dropped.
  void close_slot(std::uint32_t slot, int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ++generations_[slot];
  }
  // Like close_slot, but the socket stays open until the worker is destroyed: echo --server-pid
  // samples the server's CPU after the run while its connections (and a fork server's children
  // serving them) still exist, so no child's time is lost between its exit and its reaping.
  void retire_slot(std::uint32_t slot, int& fd) {
    if (fd >= 0) kept_open_.push_back(fd);
    fd = -1;
    ++generations_[slot];
  }
  std::uint64_t next_seed() {
    return (static_cast<std::uint64_t>(thread_index_) << 40) + (seed_counter_++ << 20);
  }

  // Adds this thread's progress since the last call to the shared counters.
  void publish() {
    sh_.progress->connections.fetch_add(totals_.connections - published_.connections,
                                        std::memory_order_relaxed);
    sh_.progress->msgs.fetch_add(totals_.msgs - published_.msgs, std::memory_order_relaxed);
    sh_.progress->errors.fetch_add(totals_.errors() - published_errors_, std::memory_order_relaxed);
    published_.connections = totals_.connections;
    published_.msgs = totals_.msgs;
    published_errors_ = totals_.errors();
  }

  Shared sh_;
  const LoadOptions& o_;
  int thread_index_;
  int share_;
  LoadTotals totals_;

 private:
  int epoll_fd_ = -1;
  std::vector<int> kept_open_;
  std::vector<std::uint32_t> generations_;
  std::uint64_t next_dial_ = 0;
  std::uint64_t seed_counter_ = 1;
  struct {
    std::uint64_t connections = 0, msgs = 0;
  } published_;
  std::uint64_t published_errors_ = 0;
};

// connrate: each slot loops connect -> send size bytes -> read them back -> close.
class ConnrateWorker final : public Worker {
 public:
  using Worker::Worker;

 private:
  enum class State { waiting, connecting, active, done };
  struct Slot {
    int fd = -1;
    State state = State::waiting;
    Stream stream;
    Nanos started = 0;
    Nanos last_progress = 0;
    Nanos retry_at = 0;
  };

  void start(Nanos now) override {
    deadline_ = now + to_ns(o_.duration_s);
    if (o_.count > 0) {  // this thread's share of the burst
      count_share_ = static_cast<std::uint64_t>(o_.count / o_.threads +
                                                (thread_index_ < o_.count % o_.threads ? 1 : 0));
    }
    slots_.resize(static_cast<std::size_t>(share_));
    for (std::uint32_t i = 0; i < slots_.size(); ++i) begin(i, now);
  }

  bool finished() const override { return done_ == slots_.size(); }

  void begin(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    if (now >= deadline_ || (o_.count > 0 && totals_.connections + busy_ >= count_share_)) {
      s.state = State::done;
      ++done_;
      return;
    }
    bool connected = false;
    int fd = open_for(i, connected);
    if (fd < 0) {
      totals_.connect_error(-fd);
      s.state = State::waiting;
      s.retry_at = now + kRetryDelay;
      return;
    }
    s.fd = fd;
    ++busy_;
    s.stream = Stream{next_seed(), o_.size, 0, 0};
    s.started = now;
    s.last_progress = now;
    // Already connected (UNIX sockets): the EPOLLOUT that epoll_ctl reports starts the exchange.
    s.state = connected ? State::active : State::connecting;
  }

  void fail(std::uint32_t i, Nanos now, bool retry_later) {
    Slot& s = slots_[i];
    if (s.fd >= 0) --busy_;
    close_slot(i, s.fd);
    if (retry_later) {
      s.state = State::waiting;
      s.retry_at = now + kRetryDelay;
    } else {
      begin(i, now);
    }
  }

  void on_event(std::uint32_t i, std::uint32_t events, Nanos now) override {
    Slot& s = slots_[i];
    if (s.state == State::connecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (auto ec = reactor::finish_connect(s.fd)) {
        totals_.connect_error(ec.value());
        fail(i, now, true);
        return;
      }
      s.state = State::active;
    }
    if (s.state == State::active) pump(i, now);
  }

  void pump(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    bool progressed = false;
    Io w = write_pending(s.fd, s.stream, totals_, progressed);
    Io r = w == Io::error ? Io::error : read_echo(s.fd, s.stream, totals_, progressed);
    if (progressed) s.last_progress = now;
    if (r == Io::done && w == Io::done) {
      totals_.latency.record(static_cast<std::uint64_t>(now - s.started));
      ++totals_.connections;
      --busy_;
      close_slot(i, s.fd);
      begin(i, now);
    } else if (r != Io::blocked) {
      count_failure(r, totals_);
      fail(i, now, false);
    }
  }

  void on_tick(Nanos now) override {
    Nanos stall = to_ns(o_.timeout_s);
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.state == State::waiting && now >= s.retry_at) {
        begin(i, now);
      } else if ((s.state == State::connecting || s.state == State::active) &&
                 now - s.last_progress > stall) {
        if (s.state == State::connecting)
          totals_.connect_error(ETIMEDOUT);
        else
          ++totals_.errors_timeout;
        fail(i, now, false);
      }
    }
  }

  std::vector<Slot> slots_;
  std::size_t done_ = 0;
  Nanos deadline_ = 0;
  std::uint64_t count_share_ = 0;  // --count: connections this thread completes at most
  std::uint64_t busy_ = 0;         // slots with a connection open
};

// echo: persistent connections, each keeping `pipeline` messages of `size` bytes in flight.
class EchoWorker final : public Worker {
 public:
  using Worker::Worker;

 private:
  enum class State { waiting, connecting, active, done };
  struct Slot {
    int fd = -1;
    State state = State::waiting;
    Stream stream;
    std::uint64_t completed = 0;  // messages fully echoed
    std::vector<Nanos> sent_at;   // FIFO ring of in-flight messages' queue times
    std::size_t head = 0, count = 0;
    Nanos last_progress = 0;
    Nanos retry_at = 0;
  };

  void start(Nanos now) override {
    deadline_ = now + to_ns(o_.duration_s);
    drain_deadline_ = deadline_ + to_ns(o_.timeout_s);
    slots_.resize(static_cast<std::size_t>(share_));
    for (auto& s : slots_) s.sent_at.resize(static_cast<std::size_t>(o_.pipeline));
    for (std::uint32_t i = 0; i < slots_.size(); ++i) begin(i, now);
  }

  bool finished() const override { return done_ == slots_.size(); }

  void finish(std::uint32_t i) {
    Slot& s = slots_[i];
    if (s.fd >= 0 && o_.server_pid > 0)
      retire_slot(i, s.fd);
    else if (s.fd >= 0)
      close_slot(i, s.fd);
    s.state = State::done;
    ++done_;
  }

  void begin(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    if (now >= deadline_) {
      finish(i);
      return;
    }
    bool connected = false;
    int fd = open_for(i, connected);
    if (fd < 0) {
      totals_.connect_error(-fd);
      s.state = State::waiting;
      s.retry_at = now + kRetryDelay;
      return;
    }
    s.fd = fd;
    s.stream = Stream{next_seed(), 0, 0, 0};
    s.completed = 0;
    s.head = s.count = 0;
    s.last_progress = now;
    s.state = State::connecting;
    if (connected) on_connected(i, now);
  }

  void on_connected(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    s.state = State::active;
    ++totals_.connections;
    for (int k = 0; k < o_.pipeline; ++k) queue_message(s, now);
    pump(i, now);
  }

  void queue_message(Slot& s, Nanos now) {
    s.sent_at[(s.head + s.count) % s.sent_at.size()] = now;
    ++s.count;
    s.stream.queued += o_.size;
  }

  void fail(std::uint32_t i, Nanos now) {
    close_slot(i, slots_[i].fd);
    if (now >= deadline_) {
      finish(i);
    } else {
      slots_[i].state = State::waiting;
      slots_[i].retry_at = now + kRetryDelay;
    }
  }

  void on_event(std::uint32_t i, std::uint32_t events, Nanos now) override {
    Slot& s = slots_[i];
    if (s.state == State::connecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (auto ec = reactor::finish_connect(s.fd)) {
        totals_.connect_error(ec.value());
        fail(i, now);
        return;
      }
      on_connected(i, now);
      return;
    }
    if (s.state == State::active) pump(i, now);
  }

  void pump(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    bool progressed = false;
    Io r = read_echo(s.fd, s.stream, totals_, progressed);
    if (r == Io::eof || r == Io::error || r == Io::mismatch) {
      count_failure(r, totals_);
      fail(i, now);
      return;
    }
    bool stopping = now >= deadline_;
    auto size = static_cast<std::uint64_t>(o_.size);
    while (s.stream.received >= (s.completed + 1) * size) {
      totals_.latency.record(static_cast<std::uint64_t>(now - s.sent_at[s.head]));
      s.head = (s.head + 1) % s.sent_at.size();
      --s.count;
      ++s.completed;
      ++totals_.msgs;
      if (!stopping) queue_message(s, now);
    }
    Io w = write_pending(s.fd, s.stream, totals_, progressed);
    if (progressed) s.last_progress = now;
    if (w == Io::error) {
      count_failure(w, totals_);
      fail(i, now);
      return;
    }
    if (stopping && s.stream.received == s.stream.queued) finish(i);
  }

  void on_tick(Nanos now) override {
    Nanos stall = to_ns(o_.timeout_s);
    bool stopping = now >= deadline_;
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      switch (s.state) {
        case State::done:
          break;
        case State::waiting:
          if (stopping)
            finish(i);
          else if (now >= s.retry_at)
            begin(i, now);
          break;
        case State::connecting:
          if (now - s.last_progress > stall || (stopping && now >= drain_deadline_)) {
            totals_.connect_error(ETIMEDOUT);
            fail(i, now);
          }
          break;
        case State::active: {
          bool idle = s.stream.received == s.stream.queued;
          if (stopping && idle) {
            finish(i);
          } else if (!idle && (now - s.last_progress > stall || now >= drain_deadline_)) {
            ++totals_.errors_timeout;
            fail(i, now);
          }
          break;
        }
      }
    }
  }

  std::vector<Slot> slots_;
  std::size_t done_ = 0;
  Nanos deadline_ = 0;
  Nanos drain_deadline_ = 0;
};

// idle: ramp up `share` connections, hold them silently, then prove each still echoes.
class IdleWorker final : public Worker {
 public:
  using Worker::Worker;

 private:
  enum class Phase { ramp, hold, check, done };
  enum class State { unopened, connecting, held, checking, alive, failed };
  struct Slot {
    int fd = -1;
    State state = State::unopened;
    Stream stream;
    Nanos last_progress = 0;
  };

  void start(Nanos now) override {
    slots_.resize(static_cast<std::size_t>(share_));
    ramp(now);
  }

  bool finished() const override { return phase_ == Phase::done; }

  void mark_failed(std::uint32_t i) {
    Slot& s = slots_[i];
    if (s.state == State::connecting) --connecting_;
    if (s.state == State::checking) --checking_;
    if (s.fd >= 0) close_slot(i, s.fd);
    s.state = State::failed;
    ++totals_.failed;
  }

  void ramp(Nanos now) {
    while (next_open_ < slots_.size() && connecting_ < kMaxConnectingPerThread) {
      auto i = static_cast<std::uint32_t>(next_open_++);
      Slot& s = slots_[i];
      bool connected = false;
      int fd = open_for(i, connected);
      if (fd < 0) {
        totals_.connect_error(-fd);
        s.state = State::failed;
        ++totals_.failed;
        continue;
      }
      s.fd = fd;
      s.last_progress = now;
      if (connected) {
        s.state = State::held;
        ++totals_.connections;
      } else {
        s.state = State::connecting;
        ++connecting_;
      }
    }
    if (next_open_ == slots_.size() && connecting_ == 0) end_ramp();
  }

  void end_ramp() {
    publish();
    sh_.progress->phase.store(1, std::memory_order_relaxed);
    sh_.phases->arrive_and_wait();  // every thread has ramped; the hold deadline is set
    phase_ = Phase::hold;
  }

  void begin_check(Nanos now) {
    sh_.phases->arrive_and_wait();  // the caller sampled the server's RSS while we held
    sh_.progress->phase.store(2, std::memory_order_relaxed);
    phase_ = Phase::check;
    now = now_ns();
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.state != State::held) continue;
      s.state = State::checking;
      ++checking_;
      s.stream = Stream{next_seed(), kCheckMessage, 0, 0};
      s.last_progress = now;
      exchange(i, now);
    }
    maybe_done();
  }

  void maybe_done() {
    if (phase_ != Phase::check || checking_ > 0) return;
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].fd >= 0) close_slot(i, slots_[i].fd);
    }
    phase_ = Phase::done;
  }

  void exchange(std::uint32_t i, Nanos now) {
    Slot& s = slots_[i];
    bool progressed = false;
    Io w = write_pending(s.fd, s.stream, totals_, progressed);
    Io r = w == Io::error ? Io::error : read_echo(s.fd, s.stream, totals_, progressed);
    if (progressed) s.last_progress = now;
    if (r == Io::done && w == Io::done) {
      s.state = State::alive;
      --checking_;
      ++totals_.alive;
      close_slot(i, s.fd);
    } else if (r != Io::blocked) {
      count_failure(r, totals_);
      mark_failed(i);
    }
  }

  void on_event(std::uint32_t i, std::uint32_t events, Nanos now) override {
    Slot& s = slots_[i];
    switch (s.state) {
      case State::connecting:
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (auto ec = reactor::finish_connect(s.fd)) {
          totals_.connect_error(ec.value());
          mark_failed(i);
        } else {
          s.state = State::held;
          --connecting_;
          ++totals_.connections;
        }
        if (phase_ == Phase::ramp) ramp(now);
        return;
      case State::held:
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
          // Nothing is due while holding: any data, EOF or error means the server dropped it.
          ++totals_.errors_io;
          mark_failed(i);
        }
        return;
      case State::checking:
        exchange(i, now);
        maybe_done();
        return;
      default:
        return;
    }
  }

  void on_tick(Nanos now) override {
    Nanos stall = to_ns(o_.timeout_s);
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if ((s.state == State::connecting || s.state == State::checking) &&
          now - s.last_progress > stall) {
        if (s.state == State::connecting)
          totals_.connect_error(ETIMEDOUT);
        else
          ++totals_.errors_timeout;
        mark_failed(i);
      }
    }
    if (phase_ == Phase::ramp) ramp(now);
    if (phase_ == Phase::hold && now >= sh_.hold_deadline->load()) begin_check(now);
    maybe_done();
  }

  std::vector<Slot> slots_;
  Phase phase_ = Phase::ramp;
  std::size_t next_open_ = 0;
  int connecting_ = 0;
  int checking_ = 0;
};

// echo --idle: opens `count` connections, proves each is served (one byte echoed back), and
// keeps them open and silent; one epoll on the calling thread, at most 256 connects in flight.
// Every wait is bounded: a connection making no progress for timeout_s fails.
class IdleSet {
 public:
  IdleSet(const Dialer& dialer, int count, double timeout_s)
      : dialer_(dialer), want_(count), stall_(to_ns(timeout_s)) {}
  ~IdleSet() {
    for (auto& c : conns_) {
      if (c.fd >= 0) ::close(c.fd);
    }
    if (ep_ >= 0) ::close(ep_);
  }
  IdleSet(const IdleSet&) = delete;
  IdleSet& operator=(const IdleSet&) = delete;

  // Returns how many are held; failures are counted into `t`.
  std::uint64_t open(LoadTotals& t) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return 0;
    conns_.resize(static_cast<std::size_t>(want_));
    std::size_t next = 0, pending = 0, ready = 0;
    epoll_event events[256];
    Nanos next_scan = now_ns() + kTick;
    while (next < conns_.size() || pending > 0) {
      while (next < conns_.size() && pending < static_cast<std::size_t>(kMaxConnectingPerThread)) {
        Conn& c = conns_[next];
        bool connected = false;
        int fd = dialer_.dial(next, connected);
        if (fd < 0) {
          t.connect_error(-fd);
          ++t.failed;
          ++next;
          continue;
        }
        c.fd = fd;
        c.last = now_ns();
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = next;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
        ++next;
        ++pending;
      }
      int n = ::epoll_wait(ep_, events, 256, 20);
      for (int k = 0; k < n; ++k) {
        Conn& c = conns_[events[k].data.u64];
        if (c.state == Conn::ready || c.fd < 0) continue;
        int before = c.state;
        step(c, events[k].events, t);
        if (c.state == Conn::ready) ++ready;
        if (c.state == Conn::ready || c.fd < 0) {
          if (before != Conn::ready) --pending;
        }
      }
      Nanos now = now_ns();
      if (now >= next_scan) {
        for (auto& c : conns_) {
          if (c.fd >= 0 && c.state != Conn::ready && now - c.last > stall_) {
            if (c.state == Conn::connecting)
              t.connect_error(ETIMEDOUT);
            else
              ++t.errors_timeout;
            drop(c, t);
            --pending;
          }
        }
        next_scan = now + kTick;
      }
    }
    // Held from here on: no events are wanted until the set closes.
    for (auto& c : conns_) {
      if (c.fd >= 0) ::epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    }
    return ready;
  }

 private:
  struct Conn {
    enum State { connecting, probing, ready };
    int fd = -1;
    int state = connecting;
    Nanos last = 0;
  };

  void drop(Conn& c, LoadTotals& t) {
    ::close(c.fd);
    c.fd = -1;
    ++t.failed;
  }

  void step(Conn& c, std::uint32_t events, LoadTotals& t) {
    if (c.state == Conn::connecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (auto ec = reactor::finish_connect(c.fd)) {
        t.connect_error(ec.value());
        drop(c, t);
        return;
      }
      ++t.connections;
      char probe = 'i';
      if (::send(c.fd, &probe, 1, MSG_NOSIGNAL) != 1) {
        ++t.errors_io;
        drop(c, t);
        return;
      }
      ++t.bytes_sent;
      c.state = Conn::probing;
      c.last = now_ns();
    }
    if (c.state == Conn::probing) {
      char back = 0;
      ssize_t r = ::recv(c.fd, &back, 1, 0);
      if (r == 1 && back == 'i') {
        ++t.bytes_received;
        c.state = Conn::ready;
      } else if (r == 1) {
        ++t.errors_verify;
        drop(c, t);
      } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        ++t.errors_io;
        drop(c, t);
      }
    }
  }

  const Dialer& dialer_;
  int want_;
  Nanos stall_;
  int ep_ = -1;
  std::vector<Conn> conns_;
};

}  // namespace

LoadTotals run_load(const LoadOptions& o, const reactor::Address& target,
                    const ProgressFn& on_progress) {
  raise_fd_limit();
  reactor::ignore_sigpipe();
  Dialer dialer(target, o.close, o.sources);
  LoadProgress progress;
  std::atomic<Nanos> hold_deadline{0};
  int threads = o.threads;
  PhaseBarrier phases(threads + 1, StartHold{&hold_deadline, o.hold_s});
  Worker::Shared shared{&o, &dialer, &progress, &phases, &hold_deadline};

  int total = o.mode == Mode::connrate ? o.concurrency : o.connections;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    int share = total / threads + (t < total % threads ? 1 : 0);
    switch (o.mode) {
      case Mode::connrate:
        workers.push_back(std::make_unique<ConnrateWorker>(shared, t, share));
        break;
      case Mode::echo:
        workers.push_back(std::make_unique<EchoWorker>(shared, t, share));
        break;
      case Mode::idle:
        workers.push_back(std::make_unique<IdleWorker>(shared, t, share));
        break;
    }
  }
  LoadTotals result;
  for (auto& w : workers) {
    if (!w->totals().fatal.empty()) {
      result.fatal = w->totals().fatal;
      return result;
    }
  }

  if (o.mode == Mode::idle && o.server_pid > 0) result.rss_before = tree_memory_bytes(o.server_pid);
  std::optional<IdleSet> idle_set;
  if (o.mode == Mode::echo && o.idle > 0) {
    idle_set.emplace(dialer, o.idle, o.timeout_s);
    result.idle_ready = idle_set->open(result);
  }
  double cpu_before = o.mode == Mode::echo && o.server_pid > 0 ? tree_cpu_seconds(o.server_pid) : 0;

  std::mutex mu;
  std::condition_variable cv;
  int running = threads;
  Nanos started = now_ns();
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    pool.emplace_back([&, worker = w.get()] {
      worker->run();
      std::lock_guard lock(mu);
      --running;
      cv.notify_all();
    });
  }

  auto report = [&] {
    if (on_progress) on_progress(progress, static_cast<double>(now_ns() - started) / 1e9);
  };
  if (o.mode == Mode::idle) {
    // Phase 1 ends when every thread has ramped up; phase 2 when the hold time is over and the
    // server's RSS has been sampled.
    report();
    phases.arrive_and_wait();
    report();
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(hold_deadline.load())));
    if (o.server_pid > 0) result.rss_holding = tree_memory_bytes(o.server_pid);
    phases.arrive_and_wait();
  }
  {
    std::unique_lock lock(mu);
    while (running > 0) {
      cv.wait_for(lock, std::chrono::seconds(1));
      lock.unlock();
      report();
      lock.lock();
    }
  }
  for (auto& th : pool) th.join();
  result.elapsed_s = static_cast<double>(now_ns() - started) / 1e9;
  if (o.mode == Mode::echo && o.server_pid > 0)
    result.server_cpu_s = std::max(0.0, tree_cpu_seconds(o.server_pid) - cpu_before);
  for (auto& w : workers) result.add(w->totals());
  return result;
}

}  // namespace load
