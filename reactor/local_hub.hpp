// LocalHub: the Hub for sessions that all live on one thread (the epoll model, unit tests).
// A plain map; not thread-safe (the thread model wraps it in a mutex).
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "reactor/session.hpp"

namespace reactor {

class LocalHub final : public Hub {
 public:
  void join(std::string_view room, Peer& peer) override;
  void leave(std::string_view room, Peer& peer) override;
  void publish(std::string_view room, std::span<const std::byte> bytes,
               const Peer* except) override;
  bool claim_name(std::string_view name, Peer& peer) override;
  void release_name(Peer& peer) override;
  bool send_to(std::string_view name, std::span<const std::byte> bytes) override;
  std::vector<RoomInfo> rooms() override;
  std::vector<std::string> members(std::string_view room) override;
  void forget(Peer& peer) override;

 private:
  std::map<std::string, std::vector<Peer*>, std::less<>> rooms_;
  std::map<std::string, Peer*, std::less<>> by_name_;
  std::unordered_map<const Peer*, std::string> names_;
  std::vector<Peer*> scratch_;  // publish iterates over a copy: sends may change membership
};

}  // namespace reactor
