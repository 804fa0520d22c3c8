// TimerQueue: one-shot and repeating timers ordered by deadline (a binary heap). Cancellation
// is O(1): the slot's generation moves on and its heap entry is skipped when it surfaces.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "reactor/task.hpp"
#include "reactor/timer_id.hpp"

namespace reactor {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  TimerId add(Clock::time_point deadline, std::chrono::milliseconds period, Task task);
  bool cancel(TimerId id);
  // Earliest live deadline, or time_point::max() when there is none.
  Clock::time_point next_deadline();
  // Runs every timer due at `now`, in deadline order (ties in insertion order). Repeating timers
  // are re-armed from their deadline; a task may add or cancel timers, itself included.
  std::size_t run_due(Clock::time_point now);
  std::size_t size() const noexcept { return live_; }
  // The id of the timer whose task run_due is running (kNoTimer otherwise).
  TimerId running() const noexcept { return running_; }
  bool armed(TimerId id) const noexcept {
    const auto index = static_cast<std::uint32_t>(id);
    return index < slots_.size() && slots_[index].armed &&
           slots_[index].generation == static_cast<std::uint32_t>(id >> 32);
  }

 private:
  struct Slot {
    Task task;
    std::chrono::milliseconds period{0};
    std::uint32_t generation = 1;
    bool armed = false;
  };
  struct Entry {
    Clock::time_point deadline;
    std::uint64_t sequence;
    std::uint32_t slot;
    std::uint32_t generation;
  };
  static bool later(const Entry& a, const Entry& b) noexcept {
    return a.deadline != b.deadline ? a.deadline > b.deadline : a.sequence > b.sequence;
  }
  void push(const Entry& e);
  void pop_stale();
  void compact();

  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::vector<Entry> heap_;
  std::uint64_t sequence_ = 0;
  std::size_t live_ = 0;
  TimerId running_ = kNoTimer;
};

}  // namespace reactor
