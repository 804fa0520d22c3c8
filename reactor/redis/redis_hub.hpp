// RedisHub: a Hub whose rooms, private messages, room and member lists and unique names span
// every server on the same Redis. Local delivery stays in a LocalHub; Redis carries the rest:
//
//   {prefix}:room:{room}     pub/sub channel per room (one PSUBSCRIBE {prefix}:room:*); a message
//                            is "{INSTANCE} {BYTES}", its own instance skips it (already sent)
//   {prefix}:to:{INSTANCE}   pub/sub channel for private messages, "{NAME} {BYTES}"
//   {prefix}:nick:{name}     the instance holding NAME: SET NX with a TTL (the lease)
//   {prefix}:members:{INSTANCE}  hash "{TOKEN}/{ROOM}" -> NAME ("" before a name), with a TTL
//   {prefix}:alive:{INSTANCE}    present while the instance runs (TTL)
//
// Names and rooms compare ignoring ASCII case, as in LocalHub: {room} and {name} are folded to
// lower case, while ROOM and NAME in the member hashes are the spellings lists show (NAME as its
// holder claimed it, ROOM as the room's first member spelled it). A room new on this instance
// takes the spelling of the other instances' members, if it has any (two instances creating one
// room at the same moment may each keep their own).
//
// Each instance refreshes its leases every TTL/3, so the names, members and alive key of an
// instance that dies disappear within the TTL; the others notice the missing alive key and tell
// their local members of that instance's rooms that its users left.
//
// The Hub API is synchronous (claim_name returns bool, rooms() returns a list): those rare
// queries use a blocking hiredis connection with a short timeout; publish, join, leave and the
// lease refreshes use an async connection, and messages arrive on a second async connection
// (a subscribed connection takes no other commands). All three run on the Loop's thread.
//
// When Redis is unreachable: publish() delivers nothing and answers the sender with
// `undelivered` (lines are never silently lost); every local member gets `lost_notice` once;
// the hub reconnects with exponential backoff, resubscribes, rewrites its leases and sends
// `back_notice` once. Publishes waiting for Redis are bounded by max_pending (beyond: refused
// like an outage), a slow subscriber is cut off by Redis's client-output-buffer-limit.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "reactor/local_hub.hpp"
#include "reactor/loop.hpp"
#include "reactor/session.hpp"

struct redisAsyncContext;
struct redisContext;

namespace reactor::redis {

struct RedisHubOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::chrono::milliseconds ttl{10000};           // name and membership leases
  std::chrono::milliseconds query_timeout{1000};  // blocking queries and connects
  std::chrono::milliseconds command_timeout{3000};
  std::chrono::milliseconds max_backoff{2000};  // reconnect: 100 ms doubling up to this
  std::size_t max_pending = 10000;              // publishes awaiting Redis's reply
  std::string prefix = "chat";
  // What chat users see; the Hub API has no error return, so the hub tells the sender itself.
  std::string undelivered = "ERR not delivered: chat backend unavailable\n";
  std::string lost_notice = "* chat backend unavailable; reconnecting\n";
  std::string back_notice = "* chat backend back\n";
  std::string departed_prefix = "* ";  // "* NAME left" for the users of an instance that died
  std::string departed_suffix = " left\n";
};

// Parses "redis://HOST:PORT[?ttl=SECONDS]" into `options`; false with a one-line `error`.
bool parse_redis_url(std::string_view url, RedisHubOptions& options, std::string& error);

// What Redis knows of every instance: those alive, and their members.
struct RedisHubSnapshot {
  std::set<std::string> alive;
  // instance -> its "{TOKEN}/{ROOM}" -> NAME fields
  std::map<std::string, std::map<std::string, std::string>> members;
};

class RedisHub final : public Hub {
 public:
  RedisHub(Loop& loop, RedisHubOptions options);
  // Removes this instance's member hash (its nick leases were released as sessions closed, if
  // drain() ran) and disconnects. The loop must still exist.
  ~RedisHub();
  RedisHub(const RedisHub&) = delete;
  RedisHub& operator=(const RedisHub&) = delete;

  // Connects and subscribes, running the loop (not yet running) until linked, bounded by
  // query_timeout + command_timeout. False with one line in `error`; no local fallback.
  bool start(std::string& error);
  bool linked() const noexcept { return linked_; }
  // Runs the loop (no longer running: the server has shut down) until Redis has taken what is
  // queued, such as the departures of the last sessions, at most `limit`.
  void drain(std::chrono::milliseconds limit);
  const std::string& instance() const noexcept { return instance_; }

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
  struct PeerState {
    std::uint64_t token = 0;
    std::string name;
    std::vector<std::string> rooms;  // as listed (spelled in the member hash's fields)
  };
  using Snapshot = RedisHubSnapshot;

  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void on_message(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_published(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_snapshot(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_subscribed(redisAsyncContext* ac, void* reply, void* privdata);

  PeerState& state_of(Peer& peer);
  std::string spelling_of(std::string_view room);
  bool connect_sync(std::string& error);
  bool begin_link(std::string& error);
  void linked_now();
  void complete_link();
  void link_lost();
  void schedule_reconnect();
  void reconnect();
  void refresh();
  void rewrite_leases();
  void set_member(const PeerState& state, std::string_view room);
  void del_member(const PeerState& state, std::string_view room);
  void release_lease(std::string_view name);
  void command(std::initializer_list<std::string_view> args);
  void deliver_room(std::string_view channel, std::string_view payload);
  void deliver_private(std::string_view payload);
  bool query_snapshot(Snapshot& out);
  void departures(Snapshot now);
  void notify_all(std::string_view text);
  std::string key(std::string_view kind, std::string_view name) const;
  std::string field(const PeerState& state, std::string_view room) const;

  Loop& loop_;
  RedisHubOptions options_;
  std::string instance_;
  LocalHub local_;
  std::unordered_map<const Peer*, PeerState> peers_;
  std::unordered_map<std::uint64_t, Peer*> by_token_;
  std::uint64_t next_token_ = 1;

  redisContext* sync_ = nullptr;
  redisAsyncContext* pub_ = nullptr;
  redisAsyncContext* sub_ = nullptr;
  bool pub_ready_ = false;
  int subscriptions_ = 0;  // confirmed of the two
  bool linked_ = false;
  bool lost_notified_ = false;
  bool closing_ = false;
  std::size_t pending_ = 0;
  std::chrono::milliseconds backoff_{100};
  TimerId refresh_timer_ = kNoTimer;
  TimerId reconnect_timer_ = kNoTimer;
  TimerId link_timer_ = kNoTimer;
  Loop::Clock::time_point watch_departures_after_{};
  std::map<std::string, std::map<std::string, std::string>> known_;  // see departures()
  std::string payload_;                                              // reused for every PUBLISH
};

}  // namespace reactor::redis
