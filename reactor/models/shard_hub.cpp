#include "reactor/models/shard_hub.hpp"

#include <algorithm>

namespace reactor {

class ShardHub::Shard final : public Hub {
 public:
  Shard(ShardHub& hub, std::size_t index) : hub_(hub), index_(index) {}

  void join(std::string_view room, Peer& peer) override {
    std::lock_guard lock(hub_.mutex_);
    auto& rec = hub_.record(index_, peer);
    auto it = hub_.rooms_.find(room);
    if (it == hub_.rooms_.end())
      it = hub_.rooms_.emplace(std::string(room), std::vector<Member>{}).first;
    auto& members = it->second;
    bool present = std::any_of(members.begin(), members.end(),
                               [&](const Member& m) { return m.peer == &peer; });
    if (!present) members.push_back({index_, &peer, rec.token});
  }

  void leave(std::string_view room, Peer& peer) override {
    std::lock_guard lock(hub_.mutex_);
    auto it = hub_.rooms_.find(room);
    if (it == hub_.rooms_.end()) return;
    std::erase_if(it->second, [&](const Member& m) { return m.peer == &peer; });
    if (it->second.empty()) hub_.rooms_.erase(it);
  }

  void publish(std::string_view room, std::span<const std::byte> bytes,
               const Peer* except) override {
    std::vector<Member> targets;
    {
      std::lock_guard lock(hub_.mutex_);
      auto it = hub_.rooms_.find(room);
      if (it == hub_.rooms_.end()) return;
      for (const auto& m : it->second) {
        if (m.peer != except) targets.push_back(m);
      }
    }
    hub_.deliver(index_, targets, bytes);
  }

  bool claim_name(std::string_view name, Peer& peer) override {
    std::lock_guard lock(hub_.mutex_);
    auto holder = hub_.by_name_.find(name);
    if (holder != hub_.by_name_.end()) {
      if (holder->second.peer != &peer) return false;
      if (holder->first == name) return true;
      // A new spelling of its own name: erased below and listed as spelled now.
    }
    auto& rec = hub_.record(index_, peer);
    if (!rec.name.empty()) hub_.by_name_.erase(rec.name);
    rec.name = std::string(name);
    hub_.by_name_.emplace(rec.name, Member{index_, &peer, rec.token});
    return true;
  }

  void release_name(Peer& peer) override {
    std::lock_guard lock(hub_.mutex_);
    auto it = hub_.peers_.find(&peer);
    if (it == hub_.peers_.end() || it->second.name.empty()) return;
    hub_.by_name_.erase(it->second.name);
    it->second.name.clear();
  }

  bool send_to(std::string_view name, std::span<const std::byte> bytes) override {
    std::vector<Member> target;
    {
      std::lock_guard lock(hub_.mutex_);
      auto it = hub_.by_name_.find(name);
      if (it == hub_.by_name_.end()) return false;
      target.push_back(it->second);
    }
    hub_.deliver(index_, target, bytes);
    return true;
  }

  std::vector<RoomInfo> rooms() override {
    std::lock_guard lock(hub_.mutex_);
    std::vector<RoomInfo> out;
    for (const auto& [name, members] : hub_.rooms_) out.push_back({name, members.size()});
    return out;
  }

  std::vector<std::string> members(std::string_view room) override {
    std::lock_guard lock(hub_.mutex_);
    std::vector<std::string> out;
    auto it = hub_.rooms_.find(room);
    if (it == hub_.rooms_.end()) return out;
    for (const auto& m : it->second) {
      auto rec = hub_.peers_.find(m.peer);
      if (rec != hub_.peers_.end() && !rec->second.name.empty()) out.push_back(rec->second.name);
    }
    std::sort(out.begin(), out.end(), NameLess{});
    return out;
  }

  void forget(Peer& peer) override {
    std::lock_guard lock(hub_.mutex_);
    auto it = hub_.peers_.find(&peer);
    if (it == hub_.peers_.end()) return;
    for (auto room = hub_.rooms_.begin(); room != hub_.rooms_.end();) {
      std::erase_if(room->second, [&](const Member& m) { return m.peer == &peer; });
      room = room->second.empty() ? hub_.rooms_.erase(room) : std::next(room);
    }
    if (!it->second.name.empty()) hub_.by_name_.erase(it->second.name);
    hub_.peers_.erase(it);
  }

 private:
  ShardHub& hub_;
  std::size_t index_;
};

ShardHub::ShardHub(std::vector<Loop*> loops) : loops_(std::move(loops)) {
  for (std::size_t i = 0; i < loops_.size(); ++i)
    shards_.push_back(std::make_unique<Shard>(*this, i));
}

ShardHub::~ShardHub() = default;

Hub& ShardHub::shard(std::size_t index) {
  return *shards_[index];
}

ShardHub::PeerRecord& ShardHub::record(std::size_t shard, Peer& peer) {
  auto it = peers_.find(&peer);
  if (it == peers_.end()) it = peers_.emplace(&peer, PeerRecord{shard, next_token_++, {}}).first;
  return it->second;
}

void ShardHub::deliver(std::size_t from, const std::vector<Member>& targets,
                       std::span<const std::byte> bytes) {
  // Same loop: send now (only this thread can forget these peers, so they are alive).
  std::vector<std::vector<Member>> remote(loops_.size());
  for (const auto& m : targets) {
    if (m.shard == from) {
      m.peer->send(bytes);
    } else {
      remote[m.shard].push_back(m);
    }
  }
  Bytes shared;
  for (std::size_t shard = 0; shard < remote.size(); ++shard) {
    if (remote[shard].empty()) continue;
    if (!shared)
      shared = std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end());
    loops_[shard]->post(
        [this, members = std::move(remote[shard]), shared] { deliver_here(members, shared); });
  }
}

void ShardHub::deliver_here(const std::vector<Member>& targets, const Bytes& bytes) {
  std::vector<Peer*> alive;
  {
    std::lock_guard lock(mutex_);
    for (const auto& m : targets) {
      auto it = peers_.find(m.peer);
      if (it != peers_.end() && it->second.token == m.token) alive.push_back(m.peer);
    }
  }
  // On the peers' own loop: nothing can forget them between the check and the send.
  for (Peer* peer : alive) peer->send(*bytes);
}

}  // namespace reactor
