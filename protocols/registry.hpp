// Registry: the protocols a server can run by name. The built-ins come from one static table in
// registry.cpp (no self-registering statics: the linker drops those from static libraries);
// load_plugin (plugin_loader.hpp) adds protocols from shared objects at run time.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/session.hpp"

namespace reactor::protocols {

// Makes a configured Protocol from an args string (may be empty), or returns null and says why
// in `error`, without naming the protocol (the caller adds "--protocol NAME: " once). `context` is
// the entry's own: a plugin's PluginInfo, null for built-ins.
using ProtocolFactory = std::unique_ptr<Protocol> (*)(const void* context, std::string_view args,
                                                      std::string& error);

struct ProtocolEntry {
  ProtocolInfo info;
  ProtocolFactory factory = nullptr;
  const void* context = nullptr;

  std::unique_ptr<Protocol> create(std::string_view args, std::string& error) const {
    return factory(context, args, error);
  }
};

// The built-in protocols, in the order --list-protocols shows them.
std::span<const ProtocolEntry> builtin_protocols() noexcept;

class Registry {
 public:
  Registry();  // starts with the built-ins

  // Null if no protocol has that name. Pointers stay valid until the next add().
  const ProtocolEntry* find(std::string_view name) const noexcept;
  // Built-ins first, then added protocols in the order they were added.
  std::span<const ProtocolEntry> list() const noexcept { return entries_; }
  // False (and nothing added) if the name is taken or not a valid protocol name.
  bool add(const ProtocolEntry& entry);
  // find() then create(); an unknown name is an error like bad args.
  std::unique_ptr<Protocol> create(std::string_view name, std::string_view args,
                                   std::string& error) const;

 private:
  std::vector<ProtocolEntry> entries_;
};

// Protocol names: 1 to 32 of [A-Za-z0-9_-].
bool is_valid_protocol_name(std::string_view name) noexcept;
// A TransportMask as URL schemes: "tcp,udp,unix,seqpacket".
std::string transports_to_string(unsigned transports);

}  // namespace reactor::protocols
