#include "reactor/redis/redis_hub.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>

#include "reactor/redis/loop_adapter.hpp"

namespace reactor::redis {
namespace {

using std::chrono::milliseconds;

// The live instances and every member hash: [[alive key, ...], hash key, [field, value, ...],
// ...]. ARGV: the members pattern, the alive pattern.
constexpr std::string_view kSnapshotScript =
    "local out = {redis.call('KEYS', ARGV[2])} "
    "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
    "  out[#out + 1] = k "
    "  out[#out + 1] = redis.call('HGETALL', k) "
    "end "
    "return out";
// KEYS[1] the members hash, KEYS[2] the alive key, KEYS[3..] our names; ARGV instance, ttl ms.
// A name another instance took meanwhile stays theirs.
constexpr std::string_view kRefreshScript =
    "for i = 3, #KEYS do "
    "  local v = redis.call('GET', KEYS[i]) "
    "  if v == false or v == ARGV[1] then redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end "
    "end "
    "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) "
    "return 1";
constexpr std::string_view kReleaseScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string_view text_of(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS &&
                       r->type != REDIS_REPLY_ERROR)) {
    return {};
  }
  return {r->str, r->len};
}

std::string number(std::uint64_t n) {
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  return std::string(digits, end);
}

std::string random_instance() {
  std::random_device device;
  std::uint64_t bits = (std::uint64_t{device()} << 32) ^ device() ^ std::uint64_t(::getpid());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits));
  return hex;
}

struct timeval to_timeval(milliseconds ms) {
  return {static_cast<time_t>(ms.count() / 1000),
          static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

}  // namespace

bool parse_redis_url(std::string_view url, RedisHubOptions& options, std::string& error) {
  constexpr std::string_view kScheme = "redis://";
  const auto bad = [&](std::string_view why) {
    error = std::string(why) + ": '" + std::string(url) +
            "' (expected redis://HOST:PORT[?ttl=SECONDS])";
    return false;
  };
  if (!url.starts_with(kScheme)) return bad("not a redis:// URL");
  std::string_view rest = url.substr(kScheme.size());
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad("missing host or port");
  std::string_view host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string_view port = rest.substr(colon + 1);
  int p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc{} || end != port.data() + port.size() || p < 1 || p > 65535) {
    return bad("bad port");
  }
  if (!query.empty()) {
    if (!query.starts_with("ttl=")) return bad("unknown parameter");
    const std::string seconds(query.substr(4));
    char* stop = nullptr;
    const double value = std::strtod(seconds.c_str(), &stop);
    if (seconds.empty() || stop != seconds.c_str() + seconds.size() || !(value >= 0.3) ||
        value > 3600) {
      return bad("ttl needs seconds from 0.3 to 3600");
    }
    options.ttl = milliseconds(static_cast<long long>(value * 1000));
  }
  options.host = host;
  options.port = p;
  return true;
}

RedisHub::RedisHub(Loop& loop, RedisHubOptions options)
    : loop_(loop), options_(std::move(options)), instance_(random_instance()) {}

RedisHub::~RedisHub() {
  closing_ = true;
  if (link_timer_ != kNoTimer) loop_.cancel_timer(link_timer_);
  if (refresh_timer_ != kNoTimer) loop_.cancel_timer(refresh_timer_);
  if (reconnect_timer_ != kNoTimer) loop_.cancel_timer(reconnect_timer_);
  if (sync_ != nullptr) {
    const std::string members = key("members", instance_);
    Reply(static_cast<redisReply*>(redisCommand(sync_, "DEL %b", members.data(), members.size())));
    redisFree(sync_);
  }
  for (redisAsyncContext** ac : {&pub_, &sub_}) {
    if (*ac != nullptr) redisAsyncFree(std::exchange(*ac, nullptr));
  }
}

bool RedisHub::start(std::string& error) {
  if (!connect_sync(error) || !begin_link(error)) {
    closing_ = true;  // no notices, no reconnect: the caller gives up
    link_lost();
    closing_ = false;
    return false;
  }
  const auto deadline = Loop::Clock::now() + options_.query_timeout + options_.command_timeout;
  while (!linked_ && pub_ != nullptr && sub_ != nullptr && Loop::Clock::now() < deadline) {
    loop_.run_once(milliseconds(50));
  }
  if (!linked_) {
    error = "redis://" + options_.host + ":" + std::to_string(options_.port) +
            ": cannot subscribe (connection lost or timed out)";
    closing_ = true;
    if (reconnect_timer_ != kNoTimer) loop_.cancel_timer(reconnect_timer_);
    reconnect_timer_ = kNoTimer;
    link_lost();
    closing_ = false;
    return false;
  }
  return true;
}

