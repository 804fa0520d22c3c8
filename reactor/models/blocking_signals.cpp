#include "reactor/models/blocking_signals.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

#include "reactor/error.hpp"

namespace reactor {

BlockedSignals::BlockedSignals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, &previous_); rc != 0) {
    error_ = errno_code(rc);
    return;
  }
  restore_ = true;
  fd_ = Fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd_) error_ = last_errno();
}

BlockedSignals::~BlockedSignals() {
  fd_.reset();
  if (restore_) ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

int BlockedSignals::take() noexcept {
  if (!fd_) return 0;
  signalfd_siginfo info;
  for (;;) {
    ssize_t n = ::read(fd_.get(), &info, sizeof(info));
    if (n == static_cast<ssize_t>(sizeof(info))) return static_cast<int>(info.ssi_signo);
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
}

void BlockedSignals::abandon() noexcept {
  fd_.reset();
  restore_ = false;
}

}  // namespace reactor
