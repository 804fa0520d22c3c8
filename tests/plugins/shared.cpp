// A plugin whose sessions share memory (ProtocolInfo::shares_memory): reactor-server must refuse
// it under the fork model. It counts bytes across all connections.
#include <atomic>
#include <string>

#include "reactor/plugin.hpp"

namespace {
class Shared final : public reactor::Protocol {
 public:
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<Session>(total_);
  }

 private:
  struct Session final : reactor::Session {
    explicit Session(std::atomic<std::size_t>& t) : total(t) {}
    std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
      peer.send(std::to_string(total += bytes.size()) + "\n");
      return bytes.size();
    }
    std::atomic<std::size_t>& total;
  };
  std::atomic<std::size_t> total_{0};
};
}  // namespace

extern "C" __attribute__((visibility("default"))) const reactor::PluginInfo* reactor_plugin_v1() {
  static constexpr reactor::PluginInfo info = reactor::make_plugin_info<Shared>(
      "shared", "counts bytes across connections", reactor::kTcp, false, true);
  return &info;
}