bool RedisHub::connect_sync(std::string& error) {
  const std::string where = "redis://" + options_.host + ":" + std::to_string(options_.port);
  sync_ = redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                  to_timeval(options_.query_timeout));
  if (sync_ == nullptr || sync_->err != 0) {
    error = where + ": " + (sync_ != nullptr ? sync_->errstr : "out of memory");
    if (sync_ != nullptr) redisFree(std::exchange(sync_, nullptr));
    return false;
  }
  redisSetTimeout(sync_, to_timeval(options_.query_timeout));
  Reply pong(static_cast<redisReply*>(redisCommand(sync_, "PING")));
  if (!pong || text_of(pong.get()) != "PONG") {
    error =
        where + ": no answer to PING" + (sync_->err != 0 ? std::string(": ") + sync_->errstr : "");
    redisFree(std::exchange(sync_, nullptr));
    return false;
  }
  return true;
}

bool RedisHub::begin_link(std::string& error) {
  pub_ready_ = false;
  subscriptions_ = 0;
  for (redisAsyncContext** slot : {&pub_, &sub_}) {
    redisAsyncContext* ac = redisAsyncConnect(options_.host.c_str(), options_.port);
    if (ac == nullptr || ac->err != 0) {
      error = "redis://" + options_.host + ":" + std::to_string(options_.port) + ": " +
              (ac != nullptr ? ac->errstr : "out of memory");
      if (ac != nullptr) redisAsyncFree(ac);
      return false;
    }
    ac->data = this;
    if (attach(loop_, ac) != REDIS_OK) {
      error = "redis: cannot watch the connection";
      redisAsyncFree(ac);
      return false;
    }
    set_timeouts(ac, options_.query_timeout, options_.command_timeout);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    *slot = ac;
  }
  const std::string pattern = options_.prefix + ":room:*";
  const std::string mine = key("to", instance_);
  redisAsyncCommand(sub_, on_message, this, "PSUBSCRIBE %b", pattern.data(), pattern.size());
  redisAsyncCommand(sub_, on_message, this, "SUBSCRIBE %b", mine.data(), mine.size());
  return true;
}

void RedisHub::on_connect(const redisAsyncContext* ac, int status) {
  auto* hub = static_cast<RedisHub*>(ac->data);
  const bool pub = ac == hub->pub_;
  if (!pub && ac != hub->sub_) return;
  if (status != REDIS_OK) {
    (pub ? hub->pub_ : hub->sub_) = nullptr;  // hiredis frees it after this callback
    hub->link_lost();
    return;
  }
  if (pub) {
    hub->pub_ready_ = true;
    if (hub->subscriptions_ == 2) hub->linked_now();
  }
}

void RedisHub::on_disconnect(const redisAsyncContext* ac, int /*status*/) {
  auto* hub = static_cast<RedisHub*>(ac->data);
  if (ac == hub->pub_) {
    hub->pub_ = nullptr;
  } else if (ac == hub->sub_) {
    hub->sub_ = nullptr;
  } else {
    return;  // one we are freeing ourselves
  }
  hub->link_lost();
}

void RedisHub::on_message(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* hub = static_cast<RedisHub*>(privdata);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || ac != hub->sub_ || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
  const std::string_view kind = text_of(r->element[0]);
  if (kind == "pmessage" && r->elements == 4) {
    hub->deliver_room(text_of(r->element[2]), text_of(r->element[3]));
  } else if (kind == "message") {
    hub->deliver_private(text_of(r->element[2]));
  } else if (kind == "psubscribe" || kind == "subscribe") {
    if (++hub->subscriptions_ == 2 && hub->pub_ready_) hub->linked_now();
  }
}

// Called from inside hiredis callbacks, where a context must not be freed: the rest (which may
// fail and tear the link down) runs from a timer.
void RedisHub::linked_now() {
  if (link_timer_ != kNoTimer) return;
  link_timer_ = loop_.after(milliseconds(0), [this] {
    link_timer_ = kNoTimer;
    complete_link();
  });
}

