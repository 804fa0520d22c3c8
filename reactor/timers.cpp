#include "reactor/timers.hpp"

#include <algorithm>

namespace reactor {

TimerId TimerQueue::add(Clock::time_point deadline, std::chrono::milliseconds period, Task task) {
  std::uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  slot.task = std::move(task);
  slot.period = period;
  slot.armed = true;
  ++live_;
  push({deadline, sequence_++, index, slot.generation});
  return (std::uint64_t{slot.generation} << 32) | index;
}

bool TimerQueue::cancel(TimerId id) {
  auto index = static_cast<std::uint32_t>(id);
  auto generation = static_cast<std::uint32_t>(id >> 32);
  if (index >= slots_.size()) return false;
  Slot& slot = slots_[index];
  if (!slot.armed || slot.generation != generation) return false;
  slot.armed = false;
  slot.task.reset();
  ++slot.generation;
  free_.push_back(index);
  --live_;
  // Cancelled entries stay in the heap until they surface; rebuild when they dominate it.
  if (heap_.size() > 64 && heap_.size() > 2 * live_) compact();
  return true;
}

void TimerQueue::push(const Entry& e) {
  heap_.push_back(e);
  std::push_heap(heap_.begin(), heap_.end(), later);
}

void TimerQueue::pop_stale() {
  while (!heap_.empty()) {
    const Entry& top = heap_.front();
    const Slot& slot = slots_[top.slot];
    if (slot.armed && slot.generation == top.generation) return;
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
  }
}

void TimerQueue::compact() {
  std::erase_if(heap_, [this](const Entry& e) {
    const Slot& slot = slots_[e.slot];
    return !slot.armed || slot.generation != e.generation;
  });
  std::make_heap(heap_.begin(), heap_.end(), later);
}

TimerQueue::Clock::time_point TimerQueue::next_deadline() {
  pop_stale();
  return heap_.empty() ? Clock::time_point::max() : heap_.front().deadline;
}

std::size_t TimerQueue::run_due(Clock::time_point now) {
  std::size_t ran = 0;
  for (;;) {
    pop_stale();
    if (heap_.empty() || heap_.front().deadline > now) return ran;
    Entry entry = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
    // Run a moved-out task: it may add timers (slots_ may reallocate) or cancel itself.
    Task task = std::move(slots_[entry.slot].task);
    bool repeating = slots_[entry.slot].period.count() > 0;
    if (!repeating) {
      Slot& slot = slots_[entry.slot];
      slot.armed = false;
      ++slot.generation;
      free_.push_back(entry.slot);
      --live_;
    }
    ++ran;
    running_ = (std::uint64_t{entry.generation} << 32) | entry.slot;
    task();
    running_ = kNoTimer;
    if (repeating) {
      Slot& slot = slots_[entry.slot];
      if (slot.armed && slot.generation == entry.generation) {  // not cancelled by the task
        slot.task = std::move(task);
        auto next = entry.deadline + slot.period;
        if (next <= now) next = now + slot.period;  // fell behind: do not replay missed ticks
        push({next, sequence_++, entry.slot, entry.generation});
      }
    }
  }
}

}  // namespace reactor
