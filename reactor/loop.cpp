#include "reactor/loop.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "reactor/error.hpp"
#include "reactor/log.hpp"

namespace reactor {
namespace {
constexpr std::size_t kMaxEventsPerWait = 256;
// The epoll backend's wait buffer: one page, 341 events.
constexpr std::size_t kWaitPageBytes = 4096;

// The descriptor half of a WatchId (the table's index).
std::uint32_t fd_of(std::uint64_t id) {
  return static_cast<std::uint32_t>(id);
}

// Explicit, although Linux gives both the same values.
short poll_events_of(std::uint32_t epoll_events) {
  short out = 0;
  if (epoll_events & EPOLLIN) out |= POLLIN;
  if (epoll_events & EPOLLPRI) out |= POLLPRI;
  if (epoll_events & EPOLLOUT) out |= POLLOUT;
  if (epoll_events & EPOLLRDHUP) out |= POLLRDHUP;
  return out;
}
std::uint32_t epoll_events_of(short revents) {
  std::uint32_t out = 0;
  if (revents & POLLIN) out |= EPOLLIN;
  if (revents & POLLPRI) out |= EPOLLPRI;
  if (revents & POLLOUT) out |= EPOLLOUT;
  if (revents & POLLRDHUP) out |= EPOLLRDHUP;
  if (revents & POLLHUP) out |= EPOLLHUP;
  if (revents & (POLLERR | POLLNVAL)) out |= EPOLLERR;
  return out;
}
}  // namespace

const char* backend_name(Backend backend) noexcept {
  switch (backend) {
    case Backend::epoll:
      return "epoll";
    case Backend::poll:
      return "poll";
    case Backend::select:
      return "select";
  }
  return "?";
}

// The eventfd that post() and stop() write to wake a blocked epoll_wait.
class Loop::Wakeup final : public Watcher {
 public:
  explicit Wakeup(Loop& loop, Fd fd) : loop_(loop), fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }
  void notify() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));  // EAGAIN: already set
  }
  void on_events(std::uint32_t) override {
    std::uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &count, sizeof(count));
    loop_.run_posted();
  }

 private:
  Loop& loop_;
  Fd fd_;
};

class Loop::SignalWatcher final : public Watcher {
 public:
  SignalWatcher(Fd fd, SignalHandler handler, void* context)
      : fd_(std::move(fd)), handler_(handler), context_(context) {}
  int fd() const { return fd_.get(); }
  WatchId id = kNoWatch;
  void on_events(std::uint32_t) override {
    // Several at once; a short read means none is left (no second read to learn EAGAIN).
    signalfd_siginfo infos[8];
    for (;;) {
      ssize_t n = ::read(fd_.get(), infos, sizeof(infos));
      if (n < static_cast<ssize_t>(sizeof(infos[0]))) return;
      const auto count = static_cast<std::size_t>(n) / sizeof(infos[0]);
      for (std::size_t i = 0; i < count; ++i) {
        handler_(static_cast<int>(infos[i].ssi_signo), context_);
      }
      if (count < std::size(infos)) return;
    }
  }

 private:
  Fd fd_;
  SignalHandler handler_;
  void* context_;
};

Result<std::unique_ptr<Loop>> Loop::create(Backend backend) {
  Fd epoll;
  if (backend == Backend::epoll) {
    epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) return last_errno();
  }
  Fd event(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!event) return last_errno();
  std::unique_ptr<Loop> loop(new Loop(std::move(epoll), backend));
  loop->wakeup_ = std::make_unique<Wakeup>(*loop, std::move(event));
  auto id = loop->watch(loop->wakeup_->fd(), EPOLLIN, *loop->wakeup_);
  if (!id) return id.error();
  return loop;
}