void RedisHub::complete_link() {
  if (pub_ == nullptr || sub_ == nullptr || !pub_ready_ || subscriptions_ != 2 || linked_) return;
  // The blocking connection last: Redis has just answered, so this connect cannot hang the
  // loop on an unreachable host.
  std::string error;
  if (sync_ == nullptr && !connect_sync(error)) {
    link_lost();
    return;
  }
  linked_ = true;
  backoff_ = milliseconds(100);
  rewrite_leases();
  // After an outage every instance rewrites its hash; until they have, a missing hash is no
  // proof that an instance died.
  watch_departures_after_ = loop_.now() + options_.ttl;
  if (lost_notified_) {
    lost_notified_ = false;
    notify_all(options_.back_notice);
  }
  if (refresh_timer_ == kNoTimer) {
    const milliseconds period = std::max(milliseconds(100), options_.ttl / 3);
    refresh_timer_ = loop_.add_timer(period, period, [this] { refresh(); });
  }
}

void RedisHub::link_lost() {
  const bool was_linked = linked_;
  linked_ = false;
  if (link_timer_ != kNoTimer) loop_.cancel_timer(link_timer_);
  link_timer_ = kNoTimer;
  pub_ready_ = false;
  subscriptions_ = 0;
  // Frees what is left; their callbacks see nullptrs in pub_/sub_ and stay out. Pending
  // publishes are answered (NULL reply) so their senders hear of it.
  for (redisAsyncContext** ac : {&pub_, &sub_}) {
    if (*ac != nullptr) redisAsyncFree(std::exchange(*ac, nullptr));
  }
  if (sync_ != nullptr) redisFree(std::exchange(sync_, nullptr));
  if (closing_) return;
  if (!lost_notified_ && (was_linked || !peers_.empty())) {
    lost_notified_ = true;
    notify_all(options_.lost_notice);
  }
  schedule_reconnect();
}

void RedisHub::schedule_reconnect() {
  if (reconnect_timer_ != kNoTimer) return;
  reconnect_timer_ = loop_.after(backoff_, [this] {
    reconnect_timer_ = kNoTimer;
    reconnect();
  });
  backoff_ = std::min(backoff_ * 2, options_.max_backoff);
}

void RedisHub::reconnect() {
  if (linked_ || pub_ != nullptr || sub_ != nullptr) return;
  std::string error;
  if (!begin_link(error)) link_lost();
}

void RedisHub::notify_all(std::string_view text) {
  for (const auto& [token, peer] : by_token_) peer->send(text);
}

std::string RedisHub::key(std::string_view kind, std::string_view name) const {
  std::string k = options_.prefix;
  k += ':';
  k += kind;
  k += ':';
  k += name;
  return k;
}

std::string RedisHub::field(const PeerState& state, std::string_view room) const {
  return number(state.token) + "/" + std::string(room);
}

RedisHub::PeerState& RedisHub::state_of(Peer& peer) {
  auto [it, fresh] = peers_.try_emplace(&peer);
  if (fresh) {
    it->second.token = next_token_++;
    by_token_[it->second.token] = &peer;
  }
  return it->second;
}

void RedisHub::command(std::initializer_list<std::string_view> args) {
  if (!linked_ || pub_ == nullptr) return;
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string_view a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  redisAsyncCommandArgv(pub_, nullptr, nullptr, static_cast<int>(argv.size()), argv.data(),
                        lengths.data());
}

void RedisHub::set_member(const PeerState& state, std::string_view room) {
  const std::string hash = key("members", instance_);
  const std::string ttl = number(static_cast<std::uint64_t>(options_.ttl.count()));
  command({"HSET", hash, field(state, room), state.name});
  command({"PEXPIRE", hash, ttl});
}

void RedisHub::del_member(const PeerState& state, std::string_view room) {
  command({"HDEL", key("members", instance_), field(state, room)});
}

void RedisHub::release_lease(std::string_view name) {
  command({"EVAL", kReleaseScript, "1", key("nick", fold_name(name)), instance_});
}

void RedisHub::rewrite_leases() {
  const std::string hash = key("members", instance_);
  command({"DEL", hash});
  for (const auto& [peer, state] : peers_) {
    for (const auto& room : state.rooms) command({"HSET", hash, field(state, room), state.name});
  }
  refresh();
}

