// kv, the example reactor plugin (docs/writing-a-plugin.md): a line-based key-value store.
//   SET key value -> OK   GET key -> OK value | ERR no such key   DEL key -> OK | ERR no such key
// One store per server process (under the fork model that means one per connection).
#include <map>
#include <mutex>
#include <string>

#include "reactor/plugin.hpp"

namespace {

std::pair<std::string_view, std::string_view> split(std::string_view s) {  // "first rest"
  const std::size_t n = std::min(s.find(' '), s.size());
  return {s.substr(0, n), s.substr(std::min(n + 1, s.size()))};
}

struct Store {
  std::mutex mutex;  // the thread and reuseport models run sessions on several threads
  std::map<std::string, std::string, std::less<>> values;
};

class KvSession final : public reactor::Session {
 public:
  explicit KvSession(Store& store) : store_(store) {}
  // Answers every complete line; the reactor keeps the unconsumed rest and presents it again.
  std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
    const std::string_view text = reactor::as_text(bytes);
    std::size_t done = 0;
    for (std::size_t end; (end = text.find('\n', done)) != text.npos; done = end + 1) {
      std::string_view line = text.substr(done, end - done);
      if (line.ends_with('\r')) line.remove_suffix(1);
      peer.send(handle(line));
    }
    return done;
  }

 private:
  std::string handle(std::string_view line) {
    const auto [command, rest] = split(line);
    const auto [key, value] = split(rest);
    const std::lock_guard lock(store_.mutex);
    if (command == "SET" && !key.empty() && rest.size() > key.size()) {
      store_.values.insert_or_assign(std::string(key), std::string(value));
      return "OK\n";
    }
    if ((command != "GET" && command != "DEL") || key.empty() || rest != key) {
      return "ERR usage: SET key value | GET key | DEL key\n";
    }
    const auto it = store_.values.find(key);
    if (it == store_.values.end()) return "ERR no such key\n";
    if (command == "GET") return "OK " + it->second + "\n";
    store_.values.erase(it);
    return "OK\n";
  }
  Store& store_;
};

struct KvProtocol final : reactor::Protocol {
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<KvSession>(store);
  }
  Store store;
};

}  // namespace

REACTOR_PLUGIN(KvProtocol, "kv", "line-based key-value store: SET k v, GET k, DEL k",
               reactor::kTcp | reactor::kUnixStream, false)