Loop::WaitPage::WaitPage() {
  void* page =
      ::mmap(nullptr, kWaitPageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return;
  // Before Linux 4.14 (EINVAL) the page is shared with children like any other: still correct.
  [[maybe_unused]] int rc = ::madvise(page, kWaitPageBytes, MADV_WIPEONFORK);
  events = static_cast<epoll_event*>(page);
  capacity = kWaitPageBytes / sizeof(epoll_event);
}

Loop::WaitPage::~WaitPage() {
  if (events != nullptr) ::munmap(events, kWaitPageBytes);
}

Loop::Loop(Fd epoll, Backend backend)
    : backend_(backend), epoll_(std::move(epoll)), now_(Clock::now()) {
  if (backend_ != Backend::epoll || wait_page_.events == nullptr) {
    events_.resize(kMaxEventsPerWait);
  }
}

Loop::~Loop() {
  drain_retired();
}

Result<WatchId> Loop::watch(int fd, std::uint32_t events, Watcher& watcher) {
  if (fd < 0) return errno_code(EBADF);
  if (backend_ == Backend::select && fd >= FD_SETSIZE) return make_error_code(Errc::fd_too_large);
  const auto index = static_cast<std::uint32_t>(fd);
  if (index >= watchers_.size()) {
    watchers_.grow_to(index + 1, nullptr);
    generations_.grow_to(index + 1, 1);
  }
  const bool taken = watchers_[index] != nullptr;
  if (taken && backend_ != Backend::epoll) return errno_code(EEXIST);
  std::uint32_t generation = generations_[index];
  if (taken && ++generation == 0) generation = 1;
  const WatchId id = make_watch_id(fd, generation);
  if (backend_ == Backend::epoll) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return last_errno();
    // Taken, yet the kernel took the ADD: it had dropped the old watch (its descriptor was
    // closed without unwatch). The new generation makes that one's events in flight stale.
    generations_[index] = generation;
  } else {
    if (poll_index_.size() < watchers_.size()) poll_index_.resize(watchers_.size());
    poll_index_[index] = static_cast<std::uint32_t>(pollfds_.size());
    pollfds_.push_back({fd, poll_events_of(events), 0});
    poll_ids_.push_back(id);
  }
  watchers_[index] = &watcher;
  return id;
}

bool Loop::watching(WatchId id) const noexcept {
  const std::uint32_t index = fd_of(id);
  return index < watchers_.size() && watchers_[index] != nullptr &&
         generations_[index] == watch_generation(id);
}

std::error_code Loop::modify(WatchId id, std::uint32_t events) {
  if (!watching(id)) return errno_code(ENOENT);
  const std::uint32_t index = fd_of(id);
  if (backend_ != Backend::epoll) {
    pollfds_[poll_index_[index]].events = poll_events_of(events);
    return {};
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, static_cast<int>(index), &ev) != 0) {
    return last_errno();
  }
  return {};
}

void Loop::unwatch(WatchId id) {
  release(id, true);
}

void Loop::unwatch_before_close(WatchId id) {
  release(id, false);
}

void Loop::release(WatchId id, bool delete_from_epoll) {
  if (!watching(id)) return;
  const std::uint32_t index = fd_of(id);
  if (backend_ == Backend::epoll) {
    if (delete_from_epoll) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, static_cast<int>(index), nullptr);
    }
  } else {
    // Swap-remove: the last entry takes the freed place, its descriptor learns its new index.
    const std::uint32_t at = poll_index_[index];
    const std::uint32_t last = static_cast<std::uint32_t>(pollfds_.size() - 1);
    if (at != last) {
      pollfds_[at] = pollfds_[last];
      poll_ids_[at] = poll_ids_[last];
      poll_index_[fd_of(poll_ids_[at])] = at;
    }
    pollfds_.pop_back();
    poll_ids_.pop_back();
  }
  watchers_[index] = nullptr;
  // A new generation: events already fetched for the old one are recognised as stale.
  if (++generations_[index] == 0) generations_[index] = 1;
}

