// The in-memory Store: an unordered_map of keys to values with optional deadlines, plus the
// set of keys that have a deadline (what active expiry samples), under one mutex.
#include <atomic>
#include <charconv>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "protocols/resp/glob.hpp"
#include "protocols/resp/parser.hpp"
#include "protocols/resp/store.hpp"

namespace reactor::protocols::resp {
namespace {

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
struct Equal {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};

struct Entry {
  std::string value;
  std::int64_t expire_at = 0;  // 0: none
};

// What one key costs beyond its bytes: the node, the hash slot, the std::string headers.
constexpr std::size_t kEntryOverhead = 96;
constexpr std::size_t kSampleSize = 20;
constexpr int kMaxSweepRounds = 16;

class MemoryStore final : public Store {
 public:
  bool get(std::string_view key, std::int64_t now, std::string& value) override {
    const std::lock_guard lock(mutex_);
    const Entry* e = find(key, now);
    if (e == nullptr) return false;
    value.assign(e->value);
    return true;
  }

  bool set(std::string_view key, std::string_view value, const SetOptions& options,
           std::int64_t now, std::string* old, bool* had_old) override {
    const std::lock_guard lock(mutex_);
    Entry* e = find(key, now);
    if (old != nullptr) {
      *had_old = e != nullptr;
      if (e != nullptr) old->assign(e->value);
    }
    if (options.condition == SetOptions::Condition::if_absent && e != nullptr) return false;
    if (options.condition == SetOptions::Condition::if_present && e == nullptr) return false;
    if (e == nullptr) e = insert(key);
    assign(*e, value);
    set_deadline(key, *e, options.expire_at_ms);
    return true;
  }

  void set_many(std::span<const std::string_view> pairs, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
      Entry* e = find(pairs[i], now);
      if (e == nullptr) e = insert(pairs[i]);
      assign(*e, pairs[i + 1]);
      set_deadline(pairs[i], *e, 0);
    }
  }

  std::size_t remove(std::span<const std::string_view> keys, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto key : keys) {
      if (find(key, now) != nullptr) {
        erase(map_.find(key));
        ++n;
      }
    }
    return n;
  }

  std::size_t count_existing(std::span<const std::string_view> keys, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto key : keys) n += find(key, now) != nullptr ? 1 : 0;
    return n;
  }

  IncrStatus increment(std::string_view key, std::int64_t delta, std::int64_t now,
                       std::int64_t& result) override {
    const std::lock_guard lock(mutex_);
    Entry* e = find(key, now);
    std::int64_t current = 0;
    if (e != nullptr && !parse_int64(e->value, current)) return IncrStatus::not_integer;
    if (__builtin_add_overflow(current, delta, &result)) return IncrStatus::overflow;
    if (e == nullptr) e = insert(key);
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, result).ptr;
    assign(*e, std::string_view(digits, static_cast<std::size_t>(end - digits)));
    return IncrStatus::ok;
  }

  std::size_t append(std::string_view key, std::string_view value, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    Entry* e = find(key, now);
    if (e == nullptr) e = insert(key);
    used_ += value.size();
    e->value.append(value);
    return e->value.size();
  }

  std::size_t length(std::string_view key, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    const Entry* e = find(key, now);
    return e == nullptr ? 0 : e->value.size();
  }

  bool expire_at(std::string_view key, std::int64_t deadline, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    Entry* e = find(key, now);
    if (e == nullptr) return false;
    if (deadline <= now) {
      erase(map_.find(key));
    } else {
      set_deadline(key, *e, deadline);
    }
    return true;
  }

  std::int64_t ttl_ms(std::string_view key, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    const Entry* e = find(key, now);
    if (e == nullptr) return -2;
    if (e->expire_at == 0) return -1;
    return e->expire_at - now;
  }

  bool persist(std::string_view key, std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    Entry* e = find(key, now);
    if (e == nullptr || e->expire_at == 0) return false;
    set_deadline(key, *e, 0);
    return true;
  }

  void keys(std::string_view pattern, std::int64_t now, std::vector<std::string>& out) override {
    const std::lock_guard lock(mutex_);
    const bool all = pattern == "*";
    for (const auto& [key, entry] : map_) {
      if (entry.expire_at != 0 && entry.expire_at <= now) continue;
      if (all || glob_match(pattern, key)) out.push_back(key);
    }
  }

  KeyspaceSize size() override {
    const std::lock_guard lock(mutex_);
    return {map_.size(), volatile_.size()};
  }

  void clear() override {
    const std::lock_guard lock(mutex_);
    map_.clear();
    volatile_.clear();
    used_ = 0;
  }

  std::size_t sweep(std::int64_t now) override {
    const std::lock_guard lock(mutex_);
    std::size_t deleted = 0;
    for (int round = 0; round < kMaxSweepRounds && !volatile_.empty(); ++round) {
      // Sample up to kSampleSize keys from consecutive buckets after a random one.
      sample_.clear();
      const std::size_t buckets = volatile_.bucket_count();
      std::size_t b = std::uniform_int_distribution<std::size_t>(0, buckets - 1)(random_);
      for (std::size_t scanned = 0; scanned < buckets && sample_.size() < kSampleSize;
           ++scanned, b = (b + 1) % buckets) {
        for (auto it = volatile_.begin(b); it != volatile_.end(b); ++it) sample_.push_back(*it);
      }
      std::size_t expired = 0;
      for (const auto& key : sample_) {
        const auto it = map_.find(key);
        if (it != map_.end() && it->second.expire_at != 0 && it->second.expire_at <= now) {
          erase(it);
          ++expired;
        }
      }
      deleted += expired;
      if (expired * 4 <= sample_.size()) break;  // under 25% expired: enough for this period
    }
    return deleted;
  }

  std::size_t used_memory() const override { return used_.load(std::memory_order_relaxed); }

 private:
  using Map = std::unordered_map<std::string, Entry, Hash, Equal>;

  // The live entry for `key`, deleting it first if it has expired.
  Entry* find(std::string_view key, std::int64_t now) {
    const auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    if (it->second.expire_at != 0 && it->second.expire_at <= now) {
      erase(it);
      return nullptr;
    }
    return &it->second;
  }

  Entry* insert(std::string_view key) {
    used_ += key.size() + kEntryOverhead;
    return &map_.emplace(std::string(key), Entry{}).first->second;
  }

  void assign(Entry& e, std::string_view value) {
    used_ += value.size();
    used_ -= e.value.size();
    e.value.assign(value);
  }

  void set_deadline(std::string_view key, Entry& e, std::int64_t deadline) {
    if (deadline != 0 && e.expire_at == 0) {
      volatile_.emplace(key);
    } else if (deadline == 0 && e.expire_at != 0) {
      volatile_.erase(volatile_.find(key));
    }
    e.expire_at = deadline;
  }

  void erase(Map::iterator it) {
    used_ -= it->first.size() + kEntryOverhead + it->second.value.size();
    if (it->second.expire_at != 0) volatile_.erase(volatile_.find(it->first));
    map_.erase(it);
  }

  std::mutex mutex_;
  Map map_;
  std::unordered_set<std::string, Hash, Equal> volatile_;  // keys with a deadline
  std::atomic<std::size_t> used_{0};
  std::vector<std::string> sample_;
  std::minstd_rand random_{12345};
};

}  // namespace

std::unique_ptr<Store> make_memory_store() {
  return std::make_unique<MemoryStore>();
}

}  // namespace reactor::protocols::resp
