// ShardHub: a Hub for sessions spread over several loops (the reuseport model). The directory of
// rooms and names sits behind one mutex; a delivery to a peer on another loop is posted to that
// loop and re-checked there (the peer may have left meanwhile), so Peer::send always runs on the
// peer's own loop thread. Names and rooms compare ignoring ASCII case and are listed as their
// holder or creator spelled them, as in LocalHub.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "reactor/local_hub.hpp"
#include "reactor/loop.hpp"
#include "reactor/session.hpp"

namespace reactor {

class ShardHub {
 public:
  explicit ShardHub(std::vector<Loop*> loops);
  ~ShardHub();
  // The Hub that sessions of loop `shard` use.
  Hub& shard(std::size_t index);

 private:
  class Shard;
  struct Member {
    std::size_t shard;
    Peer* peer;
    std::uint64_t token;  // tells a live peer from a new one at the same address
  };
  struct PeerRecord {
    std::size_t shard;
    std::uint64_t token;
    std::string name;
  };
  using Bytes = std::shared_ptr<const std::vector<std::byte>>;

  PeerRecord& record(std::size_t shard, Peer& peer);  // under mutex_
  void deliver(std::size_t from, const std::vector<Member>& targets,
               std::span<const std::byte> bytes);
  void deliver_here(const std::vector<Member>& targets, const Bytes& bytes);

  std::vector<Loop*> loops_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::mutex mutex_;
  // Keys are display spellings, compared ignoring case.
  std::map<std::string, std::vector<Member>, NameLess> rooms_;  // guarded by mutex_
  std::map<std::string, Member, NameLess> by_name_;             // guarded by mutex_
  std::unordered_map<const Peer*, PeerRecord> peers_;           // guarded by mutex_
  std::uint64_t next_token_ = 1;                                // guarded by mutex_
};

}  // namespace reactor