void RedisHub::refresh() {
  if (!linked_ || pub_ == nullptr) return;
  std::vector<std::string> keys;
  keys.push_back(key("members", instance_));
  keys.push_back(key("alive", instance_));
  for (const auto& [peer, state] : peers_) {
    if (!state.name.empty()) keys.push_back(key("nick", fold_name(state.name)));
  }
  const std::string count = number(keys.size());
  const std::string ttl = number(static_cast<std::uint64_t>(options_.ttl.count()));
  std::vector<const char*> argv{"EVAL", kRefreshScript.data(), count.c_str()};
  std::vector<size_t> lengths{4, kRefreshScript.size(), count.size()};
  for (const auto& k : keys) {
    argv.push_back(k.data());
    lengths.push_back(k.size());
  }
  argv.push_back(instance_.data());
  lengths.push_back(instance_.size());
  argv.push_back(ttl.data());
  lengths.push_back(ttl.size());
  redisAsyncCommandArgv(pub_, nullptr, nullptr, static_cast<int>(argv.size()), argv.data(),
                        lengths.data());

  const std::string members = options_.prefix + ":members:*";
  const std::string alive = options_.prefix + ":alive:*";
  redisAsyncCommand(pub_, on_snapshot, this, "EVAL %b 0 %b %b", kSnapshotScript.data(),
                    kSnapshotScript.size(), members.data(), members.size(), alive.data(),
                    alive.size());
}

namespace {

// Fills `out` from the snapshot script's reply; false if it is not one.
bool parse_snapshot(const redisReply* r, std::string_view hash_prefix,
                    std::string_view alive_prefix, RedisHubSnapshot& out) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 1 ||
      r->element[0]->type != REDIS_REPLY_ARRAY) {
    return false;
  }
  for (std::size_t i = 0; i < r->element[0]->elements; ++i) {
    const std::string_view k = text_of(r->element[0]->element[i]);
    if (k.starts_with(alive_prefix)) out.alive.emplace(k.substr(alive_prefix.size()));
  }
  for (std::size_t i = 1; i + 1 < r->elements; i += 2) {
    const std::string_view k = text_of(r->element[i]);
    const redisReply* fields = r->element[i + 1];
    if (!k.starts_with(hash_prefix) || fields->type != REDIS_REPLY_ARRAY) continue;
    auto& into = out.members[std::string(k.substr(hash_prefix.size()))];
    for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
      into[std::string(text_of(fields->element[f]))] = text_of(fields->element[f + 1]);
    }
  }
  return true;
}

std::string_view room_of(std::string_view field) {
  const auto slash = field.find('/');
  return slash == std::string_view::npos ? std::string_view{} : field.substr(slash + 1);
}

}  // namespace

void RedisHub::on_snapshot(redisAsyncContext* /*ac*/, void* reply, void* privdata) {
  auto* hub = static_cast<RedisHub*>(privdata);
  if (hub->closing_) return;
  Snapshot snapshot;
  if (!parse_snapshot(static_cast<const redisReply*>(reply), hub->key("members", ""),
                      hub->key("alive", ""), snapshot)) {
    return;
  }
  hub->departures(std::move(snapshot));
}

// `known_` holds the members of every instance seen alive, as last seen. An instance whose
// alive key is gone died (a clean exit empties its hash first, so there is nobody to announce).
// Within a TTL of our own (re)link, instances may still be rewriting their keys: learn, never
// announce.
void RedisHub::departures(Snapshot now) {
  if (loop_.now() >= watch_departures_after_) {
    for (auto it = known_.begin(); it != known_.end();) {
      if (it->first == instance_ || now.alive.count(it->first) != 0) {
        ++it;
        continue;
      }
      std::set<std::pair<std::string_view, std::string_view>> told;
      for (const auto& [f, name] : it->second) {
        const std::string_view room = room_of(f);
        if (name.empty() || room.empty() || !told.emplace(room, name).second) continue;
        local_.publish(room, as_bytes(options_.departed_prefix + name + options_.departed_suffix),
                       nullptr);
      }
      it = known_.erase(it);
    }
  }
  for (const auto& instance : now.alive) {
    auto members = now.members.find(instance);
    known_[instance] = members == now.members.end() ? std::map<std::string, std::string>{}
                                                    : std::move(members->second);
  }
}

bool RedisHub::query_snapshot(Snapshot& out) {
  if (!linked_ || sync_ == nullptr) return false;
  const std::string members = options_.prefix + ":members:*";
  const std::string alive = options_.prefix + ":alive:*";
  Reply r(static_cast<redisReply*>(redisCommand(sync_, "EVAL %b 0 %b %b", kSnapshotScript.data(),
                                                kSnapshotScript.size(), members.data(),
                                                members.size(), alive.data(), alive.size())));
  if (!r) {
    link_lost();
    return false;
  }
  return parse_snapshot(r.get(), key("members", ""), key("alive", ""), out);
}

