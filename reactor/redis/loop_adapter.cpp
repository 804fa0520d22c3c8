#include "reactor/redis/loop_adapter.hpp"

#include <hiredis/hiredis.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <new>

namespace reactor::redis {
namespace {

using std::chrono::milliseconds;

// One per attached context; owned by the context (freed from its cleanup hook).
class Adapter final : public Watcher {
 public:
  Adapter(Loop& loop, redisAsyncContext* ac) : loop_(loop), ac_(ac) {}
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;

  static Adapter* of(void* privdata) { return static_cast<Adapter*>(privdata); }

  void add(std::uint32_t bits) { set_events(events_ | bits); }
  void remove(std::uint32_t bits) { set_events(events_ & ~bits); }

  // hiredis is done with the context (freed); its descriptor closes right after this.
  void cleanup() {
    if (watch_ != kNoWatch) loop_.unwatch(watch_);
    watch_ = kNoWatch;
    cancel(tick_);
    cancel(connect_timer_);
#if HIREDIS_MAJOR >= 1
    cancel(hiredis_timer_);
#endif
    if (dispatching_) {
      dead_ = true;  // on_events deletes us once hiredis has returned
    } else {
      delete this;
    }
  }

  void on_events(std::uint32_t events) override {
    dispatching_ = true;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
      last_read_ = loop_.now();
      redisAsyncHandleRead(ac_);
    }
    if (!dead_ && (events & EPOLLOUT)) redisAsyncHandleWrite(ac_);
    dispatching_ = false;
    if (dead_) delete this;
  }

  void set_timeouts(milliseconds connect, milliseconds command) {
    cancel(connect_timer_);
    cancel(tick_);
    command_timeout_ = command;
    if (connect.count() > 0 && !(ac_->c.flags & REDIS_CONNECTED)) {
      connect_timer_ = loop_.after(connect, [this] {
        connect_timer_ = kNoTimer;
        connect_timed_out();
      });
    }
    if (command.count() > 0) {
      const milliseconds period = std::max(milliseconds(1), command / 4);
      idle_since_ = loop_.now();
      tick_ = loop_.add_timer(period, period, [this] { check_command_timeout(); });
    }
  }

#if HIREDIS_MAJOR >= 1
  // hiredis 1.x's own timer hook (redisAsyncSetTimeout, connect timeouts of redisOptions).
  void schedule(struct timeval tv) {
    cancel(hiredis_timer_);
    const auto delay = milliseconds(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
    hiredis_timer_ = loop_.after(delay, [this] {
      hiredis_timer_ = kNoTimer;
      redisAsyncHandleTimeout(ac_);
    });
  }
#endif

 private:
  void set_events(std::uint32_t events) {
    if (events == events_) return;
    events_ = events;
    if (watch_ == kNoWatch) {
      auto id = loop_.watch(ac_->c.fd, events_, *this);
      if (id) watch_ = *id;
      return;
    }
    loop_.modify(watch_, events_);
  }

  void cancel(TimerId& id) {
    if (id != kNoTimer) loop_.cancel_timer(id);
    id = kNoTimer;
  }

  // What hiredis does itself when a connect fails: tell the connect callback, free the context.
  void connect_timed_out() {
    if (ac_->c.flags & REDIS_CONNECTED) return;
    ac_->c.err = REDIS_ERR_IO;
    std::snprintf(ac_->c.errstr, sizeof ac_->c.errstr, "connect timed out");
    ac_->err = ac_->c.err;
    ac_->errstr = ac_->c.errstr;
    errno = ETIMEDOUT;
    if (ac_->onConnect != nullptr) ac_->onConnect(ac_, REDIS_ERR);
    redisAsyncFree(ac_);  // calls cleanup(): `this` is gone
  }

  // A reply is overdue when commands wait and nothing was read for command_timeout_. Shutting
  // the socket down makes hiredis see the end of the stream on its next read and fail every
  // pending callback through its ordinary error path.
  void check_command_timeout() {
    const auto now = loop_.now();
    // A subscribed context waits for messages, not replies (hiredis 1.x keeps subscription
    // callbacks in `replies` too): it is never timed out.
    if (ac_->replies.head == nullptr || !(ac_->c.flags & REDIS_CONNECTED) ||
        (ac_->c.flags & REDIS_SUBSCRIBED)) {
      idle_since_ = now;
      return;
    }
    idle_since_ = std::max(idle_since_, last_read_);
    if (now - idle_since_ < command_timeout_ || shut_down_) return;
    shut_down_ = true;
    ::shutdown(ac_->c.fd, SHUT_RDWR);
    add(EPOLLIN);
  }

  Loop& loop_;
  redisAsyncContext* ac_;
  WatchId watch_ = kNoWatch;
  std::uint32_t events_ = 0;
  bool dispatching_ = false;
  bool dead_ = false;
  bool shut_down_ = false;
  TimerId connect_timer_ = kNoTimer;
  TimerId tick_ = kNoTimer;
#if HIREDIS_MAJOR >= 1
  TimerId hiredis_timer_ = kNoTimer;
#endif
  milliseconds command_timeout_{0};
  Loop::Clock::time_point idle_since_{};
  Loop::Clock::time_point last_read_{};
};

void add_read(void* privdata) {
  Adapter::of(privdata)->add(EPOLLIN);
}
void del_read(void* privdata) {
  Adapter::of(privdata)->remove(EPOLLIN);
}
void add_write(void* privdata) {
  Adapter::of(privdata)->add(EPOLLOUT);
}
void del_write(void* privdata) {
  Adapter::of(privdata)->remove(EPOLLOUT);
}
void cleanup(void* privdata) {
  Adapter::of(privdata)->cleanup();
}
#if HIREDIS_MAJOR >= 1
void schedule_timer(void* privdata, struct timeval tv) {
  Adapter::of(privdata)->schedule(tv);
}
#endif

}  // namespace

int attach(Loop& loop, redisAsyncContext* ac) {
  if (ac == nullptr || ac->ev.data != nullptr || ac->c.fd < 0) return REDIS_ERR;
  auto* adapter = new (std::nothrow) Adapter(loop, ac);
  if (adapter == nullptr) return REDIS_ERR;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
#if HIREDIS_MAJOR >= 1
  ac->ev.scheduleTimer = schedule_timer;
#endif
  ac->ev.data = adapter;
  // hiredis learns that a non-blocking connect finished from the first write event.
  if (!(ac->c.flags & REDIS_CONNECTED)) adapter->add(EPOLLOUT);
  return REDIS_OK;
}

int set_timeouts(redisAsyncContext* ac, std::chrono::milliseconds connect,
                 std::chrono::milliseconds command) {
  if (ac == nullptr || ac->ev.cleanup != cleanup || ac->ev.data == nullptr) return REDIS_ERR;
  Adapter::of(ac->ev.data)->set_timeouts(connect, command);
  return REDIS_OK;
}

}  // namespace reactor::redis
