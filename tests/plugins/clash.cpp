// A plugin whose protocol name is taken by a built-in.
#include "reactor/plugin.hpp"

namespace {
struct Silent final : reactor::Protocol {
  struct Session final : reactor::Session {
    std::size_t on_data(reactor::Peer&, std::span<const std::byte> b) override { return b.size(); }
  };
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<Session>();
  }
};
}  // namespace

REACTOR_PLUGIN(Silent, "echo", "not the real echo", reactor::kTcp, false)
