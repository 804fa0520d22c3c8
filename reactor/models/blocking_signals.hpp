// BlockedSignals: the blocking models' way to take SIGINT/SIGTERM (and SIGCHLD under fork)
// through a signalfd. Blocks the signals in the calling thread, so threads started afterwards
// inherit the mask, and restores the previous mask when destroyed. Other threads of the process
// must block these signals too, or the kernel may deliver them there.
#pragma once

#include <signal.h>

#include <initializer_list>
#include <system_error>

#include "reactor/fd.hpp"

namespace reactor {

class BlockedSignals {
 public:
  explicit BlockedSignals(std::initializer_list<int> signals);
  ~BlockedSignals();
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

  std::error_code error() const noexcept { return error_; }
  int fd() const noexcept { return fd_.get(); }
  // The next pending signal's number, or 0 when none is pending.
  int take() noexcept;
  // The mask the calling thread had before.
  const sigset_t& previous_mask() const noexcept { return previous_; }
  // In a forked child that keeps the mask as it is: closes the descriptor, restores nothing.
  void abandon() noexcept;

 private:
  sigset_t previous_{};
  Fd fd_;
  std::error_code error_;
  bool restore_ = false;
};

}  // namespace reactor
