// A plugin whose PluginInfo declares no transport it runs over (transports = 0).
#include "reactor/plugin.hpp"

namespace {
struct Nowhere final : reactor::Protocol {
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override { return nullptr; }
};
}  // namespace

REACTOR_PLUGIN(Nowhere, "nowhere", "runs over nothing", 0, false)