std::string RedisHub::spelling_of(std::string_view room) {
  if (const std::string_view listed = local_.room_name(room); !listed.empty()) {
    return std::string(listed);
  }
  // New here: spelled as on the other instances that have members in it, if any.
  Snapshot snapshot;
  if (query_snapshot(snapshot)) {
    for (const auto& [instance, fields] : snapshot.members) {
      if (instance == instance_) continue;
      for (const auto& [f, name] : fields) {
        if (same_name(room_of(f), room)) return std::string(room_of(f));
      }
    }
  }
  return std::string(room);
}

void RedisHub::join(std::string_view room, Peer& peer) {
  local_.join(spelling_of(room), peer);
  PeerState& state = state_of(peer);
  const auto same = [room](const std::string& r) { return same_name(r, room); };
  if (std::any_of(state.rooms.begin(), state.rooms.end(), same)) return;
  state.rooms.emplace_back(local_.room_name(room));
  set_member(state, state.rooms.back());
}

void RedisHub::leave(std::string_view room, Peer& peer) {
  local_.leave(room, peer);
  auto it = peers_.find(&peer);
  if (it == peers_.end()) return;
  auto& rooms = it->second.rooms;
  const auto at = std::find_if(rooms.begin(), rooms.end(),
                               [room](const std::string& r) { return same_name(r, room); });
  if (at == rooms.end()) return;
  del_member(it->second, *at);
  rooms.erase(at);
}

void RedisHub::publish(std::string_view room, std::span<const std::byte> bytes,
                       const Peer* except) {
  if (!linked_ || pub_ == nullptr || pending_ >= options_.max_pending) {
    // `except` is the sender: it hears that nobody did.
    if (auto it = peers_.find(except); except != nullptr && it != peers_.end()) {
      by_token_.at(it->second.token)->send(options_.undelivered);
    }
    return;
  }
  local_.publish(room, bytes, except);
  const std::string channel = key("room", fold_name(room));
  payload_.assign(instance_);
  payload_ += ' ';
  payload_.append(as_text(bytes));
  std::uint64_t token = 0;
  if (except != nullptr) {
    if (auto it = peers_.find(except); it != peers_.end()) token = it->second.token;
  }
  const char* argv[] = {"PUBLISH", channel.data(), payload_.data()};
  const size_t lengths[] = {7, channel.size(), payload_.size()};
  if (redisAsyncCommandArgv(pub_, on_published, reinterpret_cast<void*>(token), 3, argv, lengths) ==
      REDIS_OK) {
    ++pending_;
  }
}

void RedisHub::on_published(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* hub = static_cast<RedisHub*>(ac->data);
  if (hub->pending_ > 0) --hub->pending_;
  const auto* r = static_cast<const redisReply*>(reply);
  if (hub->closing_ || (r != nullptr && r->type != REDIS_REPLY_ERROR)) return;
  const auto token = reinterpret_cast<std::uint64_t>(privdata);
  if (auto it = hub->by_token_.find(token); it != hub->by_token_.end()) {
    it->second->send(hub->options_.undelivered);
  }
}

void RedisHub::deliver_room(std::string_view channel, std::string_view payload) {
  const std::string prefix = key("room", "");
  if (!channel.starts_with(prefix)) return;
  const auto space = payload.find(' ');
  if (space == std::string_view::npos || payload.substr(0, space) == instance_) return;
  local_.publish(channel.substr(prefix.size()), as_bytes(payload.substr(space + 1)), nullptr);
}

void RedisHub::deliver_private(std::string_view payload) {
  const auto space = payload.find(' ');
  if (space == std::string_view::npos) return;
  local_.send_to(payload.substr(0, space), as_bytes(payload.substr(space + 1)));
}