void Loop::dispatch(std::uint64_t data, std::uint32_t events) {
  if (!watching(data)) {
    ++stats_.stale_events;
    return;
  }
  ++stats_.events;
  watchers_[fd_of(data)]->on_events(events);
}

int Loop::wait_timeout_ms(std::chrono::milliseconds max_wait) {
  auto deadline = timers_.next_deadline();
  auto limit = max_wait.count() < 0 ? std::numeric_limits<std::int64_t>::max() : max_wait.count();
  if (deadline != Clock::time_point::max()) {
    auto until = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (until < 0) until = 0;
    if (until < limit) limit = until;
  }
  if (limit > std::numeric_limits<int>::max()) return -1;
  return static_cast<int>(limit);
}

std::error_code Loop::run_once(std::chrono::milliseconds max_wait) {
  ++stats_.iterations;
  int timeout = wait_timeout_ms(max_wait);
  int n;
  const epoll_event* ready;
  if (backend_ == Backend::epoll) {
    const bool page = wait_page_.events != nullptr;
    epoll_event* buffer = page ? wait_page_.events : events_.data();
    const std::size_t capacity = page ? wait_page_.capacity : events_.size();
    n = ::epoll_wait(epoll_.get(), buffer, static_cast<int>(capacity), timeout);
    ready = buffer;
  } else {
    n = backend_ == Backend::poll ? wait_poll(timeout) : wait_select(timeout);
    ready = events_.data();  // after the wait: it may have grown it
  }
  std::error_code failure;
  if (n < 0 && errno != EINTR) failure = last_errno();
  now_ = Clock::now();
  for (int i = 0; i < n; ++i) {
    dispatch(ready[static_cast<std::size_t>(i)].data.u64,
             ready[static_cast<std::size_t>(i)].events);
  }
  drain_retired();
  timers_.run_due(now_);
  // Everything sessions sent in this iteration goes out now; on_close callbacks (run by
  // drain_retired) may send more, so repeat until nothing is left.
  do {
    flush_deferred();
    drain_retired();
  } while (!deferred_.empty());
  return failure;
}

int Loop::wait_poll(int timeout_ms) {
  int rc = ::poll(pollfds_.data(), pollfds_.size(), timeout_ms);
  if (rc <= 0) return rc;
  // Collected first and dispatched by run_once: a watcher may add or swap-remove entries.
  if (events_.size() < static_cast<std::size_t>(rc)) events_.resize(static_cast<std::size_t>(rc));
  int n = 0;
  for (std::size_t i = 0; i < pollfds_.size() && n < rc; ++i) {
    if (pollfds_[i].revents == 0) continue;
    events_[static_cast<std::size_t>(n)].events = epoll_events_of(pollfds_[i].revents);
    events_[static_cast<std::size_t>(n)].data.u64 = poll_ids_[i];
    ++n;
  }
  return n;
}

int Loop::wait_select(int timeout_ms) {
  fd_set readable, writable;
  FD_ZERO(&readable);
  FD_ZERO(&writable);
  int max_fd = -1;
  for (const pollfd& p : pollfds_) {  // every fd < FD_SETSIZE: watch() checked
    if (p.events & POLLIN) FD_SET(p.fd, &readable);
    if (p.events & POLLOUT) FD_SET(p.fd, &writable);
    if ((p.events & (POLLIN | POLLOUT)) && p.fd > max_fd) max_fd = p.fd;
  }
  timeval tv{};
  timeval* wait = nullptr;
  if (timeout_ms >= 0) {
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    wait = &tv;
  }
  int rc = ::select(max_fd + 1, &readable, &writable, nullptr, wait);
  if (rc <= 0) return rc;
  if (events_.size() < pollfds_.size()) events_.resize(pollfds_.size());
  int n = 0;
  for (std::size_t i = 0; i < pollfds_.size(); ++i) {
    const pollfd& p = pollfds_[i];
    std::uint32_t events = 0;
    if ((p.events & POLLIN) && FD_ISSET(p.fd, &readable)) events |= EPOLLIN;
    if ((p.events & POLLOUT) && FD_ISSET(p.fd, &writable)) events |= EPOLLOUT;
    if (events == 0) continue;
    events_[static_cast<std::size_t>(n)].events = events;
    events_[static_cast<std::size_t>(n)].data.u64 = poll_ids_[i];
    ++n;
  }
  return n;
}

