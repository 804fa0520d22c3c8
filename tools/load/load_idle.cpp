#include <sys/epoll.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "load_worker.hpp"
#include "reactor/socket.hpp"

namespace load::engine {

namespace {

constexpr std::size_t kCheckMessage = 16;  // bytes echoed to prove a connection alive

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

}  // namespace

std::unique_ptr<Worker> make_idle_worker(const Worker::Shared& shared, int thread_index,
                                         int share) {
  return std::make_unique<IdleWorker>(shared, thread_index, share);
}

}  // namespace load::engine
