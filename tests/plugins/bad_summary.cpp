// A plugin whose summary would print raw control characters in --list-protocols: a newline
// (a forged second row) and an escape sequence.
#include "reactor/plugin.hpp"

namespace {
struct Loud final : reactor::Protocol {
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override { return nullptr; }
};
}  // namespace

REACTOR_PLUGIN(Loud, "loud", "harmless\nfake         tcp   no   \x1b[31mred", reactor::kTcp, false)
