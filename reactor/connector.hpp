// Connector: one nonblocking connect with a timeout. Refused, unreachable and timed out come
// back as distinct errors (ECONNREFUSED, ENETUNREACH/EHOSTUNREACH, ETIMEDOUT).
#pragma once

#include <chrono>
#include <functional>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/loop.hpp"

namespace reactor {

class Connector final : public Watcher {
 public:
  // Called once, on the loop thread, with a connected nonblocking socket or the error. The
  // Connector may be destroyed from inside the callback.
  using Callback = std::function<void(Result<Fd>)>;

  Connector(Loop& loop, Address target, std::chrono::milliseconds timeout, Callback done);
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Starts connecting; an immediate outcome is still delivered through the loop (post).
  void start();
  void cancel();  // no callback after this

  void on_events(std::uint32_t events) override;

 private:
  void finish(Result<Fd> outcome);

  Loop& loop_;
  Address target_;
  std::chrono::milliseconds timeout_;
  Callback done_;
  Fd fd_;
  WatchId watch_ = kNoWatch;
  TimerId timer_ = kNoTimer;
  std::shared_ptr<bool> alive_;  // lets a posted outcome see that we are gone
};

}  // namespace reactor
