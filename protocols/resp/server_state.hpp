// What every session of one resp server shares (the store, the configuration, pub/sub counts,
// who runs active expiry), and what each session keeps about its own client.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocols/resp/parser.hpp"
#include "protocols/resp/store.hpp"

namespace reactor::protocols::resp {

struct RespConfig {
  ParserLimits limits;
  std::size_t maxmemory = 0;  // bytes; 0: no limit
  std::chrono::milliseconds sweep_period{100};
};

// Subscriber counts per channel, so PUBLISH can answer how many received the message (the Hub
// delivers but does not count).
class ChannelCounts {
 public:
  void add(std::string_view channel);
  void remove(std::string_view channel);
  std::size_t count(std::string_view channel);

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> counts_;
};

// Milliseconds since the epoch; replaceable so tests can move time.
using Clock = std::int64_t (*)();
std::int64_t system_clock_ms();

struct ServerState {
  explicit ServerState(RespConfig c)
      : config(std::move(c)), store(make_memory_store()), started_ms(system_clock_ms()) {}
  RespConfig config;
  std::unique_ptr<Store> store;
  ChannelCounts channels;
  std::atomic<bool> sweeper_claimed{false};  // one session's timer sweeps for everyone
  std::atomic<std::uint64_t> next_client_id{1};
  std::atomic<std::uint64_t> expired_keys{0};
  Clock clock = &system_clock_ms;
  std::int64_t started_ms;
};

struct ClientState {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> channels;  // subscribed, in subscription order
  bool quit = false;                  // reply, then close
};

}  // namespace reactor::protocols::resp
