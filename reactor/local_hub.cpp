#include "reactor/local_hub.hpp"

#include <algorithm>

namespace reactor {

void LocalHub::join(std::string_view room, Peer& peer) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) it = rooms_.emplace(std::string(room), std::vector<Peer*>{}).first;
  auto& members = it->second;
  if (std::find(members.begin(), members.end(), &peer) == members.end()) members.push_back(&peer);
}

void LocalHub::leave(std::string_view room, Peer& peer) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  auto& members = it->second;
  members.erase(std::remove(members.begin(), members.end(), &peer), members.end());
  if (members.empty()) rooms_.erase(it);
}

void LocalHub::publish(std::string_view room, std::span<const std::byte> bytes,
                       const Peer* except) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  // A send may drop a slow peer; in the epoll model that never runs its session inside this
  // call, but a copy keeps us safe against any Hub change a send could cause.
  std::vector<Peer*> targets;
  targets.swap(scratch_);
  targets.assign(it->second.begin(), it->second.end());
  for (Peer* peer : targets) {
    if (peer != except) peer->send(bytes);
  }
  targets.clear();
  scratch_.swap(targets);
}

bool LocalHub::claim_name(std::string_view name, Peer& peer) {
  auto holder = by_name_.find(name);
  if (holder != by_name_.end()) {
    if (holder->second != &peer) return false;
    if (holder->first == name) return true;
    by_name_.erase(holder);  // a new spelling of its own name: listed as spelled now
    by_name_.emplace(std::string(name), &peer);
    names_[&peer] = std::string(name);
    return true;
  }
  release_name(peer);
  by_name_.emplace(std::string(name), &peer);
  names_[&peer] = std::string(name);
  return true;
}

void LocalHub::release_name(Peer& peer) {
  auto it = names_.find(&peer);
  if (it == names_.end()) return;
  by_name_.erase(it->second);
  names_.erase(it);
}

bool LocalHub::send_to(std::string_view name, std::span<const std::byte> bytes) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return false;
  it->second->send(bytes);
  return true;
}

std::vector<RoomInfo> LocalHub::rooms() {
  std::vector<RoomInfo> out;
  out.reserve(rooms_.size());
  for (const auto& [name, members] : rooms_) out.push_back({name, members.size()});
  return out;
}

std::vector<std::string> LocalHub::members(std::string_view room) {
  std::vector<std::string> out;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return out;
  for (const Peer* peer : it->second) {
    auto name = names_.find(peer);
    if (name != names_.end()) out.push_back(name->second);
  }
  std::sort(out.begin(), out.end(), NameLess{});
  return out;
}

std::string_view LocalHub::room_name(std::string_view room) const {
  auto it = rooms_.find(room);
  return it == rooms_.end() ? std::string_view{} : std::string_view(it->first);
}

void LocalHub::forget(Peer& peer) {
  for (auto it = rooms_.begin(); it != rooms_.end();) {
    auto& members = it->second;
    members.erase(std::remove(members.begin(), members.end(), &peer), members.end());
    it = members.empty() ? rooms_.erase(it) : std::next(it);
  }
  release_name(peer);
}

}  // namespace reactor
