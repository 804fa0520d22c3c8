// LocalHub: the Hub for sessions that all live on one thread (the epoll model, the fork model's
// parent, unit tests). A plain map; not thread-safe (the thread model wraps it in a mutex).
//
// Names and rooms compare ignoring ASCII case (NameLess): "Alice" and "alice" are one name, "Dev"
// and "dev" one room; bytes outside A-Z compare as they are (no Unicode folding). Lists show a
// name as its holder last claimed it and a room as the peer that created it spelled it, for as
// long as the room has members.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "reactor/session.hpp"

namespace reactor {

constexpr char fold_ascii(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `name` with A-Z folded to a-z: the key under which Hubs compare names and rooms.
inline std::string fold_name(std::string_view name) {
  std::string key(name);
  for (char& c : key) c = fold_ascii(c);
  return key;
}

// Whether two names or rooms are the same, ignoring ASCII case.
constexpr bool same_name(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (fold_ascii(a[i]) != fold_ascii(b[i])) return false;
  }
  return true;
}

// Orders names and rooms ignoring ASCII case; transparent, so maps keyed by a display spelling
// are searched with any spelling and no allocation.
struct NameLess {
  using is_transparent = void;
  constexpr bool operator()(std::string_view a, std::string_view b) const noexcept {
    const std::size_t n = a.size() < b.size() ? a.size() : b.size();
    for (std::size_t i = 0; i < n; ++i) {
      const auto x = static_cast<unsigned char>(fold_ascii(a[i]));
      const auto y = static_cast<unsigned char>(fold_ascii(b[i]));
      if (x != y) return x < y;
    }
    return a.size() < b.size();
  }
};

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

  // The spelling `room` is listed under (its creator's); empty if it has no members.
  std::string_view room_name(std::string_view room) const;

 private:
  // Keys are display spellings, compared ignoring case.
  std::map<std::string, std::vector<Peer*>, NameLess> rooms_;
  std::map<std::string, Peer*, NameLess> by_name_;
  std::unordered_map<const Peer*, std::string> names_;
  std::vector<Peer*> scratch_;  // publish iterates over a copy: sends may change membership
};

}  // namespace reactor
