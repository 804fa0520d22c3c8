#include "protocols/echo.hpp"

namespace reactor::protocols {

std::size_t EchoSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  peer.send(bytes);
  return bytes.size();
}

std::unique_ptr<Session> EchoProtocol::open(Hub&) {
  return std::make_unique<EchoSession>();
}

std::unique_ptr<Protocol> make_echo(std::string_view args, std::string& error) {
  if (!args.empty()) {
    error = "echo takes no arguments";
    return nullptr;
  }
  return std::make_unique<EchoProtocol>();
}

}  // namespace reactor::protocols
