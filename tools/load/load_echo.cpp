#include <sys/epoll.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "load_worker.hpp"
#include "reactor/socket.hpp"

namespace load::engine {

namespace {

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

}  // namespace

std::unique_ptr<Worker> make_echo_worker(const Worker::Shared& shared, int thread_index,
                                         int share) {
  return std::make_unique<EchoWorker>(shared, thread_index, share);
}

}  // namespace load::engine
