// The plugin ABI: a shared object adds a protocol to reactor-server by exporting
//   extern "C" const reactor::PluginInfo* reactor_plugin_v1();
// REACTOR_PLUGIN(Type, name, summary, transports, uses_hub) writes that function for you.
//
// The "C" entry point and PluginInfo are plain C, but the Protocol and Session objects that
// cross it are C++ (session.hpp's vtables): build the plugin with the same compiler family and
// standard library as the server. kPluginAbiVersion goes up whenever PluginInfo or any class in
// session.hpp changes layout or virtual functions; the loader refuses other versions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string_view>
#include <type_traits>

#include "reactor/session.hpp"

namespace reactor {

inline constexpr std::uint32_t kPluginAbiVersion = 2;
inline constexpr const char* kPluginEntryPoint = "reactor_plugin_v1";

// Static data of the plugin; it must live as long as the plugin is loaded (the loader keeps it
// loaded until exit). abi_version stays the first field in every future version.
struct PluginInfo {
  std::uint32_t abi_version;  // kPluginAbiVersion the plugin was built against
  const char* name;           // --protocol NAME: 1 to 32 of [A-Za-z0-9_-], not a built-in's
  const char* summary;        // one line for --list-protocols
  unsigned transports;        // TransportMask bits the protocol works over
  bool uses_hub;              // sessions talk to each other through the Hub
  bool shares_memory;         // sessions share state in the process: no fork model (ABI 2)
  // Returns a new Protocol configured by `args` ("" when none were given), or null with a
  // NUL-terminated reason written into error[0..error_size). Must not throw.
  Protocol* (*create)(const char* args, char* error, std::size_t error_size);
  // Destroys what create returned. Called after every session of that Protocol is gone.
  void (*destroy)(Protocol* protocol);
};

using PluginEntryPoint = const PluginInfo* (*)();

namespace plugin_detail {

inline void copy_error(std::string_view message, char* error, std::size_t error_size) noexcept {
  if (error == nullptr || error_size == 0) return;
  const std::size_t n = message.size() < error_size - 1 ? message.size() : error_size - 1;
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// Constructs P from the args (P(std::string_view), which may throw to reject them) or, for a P
// without that constructor, default-constructs it and rejects any args.
template <class P>
Protocol* create(const char* args, char* error, std::size_t error_size) noexcept {
  const std::string_view text = args != nullptr ? args : "";
  try {
    if constexpr (std::is_constructible_v<P, std::string_view>) {
      return new P(text);
    } else {
      if (!text.empty()) {
        copy_error("this protocol takes no arguments", error, error_size);
        return nullptr;
      }
      return new P();
    }
  } catch (const std::exception& e) {
    copy_error(e.what(), error, error_size);
  } catch (...) {
    copy_error("unknown exception while creating the protocol", error, error_size);
  }
  return nullptr;
}

template <class P>
void destroy(Protocol* protocol) noexcept {
  delete static_cast<P*>(protocol);
}

}  // namespace plugin_detail

// The PluginInfo for a Protocol subclass P, with create/destroy made from P's constructors.
template <class P>
constexpr PluginInfo make_plugin_info(const char* name, const char* summary, unsigned transports,
                                      bool uses_hub, bool shares_memory = false) noexcept {
  static_assert(std::is_base_of_v<Protocol, P>, "a plugin exports a reactor::Protocol subclass");
  return PluginInfo{
      .abi_version = kPluginAbiVersion,
      .name = name,
      .summary = summary,
      .transports = transports,
      .uses_hub = uses_hub,
      .shares_memory = shares_memory,
      .create = &plugin_detail::create<P>,
      .destroy = &plugin_detail::destroy<P>,
  };
}

}  // namespace reactor

// What a plugin defines (REACTOR_PLUGIN does it); the loader finds it with dlsym.
extern "C" const reactor::PluginInfo* reactor_plugin_v1();

// Exports the plugin entry point for Protocol subclass `Type`. Use once, at namespace scope.
#define REACTOR_PLUGIN(Type, name, summary, transports, uses_hub)                \
  extern "C" __attribute__((visibility("default"))) const ::reactor::PluginInfo* \
  reactor_plugin_v1() {                                                          \
    static constexpr ::reactor::PluginInfo info =                                \
        ::reactor::make_plugin_info<Type>(name, summary, transports, uses_hub);  \
    return &info;                                                                \
  }