std::error_code Loop::run() {
  while (!stop_.load(std::memory_order_acquire)) {
    // The wait fails only for a broken loop (EBADF, EFAULT, EINVAL): retrying would spin.
    if (auto ec = run_once(std::chrono::milliseconds(-1))) {
      log(LogLevel::error, "%s: %s; the loop stops",
          backend_ == Backend::epoll ? "epoll_wait" : backend_name(backend_), ec.message().c_str());
      return ec;
    }
  }
  return {};
}

void Loop::defer_flush(Flushable& f, FlushCall flush) {
  if (f.flush_slot_ != 0) return;
  deferred_.push_back({&f, flush});
  f.flush_slot_ = static_cast<std::uint32_t>(deferred_.size());
}

void Loop::cancel_flush(Flushable& f) noexcept {
  if (f.flush_slot_ == 0) return;
  const std::uint32_t index = f.flush_slot_ - 1;
  const Deferred last = deferred_.back();
  deferred_[index] = last;
  last.object->flush_slot_ = index + 1;
  deferred_.pop_back();
  f.flush_slot_ = 0;
}

void Loop::flush_deferred() {
  // A flush never runs a session callback and nothing is destroyed before drain_retired, so
  // every pointer in the batch stays valid; a flush may queue new work for the next round.
  flushing_.swap(deferred_);
  for (const Deferred& d : flushing_) d.object->flush_slot_ = 0;
  for (const Deferred& d : flushing_) d.flush(*d.object);
  flushing_.clear();
}

void Loop::stop() noexcept {
  stop_.store(true, std::memory_order_release);
  wakeup_->notify();
}

void Loop::post(Task task) {
  {
    std::lock_guard lock(post_mutex_);
    posted_.push_back(std::move(task));
  }
  wakeup_->notify();
}

void Loop::run_posted() {
  {
    std::lock_guard lock(post_mutex_);
    running_.swap(posted_);
  }
  for (auto& task : running_) task();
  running_.clear();
}

TimerId Loop::add_timer(std::chrono::milliseconds delay, std::chrono::milliseconds period,
                        Task task) {
  return timers_.add(Clock::now() + delay, period, std::move(task));
}

void Loop::drain_retired() {
  // finalize() may retire more (a session's on_close publishing to a peer that then fails).
  // Both vectors keep their capacity: no allocation per batch.
  while (!retired_.empty()) {
    retiring_.swap(retired_);
    for (const RetiredObject& r : retiring_) r.call(r.object, false);
    for (const RetiredObject& r : retiring_) r.call(r.object, true);
    retiring_.clear();
  }
}

std::error_code Loop::handle_signals(std::initializer_list<int> signals, SignalHandler handler,
                                     void* context) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) return errno_code(rc);
  Fd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return last_errno();
  if (signals_) unwatch(signals_->id);
  auto watcher = std::make_unique<SignalWatcher>(std::move(fd), handler, context);
  auto id = watch(watcher->fd(), EPOLLIN, *watcher);
  if (!id) return id.error();
  watcher->id = *id;
  signals_ = std::move(watcher);
  return {};
}

std::array<int, 3> Loop::own_descriptors() const noexcept {
  return {epoll_.get(), wakeup_ ? wakeup_->fd() : -1, signals_ ? signals_->fd() : -1};
}

std::error_code block_signals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) return errno_code(rc);
  return {};
}

}  // namespace reactor
