// A plugin that names itself in its error messages ("selfnamed: needs an argument"), as the
// plugin docs once advised; the loader removes that prefix since the server adds it.
#include <stdexcept>
#include <string>

#include "reactor/plugin.hpp"

namespace {
struct SelfNamed final : reactor::Protocol {
  explicit SelfNamed(std::string_view args) {
    if (args.empty()) throw std::invalid_argument("selfnamed: needs an argument");
    throw std::invalid_argument("selfnamed:" + std::string(args) + " is not a prefix");
  }
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override { return nullptr; }
};
}  // namespace

REACTOR_PLUGIN(SelfNamed, "selfnamed", "refuses every configuration", reactor::kTcp, false)
