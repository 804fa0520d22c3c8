#include "reactor/connector.hpp"

#include "reactor/error.hpp"
#include "reactor/socket.hpp"

namespace reactor {

Connector::Connector(Loop& loop, Address target, std::chrono::milliseconds timeout, Callback done)
    : loop_(loop),
      target_(std::move(target)),
      timeout_(timeout),
      done_(std::move(done)),
      alive_(std::make_shared<bool>(true)) {}

Connector::~Connector() {
  *alive_ = false;
  cancel();
}

void Connector::start() {
  bool in_progress = false;
  auto fd = start_connect(target_, in_progress);
  if (!fd || !in_progress) {
    // Deliver immediate outcomes through the loop too: callers never get a callback from
    // inside start().
    std::weak_ptr<bool> alive = alive_;
    auto outcome = std::make_shared<Result<Fd>>(fd ? Result<Fd>(std::move(*fd)) : fd.error());
    loop_.post([this, alive, outcome] {
      if (auto a = alive.lock(); a && *a) finish(std::move(*outcome));
    });
    return;
  }
  fd_ = std::move(*fd);
  auto id = loop_.watch(fd_.get(), EPOLLOUT, *this);
  if (!id) {
    auto ec = id.error();
    fd_.reset();
    std::weak_ptr<bool> alive = alive_;
    loop_.post([this, alive, ec] {
      if (auto a = alive.lock(); a && *a) finish(ec);
    });
    return;
  }
  watch_ = *id;
  if (timeout_.count() > 0) {
    timer_ = loop_.after(timeout_, [this] {
      timer_ = kNoTimer;
      finish(errno_code(ETIMEDOUT));
    });
  }
}

void Connector::cancel() {
  if (watch_ != kNoWatch) loop_.unwatch(watch_);
  watch_ = kNoWatch;
  if (timer_ != kNoTimer) loop_.cancel_timer(timer_);
  timer_ = kNoTimer;
  fd_.reset();
  done_ = nullptr;
}

void Connector::on_events(std::uint32_t) {
  if (auto ec = finish_connect(fd_.get())) {
    finish(ec);
    return;
  }
  finish(std::move(fd_));
}

void Connector::finish(Result<Fd> outcome) {
  Callback done = std::move(done_);
  cancel();
  // Last statement: the callback may destroy this Connector.
  if (done) done(std::move(outcome));
}

}  // namespace reactor
