// A plugin configured by its args: echoes each chunk behind a prefix; rejects an empty prefix by
// throwing from its constructor (REACTOR_PLUGIN turns that into an error message).
#include <stdexcept>
#include <string>

#include "reactor/plugin.hpp"

namespace {
class Prefix final : public reactor::Protocol {
 public:
  explicit Prefix(std::string_view args) : prefix_(args) {
    if (prefix_.empty()) throw std::invalid_argument("needs the prefix as its argument");
  }
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<Session>(prefix_);
  }
  std::size_t max_outbox() const override { return 12345; }

 private:
  struct Session final : reactor::Session {
    explicit Session(const std::string& p) : prefix(p) {}
    std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
      peer.send(prefix + std::string(reactor::as_text(bytes)));
      return bytes.size();
    }
    const std::string& prefix;
  };
  std::string prefix_;
};
}  // namespace

REACTOR_PLUGIN(Prefix, "prefix", "echoes behind a configurable prefix", reactor::kAllTransports,
               false)
