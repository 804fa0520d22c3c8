// A plugin built for a plugin ABI this server does not speak.
#include "reactor/plugin.hpp"

extern "C" const reactor::PluginInfo* reactor_plugin_v1() {
  static constexpr reactor::PluginInfo info = {
      .abi_version = reactor::kPluginAbiVersion + 1,
      .name = "future",
      .summary = "from a later release",
      .transports = reactor::kTcp,
      .uses_hub = false,
      .create = nullptr,
      .destroy = nullptr,
  };
  return &info;
}
