// The keyspace shared by every session of one server, behind a small interface so commands
// never see how it is stored or guarded. Times are absolute milliseconds passed in by the
// caller (one clock read per batch, a fake clock in tests). Expired keys vanish lazily on
// access and through sweep(), the sampling active expiry that one session's timer drives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace reactor::protocols::resp {

struct SetOptions {
  enum class Condition { always, if_absent, if_present };  // -, NX, XX
  Condition condition = Condition::always;
  std::int64_t expire_at_ms = 0;  // 0: no expiry (the key loses any it had)
};

enum class IncrStatus { ok, not_integer, overflow };

struct KeyspaceSize {
  std::size_t keys = 0;
  std::size_t expires = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // Copies the value into `value` (reusing its capacity); false if there is no such key.
  virtual bool get(std::string_view key, std::int64_t now, std::string& value) = 0;
  // False if the condition kept it from being set. With `old`, the previous value is copied
  // there and `had_old` tells whether there was one (GETSET).
  virtual bool set(std::string_view key, std::string_view value, const SetOptions& options,
                   std::int64_t now, std::string* old = nullptr, bool* had_old = nullptr) = 0;
  // Sets all pairs (keys at even positions, values at odd) at once.
  virtual void set_many(std::span<const std::string_view> pairs, std::int64_t now) = 0;
  virtual std::size_t remove(std::span<const std::string_view> keys, std::int64_t now) = 0;
  virtual std::size_t count_existing(std::span<const std::string_view> keys, std::int64_t now) = 0;
  virtual IncrStatus increment(std::string_view key, std::int64_t delta, std::int64_t now,
                               std::int64_t& result) = 0;
  // Returns the new length.
  virtual std::size_t append(std::string_view key, std::string_view value, std::int64_t now) = 0;
  virtual std::size_t length(std::string_view key, std::int64_t now) = 0;
  // A deadline at or before `now` deletes the key (and still counts as set). False: no key.
  virtual bool expire_at(std::string_view key, std::int64_t deadline_ms, std::int64_t now) = 0;
  // Milliseconds left; -1 if the key has no expiry, -2 if there is no key.
  virtual std::int64_t ttl_ms(std::string_view key, std::int64_t now) = 0;
  // False if there is no key or it had no expiry.
  virtual bool persist(std::string_view key, std::int64_t now) = 0;
  // Keys matching the glob pattern.
  virtual void keys(std::string_view pattern, std::int64_t now, std::vector<std::string>& out) = 0;
  virtual KeyspaceSize size() = 0;
  virtual void clear() = 0;
  // One round of active expiry: samples keys with a deadline and deletes the expired ones,
  // repeating while many were; bounded in work. Returns how many it deleted.
  virtual std::size_t sweep(std::int64_t now) = 0;
  // Estimated bytes held by keys and values (maxmemory compares against it). Lock-free read.
  virtual std::size_t used_memory() const = 0;
};

// The in-memory store: one hash table behind one mutex (uncontended on the epoll model, where
// every session runs on one thread).
std::unique_ptr<Store> make_memory_store();

}  // namespace reactor::protocols::resp