bool RedisHub::claim_name(std::string_view name, Peer& peer) {
  PeerState& state = state_of(peer);
  if (state.name == name) return true;
  if (!linked_ || sync_ == nullptr) return false;
  const std::string k = key("nick", fold_name(name));
  const std::string ttl = number(static_cast<std::uint64_t>(options_.ttl.count()));
  Reply r(static_cast<redisReply*>(redisCommand(sync_, "SET %b %b NX PX %b", k.data(), k.size(),
                                                instance_.data(), instance_.size(), ttl.data(),
                                                ttl.size())));
  if (!r) {
    link_lost();
    return false;
  }
  if (r->type == REDIS_REPLY_NIL) {
    // Ours already? Then only a local holder can refuse (a lease left by a rename in flight).
    Reply owner(static_cast<redisReply*>(redisCommand(sync_, "GET %b", k.data(), k.size())));
    if (!owner) {
      link_lost();
      return false;
    }
    if (text_of(owner.get()) != instance_) return false;
    // A release of this name may still be queued on the async connection: renew the lease
    // behind it, so that the release cannot delete the lease we keep.
    if (!local_.claim_name(name, peer)) return false;
    command({"SET", k, instance_, "PX", ttl});
  } else if (!local_.claim_name(name, peer)) {
    return false;  // another local peer holds it (Redis had lost its lease; it has it again)
  }
  // A new spelling of one's own name keeps its lease.
  if (!state.name.empty() && !same_name(state.name, name)) release_lease(state.name);
  state.name = name;
  for (const auto& room : state.rooms) set_member(state, room);
  return true;
}

void RedisHub::release_name(Peer& peer) {
  local_.release_name(peer);
  auto it = peers_.find(&peer);
  if (it == peers_.end() || it->second.name.empty()) return;
  release_lease(it->second.name);
  it->second.name.clear();
  for (const auto& room : it->second.rooms) set_member(it->second, room);
}

bool RedisHub::send_to(std::string_view name, std::span<const std::byte> bytes) {
  if (local_.send_to(name, bytes)) return true;
  if (!linked_ || sync_ == nullptr) return false;
  const std::string k = key("nick", fold_name(name));
  Reply owner(static_cast<redisReply*>(redisCommand(sync_, "GET %b", k.data(), k.size())));
  if (!owner) {
    link_lost();
    return false;
  }
  const std::string_view instance = text_of(owner.get());
  if (instance.empty() || instance == instance_) return false;
  const std::string channel = key("to", instance);
  std::string payload(name);
  payload += ' ';
  payload.append(as_text(bytes));
  Reply sent(static_cast<redisReply*>(redisCommand(
      sync_, "PUBLISH %b %b", channel.data(), channel.size(), payload.data(), payload.size())));
  if (!sent) {
    link_lost();
    return false;
  }
  return sent->type == REDIS_REPLY_INTEGER && sent->integer > 0;
}

std::vector<RoomInfo> RedisHub::rooms() {
  Snapshot snapshot;
  if (!query_snapshot(snapshot)) return local_.rooms();
  // Keyed ignoring case; ours first, so that a room we have is listed as we spell it.
  std::map<std::string, std::size_t, NameLess> counts;
  for (const auto& info : local_.rooms()) counts[info.name] += info.members;
  for (const auto& [instance, fields] : snapshot.members) {
    if (instance == instance_) continue;  // ours: from memory, Redis may lag behind
    for (const auto& [f, name] : fields) ++counts[std::string(room_of(f))];
  }
  std::vector<RoomInfo> out;
  for (const auto& [room, n] : counts) {
    if (!room.empty() && n > 0) out.push_back({room, n});
  }
  return out;
}

std::vector<std::string> RedisHub::members(std::string_view room) {
  std::vector<std::string> out = local_.members(room);
  Snapshot snapshot;
  if (!query_snapshot(snapshot)) return out;
  for (const auto& [instance, fields] : snapshot.members) {
    if (instance == instance_) continue;
    for (const auto& [f, name] : fields) {
      if (!name.empty() && same_name(room_of(f), room)) out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end(), NameLess{});
  return out;
}

void RedisHub::forget(Peer& peer) {
  local_.forget(peer);
  auto it = peers_.find(&peer);
  if (it == peers_.end()) return;
  for (const auto& room : it->second.rooms) del_member(it->second, room);
  if (!it->second.name.empty()) release_lease(it->second.name);
  by_token_.erase(it->second.token);
  peers_.erase(it);
}

void RedisHub::drain(milliseconds limit) {
  const auto deadline = Loop::Clock::now() + limit;
  while (linked_ && pub_ != nullptr && pub_->replies.head != nullptr &&
         Loop::Clock::now() < deadline) {
    loop_.run_once(milliseconds(20));
  }
}

}  // namespace reactor::redis
