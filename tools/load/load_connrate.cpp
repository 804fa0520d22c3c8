#include <sys/epoll.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "load_worker.hpp"
#include "reactor/socket.hpp"

namespace load::engine {

namespace {

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

}  // namespace

std::unique_ptr<Worker> make_connrate_worker(const Worker::Shared& shared, int thread_index,
                                             int share) {
  return std::make_unique<ConnrateWorker>(shared, thread_index, share);
}

}  // namespace load::engine
