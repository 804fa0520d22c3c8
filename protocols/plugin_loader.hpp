// load_plugin: adds a protocol from a shared object (reactor/plugin.hpp) to a Registry.
// The object is opened with dlopen(RTLD_NOW | RTLD_LOCAL) and stays loaded until exit, so the
// ProtocolInfo strings and every Protocol/Session it makes stay valid.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "protocols/registry.hpp"
#include "reactor/result.hpp"

namespace reactor::protocols {

enum class PluginErrc {
  file_missing = 1,     // nothing at that path
  not_a_shared_object,  // exists, but is no ELF file (a text file, a directory)
  load_failed,          // ELF, but dlopen refused it (wrong architecture, unresolved symbols)
  entry_point_missing,  // loads, but exports no reactor_plugin_v1
  abi_mismatch,         // built against another kPluginAbiVersion
  bad_plugin_info,      // null info, invalid name, or missing create/destroy
  name_taken,           // a built-in or an earlier plugin already has the name
  truncated,            // ELF, but its headers or loadable segments run past the end of the file
};

const std::error_category& plugin_category() noexcept;
inline std::error_code make_error_code(PluginErrc e) noexcept {
  return {static_cast<int>(e), plugin_category()};
}

struct LoadedPlugin {
  std::string path;   // as opened
  ProtocolInfo info;  // strings point into the plugin, valid until exit
};

// Loads the plugin at `path` (a name without '/' is taken as "./name", not searched for) and
// adds its protocol to `registry`. On failure nothing is added and the object is unloaded;
// `detail`, if given, receives specifics (dlerror text, the versions that differ) for the user.
Result<LoadedPlugin> load_plugin(std::string_view path, Registry& registry,
                                 std::string* detail = nullptr);

}  // namespace reactor::protocols

template <>
struct std::is_error_code_enum<reactor::protocols::PluginErrc> : std::true_type {};
