#include "protocols/registry.hpp"

#include <algorithm>

#include "protocols/chat.hpp"
#include "protocols/echo.hpp"
#include "protocols/http/session.hpp"
#include "protocols/resp/protocol.hpp"

namespace reactor::protocols {
namespace {

template <std::unique_ptr<Protocol> (*Make)(std::string_view, std::string&)>
std::unique_ptr<Protocol> builtin(const void*, std::string_view args, std::string& error) {
  return Make(args, error);
}

constexpr ProtocolEntry kBuiltins[] = {
    {kEchoInfo, &builtin<make_echo>},
    {kChatInfo, &builtin<make_chat>},
    {http::kHttpInfo, &builtin<http::make_http>},
    {kRespInfo, &builtin<make_resp>},
};

}  // namespace

std::span<const ProtocolEntry> builtin_protocols() noexcept {
  return kBuiltins;
}

Registry::Registry() : entries_(std::begin(kBuiltins), std::end(kBuiltins)) {}

const ProtocolEntry* Registry::find(std::string_view name) const noexcept {
  const auto it = std::find_if(entries_.begin(), entries_.end(),
                               [name](const ProtocolEntry& e) { return e.info.name == name; });
  return it == entries_.end() ? nullptr : &*it;
}

bool Registry::add(const ProtocolEntry& entry) {
  if (!is_valid_protocol_name(entry.info.name) || entry.factory == nullptr ||
      find(entry.info.name) != nullptr) {
    return false;
  }
  entries_.push_back(entry);
  return true;
}

std::unique_ptr<Protocol> Registry::create(std::string_view name, std::string_view args,
                                           std::string& error) const {
  const ProtocolEntry* entry = find(name);
  if (entry == nullptr) {
    error = "unknown protocol '";
    error += name;
    error += "' (--list-protocols shows the known ones)";
    return nullptr;
  }
  std::unique_ptr<Protocol> protocol = entry->create(args, error);
  if (protocol == nullptr && error.empty()) {
    error = "could not create the protocol";
  }
  return protocol;
}

bool is_valid_protocol_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string transports_to_string(unsigned transports) {
  std::string text;
  for (const Transport t :
       {Transport::tcp, Transport::udp, Transport::unix_stream, Transport::unix_seqpacket}) {
    if ((transports & mask_of(t)) == 0) continue;
    if (!text.empty()) text += ',';
    text += scheme_of(t);
  }
  return text;
}

}  // namespace reactor::protocols
